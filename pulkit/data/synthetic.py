"""Seeded synthetic videos with exact ground truth: pulkit's embedded default data.

Renders the frames (and every object's box) that the pipeline trains and evaluates on by default,
as GOT-10k-layout splits that ``read_got10k`` serves.  Content, boxes and file layout: docs/modules.md.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pulkit.core import paths
from pulkit.core.provenance import config_hash
from pulkit.data.sequences import DataError

# Bump when the renderer changes: the cache hash includes it, so old splits are not reused.
GENERATOR_VERSION = 1
JPEG_QUALITY = 92
OBJECTS_COLUMNS = ("video", "frame", "object_id", "role", "x", "y", "w", "h", "visible")
_OCCLUDER = 127  # owner id of the occluder in the label map (never an object row)


# --------------------------------------------------------------------------- textures
def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
    """Smooth random field in [0, 1], float32 h x w, with about ``cells`` blobs along the short side."""
    gh = max(2, int(round(cells * h / min(h, w))))
    gw = max(2, int(round(cells * w / min(h, w))))
    f = cv2.resize(rng.standard_normal((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    f -= f.min()
    return f / max(float(f.max()), 1e-6)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One colour, hue in degrees, s and v in [0, 1] -> RGB float32 in 0..255."""
    hsv = np.array([[[(h % 360) / 2, s * 255, v * 255]]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _colourise(lum: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Blend two RGB colours by a luminance field in [0, 1] -> h x w x 3 float32."""
    return lum[..., None] * c1 + (1.0 - lum[..., None]) * c2


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-saturation, multi-scale clutter with a few sharp-edged patches (h x w x 3 float32)."""
    lum = 0.5 * _smooth_noise(rng, h, w, 4) + 0.3 * _smooth_noise(rng, h, w, 12) + 0.2 * _smooth_noise(rng, h, w, 40)
    hue = rng.uniform(0, 360)
    bg = _colourise(lum, _hsv_to_rgb(hue, rng.uniform(0.1, 0.35), 0.85), _hsv_to_rgb(hue + 40, 0.3, 0.25))
    for _ in range(int(rng.integers(6, 14))):  # clutter: rectangles in background tones
        ph, pw = (int(rng.integers(6, max(7, min(h, w) // 5))) for _ in range(2))
        y, x = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
        bg[y:y + ph, x:x + pw] = bg[y:y + ph, x:x + pw] * rng.uniform(0.5, 0.9) + rng.uniform(0, 60)
    return bg


def _object_luminance(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An object's texture pattern: smooth noise plus a few sharp blobs, in [0, 1]."""
    lum = 0.6 * _smooth_noise(rng, h, w, 3) + 0.4 * _smooth_noise(rng, h, w, 7)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.integers(2, 5))):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.1, 0.3) * min(h, w)
        lum = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r * r, 1.0 - lum, lum)
    return lum.astype(np.float32)


def _mask(h: int, w: int) -> np.ndarray:
    """Superellipse ``|u|^4 + |v|^4 <= 1`` over pixel centres: touches all four box sides."""
    u = (np.arange(w, dtype=np.float32) + 0.5) / w * 2 - 1
    v = (np.arange(h, dtype=np.float32) + 0.5) / h * 2 - 1
    return (v[:, None] ** 4 + u[None, :] ** 4) <= 1.0


# --------------------------------------------------------------------------- motion plans
def _wave(rng: np.random.Generator, t: np.ndarray, n_terms: int = 3) -> np.ndarray:
    """A smooth signal in [-1, 1]: a few sinusoids of low frequency with random phases."""
    weights = rng.dirichlet(np.ones(n_terms))
    out = np.zeros_like(t)
    for wgt in weights:
        out += wgt * np.sin(2 * np.pi * rng.uniform(0.15, 0.8) * t + rng.uniform(0, 2 * np.pi))
    return out


@dataclass
class _Object:
    role: str                # target | distractor
    texture: np.ndarray      # base texture, float32 H0 x W0 x 3
    boxes: np.ndarray        # T x 4 int64, [x, y, w, h] 0-based


def _trajectory(rng: np.random.Generator, n: int, width: int, height: int, side: float, aspect: float) -> np.ndarray:
    """Integer boxes T x 4 for an object of mean side ``side`` (px): smooth motion and scale change."""
    t = np.linspace(0, 1, n)
    scale = np.exp(rng.uniform(0.05, 0.3) * _wave(rng, t, 2))           # about 0.75x .. 1.35x
    w = np.maximum(np.round(side * np.sqrt(aspect) * scale), 4).astype(np.int64)
    h = np.maximum(np.round(side / np.sqrt(aspect) * scale), 4).astype(np.int64)
    w, h = np.minimum(w, width - 2), np.minimum(h, height - 2)
    cx = width / 2 + (width - w.max()) / 2 * 0.95 * _wave(rng, t)
    cy = height / 2 + (height - h.max()) / 2 * 0.95 * _wave(rng, t)
    x = np.clip(np.round(cx - (w - 1) / 2), 0, width - w).astype(np.int64)
    y = np.clip(np.round(cy - (h - 1) / 2), 0, height - h).astype(np.int64)
    return np.stack([x, y, w, h], axis=1)


@dataclass
class RenderedVideo:
    """Frames (T x H x W x 3 uint8 RGB) and every object's exact boxes and visible fraction."""
    frames: np.ndarray
    roles: list[str]         # object_id -> role; object 0 is the target
    boxes: np.ndarray        # K x T x 4 int64
    visible: np.ndarray      # K x T float64 in [0, 1]
    blur: np.ndarray         # T, motion-blur kernel length in px (0: sharp frame)


def render_video(seed: int, index: int, n_frames: int, width: int, height: int,
                 n_distractors: int = 2, hide_target: bool = False) -> RenderedVideo:
    """Render video ``index`` of the split seeded ``seed`` in memory.

    ``hide_target`` draws everything except the target (same random draws, so the frames differ
    from the normal render only where the target was): tests use it to check the boxes.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    T, W, H = n_frames, width, height
    t = np.linspace(0, 1, T)

    # Background larger than the frame, panned along a smooth path.
    margin = int(0.15 * min(W, H))
    bg = _background(rng, H + 2 * margin, W + 2 * margin)
    pan_x = np.round(margin + margin * 0.9 * _wave(rng, t, 2)).astype(np.int64)
    pan_y = np.round(margin + margin * 0.9 * _wave(rng, t, 2)).astype(np.int64)

    # Target and distractors: one texture family, distinct colours.
    side = rng.uniform(0.15, 0.3) * min(W, H)
    hue = rng.uniform(0, 360)
    base = _object_luminance(rng, 96, 96)
    objects = []
    for k in range(1 + n_distractors):
        if k == 0:
            lum, h_k = base, hue
        elif rng.random() < 0.5:   # same pattern, shifted hue
            lum, h_k = base[:, ::-1] if rng.random() < 0.5 else base[::-1], hue + rng.choice([-1, 1]) * rng.uniform(25, 70)
        else:                      # slight variation of the pattern, near hue
            lum = np.clip(0.75 * base + 0.25 * _object_luminance(rng, 96, 96), 0, 1)
            h_k = hue + rng.uniform(-15, 15)
        tex = _colourise(lum, _hsv_to_rgb(h_k, 0.85, 0.95), _hsv_to_rgb(h_k + 35, 0.7, 0.35))
        aspect = rng.uniform(0.5, 2.0)
        boxes = _trajectory(rng, T, W, H, side * (1.0 if k == 0 else rng.uniform(0.8, 1.2)), aspect)
        objects.append(_Object("target" if k == 0 else "distractor", tex, boxes))

    # Occluder: a background-toned patch crossing the target around frame tc, offset vertically.
    occ = None
    if rng.random() < 0.75:
        tb = objects[0].boxes
        ow = max(4, int(0.5 * tb[:, 2].mean()))
        oh = max(4, int(1.3 * tb[:, 3].mean()))
        tc = rng.uniform(0.25, 0.75) * T
        crossing = rng.uniform(0.15, 0.35) * T                                 # frames spent over the target
        speed = rng.choice([-1, 1]) * (tb[:, 2].mean() + ow) / crossing        # px per frame, relative
        dy = rng.choice([-1, 1]) * rng.uniform(0.35, 0.6) * tb[:, 3].mean()
        cx = tb[:, 0] + (tb[:, 2] - 1) / 2 + (np.arange(T) - tc) * speed
        cy = tb[:, 1] + (tb[:, 3] - 1) / 2 + dy
        occ_tex = _colourise(_smooth_noise(rng, oh, ow, 3), _hsv_to_rgb(hue + 180, 0.2, 0.7), _hsv_to_rgb(hue + 200, 0.2, 0.2))
        occ = (np.round(cx - (ow - 1) / 2).astype(np.int64), np.round(cy - (oh - 1) / 2).astype(np.int64), occ_tex)

    # Illumination: global gain drift and a moving horizontal light gradient.
    gain = 1.0 + rng.uniform(0.1, 0.35) * _wave(rng, t, 2)
    grad = rng.uniform(0.0, 0.25) * _wave(rng, t, 1)
    ramp = np.linspace(-1, 1, W, dtype=np.float32)[None, :, None]

    # Motion blur: one burst of camera shake (linear kernel) in most videos.
    blur = np.zeros(T, dtype=np.int64)
    angle = rng.uniform(0, np.pi)
    if rng.random() < 0.6:
        start = int(rng.integers(0, max(1, T - 4)))
        blur[start:start + int(rng.integers(3, 9))] = int(rng.choice([5, 7, 9]))

    order = list(range(1, len(objects))) + [0]      # distractors below the target
    frames = np.empty((T, H, W, 3), np.uint8)
    visible = np.zeros((len(objects), T))
    masks: dict[tuple[int, int], np.ndarray] = {}
    for f in range(T):
        img = bg[pan_y[f]:pan_y[f] + H, pan_x[f]:pan_x[f] + W].copy()
        owner = np.full((H, W), -1, np.int16)
        for k in order:
            x, y, w, h = objects[k].boxes[f]
            m = masks.setdefault((h, w), _mask(h, w))
            owner[y:y + h, x:x + w][m] = k
            if k == 0 and hide_target:
                continue
            sprite = cv2.resize(objects[k].texture, (int(w), int(h)), interpolation=cv2.INTER_AREA)
            img[y:y + h, x:x + w][m] = sprite[m]
        if occ is not None:
            ox, oy, tex = occ[0][f], occ[1][f], occ[2]
            x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + tex.shape[1], W), min(oy + tex.shape[0], H)
            if x1 > x0 and y1 > y0:
                img[y0:y1, x0:x1] = tex[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
                owner[y0:y1, x0:x1] = _OCCLUDER
        counts = np.bincount(owner[(owner >= 0) & (owner != _OCCLUDER)], minlength=len(objects))
        for k, obj in enumerate(objects):
            x, y, w, h = obj.boxes[f]
            visible[k, f] = counts[k] / masks[(h, w)].sum()
        img *= (gain[f] + grad[f] * ramp)
        out = np.clip(img, 0, 255).astype(np.uint8)
        if blur[f]:
            n = int(blur[f])
            kern = np.zeros((n, n), np.float32)
            c = (n - 1) / 2
            cv2.line(kern, (int(round(c - c * np.cos(angle))), int(round(c - c * np.sin(angle)))),
                     (int(round(c + c * np.cos(angle))), int(round(c + c * np.sin(angle)))), 1.0, 1)
            out = cv2.filter2D(out, -1, kern / kern.sum(), borderType=cv2.BORDER_REFLECT)
        frames[f] = out
    return RenderedVideo(frames, [o.role for o in objects], np.stack([o.boxes for o in objects]), visible, blur)


# --------------------------------------------------------------------------- writing a split
def video_name(seed: int, index: int) -> str:
    """Name of video ``index`` of the split seeded ``seed`` (splits from different seeds never share names)."""
    return f"synthetic_s{int(seed)}_{int(index):04d}"


def _cover_level(vis: np.ndarray) -> np.ndarray:
    """GOT-10k cover levels: 0 fully hidden, 1..7 in steps of 15 % visible, 8 fully visible."""
    lvl = np.minimum(7, np.ceil(vis / 0.15)).astype(np.int64)
    lvl[vis <= 0] = 0
    lvl[vis >= 1] = 8
    return lvl


def _write_video(folder: Path, video: RenderedVideo, seed: int, index: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f, frame in enumerate(video.frames):
        ok, buf = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError(f"{folder}: JPEG encoding of frame {f} failed")
        buf.tofile(str(folder / f"{f + 1:08d}.jpg"))
    target, vis = video.boxes[0], video.visible[0]
    (folder / "groundtruth.txt").write_text("".join(f"{x},{y},{w},{h}\n" for x, y, w, h in target))
    (folder / "absence.label").write_text("".join(f"{int(v <= 0)}\n" for v in vis))
    (folder / "cover.label").write_text("".join(f"{c}\n" for c in _cover_level(vis)))
    (folder / "cut_by_image.label").write_text("0\n" * len(vis))
    H, W = video.frames.shape[1:3]
    (folder / "meta_info.ini").write_text(
        "[METAINFO]\nobject_class: synthetic\nmotion_class: smooth\nanno_fps: 10Hz\n"
        f"resolution: ({W}, {H})\nseed: {seed}\nindex: {index}\nroles: {','.join(video.roles)}\n")


def generate_split(root: str | os.PathLike, n_videos: int, n_frames: int, width: int, height: int,
                   seed: int, n_distractors: int = 2) -> Path:
    """Render ``n_videos`` videos into ``root`` in GOT-10k layout (see the module docstring); return ``root``."""
    from tqdm.auto import tqdm

    if n_videos < 1 or n_frames < 1:
        raise ValueError(f"need at least one video and one frame, got {n_videos} videos x {n_frames} frames")
    if width < 32 or height < 32:
        raise ValueError(f"synthetic frames must be at least 32 x 32 pixels, got {width} x {height}")
    if n_distractors < 0:
        raise ValueError(f"n_distractors must be >= 0, got {n_distractors}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names, rows = [], []
    for i in tqdm(range(n_videos), desc=f"synthetic seed {seed}", unit="video", leave=False):
        name = video_name(seed, i)
        video = render_video(seed, i, n_frames, width, height, n_distractors)
        _write_video(root / name, video, seed, i)
        names.append(name)
        for k, role in enumerate(video.roles):
            for f in range(n_frames):
                x, y, w, h = video.boxes[k, f]
                rows.append(f"{name},{f},{k},{role},{x},{y},{w},{h},{video.visible[k, f]:.4f}\n")
    (root / "objects.csv").write_text(",".join(OBJECTS_COLUMNS) + "\n" + "".join(rows))
    (root / "list.txt").write_text("\n".join(names) + "\n")
    return root


def read_objects(root: str | os.PathLike):
    """``<root>/objects.csv`` of a synthetic split as a pandas DataFrame (one row per object and frame).

    Columns: video, frame (0-based), object_id (0 is the target), role (target | distractor),
    x, y, w, h (0-based box), visible (fraction of the object's pixels not covered by others).
    """
    import pandas as pd

    path = Path(root) / "objects.csv"
    if not path.is_file():
        raise DataError(f"{path}: missing file (a synthetic split written by generate_split holds objects.csv)")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from None
    missing = [c for c in OBJECTS_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing columns {', '.join(missing)}")
    return df


# --------------------------------------------------------------------------- the cached default data
def synthetic_params(data_cfg) -> dict:
    """The fields that determine the generated videos (their hash names the cache folder)."""
    return {
        "generator_version": GENERATOR_VERSION,
        "train_videos": int(data_cfg.synthetic_train_videos),
        "val_videos": int(data_cfg.synthetic_val_videos),
        "frames": int(data_cfg.synthetic_frames),
        "width": int(data_cfg.synthetic_width),
        "height": int(data_cfg.synthetic_height),
        "distractors": int(data_cfg.synthetic_distractors),
        "train_seed": int(data_cfg.synthetic_train_seed),
        "val_seed": int(data_cfg.synthetic_val_seed),
    }


def _manifest_ok(folder: Path, params: dict) -> bool:
    """True when ``folder/manifest.json`` has these parameters and every listed file has its size."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("params") != params:
        return False
    try:
        return all((folder / rel).stat().st_size == size for rel, size in manifest["files"].items())
    except (OSError, KeyError, AttributeError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_temps(base: Path, key: str) -> None:
    """Temp folders of killed generations (``.<key>.tmp-<pid>-*`` whose process is gone)."""
    for p in base.glob(f".{key}.tmp-*"):
        try:
            pid = int(p.name.split(".tmp-")[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def ensure_synthetic(data_cfg) -> dict[str, Path]:
    """The synthetic ``train`` and ``val`` split folders for ``data_cfg`` (a ``DataConfig``), generated once."""
    params = synthetic_params(data_cfg)
    if params["train_seed"] == params["val_seed"]:
        raise ValueError("synthetic_train_seed and synthetic_val_seed must differ (train and val must be disjoint)")
    return generate_once(params, {"train": (params["train_videos"], params["train_seed"]),
                                  "val": (params["val_videos"], params["val_seed"])})


def generate_once(params: dict, splits: dict[str, tuple[int, int]]) -> dict[str, Path]:
    """Folders of ``splits`` (name -> (videos, seed)) rendered with ``params``' frames, size and distractors.

    Lives in ``synthetic_dir()/<hash of params>/`` with a ``manifest.json`` of the parameters and every
    file's size; reused when both match.  Generation writes into a temporary sibling folder and renames
    it into place, so a killed run never leaves a split that looks complete.
    """
    key = config_hash(params)
    base = paths.synthetic_dir()
    final = base / key
    out = {name: final / name for name in splits}
    if _manifest_ok(final, params):
        return out
    base.mkdir(parents=True, exist_ok=True)
    _remove_dead_temps(base, key)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-{os.getpid()}-", dir=base))
    try:
        p = params
        for name, (videos, seed) in splits.items():
            generate_split(tmp / name, videos, p["frames"], p["width"], p["height"], seed, p["distractors"])
        files = {str(f.relative_to(tmp)): f.stat().st_size for f in sorted(tmp.rglob("*")) if f.is_file()}
        (tmp / "manifest.json").write_text(json.dumps({"params": params, "files": files}, indent=1, sort_keys=True))
        if final.exists():  # an incomplete or outdated folder: move it aside, then replace it
            stale = Path(tempfile.mkdtemp(prefix=f".{key}.stale-", dir=base))
            os.replace(final, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _manifest_ok(final, params):  # another process did not win the race either
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
