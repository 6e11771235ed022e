"""Benchmark evaluation: OTB (success, precision), GOT-10k val (AO, SR), VOT reset-based (A, R, EAO).

Conventions
-----------
* Boxes are pulkit's 0-based ``[x, y, w, h]`` (``pulkit.data.crops``); trackers are got10k
  ``Tracker`` objects (``init(image, box)``, ``update(image) -> box``) fed RGB uint8 arrays
  (``frame_format="rgb"``, read with ``pulkit.data.images.read_rgb``) or PIL RGB images
  (``"pil"``, as got10k's experiments pass them).  Times are seconds of ``init`` / ``update``
  alone (frame decoding excluded), as got10k measures them.
* Stored records use each benchmark's own file convention (OTB and VOT 1-based, GOT-10k
  0-based), so got10k and the official toolkits read them as their own; every output is
  quantised as a record round-trip gives it (``quantise``: 4 decimals in the file convention),
  also when nothing is stored, so a fresh run and a re-used one give identical numbers.
* OTB and GOT-10k scores come from got10k 0.1.3's own code (``ExperimentOTB._calc_metrics`` /
  ``_calc_curves``, ``ExperimentGOT10k._evaluate``, ``rect_iou``, ``center_error``) through
  ``pulkit.got10k_compat``; the VOT protocol is implemented here (got10k has no EAO and its VOT
  experiment needs repairs), following the VOT toolkit (see ``evaluate_vot``).

Stored results (plain text, got10k layouts) go under ``<base>/<benchmark>/`` where ``<base>`` is
``result_dir`` when given, else ``pulkit.artifacts.tracking_dir(profile)/<result key>`` when a
profile is given; with neither, nothing is written.  ``<benchmark>`` is ``OTB`` (``<seq>.txt``,
``times/<seq>_time.txt``), ``GOT-10k`` (``<seq>/<seq>_001.txt``, ``<seq>/<seq>_time.txt``) or
``VOT`` (``baseline/<seq>/<seq>_001.txt`` with VOT's codes ``1`` init, ``2`` failure, ``0``
skipped).  Beside each record a ``.meta.json`` names its result key, the sequence fingerprint and
the frame format; a record is re-used only when all three match, so a retrained model (new key)
never picks up stale results.  got10k reads these folders: set an experiment's ``result_dir`` to
``<base>`` and report on the tracker named after the benchmark folder, e.g.
``exp.result_dir = str(base); exp.report(["OTB"])``.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from . import artifacts
from . import got10k_compat as compat
from .config import EvalConfig
from .data.images import image_size, read_rgb
from .data.sequences import DataError, Sequence
from .io import atomic_write_bytes
from .provenance import config_hash

FRAME_FORMATS = ("rgb", "pil")
INIT, FAILURE, SKIPPED = 1, 2, 0          # VOT trajectory codes (VOT toolkit / got10k)
OTB_IOU_THRESHOLDS = np.linspace(0, 1, 21)  # got10k ExperimentOTB.nbins_iou
OTB_ERROR_THRESHOLDS = np.arange(0, 51)     # got10k ExperimentOTB.nbins_ce (pixels)
GOT10K_IOU_THRESHOLDS = np.linspace(0, 1, 101)


# --------------------------------------------------------------------------- result keys
def checkpoint_digest(checkpoint) -> str:
    """SHA-256 (hex) of a model's weights.

    ``checkpoint``: a file path (its bytes), raw ``bytes``, an ``nn.Module`` (its ``state_dict``)
    or a state-dict mapping (names, dtypes, shapes and raw tensor bytes, in sorted name order).
    A file and the module loaded from it digest differently: pass the same kind to compare.
    """
    h = hashlib.sha256()
    if isinstance(checkpoint, (bytes, bytearray)):
        h.update(bytes(checkpoint))
    elif isinstance(checkpoint, (str, os.PathLike)):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such checkpoint file")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    elif callable(getattr(checkpoint, "state_dict", None)):
        _hash_state(h, checkpoint.state_dict())
    elif isinstance(checkpoint, Mapping):
        _hash_state(h, checkpoint)
    else:
        raise TypeError(f"checkpoint must be a path, bytes, an nn.Module or a state dict, got {type(checkpoint).__name__}")
    return h.hexdigest()


def _hash_state(h, state: Mapping, prefix: str = "") -> None:
    for k in sorted(state, key=str):
        v = state[k]
        name = f"{prefix}{k}"
        h.update(name.encode() + b"\0")
        if isinstance(v, Mapping):
            _hash_state(h, v, name + ".")
        elif type(v).__module__.startswith("torch") and hasattr(v, "detach"):
            import torch

            t = v.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(v, np.ndarray):
            a = np.ascontiguousarray(v)
            h.update(f"{a.dtype}{a.shape}".encode() + a.tobytes())
        else:
            h.update(repr(v).encode())


def result_key(tracker_name: str, checkpoint=None, config=None) -> str:
    """``<name>-w<12 hex of the weights>-c<12 hex of the config>`` (``none`` for a missing part).

    ``checkpoint``: see ``checkpoint_digest``; ``config``: any dataclass / dict / JSON-able value
    (``pulkit.provenance.config_hash``), e.g. the tracker and model configs.  A retrained model
    (new checkpoint bytes) or a changed config gives a new key, so stored results never go stale.
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(tracker_name)).strip("_") or "tracker"
    w = checkpoint_digest(checkpoint)[:12] if checkpoint is not None else "none"
    c = config_hash(config) if config is not None else "none"
    return f"{name}-w{w}-c{c}"


