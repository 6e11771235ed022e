"""Notebook 06, qualitative tracking (Figs. 5 and 7): track a few sequences with the main trackers,
keep every frame's boxes, pick the frames to show, find where each tracker drifts (the first of
``drift_frames`` consecutive labelled frames with IoU below ``drift_iou``), and write the results."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from pulkit.core import artifacts, paths
from pulkit.core.io import atomic_write_bytes
from pulkit.core.results import save_results
from pulkit.data.crops import iou, valid_boxes
from pulkit.data.inventory import profile_sequences
from pulkit.data.sequences import Sequence, read_vot
from pulkit.evaluation.outputs import run_sequence, tracker_key
from pulkit.tracking.siamfc import load_tracker  # noqa: F401 (notebook 06 loads its trackers through here)

NOTEBOOK = "06_qualitative"
FIG5_TRACKERS = artifacts.MAIN_TRACKERS


# --------------------------------------------------------------------------- trackers
def require_checkpoints(profile: str, names: Iterable[str], rounds: int) -> dict[str, Path]:
    """``{name: checkpoint}`` for ``names``; the first missing one raises ``MissingResultsError``
    naming the notebook that trains it (``error.notebook``)."""
    known = artifacts.tracker_checkpoints(profile, rounds)
    out = {}
    for name in names:
        if name not in known:
            raise ValueError(f"unknown tracker {name!r}; trackers: {', '.join(known)}")
        if not known[name].is_file():
            raise artifacts.missing(known[name], profile, f"checkpoint of {name!r}")
        out[name] = known[name]
    return out


# --------------------------------------------------------------------------- sequences
def vot_sequences(names: Iterable[str], vot_root: str | Path | None = None) -> list[Sequence]:
    """The sequences of a VOT root (``PULKIT_VOT`` by default) among ``names`` (case-insensitive),
    in ``names`` order; empty when no root is set or none is there."""
    root = Path(vot_root) if vot_root is not None else paths.dataset_root("vot")
    if root is None or not (root / "list.txt").is_file():
        return []
    listed = {n.lower(): n for n in (root / "list.txt").read_text().split()}
    wanted = [listed[n.lower()] for n in names if n.lower() in listed]
    return read_vot(root, names=wanted) if wanted else []


def qualitative_sequences(cfg, which: str = "fig5", data_root: str | Path | None = None,
                          vot_root: str | Path | None = None) -> tuple[list[Sequence], str]:
    """The sequences of Fig. 5 (``which="fig5"``) or Fig. 7 (``"fig7"``) and where they come from.

    The paper's VOT2016 sequences (``cfg.eval.fig5_sequences`` / ``fig7_sequences``) when the VOT
    root holds any of them, else the profile's evaluation sequences (``profile_sequences``), real
    ones first.  Every sequence is cut to ``cfg.data.max_frames``.
    """
    if which not in ("fig5", "fig7"):
        raise ValueError(f"which must be 'fig5' or 'fig7', got {which!r}")
    names = cfg.eval.fig5_sequences if which == "fig5" else cfg.eval.fig7_sequences
    paper = vot_sequences(names, vot_root)
    if paper:
        for s in paper:
            s.attributes["source"] = "vot"
        return [s.limit(cfg.data.max_frames) for s in paper], "paper (VOT2016 via PULKIT_VOT)"

    seqs = profile_sequences(cfg, data_root)["eval"]
    seqs = sorted(seqs, key=lambda s: s.attributes.get("source") == "synthetic")  # stable: real first
    return seqs, "profile evaluation sequences"


# --------------------------------------------------------------------------- per-frame measures
def per_frame_iou(boxes, gt) -> np.ndarray:
    """IoU of each tracker box with its ground-truth box; NaN where the ground truth is absent."""
    boxes, gt = np.asarray(boxes, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if boxes.shape != gt.shape or boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes {boxes.shape} and ground truth {gt.shape} must both be N x 4")
    out = iou(boxes, gt).astype(np.float64)
    out[~(valid_boxes(gt) & np.isfinite(boxes).all(axis=1))] = np.nan
    return out


def find_drift(ious, iou_thr: float, n_frames: int) -> int | None:
    """Index of the frame where the tracker drifts, or None (see the module doc).

    ``ious``: per-frame IoU (NaN: no ground truth).  The drift frame is the first frame of the
    first run of ``n_frames`` labelled frames with IoU ``< iou_thr``; NaN frames inside a run are
    skipped over.  A run that the sequence end cuts below ``n_frames`` labelled frames is no drift.
    """
    if int(n_frames) != n_frames or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames}")
    x = np.asarray(ious, dtype=np.float64).ravel()
    start, count = None, 0
    for f, v in enumerate(x):
        if np.isnan(v):
            continue
        if v < iou_thr:
            if count == 0:
                start = f
            count += 1
            if count >= n_frames:
                return int(start)
        else:
            start, count = None, 0
    return None


def pick_frames(n: int, k: int) -> list[int]:
    """``k`` frame indices evenly spaced over ``1 .. n - 1`` (the first frame is the given box),
    ending at the last frame; fewer when the sequence is shorter."""
    if n < 1 or k < 1:
        raise ValueError(f"pick_frames needs n >= 1 and k >= 1, got n={n}, k={k}")
    if n == 1:
        return [0]
    picked = np.clip(np.round(np.linspace(0, n - 1, k + 1)[1:]).astype(int), 1, n - 1)
    return [int(i) for i in np.unique(picked)]


# --------------------------------------------------------------------------- tracking
@dataclass
class Track:
    """One tracker's one-pass run on one sequence: boxes and IoU per frame (0-based)."""
    tracker: str
    sequence: str
    boxes: np.ndarray
    ious: np.ndarray
    result_key: str

    def drift(self, iou_thr: float, n_frames: int) -> int | None:
        return find_drift(self.ious, iou_thr, n_frames)

    @property
    def mean_iou(self) -> float:
        """Mean IoU over labelled frames after the first (the first is the given box)."""
        v = self.ious[1:]
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else float("nan")


