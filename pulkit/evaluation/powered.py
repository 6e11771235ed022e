"""Measures with power: score models on many held-out samples, report paired differences with SEs.

Held-out synthetic splits (seeds disjoint from train / val), clean ground-truth pairs and their
single-response localisation, per-sequence OTB AUC, per-video mining error, and the statistics
(paired differences, seed combination, verdicts) that turn them into claims.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pulkit.data.crops import (
    crop,
    crop_sizes,
    exemplar_crop,
    valid_boxes,
    xywh_to_cxcywh,
)
from pulkit.data.images import read_rgb
from pulkit.data.sequences import DataError, Sequence, read_got10k
from pulkit.data.synthetic import GENERATOR_VERSION, generate_once
from pulkit.evaluation.otb import otb_metrics
from pulkit.method.mining import mining_quality
from pulkit.models.net import fuse_bn, resolve_device
from pulkit.models.precision import PrecisionError, bf16_weights, check_precision, infer, resolve_precision

EVAL_SEED = 5000          # the held-out evaluation split (training 1000, validation 2000; 3000 tuned AHM separation)
TUNE_SEED = 4000          # the tuning split: only to choose schedules, never to report
SPLIT_SEEDS = {"eval": EVAL_SEED, "tune": TUNE_SEED}
DEFAULT_VIDEOS = 40
STRIDE = 8                # backbone stride (AlexNet and CIResNet-22): search-crop px per response cell
SHIFT_OF_REACH = 0.75     # default search-crop shift as a fraction of the response's reach
Z95 = 1.96


# --------------------------------------------------------------------------- held-out videos
def heldout_params(cfg, split: str = "eval", n: int | None = None, frames: int | None = None) -> dict:
    """The fields that determine a held-out split (their hash names its cache folder)."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"held-out split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}")
    d = cfg.data
    seed = SPLIT_SEEDS[split]
    used = {"synthetic_train_seed": int(d.synthetic_train_seed), "synthetic_val_seed": int(d.synthetic_val_seed)}
    clash = [k for k, v in used.items() if v in SPLIT_SEEDS.values()]
    if clash:
        raise ValueError(f"data.{clash[0]}={used[clash[0]]} collides with a held-out seed "
                         f"({EVAL_SEED} eval, {TUNE_SEED} tune): held-out videos must be disjoint from training")
    n = DEFAULT_VIDEOS if n is None else int(n)
    frames = int(d.synthetic_frames) if frames is None else int(frames)
    if n < 1 or frames < 2:
        raise ValueError(f"need n >= 1 videos of frames >= 2, got n={n}, frames={frames}")
    return {"generator_version": GENERATOR_VERSION, "heldout_split": split, "seed": seed, "videos": n,
            "frames": frames, "width": int(d.synthetic_width), "height": int(d.synthetic_height),
            "distractors": int(d.synthetic_distractors)}


def heldout_videos(cfg, split: str = "eval", n: int | None = None, frames: int | None = None) -> list[Sequence]:
    """Labelled synthetic videos of the held-out ``split`` ("eval": seed 5000, "tune": seed 4000).

    ``n`` videos (default 40) of ``frames`` frames (default ``cfg.data.synthetic_frames``), size and
    distractors from ``cfg.data``; generated once by ``synthetic.generate_once`` under
    ``paths.synthetic_dir()/<hash of heldout_params>/<split>/`` and read with ``read_got10k``.
    Video ``i`` depends only on (seed, i, frames, size), so a smaller ``n`` gives a prefix of a larger one.
    """
    p = heldout_params(cfg, split, n, frames)
    folder = generate_once(p, {split: (p["videos"], p["seed"])})[split]
    seqs = read_got10k(folder.parent, subset=split)
    for s in seqs:
        s.attributes.update(source="synthetic", heldout=split)
    return seqs