def tracker_key(tracker) -> str:
    """The result key of a tracker object: its ``name``, its ``net`` (when it has one) and its
    ``cfg`` with crop geometry (``SiamFCTracker`` has all three).  Pass ``key=`` to override."""
    net = getattr(tracker, "net", None)
    config = {k: getattr(tracker, k) for k in ("cfg", "exemplar_sz", "instance_sz", "context") if hasattr(tracker, k)}
    return result_key(getattr(tracker, "name", type(tracker).__name__),
                      checkpoint=net if callable(getattr(net, "state_dict", None)) else None,
                      config=config or None)


def _base_dir(result_dir, profile, key: str) -> Path | None:
    if result_dir is not None:
        return Path(result_dir)
    if profile is not None:
        return artifacts.tracking_dir(profile) / key
    return None


# --------------------------------------------------------------------------- sequences
def sequence_fingerprint(seq: Sequence) -> str:
    """16 hex digits over the name, frame file names and ground truth (stored results match it)."""
    h = hashlib.sha256(seq.name.encode() + b"\0")
    for p in seq.frames:
        h.update(Path(p).name.encode() + b"\0")
    for a in (seq.boxes, seq.polygons):
        if a is not None:
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def _check_sequence(seq: Sequence) -> None:
    if not len(seq.frames):
        raise DataError(f"{seq.name}: no frames")
    if seq.boxes is None:
        raise DataError(f"{seq.name}: no ground truth (evaluation needs labelled sequences)")
    if np.shape(seq.boxes) != (len(seq.frames), 4):
        raise DataError(f"{seq.name}: boxes have shape {np.shape(seq.boxes)}, expected ({len(seq.frames)}, 4)")
    if not np.isfinite(seq.boxes[0]).all() or not (seq.boxes[0, 2:] > 0).all():
        raise DataError(f"{seq.name}: first-frame box {seq.boxes[0]} is unusable; cannot initialise a tracker")


def _sequences(src, reader, names, max_frames: int | None) -> list[Sequence]:
    if isinstance(src, (str, os.PathLike)):
        seqs = reader(src, names=names)
    else:
        seqs = list(src)
        if names is not None:
            wanted = [names] if isinstance(names, str) else list(names)
            have = {s.name: s for s in seqs}
            missing = [n for n in wanted if n not in have]
            if missing:
                raise DataError(f"no sequence named {', '.join(missing)}; given: {', '.join(have)}")
            seqs = [have[n] for n in wanted]
    if max_frames is not None:
        seqs = [s.sub(0, max_frames) for s in seqs]
    for s in seqs:
        _check_sequence(s)
    return seqs


def load_frame(path, frame_format: str = "rgb"):
    """Frame ``path`` as an RGB uint8 array (``"rgb"``) or a loaded PIL RGB image (``"pil"``)."""
    if frame_format == "rgb":
        return read_rgb(path)
    if frame_format == "pil":
        from PIL import Image

        with Image.open(path) as im:
            return im.convert("RGB")
    raise ValueError(f"frame_format must be one of {FRAME_FORMATS}, got {frame_format!r}")


def _as_region(out, tracker, seq: Sequence, f: int, allow_polygon: bool) -> np.ndarray:
    r = np.asarray(out, dtype=np.float64).ravel()
    ok = r.size == 4 or (allow_polygon and r.size >= 6 and r.size % 2 == 0)
    if not ok:
        what = "4 values (x, y, w, h) or 2k >= 6 polygon corners" if allow_polygon else "4 values (x, y, w, h)"
        raise ValueError(f"{getattr(tracker, 'name', tracker)}: update() on {seq.name} frame {f} returned "
                         f"{r.size} values, expected {what}")
    return r


# --------------------------------------------------------------------------- stored records
# Records use each benchmark's own file convention, so got10k and the official toolkits read them
# as their own: OTB and VOT files are 1-based, GOT-10k files 0-based (pulkit.data.sequences).
FILE_ORIGIN = {"otb": 1.0, "got10k": 0.0, "vot": 1.0}


def _shift(r: np.ndarray, d: float) -> np.ndarray:
    """Move a region by ``d`` pixels: x, y of a box, every corner of a polygon; codes unchanged."""
    if r.size == 1 or d == 0:
        return r
    out = np.array(r, dtype=np.float64)
    if out.size == 4:
        out[:2] += d
    else:
        out += d
    return out


def quantise(r, layout: str) -> np.ndarray:
    """A region as a stored record gives it back: written in the file convention of ``layout`` with
    4 decimals, read and converted to 0-based.  Applied to every output, stored or not, so a fresh
    run and a re-used one give bit-identical numbers."""
    r = np.asarray(r, dtype=np.float64).ravel()
    if r.size == 1:
        return r
    d = FILE_ORIGIN[layout]
    return _shift(np.array([float("%.4f" % v) for v in _shift(r, d)]), -d)


def _record_paths(base: Path, seq_name: str, layout: str, repetition: int) -> tuple[Path, Path]:
    """Record and time file of a sequence; a ``/`` in its name (``load_shared``'s ``otb/Deer``)
    becomes ``_`` so each sequence stays one file (the meta file keeps the real name)."""
    seq_name = seq_name.replace("/", "_").replace(os.sep, "_")
    if layout == "otb":
        return base / f"{seq_name}.txt", base / "times" / f"{seq_name}_time.txt"
    if layout == "got10k":
        return base / seq_name / f"{seq_name}_{repetition:03d}.txt", base / seq_name / f"{seq_name}_time.txt"
    if layout == "vot":
        d = base / "baseline" / seq_name
        return d / f"{seq_name}_{repetition:03d}.txt", d / f"{seq_name}_time.txt"
    raise ValueError(f"unknown layout {layout!r}")


