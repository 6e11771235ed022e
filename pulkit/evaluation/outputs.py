"""Running a got10k-style tracker over sequences and storing its outputs: result keys (tracker name +
checkpoint digest), per-sequence records in the OTB / GOT-10k / VOT file layouts, re-use of stored
runs, and results as tables."""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pulkit.core import artifacts
from pulkit.core.io import atomic_write_bytes
from pulkit.core.provenance import config_hash
from pulkit.data.images import read_rgb
from pulkit.data.sequences import DataError, Sequence

FRAME_FORMATS = ("rgb", "pil")
INIT, FAILURE, SKIPPED = 1, 2, 0          # VOT trajectory codes (VOT toolkit / got10k)


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
    (``pulkit.core.provenance.config_hash``), e.g. the tracker and model configs.  A retrained model
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


# --------------------------------------------------------------------------- tables
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
