"""Stage 2: temporal-correspondence (TC) mining on unlabeled video (METHOD.md section 2).

The current model, used as a SiamFC matcher, tracks candidate patches forward and back and keeps
the consistent steps as the pairs table TC learning trains on; labels are never read.
Filters, throughput and tracking rules: docs/modules.md.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pulkit.core.config import BDConfig, TrackerConfig, check_crop_size, tracker_defaults
from pulkit.core.io import atomic_write_bytes
from pulkit.data.crops import (
    as_boxes,
    center_error,
    context_size,
    crop,
    cxcywh_to_xywh,
    exemplar_crop,
    iou,
    mean_color,
    xywh_to_cxcywh,
)
from pulkit.data.images import read_rgb
from pulkit.method.candidates import sample_candidates
from pulkit.method.pairs import PAIR_COLUMNS, validate_pairs
from pulkit.models.heads import xcorr
from pulkit.models.net import fuse_bn, resolve_device
from pulkit.models.precision import bf16_weights, check_precision, infer

CONFIDENCES = ("sigmoid", "cosine")
MIN_SIDE_PX = 4.0             # a tracked box never shrinks below this many pixels per side
SIZE_FACTORS = (TrackerConfig.min_size_factor, TrackerConfig.max_size_factor)   # size clamp x initial size


# --------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class MinerGeometry:
    """Everything the batched tracker needs, resolved once from the configs."""
    exemplar_sz: int
    search_sz: int
    context: float
    scale_factors: np.ndarray     # S search-region multipliers, e.g. [1/1.0375, 1, 1.0375]
    scale_penalty: float
    scale_lr: float
    window_influence: float
    response_up: int
    stride: int
    confidence: str
    forward_batch: int

    @classmethod
    def from_configs(cls, mining_cfg, model_cfg, stride: int = 8) -> "MinerGeometry":
        t = tracker_defaults(model_cfg.backbone)
        if mining_cfg.scale_num < 1 or mining_cfg.scale_num % 2 == 0:
            raise ValueError(f"mining.scale_num must be odd and positive, got {mining_cfg.scale_num}")
        if mining_cfg.confidence not in CONFIDENCES:
            raise ValueError(f"mining.confidence must be one of {CONFIDENCES}, got {mining_cfg.confidence!r}")
        if mining_cfg.response_up < 1 or mining_cfg.forward_batch < 1:
            raise ValueError("mining.response_up and mining.forward_batch must be >= 1")
        search_sz = mining_cfg.search_sz if mining_cfg.search_sz is not None else model_cfg.instance_sz
        check_crop_size(search_sz, "mining.search_sz")
        check_crop_size(model_cfg.exemplar_sz, "model.exemplar_sz")
        if search_sz <= model_cfg.exemplar_sz:
            raise ValueError(f"mining.search_sz {search_sz} must exceed model.exemplar_sz {model_cfg.exemplar_sz}")
        n = mining_cfg.scale_num
        factors = t["scale_step"] ** np.linspace(-(n // 2), n // 2, n) if n > 1 else np.ones(1)
        return cls(int(model_cfg.exemplar_sz), int(search_sz), float(model_cfg.context), factors,
                   t["scale_penalty"], t["scale_lr"], t["window_influence"], int(mining_cfg.response_up),
                   int(stride), mining_cfg.confidence, int(mining_cfg.forward_batch))


# --------------------------------------------------------------------------- batched SiamFC tracker
def _to_tensor(crops: np.ndarray, device: torch.device) -> torch.Tensor:
    """N x S x S x 3 uint8 -> N x 3 x S x S float32 (raw 0..255, the network's input)."""
    return torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2).float()