def _meta_path(record: Path) -> Path:
    return record.with_name(record.stem + ".meta.json")


def _region_line(r: np.ndarray) -> str:
    return "%d" % r[0] if r.size == 1 else ",".join("%.4f" % v for v in r)


def _write_record(record: Path, time_file: Path, regions: list[np.ndarray], times: np.ndarray,
                  repetition: int, layout: str, meta: dict) -> None:
    d = FILE_ORIGIN[layout]
    atomic_write_bytes(record, ("\n".join(_region_line(_shift(r, d)) for r in regions) + "\n").encode())
    columns = layout != "otb"
    t = np.asarray(times, dtype=np.float64)
    if columns:  # got10k keeps one column per repetition
        old = _read_times(time_file)
        table = old if old is not None and old.ndim == 2 and old.shape[0] == len(t) else np.full((len(t), 0), np.nan)
        if table.shape[1] < repetition:
            table = np.hstack([table, np.full((len(t), repetition - table.shape[1]), np.nan)])
        table[:, repetition - 1] = t
    else:
        table = t[:, None]
    lines = [",".join("%.8f" % v for v in row).replace("nan", "NaN") for row in table]
    atomic_write_bytes(time_file, ("\n".join(lines) + "\n").encode())
    atomic_write_bytes(_meta_path(record), (json.dumps(meta, sort_keys=True) + "\n").encode())