def track_all(trackers: Mapping[str, Any], sequences: Iterable[Sequence], profile: str | None = None,
              progress: bool = True) -> dict[str, dict[str, Track]]:
    """``{sequence: {tracker: Track}}``: one-pass runs of every tracker on every sequence.

    With ``profile`` the runs are stored (and re-used) in the OTB layout under
    ``artifacts.tracking_dir(profile)/<result key>/OTB/``, where ``evaluate_otb`` finds them.
    """
    from tqdm.auto import tqdm

    seqs = list(sequences)
    out: dict[str, dict[str, Track]] = {s.name: {} for s in seqs}
    with tqdm(total=sum(len(s) for s in seqs) * len(trackers), desc="tracking", unit="frame",
              disable=not progress, leave=False) as bar:
        for name, tracker in trackers.items():
            key = tracker_key(tracker)
            result_dir = artifacts.tracking_dir(profile) / key / "OTB" if profile is not None else None
            for seq in seqs:
                boxes, _ = run_sequence(tracker, seq, result_dir, key=key, layout="otb", progress=bar)
                out[seq.name][name] = Track(name, seq.name, boxes, per_frame_iou(boxes, seq.boxes), key)
    return out


def track_responses(tracker, seq: Sequence, progress: bool = True) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Track ``seq`` keeping each frame's response map (the chosen scale's upsampled logits,
    ``tracker.last_response``; None for the first frame).  Not stored: for the interactive view."""
    from tqdm.auto import tqdm

    boxes = np.zeros((len(seq), 4))
    responses: list[np.ndarray | None] = [None]
    tracker.init(seq.image(0), seq.boxes[0].copy())
    boxes[0] = seq.boxes[0]
    for f in tqdm(range(1, len(seq)), desc=f"{tracker.name} on {seq.name}", disable=not progress, leave=False):
        boxes[f] = tracker.update(seq.image(f))
        responses.append(np.array(tracker.last_response, dtype=np.float32))
    return boxes, responses


# --------------------------------------------------------------------------- what the figures show
def drift_summary(tracks: Mapping[str, Mapping[str, Track]], iou_thr: float, n_frames: int) -> dict[str, dict]:
    """``{sequence: {tracker: {drift_frame, mean_iou, min_iou, min_iou_frame, frames, result_key}}}``
    (0-based frames; ``drift_frame`` None when the tracker never drifts)."""
    out: dict[str, dict] = {}
    for seq, per in tracks.items():
        out[seq] = {}
        for name, t in per.items():
            v = np.where(np.isfinite(t.ious), t.ious, np.inf)
            v[0] = np.inf                                # the first frame is the given box
            lo = int(np.argmin(v)) if np.isfinite(v).any() else None
            out[seq][name] = {"drift_frame": t.drift(iou_thr, n_frames), "mean_iou": t.mean_iou,
                              "min_iou": None if lo is None else float(t.ious[lo]), "min_iou_frame": lo,
                              "frames": int(len(t.boxes)), "result_key": t.result_key}
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "sequence"


def clear_frames(profile: str) -> Path:
    """Empty ``artifacts.frames_dir(profile)`` of an earlier run's JPEGs (so it holds exactly what the
    saved records name); returns the folder."""
    d = artifacts.frames_dir(profile)
    if d.is_dir():
        for f in d.glob("*.jpg"):
            f.unlink()
    return d


def export_frame(seq: Sequence, i: int, out_dir: str | Path) -> str:
    """Write frame ``i`` of ``seq`` as ``<out_dir>/<sequence>_<i:06d>.jpg`` (quality 92); returns the
    file name.  Same pixels in, same bytes out."""
    import cv2

    name = f"{_safe(seq.name)}_{int(i):06d}.jpg"
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(seq.image(int(i))[:, :, ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise ValueError(f"{seq.frames[int(i)]}: could not encode frame {i} as JPEG")
    atomic_write_bytes(Path(out_dir) / name, buf.tobytes())
    return name


def _panel(seq: Sequence, f: int, per: Mapping[str, Track], frames_dir: Path | None) -> dict[str, Any]:
    return {"sequence": seq.name, "frame": int(f),
            "image": export_frame(seq, f, frames_dir) if frames_dir is not None else None,
            "gt": seq.boxes[f].tolist(),
            "boxes": {name: t.boxes[f].tolist() for name, t in per.items()},
            "iou": {name: float(t.ious[f]) for name, t in per.items()}}


def fig5_record(sequences: Iterable[Sequence], tracks: Mapping[str, Mapping[str, Track]], n_frames: int,
                max_sequences: int, frames_dir: str | Path | None = None) -> dict[str, Any]:
    """What Fig. 5 shows: per sequence (at most ``max_sequences``, in the given order) the frames
    ``pick_frames(len, n_frames)``, each with the ground truth and every tracker's box; the frames
    are written to ``frames_dir`` (``export_frame``) when given."""
    rows = []
    for seq in list(sequences)[:max_sequences]:
        per = tracks[seq.name]
        rows.append({"sequence": seq.name, "panels": [_panel(seq, f, per, _dir(frames_dir))
                                                      for f in pick_frames(len(seq), n_frames)]})
    return {"rows": rows, "trackers": _trackers(tracks)}


def fig7_record(sequences: Iterable[Sequence], tracks: Mapping[str, Mapping[str, Track]], iou_thr: float,
                n_frames: int, max_panels: int, frames_dir: str | Path | None = None) -> dict[str, Any]:
    """What Fig. 7 shows: for each sequence, each distinct drift frame of any tracker (ascending),
    with every tracker's box and the names of the trackers drifting there (``drifting``).

    When no tracker drifts anywhere, each tracker's lowest-IoU frame over all sequences instead
    (``drift`` False and a ``note`` saying so).  At most ``max_panels`` panels; ``left_out`` counts
    the rest.
    """
    seqs = list(sequences)
    frames_dir = _dir(frames_dir)
    candidates = []
    for seq in seqs:
        per = tracks[seq.name]
        drift = {name: t.drift(iou_thr, n_frames) for name, t in per.items()}
        for f in sorted({d for d in drift.values() if d is not None}):
            candidates.append((seq, f, [n for n, d in drift.items() if d == f]))
    found = bool(candidates)
    note = None
    if not found:
        note = (f"no tracker drifts (IoU < {iou_thr:g} for {n_frames} consecutive frames) on any sequence; "
                "each tracker's lowest-IoU frame is shown instead")
        by_seq = {s.name: s for s in seqs}
        for name in _trackers(tracks):
            worst = None
            for seq in seqs:
                t = tracks[seq.name][name]
                v = np.where(np.isfinite(t.ious), t.ious, np.inf)
                v[0] = np.inf
                if np.isfinite(v).any() and (worst is None or v.min() < worst[0]):
                    worst = (float(v.min()), seq.name, int(np.argmin(v)))
            if worst is not None:
                candidates.append((by_seq[worst[1]], worst[2], [name]))
    panels = []
    for seq, f, who in candidates[:max_panels]:
        p = _panel(seq, f, tracks[seq.name], frames_dir)
        p["drifting" if found else "lowest_iou"] = who
        panels.append(p)
    return {"drift": found, "note": note, "panels": panels, "left_out": max(0, len(candidates) - max_panels),
            "trackers": _trackers(tracks), "drift_iou": float(iou_thr), "drift_frames": int(n_frames)}


def _dir(frames_dir) -> Path | None:
    return Path(frames_dir) if frames_dir is not None else None


def _trackers(tracks: Mapping[str, Mapping[str, Track]]) -> list[str]:
    names: list[str] = []
    for per in tracks.values():
        names += [n for n in per if n not in names]
    return names


# --------------------------------------------------------------------------- results
def results_record(cfg, checkpoints: Mapping[str, Path], tracks: Mapping[str, Mapping[str, Track]],
                   fig5: tuple[list[Sequence], str], fig7: tuple[list[Sequence], str]) -> dict[str, Any]:
    """Notebook 06's record: Fig. 5's and Fig. 7's panels (their frames exported to
    ``artifacts.frames_dir``), each tracker's drift per sequence, the trackers' checkpoints and the summary.
    ``fig5`` / ``fig7`` are ``qualitative_sequences``' ``(sequences, source)``."""
    (fig5_seqs, fig5_source), (fig7_seqs, fig7_source) = fig5, fig7
    e = cfg.eval
    out = clear_frames(cfg.profile)
    fig5_rec = fig5_record(fig5_seqs, tracks, e.fig5_frames, e.fig5_max_sequences, out)
    fig7_rec = fig7_record(fig7_seqs, tracks, e.drift_iou, e.drift_frames, e.fig7_max_panels, out)
    drift = drift_summary(tracks, e.drift_iou, e.drift_frames)
    table = drift_table(drift)
    mean_iou = table.groupby("tracker")["mean_iou"].mean()
    first = next(iter(tracks.values()))
    root = paths.checkpoints_dir(cfg.profile)
    return {
        "fig5": {**fig5_rec, "source": fig5_source},
        "fig7": {**fig7_rec, "source": fig7_source},
        "tracks": drift,
        "trackers": {n: {"checkpoint": str(Path(p).relative_to(root)), "result_key": first[n].result_key}
                     for n, p in checkpoints.items()},
        "summary": {"sequences": len(tracks), "drift_cases": int(table["drift_frame"].notna().sum()),
                    "fig7_panels": len(fig7_rec["panels"]),
                    **{f"mean_iou {n}": float(mean_iou[n]) for n in checkpoints}},
    }


def drift_table(drift: Mapping[str, Mapping[str, Mapping[str, Any]]]):
    """``drift_summary`` as one row per (sequence, tracker)."""
    return pd.DataFrame([{"sequence": seq, "tracker": name, **row} for seq, per in drift.items()
                         for name, row in per.items()])


def write_results(cfg, record: Mapping[str, Any]) -> Path:
    """``06_qualitative.json`` (provenance added); the frames are already beside it."""
    return save_results(cfg.profile, NOTEBOOK, dict(record), cfg=cfg)
