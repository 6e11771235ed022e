"""The VOT reset protocol: run with re-initialisation after a failure, accuracy (burn-in aside),
robustness (failures) and the expected average overlap (EAO) over an interval of lengths."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from pulkit.core.config import EvalConfig
from pulkit.data.images import image_size
from pulkit.data.sequences import Sequence, read_vot
from pulkit.evaluation import got10k_compat as compat
from pulkit.evaluation.outputs import (
    FAILURE,
    INIT,
    SKIPPED,
    _as_region,
    _base_dir,
    _check_sequence,
    _load_stored,
    _progress,
    _record_paths,
    _repetitions,
    _sequences,
    _speed,
    _write_record,
    load_frame,
    quantise,
    sequence_fingerprint,
    tracker_key,
)


# --------------------------------------------------------------------------- running
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