# --------------------------------------------------------------------------- clean pairs
@dataclass(frozen=True)
class PairSet:
    """Held-out (exemplar, search) pairs with the true target offset in each search crop.

    ``z`` N x 3 x Sz x Sz and ``x`` N x 3 x Sx x Sx uint8 (raw RGB), ``offset`` N x 2 float32: the
    true centre relative to the search-crop centre in search-crop px (x, y), ``video`` N int64 (index
    into the sequences), ``frames`` N x 2 int64 (exemplar frame a, search frame b).
    """
    z: torch.Tensor
    x: torch.Tensor
    offset: torch.Tensor
    video: torch.Tensor
    frames: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.z.shape[0])


def response_reach(exemplar_sz: int, instance_sz: int, stride: int = STRIDE) -> float:
    """Largest displacement (search-crop px, per axis) a response cell maps to: ``(R - 1) / 2 * stride``."""
    r = (int(instance_sz) - int(exemplar_sz)) // stride + 1
    return (r - 1) / 2 * stride


def clean_pairs(cfg, sequences, n: int = 2000, seed: int = 0, max_gap: int | None = None,
                shift: float | None = None) -> PairSet:
    """``n`` clean ground-truth pairs, spread evenly over the ``sequences`` that have one.

    Per pair: frames ``a < b <= a + max_gap`` (default ``cfg.supervised.max_gap``) both with a valid
    box; ``z`` the exemplar crop of ``a`` at its box; ``x`` the search crop of ``b`` at ``b``'s centre
    moved by U[-shift, shift] search-crop px per axis (default 0.75 x ``response_reach``), its side
    from ``a``'s box (as a tracker would).  Deterministic given ``seed`` (one generator per video).
    """
    m = cfg.model
    ez, ix, ctx = int(m.exemplar_sz), int(m.instance_sz), float(m.context)
    max_gap = int(cfg.supervised.max_gap if max_gap is None else max_gap)
    if max_gap < 1:
        raise ValueError(f"max_gap must be >= 1 frame, got {max_gap}")
    shift = SHIFT_OF_REACH * response_reach(ez, ix) if shift is None else float(shift)
    if not (shift >= 0 and math.isfinite(shift)):
        raise ValueError(f"shift must be finite and >= 0, got {shift}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    sequences = list(sequences)
    starts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, s in enumerate(sequences):
        if s.boxes is None:
            raise DataError(f"{s.name}: clean_pairs needs labelled sequences (boxes is None)")
        v = np.flatnonzero(valid_boxes(s.boxes))
        hi = np.searchsorted(v, v + max_gap, "right")           # partners of v[j]: v[j + 1 : hi[j]]
        ok = hi > np.arange(len(v)) + 1
        if ok.any():
            starts[i] = (v, np.flatnonzero(ok))
    if not starts:
        raise DataError(f"clean_pairs: no sequence has two valid frames within max_gap={max_gap}")
    usable = sorted(starts)
    counts = np.full(len(usable), n // len(usable)) + (np.arange(len(usable)) < n % len(usable))

    z = torch.empty((n, 3, ez, ez), dtype=torch.uint8)
    x = torch.empty((n, 3, ix, ix), dtype=torch.uint8)
    offset = np.empty((n, 2), np.float32)
    video = np.empty(n, np.int64)
    frames = np.empty((n, 2), np.int64)
    k = 0
    for i, c in zip(usable, counts):
        if c == 0:
            continue
        seq, (v, ok) = sequences[i], starts[i]
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(i), 0x9A12]))
        ja = ok[rng.integers(len(ok), size=c)]
        hi = np.searchsorted(v, v[ja] + max_gap, "right")
        jb = ja + 1 + np.floor(rng.random(c) * (hi - ja - 1)).astype(np.int64)
        s = rng.uniform(-shift, shift, size=(c, 2))
        decoded: dict[int, np.ndarray] = {}
        order = np.argsort(v[ja], kind="stable")                  # frame order: decode each frame once
        for q in order:
            a, b = int(v[ja[q]]), int(v[jb[q]])
            for f in (a, b):
                if f not in decoded:
                    decoded[f] = read_rgb(seq.frames[f])
            box_a, box_b = seq.boxes[a], seq.boxes[b]
            _, _, w, h = xywh_to_cxcywh(box_a)[0]
            _, x_sz = crop_sizes(w, h, ez, ix, ctx)
            scale = ix / x_sz                                     # search-crop px per frame px
            centre = xywh_to_cxcywh(box_b)[0, :2] + s[q] / scale  # the crop centre, frame px
            z[k + q] = torch.from_numpy(exemplar_crop(decoded[a], box_a, ez, ctx)).permute(2, 0, 1)
            x[k + q] = torch.from_numpy(crop(decoded[b], centre, x_sz, ix)).permute(2, 0, 1)
            offset[k + q] = -s[q]
            frames[k + q] = a, b
            for f in [f for f in decoded if f < a]:               # no later pair needs an earlier frame
                del decoded[f]
        video[k:k + c] = i
        k += c
    return PairSet(z, x, torch.from_numpy(offset), torch.from_numpy(video), torch.from_numpy(frames))