def _read_times(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    rows = [[float(v) for v in ln.split(",")] for ln in path.read_text().split("\n") if ln.strip()]
    return np.array(rows, dtype=np.float64) if rows else None


def _read_regions(record: Path, layout: str) -> list[np.ndarray]:
    """The regions of a record, 0-based."""
    try:
        return [_shift(np.array([float(v) for v in ln.split(",")], dtype=np.float64), -FILE_ORIGIN[layout])
                for ln in record.read_text().split("\n") if ln.strip()]
    except ValueError:
        raise DataError(f"{record}: not a tracking record (comma-separated numbers per line)") from None


def _load_stored(record: Path, time_file: Path, meta: dict, repetition: int, layout: str):
    """(regions, times) of a stored run that matches ``meta`` exactly, else None."""
    mp = _meta_path(record)
    if not (record.is_file() and mp.is_file()):
        return None
    try:
        stored = json.loads(mp.read_text())
    except json.JSONDecodeError:
        return None
    if stored != meta:
        return None
    regions = _read_regions(record, layout)
    table = _read_times(time_file)
    if len(regions) != meta["frames"] or table is None or table.shape[0] != meta["frames"]:
        return None
    col = repetition - 1 if layout != "otb" else 0
    if table.shape[1] <= col:
        return None
    return regions, table[:, col]


# --------------------------------------------------------------------------- running a tracker
def run_sequence(tracker, seq: Sequence, result_dir=None, *, key: str | None = None, frame_format: str = "rgb",
                 layout: str = "otb", repetition: int = 1, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Track ``seq`` from its first box (one-pass evaluation); return ``(boxes N x 4, times N)``.

    ``boxes[0]`` is the initial box; boxes are 0-based ``[x, y, w, h]`` (``quantise``d).  With
    ``result_dir`` the run is stored there in got10k's ``layout`` and the benchmark's file
    convention (``"otb"``: 1-based ``<seq>.txt`` and ``times/<seq>_time.txt``; ``"got10k"``:
    0-based ``<seq>/<seq>_<rep>.txt``, times one column per repetition), and a stored run is
    returned instead of tracking when its ``key``, the sequence fingerprint and ``frame_format``
    match (never without a ``key``).  ``progress``: a tqdm bar advanced per frame.
    """
    _check_sequence(seq)
    if frame_format not in FRAME_FORMATS:
        raise ValueError(f"frame_format must be one of {FRAME_FORMATS}, got {frame_format!r}")
    n = len(seq)
    paths = _record_paths(Path(result_dir), seq.name, layout, repetition) if result_dir is not None else None
    meta = {"result_key": key, "sequence": seq.name, "fingerprint": sequence_fingerprint(seq),
            "frame_format": frame_format, "frames": n, "protocol": "one-pass"}
    if paths is not None and key is not None:
        stored = _load_stored(*paths, meta, repetition, layout)
        if stored is not None and all(r.size == 4 for r in stored[0]):
            if progress is not None:
                progress.update(n)
            return np.stack(stored[0]), stored[1]

    boxes = np.zeros((n, 4))
    times = np.zeros(n)
    for f, path in enumerate(seq.frames):
        image = load_frame(path, frame_format)
        t0 = time.perf_counter()
        if f == 0:
            tracker.init(image, seq.boxes[0].copy())
            boxes[0] = quantise(seq.boxes[0], layout)
        else:
            boxes[f] = quantise(_as_region(tracker.update(image), tracker, seq, f, allow_polygon=False), layout)
        times[f] = time.perf_counter() - t0
        if progress is not None:
            progress.update(1)
    if paths is not None:
        _write_record(*paths, list(boxes), times, repetition, layout, meta)
    return boxes, times


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False)


def _repetitions(tracker, requested: int | None, default: int) -> int:
    """got10k's rule: one run for a deterministic tracker, ``default`` runs otherwise."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"repetitions must be >= 1, got {requested}")
        return int(requested)
    return 1 if getattr(tracker, "is_deterministic", False) else default


def _speed(times: np.ndarray) -> float:
    """got10k's speed: mean of 1 / t over positive finite times (fps), -1 when none."""
    t = np.asarray(times, dtype=np.float64).ravel()
    t = t[np.isfinite(t) & (t > 0)]
    return float(np.mean(1.0 / t)) if len(t) else -1.0


# --------------------------------------------------------------------------- OTB
def otb_metrics(boxes, anno) -> dict[str, Any]:
    """got10k ``ExperimentOTB`` scores of one sequence.

    The first box is replaced by the ground truth (as ``ExperimentOTB.report`` does); success
    curve over 21 IoU thresholds ``linspace(0, 1, 21)`` with a strict ``IoU > t`` (a perfect
    tracker scores 20/21), precision curve over centre errors ``<= 0..50`` px.  A NaN
    ground-truth row (absent target) fails every threshold, as in got10k.
    """
    boxes = np.array(boxes, dtype=np.float64)
    anno = np.asarray(anno, dtype=np.float64)
    if boxes.shape != anno.shape:
        raise ValueError(f"{boxes.shape[0]} boxes for {anno.shape[0]} ground-truth rows")
    boxes[0] = anno[0]
    exp = compat.ExperimentOTBLocal()
    with np.errstate(invalid="ignore"):
        ious, errors = exp._calc_metrics(boxes, anno)
        succ, prec = exp._calc_curves(ious, errors)
    return {"success_curve": succ, "precision_curve": prec, "success_auc": float(np.mean(succ)),
            "precision": float(prec[20]), "success_rate": float(succ[exp.nbins_iou // 2]),
            "ious": ious, "center_errors": errors}


def evaluate_otb(tracker, sequences_or_root, *, names=None, key: str | None = None, result_dir=None,
                 profile: str | None = None, frame_format: str = "rgb", max_frames: int | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """One-pass evaluation (OTB protocol) of ``tracker`` on OTB-layout sequences.

    ``sequences_or_root``: a folder read with ``read_otb`` (any sequence names, no download) or
    ``Sequence`` objects (``names`` selects some).  Scores follow got10k's ``ExperimentOTB``
    (``otb_metrics``); overall curves are the mean of the per-sequence curves, ``success_auc`` their
    mean over thresholds, ``precision`` the curve at 20 px, ``success_rate`` the curve at IoU 0.5,
    ``speed_fps`` the mean of per-sequence speeds.  Returns a JSON-able dict; ``to_table`` makes
    its DataFrame.
    """
    from .data.sequences import read_otb

    seqs = _sequences(sequences_or_root, read_otb, names, max_frames)
    key = key or tracker_key(tracker)
    base = _base_dir(result_dir, profile, key)
    out_dir = base / "OTB" if base is not None else None
    rows: dict[str, dict] = {}
    succ, prec, speeds = [], [], []
    with _progress(sum(len(s) for s in seqs), f"OTB {tracker.name}", progress) as bar:
        for seq in seqs:
            boxes, times = run_sequence(tracker, seq, out_dir, key=key, frame_format=frame_format,
                                        layout="otb", progress=bar)
            m = otb_metrics(boxes, seq.boxes)
            speed = _speed(times)
            succ.append(m["success_curve"])
            prec.append(m["precision_curve"])
            speeds.append(max(speed, 0.0))
            rows[seq.name] = {"success_auc": m["success_auc"], "precision": m["precision"],
                              "success_rate": m["success_rate"], "speed_fps": speed, "frames": len(seq),
                              "success_curve": m["success_curve"].tolist(),
                              "precision_curve": m["precision_curve"].tolist()}
    succ_curve, prec_curve = np.mean(succ, axis=0), np.mean(prec, axis=0)
    nz = np.count_nonzero(speeds)
    return {
        "benchmark": "otb", "tracker": tracker.name, "result_key": key, "frame_format": frame_format,
        "success_auc": float(np.mean(succ_curve)), "precision": float(prec_curve[20]),
        "success_rate": float(succ_curve[len(succ_curve) // 2]),
        "speed_fps": float(np.sum(speeds) / nz) if nz else -1.0,
        "frames": int(sum(len(s) for s in seqs)),
        "curves": {"iou_thresholds": OTB_IOU_THRESHOLDS.tolist(), "success": succ_curve.tolist(),
                   "error_thresholds": OTB_ERROR_THRESHOLDS.tolist(), "precision": prec_curve.tolist()},
        "sequences": rows,
    }


# --------------------------------------------------------------------------- GOT-10k
def evaluate_got10k(tracker, root, subset: str = "val", *, names=None, key: str | None = None, result_dir=None,
                    profile: str | None = None, frame_format: str = "rgb", repetitions: int | None = None,
                    max_frames: int | None = None, progress: bool = True) -> dict[str, Any]:
    """GOT-10k evaluation through got10k's ``ExperimentGOT10k`` (``compat.ExperimentGOT10kLocal``).

    ``root`` holds ``<subset>/list.txt`` (or is a split folder holding ``list.txt``, e.g. a
    synthetic split).  Frames, boxes and meta come from got10k's dataset class, unchanged (GOT-10k
    boxes are 0-based, pulkit's convention).  As ``ExperimentGOT10k.report``: the first frame is
    left out, only frames with ``cover > 0`` count, IoU is computed with boxes clipped to the
    ``resolution``, and IoUs of all repetitions and sequences are pooled frame by frame (the
    overall AO is a frame-weighted mean).  ``ao`` = mean IoU, ``sr50`` = got10k's ``sr`` (IoU >
    0.5), ``sr75`` = ``succ_curve[75]`` (IoU > 0.75).  A deterministic tracker runs once, another
    three times (``repetitions`` overrides).  The test split withholds its ground truth: only
    ``val`` can be scored here.
    """
    if subset != "val":
        raise ValueError(f"GOT-10k subset {subset!r} has no public ground truth; only 'val' can be scored "
                         "(run_sequence(..., layout='got10k') stores test results for submission)")
    exp = compat.ExperimentGOT10kLocal(root, subset=subset)
    ds = exp.dataset
    ds.return_meta = True
    seq_names = list(ds.seq_names)
    if names is not None:
        wanted = [names] if isinstance(names, str) else list(names)
        missing = [n for n in wanted if n not in seq_names]
        if missing:
            raise DataError(f"{root}: no GOT-10k sequence named {', '.join(missing)}")
        seq_names = wanted
    key = key or tracker_key(tracker)
    base = _base_dir(result_dir, profile, key)
    out_dir = base / "GOT-10k" if base is not None else None
    n_rep = _repetitions(tracker, repetitions, exp.repetitions)

    items = []
    for name in seq_names:
        try:
            img_files, anno, meta = ds[name]
        except AssertionError:
            raise DataError(f"{Path(ds.seq_dirs[ds.seq_names.index(name)])}: frame count differs from "
                            "groundtruth.txt rows") from None
        anno = np.asarray(anno, dtype=np.float64).reshape(-1, 4)
        cover = np.asarray(meta["cover"])
        if max_frames is not None:
            img_files, anno, cover = img_files[:max_frames], anno[:max_frames], cover[:max_frames]
        items.append((Sequence(name, [Path(p) for p in img_files], anno), cover,
                      ast.literal_eval(meta["resolution"])))

    rows: dict[str, dict] = {}
    all_ious, all_times = [], []
    with _progress(sum(len(s) for s, _, _ in items) * n_rep, f"GOT-10k {tracker.name}", progress) as bar:
        for seq, cover, bound in items:
            runs = []
            for r in range(1, n_rep + 1):
                runs.append(run_sequence(tracker, seq, out_dir, key=key, frame_format=frame_format,
                                         layout="got10k", repetition=r, progress=bar))
                if r == 3 and n_rep > 3 and all(np.array_equal(runs[0][0], b) for b, _ in runs):
                    break  # got10k: a tracker that gave three identical runs is deterministic
            visible = cover[1:] > 0
            seq_ious = np.concatenate([compat.rect_iou_bounded(b[1:], seq.boxes[1:], bound)[visible] for b, _ in runs])
            seq_times = np.concatenate([t for _, t in runs])
            seq_times = seq_times[np.isfinite(seq_times) & (seq_times > 0)]
            ao, sr, speed, curve = exp._evaluate(seq_ious, seq_times)
            rows[seq.name] = {"ao": float(ao), "sr50": float(sr), "sr75": float(curve[75]), "speed_fps": float(speed),
                              "frames": len(seq) - 1, "scored_frames": int(visible.sum()), "repetitions": len(runs)}
            all_ious.append(seq_ious)
            all_times.append(seq_times)
    ao, sr, speed, curve = exp._evaluate(np.concatenate(all_ious), np.concatenate(all_times))
    return {
        "benchmark": "got10k", "subset": subset, "tracker": tracker.name, "result_key": key,
        "frame_format": frame_format, "ao": float(ao), "sr50": float(sr), "sr75": float(curve[75]),
        "speed_fps": float(speed), "frames": int(sum(r["frames"] for r in rows.values())),
        "curves": {"iou_thresholds": GOT10K_IOU_THRESHOLDS.tolist(), "success": curve.tolist()},
        "sequences": rows,
    }


# --------------------------------------------------------------------------- VOT: running
def _vot_groundtruth(seq: Sequence) -> np.ndarray:
    return seq.polygons if seq.polygons is not None else seq.boxes


def region_overlap(region, groundtruth, bound=None) -> float:
    """VOT overlap of a tracker region and a ground-truth region (box or polygon), both clipped
    to the frame ``bound`` = (width, height), i.e. ``[0, W] x [0, H]`` in 0-based coordinates where
    pixel ``i`` covers ``[i, i + 1]``.  Continuous polygon overlap with shapely (the VOT toolkit
    rasterises instead: expect differences below a pixel's worth).  A self-intersecting polygon is
    repaired (``compat.region_polygon``).  NaN when the ground truth is missing."""
    return compat.poly_iou(region, groundtruth, bound)


def run_vot_sequence(tracker, seq: Sequence, result_dir=None, *, key: str | None = None, skip: int = 5,
                     frame_format: str = "rgb", repetition: int = 1, progress=None) -> tuple[list[np.ndarray], np.ndarray]:
    """The VOT reset-based (supervised) run of ``tracker`` on ``seq``.

    Initialise on the first frame with a usable box (the polygon's axis-aligned bounds, the VOT
    toolkit's conversion); at each later frame compare the output with the ground truth
    (``region_overlap``): overlap ``<= 0`` is a failure, and the tracker is re-initialised
    ``skip`` frames after the failure frame (the frames between are skipped, never shown to the
    tracker).  A frame without ground truth is neither a failure nor an initialisation frame.
    Returns the trajectory (per frame ``[1]`` init, ``[2]`` failure, ``[0]`` skipped, else the
    region, 4 or 2k values, 0-based, ``quantise``d) and per-frame times (NaN where skipped);
    stored (1-based, as VOT's files) and re-used in VOT's layout like ``run_sequence``.
    """
    _check_sequence(seq)
    if skip < 1:
        raise ValueError(f"skip must be >= 1, got {skip}")
    n = len(seq)
    gt = _vot_groundtruth(seq)
    paths = _record_paths(Path(result_dir), seq.name, "vot", repetition) if result_dir is not None else None
    meta = {"result_key": key, "sequence": seq.name, "fingerprint": sequence_fingerprint(seq),
            "frame_format": frame_format, "frames": n, "protocol": f"vot-reset-skip{skip}"}
    if paths is not None and key is not None:
        stored = _load_stored(*paths, meta, repetition, "vot")
        if stored is not None:
            if progress is not None:
                progress.update(n)
            return stored

    traj = [np.array([SKIPPED], dtype=np.float64) for _ in range(n)]
    times = np.full(n, np.nan)
    usable = np.isfinite(seq.boxes).all(axis=1) & (seq.boxes[:, 2] > 0) & (seq.boxes[:, 3] > 0)
    f = 0
    while f < n:
        while f < n and not usable[f]:
            f += 1
        if f >= n:
            break
        image = load_frame(seq.frames[f], frame_format)
        t0 = time.perf_counter()
        tracker.init(image, seq.boxes[f].copy())
        times[f] = time.perf_counter() - t0
        traj[f] = np.array([INIT], dtype=np.float64)
        f += 1
        while f < n:
            image = load_frame(seq.frames[f], frame_format)
            bound = image.size if frame_format == "pil" else (image.shape[1], image.shape[0])
            t0 = time.perf_counter()
            region = tracker.update(image)
            times[f] = time.perf_counter() - t0
            region = quantise(_as_region(region, tracker, seq, f, allow_polygon=True), "vot")
            if region_overlap(region, gt[f], bound) <= 0.0:  # NaN (no ground truth) is no failure
                traj[f] = np.array([FAILURE], dtype=np.float64)
                f += skip
                break
            traj[f] = region
            f += 1
    if progress is not None:
        progress.update(n)
    if paths is not None:
        _write_record(*paths, traj, times, repetition, "vot", meta)
    return traj, times


# --------------------------------------------------------------------------- VOT: measures
def _code(r: np.ndarray) -> int | None:
    return int(r[0]) if r.size == 1 else None


def vot_overlaps(trajectory: list[np.ndarray], groundtruth: np.ndarray, bound) -> np.ndarray:
    """Per-frame overlap of a VOT trajectory with the ground truth; NaN at special frames."""
    return np.array([np.nan if _code(r) is not None else region_overlap(r, g, bound)
                     for r, g in zip(trajectory, groundtruth)], dtype=np.float64)


def vot_accuracy(trajectory: list[np.ndarray], overlaps: np.ndarray, burnin: int = 10) -> tuple[float, int]:
    """Mean overlap over tracked frames, leaving out each (re)initialisation frame and the
    ``burnin - 1`` frames after it (``burnin`` frames in all, the VOT toolkit's and got10k's
    rule), failure and skipped frames, and frames without ground truth.  Returns ``(accuracy,
    frames used)``; ``(0.0, 0)`` when no frame is left (the VOT toolkit's convention)."""
    mask = np.array([_code(r) is None for r in trajectory])
    for i, r in enumerate(trajectory):
        if _code(r) == INIT:
            mask[i:i + burnin] = False
    mask &= np.isfinite(overlaps)
    return (float(np.mean(overlaps[mask])), int(mask.sum())) if mask.any() else (0.0, 0)


def vot_failures(trajectory: list[np.ndarray]) -> list[int]:
    """Frame indices of the failures of a trajectory."""
    return [i for i, r in enumerate(trajectory) if _code(r) == FAILURE]


def eao_fragments(trajectory: list[np.ndarray], overlaps: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """The runs of a trajectory for EAO (VOT toolkit ``EAOCurve``): from each initialisation up
    to (not including) its failure, flagged failed, plus the last run to the sequence end when it
    did not fail.  NaN overlaps (the init frame, frames without ground truth) count as 0."""
    fails = vot_failures(trajectory)
    inits = [i for i, r in enumerate(trajectory) if _code(r) == INIT]
    o = np.nan_to_num(np.asarray(overlaps, dtype=np.float64), nan=0.0)
    frags = [(o[inits[i]:fails[i]], True) for i in range(len(fails))]
    if len(inits) > len(fails):
        frags.append((o[inits[-1]:], False))
    return frags


def eao_curve(fragments: list[tuple[np.ndarray, bool]], weights: Iterable[float] | None = None) -> np.ndarray:
    """Expected average overlap curve, as the VOT toolkit's ``compute_eao_curve``.

    With fragments ``i`` (overlaps ``o_i[0..L_i-1]``, ``o_i[0]`` the initialisation frame) and
    weights ``w_i`` (1 each by default), for ``N = 1 .. L_max - 1``::

        Phi(N) = sum_i w_i m_i(N) mean(o_i[1..N]) / sum_i w_i m_i(N)

    where a failed fragment's overlaps are 0 from its failure on (``m_i(N) = 1`` for every N) and
    a fragment that reached the sequence end counts only while it lasts (``m_i(N) = 1`` iff
    ``N < L_i``).  ``Phi(0)`` is the mean initialisation-frame overlap (0 here).  ``N`` counts the
    frames after the initialisation frame, so ``Phi(N)`` is the legacy MATLAB toolkit's value for
    sequence length ``N + 1``.  Float64 here, float32 in the toolkit.
    """
    if not fragments:
        return np.zeros(0)
    w = np.ones(len(fragments)) if weights is None else np.asarray(list(weights), dtype=np.float64)
    L = max(len(o) for o, _ in fragments)
    O = np.zeros((len(fragments), L))
    M = np.zeros((len(fragments), L))
    for i, (o, failed) in enumerate(fragments):
        O[i, :len(o)] = o
        if failed:
            M[i, :] = 1.0
        else:
            M[i, :len(o)] = 1.0
    avg = O.copy()
    avg[:, 1:] = np.cumsum(O[:, 1:], axis=1) / np.arange(1, L)
    wm = w[:, None] * M
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(wm * avg, axis=0) / np.sum(wm, axis=0)


def eao_score(curve: np.ndarray, interval: tuple[int, int]) -> float:
    """EAO: the mean of ``curve[N]`` for ``N = low .. high`` (inclusive, the VOT toolkit's
    ``EAOScore``); lengths beyond the curve (the longest fragment) are left out, NaN if none is left."""
    lo, hi = int(interval[0]), int(interval[1])
    if not 0 <= lo <= hi:
        raise ValueError(f"EAO interval must satisfy 0 <= low <= high, got {interval}")
    seg = np.asarray(curve)[lo:hi + 1]
    return float(np.mean(seg)) if seg.size else float("nan")


def evaluate_vot(tracker, sequences_or_root, *, cfg: EvalConfig | None = None, names=None, key: str | None = None,
                 result_dir=None, profile: str | None = None, frame_format: str = "rgb",
                 repetitions: int | None = None, max_frames: int | None = None, progress: bool = True) -> dict[str, Any]:
    """The VOT reset-based protocol (VOT2016-2018 "baseline"), scored as the VOT toolkit does.

    Runs: ``run_vot_sequence`` (failure at overlap 0, re-initialisation ``cfg.vot_skip_after_failure``
    frames later); a deterministic tracker runs once, another up to 15 times, stopping after three
    identical runs (got10k's rule; ``repetitions`` overrides).

    Per sequence ``s`` (mean over repetitions): ``accuracy`` ``A_s`` (``vot_accuracy`` with
    ``cfg.vot_burnin``), ``failures`` ``F_s``.  Overall, as the toolkit's ``AverageAccuracyRobustness``
    with sequence lengths ``n_s`` as weights: ``accuracy = sum n_s A_s / sum n_s``, ``robustness =
    sum n_s F_s / sum n_s``; ``failures`` is ``sum F_s`` (got10k's "robustness").  ``eao`` =
    ``eao_score(eao_curve(fragments of every run), cfg.vot_eao_interval)`` (VOT2016: [108, 371]).
    ``sequences_or_root``: a VOT root (``read_vot``) or ``Sequence`` objects; ground truth is
    ``seq.polygons`` when present, else ``seq.boxes``.

    Comparing with the official VOT toolkit (ENVIRONMENT.md: ``vot-toolkit==0.7.4`` runs the
    supervised experiment offline): the stored trajectories ``VOT/baseline/<seq>/<seq>_001.txt``
    are in the toolkit's result format and in ``groundtruth.txt``'s coordinates, so the toolkit's
    analysis can score them directly; ``eao_curve`` / ``eao_score`` / ``vot_accuracy`` implement its
    ``compute_eao_curve``, ``EAOScore`` and ``compute_accuracy``.  Expected differences: overlaps
    here are continuous polygon areas (the toolkit rasterises regions to pixels), the toolkit
    computes the EAO curve in float32, and got10k-style repetition counting (the toolkit always
    runs its configured repetitions unless the tracker declares itself deterministic).
    """
    from .data.sequences import read_vot

    cfg = cfg or EvalConfig()
    seqs = _sequences(sequences_or_root, read_vot, names, max_frames)
    key = key or tracker_key(tracker)
    base = _base_dir(result_dir, profile, key)
    out_dir = base / "VOT" if base is not None else None
    n_rep = _repetitions(tracker, repetitions, 15)
    rows: dict[str, dict] = {}
    fragments: list[tuple[np.ndarray, bool]] = []
    all_times = []
    with _progress(sum(len(s) for s in seqs) * n_rep, f"VOT {tracker.name}", progress) as bar:
        for seq in seqs:
            bound = image_size(seq.frames[0])
            gt = _vot_groundtruth(seq)
            runs = []
            for r in range(1, n_rep + 1):
                runs.append(run_vot_sequence(tracker, seq, out_dir, key=key, skip=cfg.vot_skip_after_failure,
                                             frame_format=frame_format, repetition=r, progress=bar))
                if r == 3 and n_rep > 3 and all(_same_trajectory(runs[0][0], t) for t, _ in runs):
                    break
            accs, fails = [], []
            for traj, times in runs:
                ov = vot_overlaps(traj, gt, bound)
                accs.append(vot_accuracy(traj, ov, cfg.vot_burnin)[0])
                fails.append(len(vot_failures(traj)))
                fragments.extend(eao_fragments(traj, ov))
                all_times.append(times)
            traj0 = runs[0][0]
            rows[seq.name] = {"accuracy": float(np.mean(accs)), "failures": float(np.mean(fails)),
                              "frames": len(seq), "speed_fps": _speed(np.concatenate([t for _, t in runs])),
                              "repetitions": len(runs), "failure_frames": vot_failures(traj0),
                              "init_frames": [i for i, r in enumerate(traj0) if _code(r) == INIT]}
    n = np.array([r["frames"] for r in rows.values()], dtype=np.float64)
    acc = np.array([r["accuracy"] for r in rows.values()])
    fail = np.array([r["failures"] for r in rows.values()])
    curve = eao_curve(fragments)
    lo, hi = cfg.vot_eao_interval
    return {
        "benchmark": "vot", "tracker": tracker.name, "result_key": key, "frame_format": frame_format,
        "accuracy": float(np.sum(n * acc) / n.sum()), "robustness": float(np.sum(n * fail) / n.sum()),
        "failures": float(fail.sum()), "eao": eao_score(curve, (lo, hi)),
        "eao_interval": [int(lo), int(hi)], "eao_interval_used": [int(lo), int(min(hi, len(curve) - 1))],
        "eao_curve": curve.tolist(), "speed_fps": _speed(np.concatenate(all_times)), "frames": int(n.sum()),
        "burnin": cfg.vot_burnin, "skip": cfg.vot_skip_after_failure, "sequences": rows,
    }


def _same_trajectory(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------- tables and plots
_TABLE_COLUMNS = {
    "otb": ("success_auc", "precision", "success_rate", "speed_fps", "frames"),
    "got10k": ("ao", "sr50", "sr75", "speed_fps", "frames"),
    "vot": ("accuracy", "robustness", "failures", "eao", "speed_fps", "frames"),
}


def to_table(result: Mapping[str, Any]):
    """A pandas DataFrame of an ``evaluate_*`` result: one row per sequence plus ``overall``.

    Per-sequence VOT rows have ``robustness`` = their failures (one sequence's weighted mean) and
    no ``eao`` (EAO is defined over the whole set)."""
    import pandas as pd

    bench = result.get("benchmark")
    if bench not in _TABLE_COLUMNS:
        raise ValueError(f"not an evaluate_* result (benchmark {bench!r})")
    cols = _TABLE_COLUMNS[bench]
    rows = {}
    for name, r in result["sequences"].items():
        row = {c: r.get(c, np.nan) for c in cols}
        if bench == "vot":
            row["robustness"] = r["failures"]
        rows[name] = row
    rows["overall"] = {c: result.get(c, np.nan) for c in cols}
    df = pd.DataFrame.from_dict(rows, orient="index", columns=list(cols))
    df.index.name = "sequence"
    return df


def _labelled(results) -> list[tuple[str, Mapping]]:
    if isinstance(results, Mapping) and "benchmark" in results:
        return [(results["tracker"], results)]
    if isinstance(results, Mapping):
        return list(results.items())
    return [(r["tracker"], r) for r in results]


def plot_success(results, ax=None, title: str | None = None):
    """Success plot (OTB: 21 thresholds, GOT-10k: 101) of one result, a list of results or a
    mapping label -> result; legend ``label [AUC or AO]``, best first.  Returns the Figure."""
    from matplotlib.figure import Figure

    items = _labelled(results)
    score = {"otb": "success_auc", "got10k": "ao"}
    for label, r in items:
        if r.get("benchmark") not in score:
            raise ValueError(f"{label}: success plots need OTB or GOT-10k results, got {r.get('benchmark')!r}")
    fig = ax.figure if ax is not None else Figure(figsize=(5, 4))
    ax = ax if ax is not None else fig.add_subplot()
    for label, r in sorted(items, key=lambda it: -it[1][score[it[1]["benchmark"]]]):
        c = r["curves"]
        ax.plot(c["iou_thresholds"], c["success"], label=f"{label} [{r[score[r['benchmark']]]:.3f}]")
    ax.set(xlabel="Overlap threshold", ylabel="Success rate", xlim=(0, 1), ylim=(0, 1),
           title=title or "Success plots of OPE")
    ax.grid(True)
    ax.legend(loc="lower left")
    return fig


def plot_precision(results, ax=None, title: str | None = None):
    """OTB precision plot (centre error thresholds 0..50 px); legend ``label [precision at 20 px]``."""
    from matplotlib.figure import Figure

    items = _labelled(results)
    for label, r in items:
        if r.get("benchmark") != "otb":
            raise ValueError(f"{label}: precision plots need OTB results, got {r.get('benchmark')!r}")
    fig = ax.figure if ax is not None else Figure(figsize=(5, 4))
    ax = ax if ax is not None else fig.add_subplot()
    for label, r in sorted(items, key=lambda it: -it[1]["precision"]):
        c = r["curves"]
        ax.plot(c["error_thresholds"], c["precision"], label=f"{label} [{r['precision']:.3f}]")
    ax.set(xlabel="Location error threshold (px)", ylabel="Precision", xlim=(0, OTB_ERROR_THRESHOLDS[-1]),
           ylim=(0, 1), title=title or "Precision plots of OPE")
    ax.grid(True)
    ax.legend(loc="lower right")
    return fig


def plot_eao_curve(result: Mapping[str, Any], ax=None, title: str | None = None):
    """VOT expected-overlap curve with the EAO interval shaded.  Returns the Figure."""
    from matplotlib.figure import Figure

    if result.get("benchmark") != "vot":
        raise ValueError(f"EAO curves need a VOT result, got {result.get('benchmark')!r}")
    fig = ax.figure if ax is not None else Figure(figsize=(5, 4))
    ax = ax if ax is not None else fig.add_subplot()
    curve = np.asarray(result["eao_curve"])
    ax.plot(np.arange(len(curve)), curve, label=f"{result['tracker']} [EAO {result['eao']:.3f}]")
    lo, hi = result["eao_interval"]
    ax.axvspan(lo, hi, alpha=0.15)
    ax.set(xlabel="Sequence length (frames after initialisation)", ylabel="Expected average overlap",
           ylim=(0, 1), title=title or "Expected average overlap")
    ax.grid(True)
    ax.legend(loc="upper right")
    return fig