def _features(net, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """phi(x) in chunks, float32; a matcher from ``_prepare`` under bf16 runs phi in bf16 (as the tracker)."""
    precision = getattr(net, "_mining_precision", "fp32")
    return torch.cat([infer(net.features, x[i:i + chunk], precision) for i in range(0, len(x), chunk)])


@torch.inference_mode()
def templates(net, img: np.ndarray, boxes: np.ndarray, geo: MinerGeometry, device) -> torch.Tensor:
    """Exemplar features of K boxes (0-based ``[x, y, w, h]``) in one frame: K x C x h x w."""
    border = mean_color(img)
    z = np.stack([exemplar_crop(img, b, geo.exemplar_sz, geo.context, border) for b in as_boxes(boxes)])
    return _features(net, _to_tensor(z, device), geo.forward_batch)


def _hann(n: int) -> np.ndarray:
    w = np.outer(np.hanning(n), np.hanning(n))
    return w / w.sum()


@torch.inference_mode()
def track_step(net, img: np.ndarray, centers: np.ndarray, sizes: np.ndarray, zf: torch.Tensor,
               geo: MinerGeometry, device, size_bounds=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One SiamFC update of K tracks in one frame, in one batched forward.

    ``centers`` K x 2 ``(cx, cy)`` and ``sizes`` K x 2 ``(w, h)`` in frame pixels, ``zf`` the K
    template feature maps, ``size_bounds`` optional K x 2 x 2 (min (w, h), max (w, h)) clamps.
    Returns new centres, new sizes and each track's peak score (``geo.confidence``) on its chosen
    scale.  The response is upsampled corner-aligned to ``(R - 1) * response_up + 1`` pixels, so
    the map centre is a pixel and a static target gives exactly zero displacement.
    """
    k, n_s = len(centers), len(geo.scale_factors)
    border = mean_color(img)
    z_sz = np.array([context_size(w, h, geo.context) for w, h in sizes])
    x_sz = z_sz * geo.search_sz / geo.exemplar_sz
    # scale-major order (row s * K + i): head.xcorr pairs search map j with template j % K
    crops = np.stack([crop(img, centers[i], x_sz[i] * f, geo.search_sz, border)
                      for f in geo.scale_factors for i in range(k)])
    xf = _features(net, _to_tensor(crops, device), geo.forward_batch).contiguous()
    logits = net.head(zf, xf)                                             # (S K) x 1 x R x R
    if geo.confidence == "cosine":
        score_map = _cosine(zf, xf)
    else:
        score_map = torch.sigmoid(logits)
    r = logits.shape[-1]
    u = (r - 1) * geo.response_up + 1        # corner-aligned: the map centre is an upsampled pixel, no
    up = F.interpolate(logits, size=(u, u), mode="bicubic", align_corners=True)   # 1/2-px bias
    up = up.reshape(n_s, k, u, u).permute(1, 0, 2, 3).double().cpu().numpy()      # K x S x U x U logits
    score = score_map.reshape(n_s, k, r, r).permute(1, 0, 2, 3).double().cpu().numpy()
    # raw logits, never sigmoids, locate the peak: an untrained head (BD) saturates the sigmoid flat
    peaks = up.reshape(k, n_s, -1).max(axis=2)
    pen = geo.scale_penalty
    penalised = np.where(peaks >= 0, peaks * pen, peaks / pen)     # "worse" whatever the logit's sign
    penalised[:, n_s // 2] = peaks[:, n_s // 2]
    best = penalised.argmax(axis=1)                                                   # K
    resp = up[np.arange(k), best]                                                     # K x U x U
    resp = resp - resp.min(axis=(1, 2), keepdims=True)
    resp = resp / (resp.sum(axis=(1, 2), keepdims=True) + 1e-16)
    resp = (1 - geo.window_influence) * resp + geo.window_influence * _hann(u)
    loc = np.stack(np.unravel_index(resp.reshape(k, -1).argmax(axis=1), (u, u)), axis=1)  # (row, col)
    disp = (loc[:, ::-1] - (u - 1) / 2) * geo.stride / geo.response_up                    # search-crop px
    f_best = geo.scale_factors[best]
    new_centers = centers + disp * (x_sz * f_best / geo.search_sz)[:, None]
    scale = (1 - geo.scale_lr) + geo.scale_lr * f_best
    new_sizes = sizes * scale[:, None]
    if size_bounds is not None:
        new_sizes = np.clip(new_sizes, size_bounds[:, 0], size_bounds[:, 1])
    new_sizes = np.maximum(new_sizes, MIN_SIDE_PX)
    peak = score[np.arange(k), best].reshape(k, -1).max(axis=1)
    return new_centers, new_sizes, peak


def _cosine(zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
    """Normalised cross-correlation of each template with every window of its search map."""
    nz = zf.shape[0]
    raw = xcorr(zf, xf)
    ones = torch.ones(1, 1, zf.shape[-2], zf.shape[-1], dtype=xf.dtype, device=xf.device)
    x_energy = F.conv2d((xf * xf).sum(dim=1, keepdim=True), ones)
    z_norm = zf.flatten(1).norm(dim=1).repeat(xf.shape[0] // nz).reshape(-1, 1, 1, 1)
    return raw / (z_norm * x_energy.clamp(min=0).sqrt() + 1e-12)


# --------------------------------------------------------------------------- frames of one video
class _Frames:
    """Frame ``i`` of a sequence as RGB uint8, decoded once and kept while under a memory budget."""

    def __init__(self, seq, budget_mb: float):
        self.paths = [Path(p) for p in seq.frames]
        self.budget = float(budget_mb) * 2**20
        self.used = 0.0
        self.cache: dict[int, np.ndarray] = {}
        self.decoded = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        img = self.cache.get(i)
        if img is None:
            img = read_rgb(self.paths[i])
            self.decoded += 1
            if self.used + img.nbytes <= self.budget:
                self.cache[i] = img
                self.used += img.nbytes
        return img


# --------------------------------------------------------------------------- chains
@dataclass
class Chains:
    """Forward tracks of seeds in one video, and their backward check.

    ``boxes`` T x (span + 1) x 4 forward boxes (``[:, 0]`` the seeds, NaN after a track stopped),
    ``scores`` T x (span + 1) peak scores (NaN at step 0 and after the stop), ``last`` the number of
    kept steps per track, ``back`` the backward box at the start frame (NaN without kept steps),
    ``fb_iou`` its IoU with the seed, ``passed`` the forward-backward verdict.
    """
    start: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    last: np.ndarray
    back: np.ndarray
    fb_iou: np.ndarray
    passed: np.ndarray
    steps: int = 0                # track-frame updates computed (forward + backward)


def _run_tracks(net, frames: _Frames, start: np.ndarray, init: np.ndarray, stop: np.ndarray,
                geo: MinerGeometry, device, forward: bool, min_score: float | None,
                clip: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Track T boxes, each from frame ``start[i]`` (box ``init[i]``) to frame ``stop[i]``, in one sweep.

    ``forward``: frames increase from start to stop, else decrease.  A track stops early when its
    peak score falls below ``min_score`` (None: never) or its centre leaves the frame; with ``clip``
    it goes on instead, its centre clipped into the frame (SiamFCTracker's rule) and that step's
    score NaN (so a later cut at the first low score also cuts there).  Returns the
    boxes T x (L + 1) x 4 by step (step j at frame ``start +- j``), the scores T x (L + 1), the number
    of kept steps per track, and the number of track updates computed.
    """
    n_t = len(start)
    length = int(np.abs(stop - start).max(initial=0))
    boxes = np.full((n_t, length + 1, 4), np.nan)
    scores = np.full((n_t, length + 1), np.nan)
    kept = np.zeros(n_t, dtype=np.int64)
    if n_t == 0 or length == 0:
        boxes[:, 0] = init
        return boxes, scores, kept, 0
    boxes[:, 0] = init
    sgn = 1 if forward else -1
    state = xywh_to_cxcywh(init)
    alive = np.abs(stop - start) > 0
    zf: list[torch.Tensor | None] = [None] * n_t
    lo, hi = int(min(start.min(), stop.min())), int(max(start.max(), stop.max()))
    order = range(lo, hi + 1) if forward else range(hi, lo - 1, -1)
    updates = 0
    for f in order:
        starting = np.flatnonzero(alive & (start == f))
        stepping = np.flatnonzero(alive & (sgn * (f - start) > 0) & (sgn * (stop - f) >= 0))
        if len(starting) == 0 and len(stepping) == 0:
            continue
        img = frames[f]
        if len(starting):
            for i, feat in zip(starting, templates(net, img, init[starting], geo, device)):
                zf[i] = feat
        if len(stepping):
            zs = torch.stack([zf[i] for i in stepping])
            init_wh = init[stepping, 2:]
            bounds = np.stack([init_wh * SIZE_FACTORS[0], init_wh * SIZE_FACTORS[1]], axis=1)
            c, s, peak = track_step(net, img, state[stepping, :2], state[stepping, 2:], zs, geo, device, bounds)
            updates += len(stepping)
            h, w = img.shape[:2]
            inside = (c[:, 0] >= 0) & (c[:, 0] <= w - 1) & (c[:, 1] >= 0) & (c[:, 1] <= h - 1)
            if clip:
                c = np.clip(c, 0, [w - 1, h - 1])
                peak = np.where(inside, peak, np.nan)
                inside = np.ones_like(inside)
            ok = inside & (np.isfinite(peak) | clip) & (peak >= min_score if min_score is not None else True)
            j = sgn * (f - start[stepping])
            state[stepping, :2], state[stepping, 2:] = c, s
            good, bad = stepping[ok], stepping[~ok]
            boxes[good, j[ok]] = cxcywh_to_xywh(np.concatenate([c[ok], s[ok]], axis=1))
            scores[good, j[ok]] = peak[ok]
            kept[good] = j[ok]
            alive[bad] = False
            for i in bad:
                zf[i] = None
            for i in stepping[j == np.abs(stop[stepping] - start[stepping])]:
                zf[i] = None            # finished: free its template
    return boxes, scores, kept, updates


def track_chains(net, frames: _Frames, seeds: pd.DataFrame, span: int, mining_cfg, geo: MinerGeometry,
                 device, stop_early: bool = True) -> Chains:
    """Forward tracks of up to ``span`` steps from ``seeds`` (columns frame, x, y, w, h), and their
    sparse forward-backward check (module docstring).  Frames are the only input read.

    ``stop_early``: stop computing a track at its first low-score step (mining).  Without it the
    forward track runs to the span like ``SiamFCTracker`` (centre clipped into the frame; ``boxes``
    holds this raw track, for scoring) and the kept steps (``last``) are cut afterwards at the first
    low score or exit from the frame: the same verdicts, more compute.
    """
    start = seeds["frame"].to_numpy(np.int64)
    init = seeds[["x", "y", "w", "h"]].to_numpy(np.float64).reshape(-1, 4)
    n = len(frames)
    if len(start) and (start.min() < 0 or start.max() >= n):
        raise ValueError(f"seed frames must lie in 0..{n - 1}, got {start.min()}..{start.max()}")
    stop = np.minimum(start + int(span), n - 1)
    boxes, scores, kept, updates = _run_tracks(net, frames, start, init, stop, geo, device, True,
                                               mining_cfg.min_response if stop_early else None,
                                               clip=not stop_early)
    boxes = _pad_steps(boxes, span, np.nan)
    scores = _pad_steps(scores, span, np.nan)
    if not stop_early:
        low = ~(scores[:, 1:] >= mining_cfg.min_response)             # NaN (stopped) counts as low
        first_low = np.where(low.any(axis=1), low.argmax(axis=1), span)
        kept = np.minimum(kept, first_low)
    has = kept > 0
    back = np.full((len(start), 4), np.nan)
    if has.any():
        idx = np.flatnonzero(has)
        end = start[idx] + kept[idx]
        bb, _, bkept, bup = _run_tracks(net, frames, end, boxes[idx, kept[idx]], start[idx], geo, device,
                                        False, None)
        updates += bup
        back[idx] = bb[np.arange(len(idx)), kept[idx]]
    fb = np.where(has, iou(np.nan_to_num(back), init), np.nan) if len(start) else np.zeros(0)
    passed = has & (np.nan_to_num(fb, nan=-1.0) >= mining_cfg.fb_iou)
    return Chains(start, boxes, scores, kept, back, fb, passed, updates)


def _pad_steps(a: np.ndarray, span: int, fill: float) -> np.ndarray:
    if a.shape[1] >= span + 1:
        return a[:, :span + 1]
    pad = np.full((a.shape[0], span + 1 - a.shape[1]) + a.shape[2:], fill)
    return np.concatenate([a, pad], axis=1)


def _prepare(net, mining_cfg, model_cfg, device, precision: str = "fp32"):
    device = resolve_device(device)
    if check_precision(precision) == "auto":
        raise ValueError("mining takes a resolved precision (fp32 or bf16): call resolve_precision first")
    net = fuse_bn(net).to(device)       # an eval copy with BN folded: the caller's model is untouched
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    if precision == "bf16":             # the tracker's rule: phi in bf16, the xcorr and the response in fp32
        bf16_weights(net.backbone)
    net._mining_precision = precision
    stride = int(getattr(getattr(net, "backbone", None), "stride", 8))
    return net, MinerGeometry.from_configs(mining_cfg, model_cfg, stride), device


# --------------------------------------------------------------------------- the unsupervised path
def seed_candidates(sequences, mining_cfg, seed: int, bd_cfg=None, progress: bool = True) -> pd.DataFrame:
    """Candidate boxes to start tracks from: ``candidates_per_video`` per video, spread evenly
    over its start frames ``0, start_stride, 2 start_stride, ...`` (each with at least one later frame).

    Boxes come from ``pulkit.method.candidates.sample_candidates`` (BD's geometry and texture prior,
    ``bd_cfg`` or the defaults) in the start frames only; labels are never read.
    """
    bd_cfg = bd_cfg if bd_cfg is not None else BDConfig()
    stride, per_video = int(mining_cfg.start_stride), int(mining_cfg.candidates_per_video)
    if stride < 1 or per_video < 1:
        raise ValueError("mining.start_stride and mining.candidates_per_video must be >= 1")
    sequences = list(sequences)
    n_starts = [len(range(0, max(len(s.frames) - 1, 0), stride)) for s in sequences]
    per_frame = max([math.ceil(per_video / m) for m in n_starts if m > 0], default=1)
    cand_cfg = dataclasses.replace(bd_cfg, candidates_per_frame=per_frame, max_candidates=2**62)
    table = sample_candidates(sequences, cand_cfg, seed, frame_stride=stride, progress=progress)
    rng = np.random.default_rng([int(seed), 0x311E])
    keep = []
    for s in sequences:
        rows = table.index[(table["video"] == str(s.name)) & (table["frame"] < len(s.frames) - 1)].to_numpy()
        if len(rows) == 0:
            continue
        # round-robin over start frames: rank = position within its frame, so every frame gets its share
        rank = table.loc[rows].groupby("frame").cumcount().to_numpy()
        order = np.lexsort((rng.random(len(rows)), rank))
        keep.extend(rows[order[:per_video]])
    out = table.loc[sorted(keep), ["video", "frame", "x", "y", "w", "h"]].reset_index(drop=True)
    return out


def mine_pairs(net, sequences, mining_cfg, model_cfg, round_idx: int, span: int, seed: int,
               device="auto", candidates: pd.DataFrame | None = None, bd_cfg=None,
               progress: bool = True, precision: str = "fp32") -> pd.DataFrame:
    """Mine TC pairs from unlabeled ``sequences`` with ``net`` as the matcher (module docstring).

    ``candidates``: seed boxes (columns video, frame, x, y, w, h; 0-based pixels); None samples
    them with ``seed_candidates(sequences, mining_cfg, seed, bd_cfg)``.  Returns a table in
    ``pulkit.method.pairs.PAIR_COLUMNS``: one row per kept step ``k`` (every ``emit_every``-th and the
    last) of each chain that passed both filters, ``confidence`` the step's peak score, ``round``
    ``round_idx``.  At most ``mining_cfg.max_pairs`` rows (a seeded uniform subsample beyond).
    ``table.attrs["mining"]`` holds the statistics (tracks, steps, FB pass rate, throughput).
    ``precision`` (resolved: fp32 | bf16): the matcher's phi in bf16 as ``SiamFCTracker`` runs it.
    ``mining_cfg.min_tracks > 0`` keeps at least that many tracks: when fewer pass FB, the failed
    ones with the highest FB IoU are added (counted in ``fb_relaxed_tracks``; ``fb_passed`` and
    ``fb_pass_rate`` count the true passes) -- for tiny runs whose model is barely trained.
    """
    import time

    if int(span) < 1:
        raise ValueError(f"mining span must be >= 1 frame, got {span}")
    if int(mining_cfg.emit_every) < 1:
        raise ValueError(f"mining.emit_every must be >= 1, got {mining_cfg.emit_every}")
    sequences = list(sequences)
    by_name = {str(s.name): s for s in sequences}
    if len(by_name) != len(sequences):
        raise ValueError("sequence names must be unique (pairs are keyed by video)")
    if candidates is None:
        candidates = seed_candidates(sequences, mining_cfg, seed, bd_cfg, progress)
    missing = {"video", "frame", "x", "y", "w", "h"} - set(candidates.columns)
    if missing:
        raise ValueError(f"candidate table lacks columns {sorted(missing)}")
    unknown = set(candidates["video"].astype(str)) - set(by_name)
    if unknown:
        raise ValueError(f"candidates name videos not among the sequences: {sorted(unknown)[:5]}")
    net, geo, device = _prepare(net, mining_cfg, model_cfg, device, precision)

    chains, n_updates, n_decoded = [], 0, 0
    t0 = time.perf_counter()
    groups = candidates.groupby(candidates["video"].astype(str), sort=False)
    bar = tqdm(total=len(groups), desc=f"mining round {round_idx} (S={span})", unit="video", disable=not progress)
    for name, seeds in groups:
        seeds = seeds.sort_values("frame", kind="stable")
        frames = _Frames(by_name[name], mining_cfg.frame_cache_mb)
        ch = track_chains(net, frames, seeds, int(span), mining_cfg, geo, device)
        chains.append((name, ch))
        n_updates += ch.steps
        n_decoded += frames.decoded
        bar.update(1)
        bar.set_postfix(passed=sum(int(c.passed.sum()) for _, c in chains),
                        steps_per_s=f"{n_updates / max(time.perf_counter() - t0, 1e-9):.1f}")
    bar.close()
    n_passed = sum(int(c.passed.sum()) for _, c in chains)
    relaxed = _relax_fb(chains, int(mining_cfg.min_tracks))
    rows = []
    for name, ch in chains:
        for i in np.flatnonzero(ch.passed):
            ks = [k for k in range(1, ch.last[i] + 1) if k % mining_cfg.emit_every == 0 or k == ch.last[i]]
            a = ch.boxes[i, 0]
            for k in ks:
                rows.append((name, int(ch.start[i]), int(ch.start[i] + k), *a, *ch.boxes[i, k], k,
                             float(ch.scores[i, k]), int(round_idx)))
    n_tracks = sum(len(c.start) for _, c in chains)
    n_with_steps = sum(int((c.last > 0).sum()) for _, c in chains)
    seconds = time.perf_counter() - t0
    table = pd.DataFrame(rows, columns=list(PAIR_COLUMNS))
    table = _typed(table)
    if len(table) > mining_cfg.max_pairs:
        keep = np.random.default_rng([int(seed), int(round_idx), 0xFA1B]).choice(len(table), mining_cfg.max_pairs,
                                                                                 replace=False)
        table = table.iloc[np.sort(keep)].reset_index(drop=True)
    table.attrs["mining"] = {
        "round": int(round_idx), "span": int(span), "tracks": n_tracks, "tracks_with_steps": n_with_steps,
        "fb_passed": n_passed, "fb_pass_rate": n_passed / n_with_steps if n_with_steps else float("nan"),
        "pairs": int(len(table)),
        "mean_confidence": float(table["confidence"].mean()) if len(table) else float("nan"),
        "track_updates": n_updates, "frames_decoded": n_decoded, "seconds": seconds,
        "updates_per_s": n_updates / seconds if seconds > 0 else float("nan"),
        "scale_num": int(mining_cfg.scale_num), "search_sz": geo.search_sz, "confidence": geo.confidence,
        "fb_relaxed_tracks": relaxed,
    }
    return table


def _relax_fb(chains: list[tuple[str, Chains]], min_tracks: int) -> int:
    """When fewer than ``min_tracks`` tracks passed FB, also pass the failed ones with the highest FB
    IoU (ties: video order) until ``min_tracks`` are kept; return how many were added (in place)."""
    short = min_tracks - sum(int(c.passed.sum()) for _, c in chains)
    if short <= 0:
        return 0
    failed = [(-c.fb_iou[i], n, i) for n, (_, c) in enumerate(chains)
              for i in np.flatnonzero(~c.passed & (c.last > 0))]
    failed.sort()
    for _, n, i in failed[:short]:
        chains[n][1].passed[i] = True
    return min(short, len(failed))


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    ints = {c: np.int64 for c in ("frame_a", "frame_b", "k", "round") if c in table.columns}
    floats = {c: np.float64 for c in ("xa", "ya", "wa", "ha", "xb", "yb", "wb", "hb", "confidence")
              if c in table.columns}
    out = table.astype({**ints, **floats})
    if "video" in out.columns:
        out["video"] = out["video"].astype(str)
    return out


# --------------------------------------------------------------------------- table files
def save_pairs(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate ``table`` against ``PAIR_COLUMNS`` and write it atomically.

    ``.parquet`` needs pyarrow; ``.csv`` (full float precision) always works.
    """
    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: pairs tables are .csv or .parquet files")
    table = _typed(table[list(PAIR_COLUMNS)].reset_index(drop=True)) if set(PAIR_COLUMNS) <= set(table.columns) \
        else table
    validate_pairs(table, str(path))
    if path.suffix == ".parquet":
        import io
        buf = io.BytesIO()
        table.to_parquet(buf, index=False)
        return atomic_write_bytes(path, buf.getvalue())
    return atomic_write_bytes(path, table.to_csv(index=False).encode())


def load_pairs(path: str | os.PathLike) -> pd.DataFrame:
    """Read a pairs table written by ``save_pairs`` and validate its schema (errors name the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pairs table (run mining first)")
    try:
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"video": str})
    except (ValueError, pd.errors.ParserError, OSError) as e:
        raise ValueError(f"{path}: cannot read pairs table ({e})") from None
    validate_pairs(table, str(path))
    return _typed(table)


def pairs_suffix() -> str:
    """``.parquet`` when pyarrow is installed, else ``.csv``."""
    try:
        import pyarrow  # noqa: F401
        return ".parquet"
    except ImportError:
        return ".csv"


# --------------------------------------------------------------------------- quality on labelled data
def mining_quality(net, sequences, mining_cfg, model_cfg, ks=(1, 5, 10, 20), device="auto",
                   progress: bool = True, precision: str = "fp32") -> pd.DataFrame:
    """The miner's accuracy on labelled video, seeded at ground-truth boxes.

    Seeds: the ground-truth box at every ``start_stride``-th frame (valid boxes only).  The miner
    (``track_chains``, span ``max(ks)`` whatever the round, so rounds compare at equal k) runs on
    frames alone; ground truth is read only here, to seed and to score.  Returns one row per
    (sequence, k) and a ``sequence == "mean"`` row per k (mean over sequences) with: ``n`` seeds
    reaching ``t + k``; ``center_error`` (px) and ``iou`` of the raw forward track (no filter, runs to
    the span like ``SiamFCTracker``; ``precision`` as in ``mine_pairs``); ``kept_frac`` the fraction of those
    steps the miner would emit (response and FB filters); ``center_error_kept`` / ``iou_kept`` over the
    emitted ones.
    """
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive frame offsets, got {ks}")
    span = ks[-1]
    net, geo, device = _prepare(net, mining_cfg, model_cfg, device, precision)
    records = []
    for seq in tqdm(list(sequences), desc="mining quality", unit="video", disable=not progress):
        gt = as_boxes(seq.boxes)                       # labels: seeding and scoring only
        starts = [t for t in range(0, len(seq.frames) - 1, mining_cfg.start_stride)
                  if np.isfinite(gt[t]).all() and gt[t, 2] > 0 and gt[t, 3] > 0]
        seeds = pd.DataFrame({"frame": starts, **{c: gt[starts, j] for j, c in enumerate("xywh")}})
        frames = _Frames(seq, mining_cfg.frame_cache_mb)
        ch = track_chains(net, frames, seeds, span, mining_cfg, geo, device, stop_early=False)
        for k in ks:
            t_k = ch.start + k
            ok = (t_k < len(seq.frames))
            ok[ok] &= np.isfinite(gt[t_k[ok]]).all(axis=1) & np.isfinite(ch.boxes[ok, k]).all(axis=1)
            idx = np.flatnonzero(ok)
            pred, true = ch.boxes[idx, k], gt[t_k[idx]]           # the raw track (no response stop)
            emitted = ch.passed[idx] & (ch.last[idx] >= k)         # what the miner would emit
            m_pred = pred[emitted]
            records.append(dict(
                sequence=str(seq.name), k=k, n=len(idx),
                center_error=float(center_error(pred, true).mean()) if len(idx) else float("nan"),
                iou=float(iou(pred, true).mean()) if len(idx) else float("nan"),
                kept_frac=float(emitted.mean()) if len(idx) else float("nan"),
                center_error_kept=float(center_error(m_pred, true[emitted]).mean()) if emitted.any() else float("nan"),
                iou_kept=float(iou(m_pred, true[emitted]).mean()) if emitted.any() else float("nan")))
    table = pd.DataFrame(records)
    if len(table):
        mean = table.groupby("k", as_index=False).agg(
            n=("n", "sum"), center_error=("center_error", "mean"), iou=("iou", "mean"),
            kept_frac=("kept_frac", "mean"), center_error_kept=("center_error_kept", "mean"),
            iou_kept=("iou_kept", "mean"))
        mean.insert(0, "sequence", "mean")
        table = pd.concat([table, mean], ignore_index=True)
    table.attrs["span"] = span
    return table