# --------------------------------------------------------------------------- localisation
def localisation(net, pairs: PairSet, r_pos: float | None = None, batch_size: int = 64, device="auto",
                 precision: str = "fp32") -> dict:
    """Where ``net``'s response on each pair peaks, against the true offset (search-crop px).

    The net runs in eval mode as ``SiamFCTracker`` runs it (an inference copy with BN folded;
    ``net.training`` is saved and restored), under ``torch.inference_mode``, in batches.  The
    R x R logits are upsampled bicubically (corner-aligned) to ``(R - 1) * 8 + 1`` px so cell ``i``
    is displacement ``(i - (R - 1) / 2) * 8``; the argmax is the prediction (no cosine window, one
    scale).  ``precision`` (resolved: fp32 | bf16) is the one the model trains and tracks with: under bf16
    the features run in bf16 and the cross-correlation in fp32, as in ``SiamFCTracker``; a net whose weights
    already are bf16 (``SiamFCTracker.net`` under bf16) runs so whatever ``precision`` says.  Returns ``hit``
    (bool N: within ``r_pos`` px, default 16, Euclidean) and ``error_px``.
    """
    r_pos = 16.0 if r_pos is None else float(r_pos)
    if check_precision(precision) == "auto":
        raise PrecisionError("localisation takes a resolved precision (fp32 or bf16); call resolve_precision first")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    was_training = net.training
    try:
        inf = fuse_bn(net).to(dev)                      # an eval-mode copy: the caller's net is untouched
        bf16 = precision == "bf16" or any(p.dtype == torch.bfloat16 for p in inf.parameters())
        if bf16:
            bf16_weights(inf.backbone)                  # the tracker's rule: phi in bf16, the xcorr in fp32
        fmt = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
        pred = np.empty((len(pairs), 2), np.float64)
        sz, sx = pairs.z.shape[-1], pairs.x.shape[-1]
        with torch.inference_mode():
            for lo in range(0, len(pairs), batch_size):
                hi = min(lo + batch_size, len(pairs))
                zb = pairs.z[lo:hi].to(dev).float().contiguous(memory_format=fmt)
                xb = pairs.x[lo:hi].to(dev).float().contiguous(memory_format=fmt)
                if bf16:                                # as SiamFCTracker: phi in bf16, the xcorr in fp32
                    logits = inf.head(infer(inf.features, zb, "bf16"), infer(inf.features, xb, "bf16")).float()
                else:
                    logits = inf(zb, xb).float()
                r = logits.shape[-1]
                if logits.shape[-2] != r or r != (sx - sz) // STRIDE + 1:
                    raise ValueError(f"response {tuple(logits.shape[-2:])} does not fit crops {sz} / {sx} at "
                                     f"stride {STRIDE} (expected {(sx - sz) // STRIDE + 1} cells a side)")
                u = (r - 1) * STRIDE + 1
                up = F.interpolate(logits, size=(u, u), mode="bicubic", align_corners=True) if r > 1 else logits
                idx = up.flatten(1).argmax(dim=1).cpu().numpy()
                row, col = np.divmod(idx, up.shape[-1])
                pred[lo:hi] = np.stack([col, row], axis=1) - (up.shape[-1] - 1) / 2
    finally:
        net.train(was_training)
    error = np.linalg.norm(pred - pairs.offset.numpy().astype(np.float64), axis=1)
    return {"hit": error <= r_pos, "error_px": error, "pred_px": pred}


