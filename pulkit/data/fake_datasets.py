"""Small stand-ins for GOT-10k, ILSVRC-2015 VID, OTB-2015 and VOT in their published layouts.

Renders synthetic video (``pulkit.data.synthetic.render_video``) at the datasets' real resolutions and writes
each layout's files, so the readers and the paper profile's code paths run on them (``make paper-dryrun``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from pulkit.data.synthetic import render_video

DATASETS = ("got10k", "vid", "otb", "vot")
JPEG_QUALITY = 90
# (width, height) of each fake video, cycled: the datasets' common resolutions.
RESOLUTIONS: dict[str, tuple[tuple[int, int], ...]] = {
    "got10k": ((1280, 720), (1920, 1080)),
    "vid": ((1280, 720), (500, 375)),
    "otb": ((640, 480), (320, 240)),
    "vot": ((1280, 720), (640, 360)),
}
OTB_NAMES = ("Car4", "Jogging", "Walking2", "Bolt")           # Jogging holds two targets (groundtruth_rect.1/2)
VOT_NAMES = ("graduate", "basketball", "bolt1", "fish1")      # VOT2016 names (Figs. 5 and 7 use two of them)
VOT_TAGS = ("camera_motion", "illum_change", "motion_change", "size_change", "occlusion")
VID_WNIDS = ("n02691156", "n02419796", "n02131653")           # airplane, antelope, bear


def _save_jpeg(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"{path}: JPEG encoding failed")
    path.parent.mkdir(parents=True, exist_ok=True)
    buf.tofile(str(path))


def _video(seed: int, index: int, frames: int, size: tuple[int, int]):
    return render_video(seed, index, frames, size[0], size[1], n_distractors=1)


def _size(dataset: str, index: int) -> tuple[int, int]:
    sizes = RESOLUTIONS[dataset]
    return sizes[index % len(sizes)]


# --------------------------------------------------------------------------- GOT-10k
def _got10k_split(root: Path, subset: str, videos: int, frames: int, seed: int) -> None:
    names = []
    prefix = {"train": "GOT-10k_Train", "val": "GOT-10k_Val"}[subset]
    for i in tqdm(range(videos), desc=f"fake GOT-10k {subset}", unit="video", leave=False):
        name = f"{prefix}_{i + 1:06d}"
        size = _size("got10k", i)
        v = _video(seed, i, frames, size)
        folder = root / subset / name
        for f, img in enumerate(v.frames):
            _save_jpeg(folder / f"{f + 1:08d}.jpg", img)
        vis = v.visible[0]
        rows = "".join(f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}\n" for x, y, w, h in v.boxes[0])   # 0-based, as GOT-10k
        (folder / "groundtruth.txt").write_text(rows)
        (folder / "absence.label").write_text("".join(f"{int(p <= 0)}\n" for p in vis))
        (folder / "cover.label").write_text("".join(f"{int(min(8, np.ceil(p * 8)))}\n" for p in vis))
        (folder / "cut_by_image.label").write_text("0\n" * frames)
        (folder / "meta_info.ini").write_text(
            "[METAINFO]\nurl: https://example.invalid/fake\nbegin_time: 0\nend_time: 0\nanno_fps: 10Hz\n"
            "object_class: synthetic object\nmotion_class: translation\nmajor_class: fake\nroot_class: object\n"
            f"motion_adverb: smoothly\nresolution: ({size[0]}, {size[1]})\n")
        names.append(name)
    (root / subset / "list.txt").write_text("\n".join(names) + "\n")


def write_got10k(root: str | Path, videos: int = 3, val_videos: int = 2, frames: int = 24, seed: int = 7100) -> Path:
    """``<root>/{train,val}/list.txt`` and ``GOT-10k_{Train,Val}_NNNNNN/`` folders (frames ``00000001.jpg``,
    ``groundtruth.txt`` of 0-based ``x,y,w,h``, ``absence/cover/cut_by_image.label``, ``meta_info.ini``)."""
    root = Path(root)
    _got10k_split(root, "train", videos, frames, seed)
    _got10k_split(root, "val", val_videos, frames, seed + 1)
    return root


# --------------------------------------------------------------------------- ILSVRC-2015 VID
def _vid_xml(folder: str, stem: str, size: tuple[int, int], objects: list[tuple[int, str, np.ndarray]]) -> str:
    objs = "".join(
        f"\t<object>\n\t\t<trackid>{tid}</trackid>\n\t\t<name>{wnid}</name>\n\t\t<bndbox>\n"
        f"\t\t\t<xmax>{int(x + w - 1)}</xmax>\n\t\t\t<xmin>{int(x)}</xmin>\n"
        f"\t\t\t<ymax>{int(y + h - 1)}</ymax>\n\t\t\t<ymin>{int(y)}</ymin>\n\t\t</bndbox>\n"
        f"\t\t<occluded>0</occluded>\n\t\t<generated>0</generated>\n\t</object>\n"
        for tid, wnid, (x, y, w, h) in objects)
    return (f"<annotation>\n\t<folder>{folder}</folder>\n\t<filename>{stem}</filename>\n"
            f"\t<source>\n\t\t<database>ILSVRC_2015</database>\n\t</source>\n"
            f"\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n\t</size>\n{objs}</annotation>\n")


def write_vid(root: str | Path, snippets: int = 2, frames: int = 24, seed: int = 7200) -> Path:
    """``<root>/Data/VID/train/ILSVRC2015_VID_train_0000/<snippet>/000000.JPEG``, one
    ``Annotations/VID/train/.../<snippet>/000000.xml`` per frame (inclusive 0-based corners; the target is
    track 0 and the distractor track 1, left out of frames where it is hidden) and ``ImageSets/VID/train_*.txt``."""
    root = Path(root)
    group = "ILSVRC2015_VID_train_0000"
    sets: dict[int, list[str]] = {}
    for i in tqdm(range(snippets), desc="fake VID", unit="snippet", leave=False):
        snippet = f"ILSVRC2015_train_{i:08d}"
        rel = f"{group}/{snippet}"
        size = _size("vid", i)
        v = _video(seed, i, frames, size)
        wnid = VID_WNIDS[i % len(VID_WNIDS)]
        for f, img in enumerate(v.frames):
            stem = f"{f:06d}"
            _save_jpeg(root / "Data" / "VID" / "train" / rel / f"{stem}.JPEG", img)
            objs = [(k, wnid, v.boxes[k, f]) for k in range(len(v.roles)) if v.visible[k, f] > 0]
            xml = root / "Annotations" / "VID" / "train" / rel / f"{stem}.xml"
            xml.parent.mkdir(parents=True, exist_ok=True)
            xml.write_text(_vid_xml(rel, stem, size, objs))
        sets.setdefault(i % len(VID_WNIDS) + 1, []).append(f"{rel} 1")
    (root / "ImageSets" / "VID").mkdir(parents=True, exist_ok=True)
    for k, lines in sets.items():
        (root / "ImageSets" / "VID" / f"train_{k}.txt").write_text("\n".join(lines) + "\n")
    return root


# --------------------------------------------------------------------------- OTB-2015
def write_otb(root: str | Path, sequences: int = 2, frames: int = 24, seed: int = 7300) -> Path:
    """``<root>/<Seq>/img/0001.jpg`` and ``groundtruth_rect.txt`` (1-based ``x,y,w,h``); the second sequence,
    ``Jogging``, holds two targets in ``groundtruth_rect.1.txt`` / ``.2.txt`` as OTB-2015 does."""
    root = Path(root)
    for i in tqdm(range(sequences), desc="fake OTB", unit="sequence", leave=False):
        name = OTB_NAMES[i % len(OTB_NAMES)] + ("" if i < len(OTB_NAMES) else str(i))
        v = _video(seed, i, frames, _size("otb", i))
        for f, img in enumerate(v.frames):
            _save_jpeg(root / name / "img" / f"{f + 1:04d}.jpg", img)
        targets = (0, 1) if name == "Jogging" else (0,)
        for k in targets:
            rows = "".join(f"{x + 1},{y + 1},{w},{h}\n" for x, y, w, h in v.boxes[k])
            fname = "groundtruth_rect.txt" if len(targets) == 1 else f"groundtruth_rect.{k + 1}.txt"
            (root / name / fname).write_text(rows)
    return root


# --------------------------------------------------------------------------- VOT
def _rotated(box: np.ndarray, angle: float) -> np.ndarray:
    """The 4 corners of ``box`` rotated by ``angle`` radians about its centre, 1-based, x1 y1 ... x4 y4."""
    x, y, w, h = box
    c = np.array([x + w / 2, y + h / 2])          # the corners' centre: their bounds keep the box's centre
    corners = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64) - c
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (corners @ rot.T + c + 1.0).reshape(-1)


def write_vot(root: str | Path, sequences: int = 2, frames: int = 24, seed: int = 7400) -> Path:
    """``<root>/list.txt`` and per sequence ``groundtruth.txt`` of 1-based rotated boxes (8 values a line) plus
    per-frame ``*.tag`` files; even sequences keep frames ``00000001.jpg`` in the folder (VOT2016), odd ones
    in ``color/`` with a ``sequence`` file (VOT2018+)."""
    root = Path(root)
    names = []
    for i in tqdm(range(sequences), desc="fake VOT", unit="sequence", leave=False):
        name = VOT_NAMES[i % len(VOT_NAMES)] + ("" if i < len(VOT_NAMES) else str(i))
        size = _size("vot", i)
        v = _video(seed, i, frames, size)
        folder = root / name
        img_dir = folder / "color" if i % 2 else folder
        for f, img in enumerate(v.frames):
            _save_jpeg(img_dir / f"{f + 1:08d}.jpg", img)
        angles = 0.15 * np.sin(np.linspace(0, np.pi, frames))
        (folder / "groundtruth.txt").write_text(
            "".join(",".join(f"{c:.4f}" for c in _rotated(b, a)) + "\n" for b, a in zip(v.boxes[0], angles)))
        vis = v.visible[0]
        tags = {"occlusion": (vis < 0.5).astype(int), "size_change": np.zeros(frames, int),
                "camera_motion": (v.blur > 0).astype(int), "illum_change": np.zeros(frames, int),
                "motion_change": np.zeros(frames, int)}
        for tag in VOT_TAGS:
            (folder / f"{tag}.tag").write_text("".join(f"{t}\n" for t in tags[tag]))
        if i % 2:
            (folder / "sequence").write_text(f"channels.color=color/%08d.jpg\nformat=default\nfps=30\nname={name}\n")
        names.append(name)
    (root / "list.txt").write_text("\n".join(names) + "\n")
    return root


# --------------------------------------------------------------------------- all four
def write_all(root: str | Path, videos: int = 2, frames: int = 24) -> dict[str, Path]:
    """``<root>/{got10k,vid,otb,vot}/``: each dataset with ``videos`` videos (GOT-10k: that many in train and in
    val) of ``frames`` frames; returns the four roots (the values of ``PULKIT_GOT10K`` ... ``PULKIT_VOT``)."""
    if videos < 1 or frames < 2:
        raise ValueError(f"need at least 1 video of 2 frames, got {videos} videos of {frames} frames")
    root = Path(root)
    return {"got10k": write_got10k(root / "got10k", videos, videos, frames),
            "vid": write_vid(root / "vid", videos, frames),
            "otb": write_otb(root / "otb", videos, frames),
            "vot": write_vot(root / "vot", videos, frames)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pulkit.data.fake_datasets", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder to write got10k/ vid/ otb/ vot/ into")
    p.add_argument("--videos", type=int, default=2, help="videos per dataset (and per GOT-10k split)")
    p.add_argument("--frames", type=int, default=24, help="frames per video")
    args = p.parse_args(argv)
    for name, path in write_all(args.out, args.videos, args.frames).items():
        print(f"PULKIT_{name.upper()}={path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