def _mean_se(a: np.ndarray) -> tuple[float, float]:
    a = np.asarray(a, dtype=np.float64)
    se = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) >= 2 else float("nan")
    return float(a.mean()) if len(a) else float("nan"), se


def localisation_summary(loc: dict) -> dict:
    """``accuracy`` (hit rate), ``error_px`` (mean centre error), each with its SE (std ddof=1 / sqrt n), ``n``."""
    acc, acc_se = _mean_se(loc["hit"])
    err, err_se = _mean_se(loc["error_px"])
    return {"accuracy": acc, "accuracy_se": acc_se, "error_px": err, "error_px_se": err_se,
            "n": len(loc["hit"])}


# --------------------------------------------------------------------------- statistics
def paired_diff(treatment, control) -> dict:
    """Mean of ``treatment - control`` per item and its SE (std ddof=1 / sqrt n); ``n`` items used.

    Items where either value is NaN (e.g. a video without a ``mining_error``) are left out of both.
    """
    t = np.asarray(treatment, dtype=np.float64).ravel()
    c = np.asarray(control, dtype=np.float64).ravel()
    if t.shape != c.shape:
        raise ValueError(f"paired_diff: treatment has {t.size} items but control has {c.size}; "
                         "a paired difference needs one value of each per item")
    keep = ~(np.isnan(t) | np.isnan(c))
    d = t[keep] - c[keep]
    if len(d) < 2:
        raise ValueError(f"paired_diff: need at least 2 paired items for a standard error, got {len(d)}"
                         + (f" ({int((~keep).sum())} NaN pairs left out)" if (~keep).any() else ""))
    return {"diff": float(d.mean()), "se": float(d.std(ddof=1) / math.sqrt(len(d))), "n": len(d)}


def combine_seeds(diffs: list[dict]) -> dict:
    """Per-seed ``paired_diff`` results combined: mean diff; ``se`` the larger of the spread across
    seeds (std ddof=1 / sqrt k, k >= 2) and the within-seed error ``sqrt(sum se_i^2) / k``."""
    diffs = list(diffs)
    if not diffs:
        raise ValueError("combine_seeds: no per-seed differences given")
    d = np.array([float(r["diff"]) for r in diffs])
    se = np.array([float(r["se"]) for r in diffs])
    k = len(d)
    within = float(np.sqrt(np.sum(se ** 2)) / k)
    across = float(d.std(ddof=1) / math.sqrt(k)) if k >= 2 else 0.0
    return {"diff": float(d.mean()), "se": max(across, within), "n": int(sum(int(r.get("n", 0)) for r in diffs)),
            "seeds": k}


def verdict(diff: float, se: float, margin: float = 0.0) -> str:
    """"holds" when the 95 % interval lies above 0; else "does not hold" when it lies below 0, or
    (``margin`` > 0) inside (-margin, margin); else "not resolved".  Higher diff: treatment better."""
    diff, se = float(diff), float(se)
    if not (math.isfinite(diff) and math.isfinite(se)) or se < 0:
        return "not resolved"
    lo, hi = diff - Z95 * se, diff + Z95 * se
    if lo > 0:
        return "holds"
    if hi < 0 or (margin > 0 and -margin < lo and hi < margin):
        return "does not hold"
    return "not resolved"


# --------------------------------------------------------------------------- per-sequence scores
def sequence_auc(tracker, sequences) -> np.ndarray:
    """OTB success AUC (``otb_metrics``) of ``tracker`` on each sequence, run by ``tracker.track``."""
    out = []
    for s in sequences:
        if s.boxes is None or len(s.boxes) != len(s.frames):
            raise DataError(f"{s.name}: sequence_auc needs one ground-truth box per frame")
        if not valid_boxes(s.boxes[0])[0]:
            raise DataError(f"{s.name}: first-frame box {s.boxes[0]} is unusable; cannot initialise a tracker")
        boxes, _ = tracker.track([str(p) for p in s.frames], np.asarray(s.boxes[0], dtype=np.float64))
        out.append(otb_metrics(boxes, s.boxes)["success_auc"])
    return np.asarray(out, dtype=np.float64)


def mining_error(net, cfg, sequences, k: int = 10, device="auto") -> np.ndarray:
    """Per-video mean centre error (frame px) of ``net``'s mining at offset ``k`` (``mining_quality``).

    Seeds are ground-truth boxes every ``cfg.mining.start_stride`` frames; the raw forward track
    (no response / FB filter) is scored against the label at ``t + k``; the matcher runs in ``cfg.precision``.
    NaN for a video where no seed reaches a labelled frame ``t + k`` (too short, or boxes missing).
    """
    sequences = list(sequences)
    if not sequences:
        return np.zeros(0)
    table = mining_quality(net, sequences, cfg.mining, cfg.model, ks=(int(k),), device=device, progress=False,
                           precision=resolve_precision(cfg.precision, device))
    rows = table.iloc[:len(sequences)]               # one row per video, in order, then the "mean" row
    if list(rows["sequence"]) != [str(s.name) for s in sequences]:
        raise RuntimeError("mining_quality's rows do not follow the videos one to one")
    return rows["center_error"].to_numpy(np.float64)


# --------------------------------------------------------------------------- claims
CLAIMS = ("ahm_small_batch", "rounds", "nr_noise", "pul_vs_random_bn")
UNITS = ("fraction", "px", "AUC")


def claim_record(claim: str, metric: str, unit: str, treatment: str, control: str, diff: dict,
                 seeds, margin: float = 0.0, **extra) -> dict:
    """One record of ``claims.json``: a paired difference (``diff``: ``paired_diff`` or ``combine_seeds``,
    positive = treatment better) with its verdict; ``extra`` keys (e.g. ``bce_drop``) are kept."""
    if claim not in CLAIMS:
        raise ValueError(f"unknown claim {claim!r}; valid: {', '.join(CLAIMS)}")
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; valid: {', '.join(UNITS)}")
    d, se = float(diff["diff"]), float(diff["se"])
    return {"claim": claim, "metric": metric, "unit": unit, "treatment": treatment, "control": control,
            "diff": d, "se": se, "n": int(diff["n"]), "seeds": [int(s) for s in seeds],
            "verdict": verdict(d, se, margin), **extra}


_EVAL_PAIRS: dict[tuple, PairSet] = {}


def eval_videos(cfg) -> list[Sequence]:
    """The held-out evaluation videos of ``cfg`` (``cfg.eval.heldout_videos`` x ``heldout_frames``)."""
    return heldout_videos(cfg, "eval", n=cfg.eval.heldout_videos, frames=cfg.eval.heldout_frames)


def eval_pairs(cfg) -> PairSet:
    """The ``cfg.eval.heldout_pairs`` clean pairs every localisation comparison of a run shares (seed 0),
    kept in memory for the process: paired differences need the same pairs for every model."""
    key = (cfg.eval.heldout_videos, cfg.eval.heldout_frames, cfg.eval.heldout_pairs, cfg.model.exemplar_sz,
           cfg.model.instance_sz, cfg.model.context, cfg.supervised.max_gap, cfg.data.synthetic_width,
           cfg.data.synthetic_height, cfg.data.synthetic_distractors)
    if key not in _EVAL_PAIRS:
        _EVAL_PAIRS.clear()
        _EVAL_PAIRS[key] = clean_pairs(cfg, eval_videos(cfg), n=cfg.eval.heldout_pairs, seed=0)
    return _EVAL_PAIRS[key]
