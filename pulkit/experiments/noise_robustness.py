"""The noise experiment (paper 4.2.2, supplementary D, Figs. 3, 4, 6): BCE vs NR on noisy labels.

Trains BCE, NR (sigma matched to the noise) and NR (sigma fixed) per noise level and seed on a fixed,
memorisable noisy training set, scores clean localisation on held-out pairs and the fit to the noisy
labels, and writes ``results/<profile>/04_noise_robustness.json`` with its claims.  Design: docs/modules.md.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from pulkit.core import artifacts
from pulkit.core.config import ConfigError, NoiseConfig
from pulkit.core.io import last_jsonl_record
from pulkit.core.results import save_results
from pulkit.data import crops
from pulkit.data.images import read_rgb
from pulkit.data.inventory import profile_sequences, training_video
from pulkit.data.sequences import DataError, Sequence
from pulkit.evaluation import powered
from pulkit.losses import nr_loss
from pulkit.method.calibration import calibrate_head
from pulkit.method.loop import config_diff, is_complete, load_training_checkpoint, lr_schedule, train
from pulkit.method.pairs import CropCache, GroundTruthPairs, noisy_boxes
from pulkit.method.reference import random_bn
from pulkit.method.supervised import (
    TRAINING_KEYS,
    build_initial_net,
    check_training_sequences,
    log_path,
    response_loss,
    training_signature,
)
from pulkit.models.net import load_net, resolve_device
from pulkit.models.precision import resolve_precision
from pulkit.tracking.siamfc import SiamFCTracker

LOSSES = ("bce", "nr", "nr_fixed")            # balanced BCE | NR, sigma matched to the noise | NR, sigma nr.sigma_px
LOSS_NAMES = {"bce": "BCE", "nr": "NR (sigma matched)", "nr_fixed": "NR (sigma fixed)"}
SHOWN = ("bce", "nr")                         # the losses Figs. 3 / 4 show
UNITS = ("px", "size")
NOTEBOOK = "04_noise_robustness"
STRIDE = powered.STRIDE
RUN_KEYS = TRAINING_KEYS + ("noise",)        # the config entries a run's checkpoint must match to be reused
TARGET_BCE_DROP = 0.10                        # what the design aims for: BCE loses >= 0.10 clean accuracy at the top level
RUN_COLUMNS = ("loss", "level", "seed", "accuracy", "accuracy_se", "error_px", "fit_noisy", "fit_clean",
               "sigma_px", "steps", "final_loss", "giveup_frac", "checkpoint")


# --------------------------------------------------------------------------- configuration
def _level_list(levels, what: str) -> tuple[float, ...]:
    out = tuple(float(n) for n in levels)
    if any(not (math.isfinite(n) and n >= 0) for n in out) or len(set(out)) != len(out):
        raise ConfigError(f"noise.{what} must be distinct finite levels >= 0, got {levels}")
    return out


def check_noise_config(cfg) -> None:
    """``ConfigError`` unless unit, levels, seeds, the grid, the training set and the display levels make a
    runnable experiment."""
    nc = cfg.noise
    if nc.unit not in UNITS:
        raise ConfigError(f"noise.unit must be one of {UNITS}, got {nc.unit!r}")
    if not nc.levels:
        raise ConfigError("noise.levels is empty")
    levels = _level_list(nc.levels, "levels")
    if nc.unit == "px" and any(n != int(n) for n in levels):
        raise ConfigError(f"noise.levels in unit 'px' must be whole pixels, got {nc.levels}")
    if not nc.seeds or len(set(nc.seeds)) != len(nc.seeds):
        raise ConfigError(f"noise.seeds must be distinct integers, got {nc.seeds}")
    for name in ("nr_levels", "nr_fixed_levels"):
        sub = getattr(nc, name)
        if sub is not None and not set(_level_list(sub, name)) <= set(levels):
            raise ConfigError(f"noise.{name} {sub} are not all among noise.levels {nc.levels}")
    missing = [n for n in (*nc.display_levels, nc.fig4_level) if float(n) not in levels]
    if missing:
        raise ConfigError(f"noise.display_levels / fig4_level {missing} are not among noise.levels {nc.levels} "
                          "(only trained levels can be shown)")
    if (nc.train_pairs is None) != (nc.epochs is None):
        raise ConfigError(f"noise.train_pairs and noise.epochs are set together (a fixed set) or both None "
                          f"(fresh pairs), got {nc.train_pairs} and {nc.epochs}")
    if nc.train_pairs is not None and (nc.train_pairs < 2 or nc.epochs < 1):
        raise ConfigError(f"noise.train_pairs must be >= 2 and noise.epochs >= 1, got {nc.train_pairs}, {nc.epochs}")
    if nc.train_shift_px is not None and not nc.train_shift_px >= 0:
        raise ConfigError(f"noise.train_shift_px must be >= 0 or None, got {nc.train_shift_px}")
    if not nc.sigma_floor_px > 0:
        raise ConfigError(f"noise.sigma_floor_px must be > 0 (NR needs a positive sigma at n = 0), got {nc.sigma_floor_px}")
    if nc.steps is not None and nc.steps < 1:
        raise ConfigError(f"noise.steps must be >= 1 or None, got {nc.steps}")
    if nc.eval_pairs is not None and nc.eval_pairs < 2:
        raise ConfigError(f"noise.eval_pairs must be >= 2 (a paired SE needs two) or None, got {nc.eval_pairs}")
    if nc.eval_max_frames is not None and nc.eval_max_frames < 2:
        raise ConfigError(f"noise.eval_max_frames must be >= 2 or None, got {nc.eval_max_frames}")


def with_levels(cfg, levels=None, seeds=None):
    """``cfg`` with other noise ``levels`` / ``seeds`` (None: the profile's).  The display levels, Fig. 4's
    level and the NR grids keep those of the profile that remain (display: else all levels; Fig. 4: else
    the largest; an NR grid left empty: the largest level)."""
    nc, changes = cfg.noise, {}
    if levels is not None:
        levels = tuple(float(n) for n in levels)
        top = max(levels, default=0.0)
        changes["levels"] = levels
        changes["display_levels"] = tuple(n for n in nc.display_levels if float(n) in levels) or levels
        changes["fig4_level"] = float(nc.fig4_level) if float(nc.fig4_level) in levels else top
        for name in ("nr_levels", "nr_fixed_levels"):
            sub = getattr(nc, name)
            if sub is not None:
                changes[name] = tuple(float(n) for n in sub if float(n) in levels) or (top,)
    if seeds is not None:
        changes["seeds"] = tuple(int(s) for s in seeds)
    out = cfg.override({"noise": changes}) if changes else cfg
    check_noise_config(out)
    return out


def grid(cfg) -> list[tuple[str, float]]:
    """The trained cells ``(loss, level)``: BCE at every level, NR at ``noise.nr_levels`` and NR (sigma
    fixed) at ``noise.nr_fixed_levels`` (None: every level), in level order."""
    nc = cfg.noise
    on = {"bce": None, "nr": nc.nr_levels, "nr_fixed": nc.nr_fixed_levels}
    return [(loss, float(n)) for n in sorted(float(v) for v in nc.levels) for loss in LOSSES
            if on[loss] is None or n in {float(v) for v in on[loss]}]


def fixed_set(cfg) -> bool:
    """True when runs train on a fixed noisy set (``noise.train_pairs``), False for fresh pairs every step."""
    return cfg.noise.train_pairs is not None


def train_steps(cfg) -> int:
    """Steps of one run: ``ceil(train_pairs * epochs / batch_size)`` on a fixed set, else ``noise.steps``
    (None: ``supervised.steps``)."""
    nc = cfg.noise
    if fixed_set(cfg):
        return int(math.ceil(nc.train_pairs * nc.epochs / cfg.supervised.batch_size))
    return int(nc.steps if nc.steps is not None else cfg.supervised.steps)


def shift_range(cfg) -> float:
    """Fixed set: the search-crop shift bound (search-crop px); None in the config: the eval pairs' own
    (``powered.SHIFT_OF_REACH`` x the response's reach), so training labels cover the map as eval targets do."""
    s = cfg.noise.train_shift_px
    if s is not None:
        return float(s)
    return powered.SHIFT_OF_REACH * powered.response_reach(cfg.model.exemplar_sz, cfg.model.instance_sz, STRIDE)


def noise_run_config(cfg, loss: str, level: float, seed: int):
    """The config a run trains with and its checkpoint records: its seed, ``train_steps`` as its steps, the
    loss (``supervised.loss``: bce | nr), ``noise.lr`` as its rate (unset: ``supervised.lr``), and a ``noise``
    entry holding only what determines its weights."""
    if loss not in LOSSES:
        raise ValueError(f"noise loss must be one of {LOSSES}, got {loss!r}")
    nc = cfg.noise
    noise = dataclasses.replace(
        NoiseConfig(), unit=nc.unit, levels=(float(level),), seeds=(int(seed),), display_levels=(float(level),),
        fig4_level=float(level), train_pairs=nc.train_pairs, epochs=nc.epochs,
        train_shift_px=shift_range(cfg) if fixed_set(cfg) else None, sigma_floor_px=float(nc.sigma_floor_px),
        steps=None if fixed_set(cfg) else nc.steps, nr_levels=None, nr_fixed_levels=None, lr=nc.lr)
    lr = float(cfg.supervised.lr if nc.lr is None else nc.lr)
    return cfg.override({"supervised": {"loss": "bce" if loss == "bce" else "nr", "steps": train_steps(cfg), "lr": lr,
                                        "noise_px": float(level) if nc.unit == "px" else 0.0},
                         "noise": noise}, seed=int(seed))


def stage_name(loss: str) -> str:
    """The loop's stage name of a noise run (a checkpoint of another stage is never reused)."""
    return f"noise/{loss}"


def level_tag(level: float) -> str:
    """A level as file names and keys write it: ``0.25`` -> ``0p25``, ``50.0`` -> ``50``."""
    return f"{float(level):g}".replace(".", "p")


def run_key(cfg, loss: str, level: float, seed: int) -> str:
    """The stem of a run's checkpoint (and its key in the results): ``<loss>_<n|f><level>_s<seed>``."""
    return checkpoint_path(cfg, loss, level, seed).stem


def checkpoint_path(cfg, loss: str, level: float, seed: int, out=None) -> Path:
    """``artifacts.noise_checkpoint(profile, loss, level, seed, unit)``, or the same file name under ``out``."""
    path = artifacts.noise_checkpoint(cfg.profile, loss, level, seed, cfg.noise.unit)
    return path if out is None else Path(out) / path.name


def checkpoint_name(path) -> str:
    """A checkpoint's name as results record it: relative to its profile's checkpoints (no machine paths)."""
    return f"noise/{Path(path).name}"


# --------------------------------------------------------------------------- the noise model
def noise_halfwidth(boxes, level: float, unit: str) -> np.ndarray:
    """Per annotation, the noise half-width n in frame px: ``level`` (unit px) or ``level * sqrt(w h)``
    of that box (unit size); NaN where the box is NaN."""
    b = crops.as_boxes(boxes)
    if unit == "px":
        return np.where(np.isnan(b).any(axis=1), np.nan, float(level))
    if unit == "size":
        return float(level) * np.sqrt(b[:, 2] * b[:, 3])
    raise ValueError(f"noise unit must be one of {UNITS}, got {unit!r}")


def noisy_annotations(boxes, level: float, unit: str, seed: int, name: str) -> np.ndarray:
    """``boxes`` with each centre moved by (dx, dy) ~ U[-n, n]^2, n = ``noise_halfwidth`` of that box.

    One draw per annotation from the stream keyed by ``(seed, name)`` (``pulkit.method.pairs.noisy_boxes``,
    which unit px calls): the same directions at every level of a seed; sizes kept; NaN rows stay NaN.
    """
    if not level >= 0:
        raise ValueError(f"noise level must be >= 0, got {level}")
    if unit == "px":
        return noisy_boxes(boxes, float(level), seed, name)
    n = noise_halfwidth(boxes, level, unit)
    out = crops.as_boxes(boxes).copy()
    if level == 0:
        return out
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))
    out[:, :2] += rng.uniform(-1.0, 1.0, size=(len(out), 2)) * n[:, None]
    return out


def matched_sigma_px(halfwidth_px, scale, floor_px: float) -> np.ndarray:
    """NR's sigma matched to the label noise, in search-crop px: the std of U[-n, n] (``n / sqrt(3)``) with
    n in frame px times the crop ``scale`` (search-crop px per frame px), at least ``floor_px``."""
    n = np.asarray(halfwidth_px, dtype=np.float64) * np.asarray(scale, dtype=np.float64)
    return np.maximum(float(floor_px), n / math.sqrt(3.0))


# --------------------------------------------------------------------------- data
def experiment_sequences(cfg, data_root=None) -> dict[str, list[Sequence]]:
    """``{"train": labelled training sequences, "eval": display sequences of Figs. 3 / 4}``.

    Training: the profile's labelled training video (``supervised_sequences``).  Display: the profile's
    evaluation sequences whose source is in ``noise.eval_sources``, truncated to ``noise.eval_max_frames``
    frames when set.  No sequence is in both.
    """
    seqs = profile_sequences(cfg, data_root)
    train = [s for s in seqs["train"] if s.attributes.get("source") != "shared"]
    evals = [s for s in seqs["eval"] if s.attributes.get("source") in cfg.noise.eval_sources]
    if not evals:
        raise DataError(f"profile {cfg.profile!r}: no evaluation sequences from noise.eval_sources "
                        f"{cfg.noise.eval_sources} among data.eval_sources {cfg.data.eval_sources}")
    n = cfg.noise.eval_max_frames
    if n is not None:
        evals = [s.sub(0, n) for s in evals]
    return {"train": check_training_sequences(cfg, train), "eval": evals}


@dataclass(frozen=True)
class NoisyPairs:
    """A fixed noisy training set: pairs and their one noisy label each, cut once.

    ``z`` N x 3 x Sz x Sz and ``x`` N x 3 x Sx x Sx uint8; ``label`` N x 2: the noisy label (the search
    annotation's centre) relative to the search-crop centre, search-crop px (x, y); ``true``: the true
    centre, same frame; ``sigma_px`` N: NR's matched sigma; ``video`` N, ``frames`` N x 2 (a, b).
    """
    z: torch.Tensor
    x: torch.Tensor
    label: torch.Tensor
    true: torch.Tensor
    sigma_px: torch.Tensor
    video: torch.Tensor
    frames: torch.Tensor

    def __len__(self) -> int:
        return int(self.z.shape[0])

    def batch(self, indices) -> dict[str, torch.Tensor]:
        """The pairs of ``indices`` as a training batch: float ``z``, ``x``, label ``centers`` and ``sigma`` in cells."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64).reshape(-1))
        return {"z": self.z[idx].float(), "x": self.x[idx].float(), "centers": self.label[idx] / STRIDE,
                "sigma": self.sigma_px[idx] / STRIDE, "index": idx}

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` pairs drawn uniformly (the head calibration's probe batches)."""
        return self.batch(torch.randint(len(self), (int(batch_size),), generator=generator).numpy())

    def pairset(self, target: str = "label") -> powered.PairSet:
        """The set as ``powered.PairSet`` with ``offset`` the noisy ``label`` or the ``true`` centre."""
        if target not in ("label", "true"):
            raise ValueError(f"target must be 'label' or 'true', got {target!r}")
        return powered.PairSet(self.z, self.x, getattr(self, target), self.video, self.frames)


def draw_pairs(cfg, sequences, seed: int) -> dict[str, np.ndarray]:
    """The level-independent draw of a seed's fixed set: ``noise.train_pairs`` pairs spread evenly over the
    sequences, ``video`` N, ``frames`` N x 2 (exemplar a, search b: valid boxes, 1 <= |b - a| <=
    ``supervised.max_gap``, either order) and ``shift`` N x 2 ~ U[-s, s] search-crop px (``shift_range``)."""
    n, gap = int(cfg.noise.train_pairs), int(cfg.supervised.max_gap)
    usable = []
    for i, s in enumerate(sequences):
        v = np.flatnonzero(crops.valid_boxes(s.boxes))
        lo, hi = np.searchsorted(v, v - gap, "left"), np.searchsorted(v, v + gap, "right")
        if len(v) >= 2 and ((hi - lo) > 1).any():
            usable.append((i, v, lo, hi))
    if not usable:
        raise DataError(f"noise: no training sequence has two valid frames within max_gap={gap}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x4E015E]))
    counts = np.full(len(usable), n // len(usable)) + (np.arange(len(usable)) < n % len(usable))
    video, frames = [], []
    for (i, v, lo, hi), c in zip(usable, counts):
        ok = np.flatnonzero(hi - lo > 1)
        for ja in ok[rng.integers(len(ok), size=int(c))]:
            r = lo[ja] + int(rng.integers(hi[ja] - lo[ja] - 1))
            jb = r + 1 if r >= ja else r                   # any partner within the gap but a itself
            video.append(i)
            frames.append((v[ja], v[jb]))
    s = shift_range(cfg)
    return {"video": np.asarray(video, np.int64), "frames": np.asarray(frames, np.int64).reshape(-1, 2),
            "shift": rng.uniform(-s, s, size=(n, 2))}


def fixed_training_set(cfg, sequences, level: float, seed: int, draw: Mapping[str, np.ndarray] | None = None
                       ) -> NoisyPairs:
    """The fixed noisy set of (``level``, ``seed``): the pairs of ``draw_pairs`` (the same at every level),
    each with one noisy search annotation (``noisy_annotations``: drawn once, never re-drawn).

    Exemplar: the true box of frame a.  Search crop: side from box b, centred on b's *noisy* centre moved
    by the pair's shift, so the label sits at ``-shift`` (always on the response map) and the true centre
    at ``-shift - error * scale``.  NR's sigma: ``matched_sigma_px`` of b's noise half-width.
    """
    nc, m = cfg.noise, cfg.model
    draw = draw_pairs(cfg, sequences, seed) if draw is None else draw
    ez, ix, ctx = int(m.exemplar_sz), int(m.instance_sz), float(m.context)
    used = sorted(set(draw["video"].tolist()))
    noisy = {i: noisy_annotations(sequences[i].boxes, level, nc.unit, seed, sequences[i].name) for i in used}
    half = {i: noise_halfwidth(sequences[i].boxes, level, nc.unit) for i in used}
    n = len(draw["video"])
    z = torch.empty((n, 3, ez, ez), dtype=torch.uint8)
    x = torch.empty((n, 3, ix, ix), dtype=torch.uint8)
    label, true, sigma = np.empty((n, 2)), np.empty((n, 2)), np.empty(n)
    decoded: dict[tuple[int, int], np.ndarray] = {}
    for k in np.lexsort((draw["frames"][:, 0], draw["video"])):       # video, then frame order: few decodes
        i, (a, b) = int(draw["video"][k]), draw["frames"][k]
        seq = sequences[i]
        for f in (a, b):
            if (i, f) not in decoded:
                decoded[(i, f)] = read_rgb(seq.frames[f])
        cx, cy, w, h = crops.xywh_to_cxcywh(seq.boxes[b])[0]
        ncx, ncy = crops.xywh_to_cxcywh(noisy[i][b])[0, :2]
        _, x_sz = crops.crop_sizes(w, h, ez, ix, ctx)
        scale = ix / x_sz                                             # search-crop px per frame px
        centre = np.array([ncx, ncy]) + draw["shift"][k] / scale
        z[k] = torch.from_numpy(crops.exemplar_crop(decoded[(i, a)], seq.boxes[a], ez, ctx)).permute(2, 0, 1)
        x[k] = torch.from_numpy(crops.crop(decoded[(i, b)], centre, x_sz, ix)).permute(2, 0, 1)
        label[k] = -draw["shift"][k]
        true[k] = (np.array([cx, cy]) - centre) * scale
        sigma[k] = matched_sigma_px(half[i][b], scale, nc.sigma_floor_px)
        if len(decoded) > 64:
            decoded.clear()
    f32 = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731
    return NoisyPairs(z, x, f32(label), f32(true), f32(sigma), torch.from_numpy(draw["video"].copy()),
                      torch.from_numpy(draw["frames"].copy()))


def epoch_order(n: int, epochs: int, batch_size: int, seed: int) -> np.ndarray:
    """``steps x batch_size`` indices into a fixed set of ``n`` pairs: one permutation per epoch (seeded by
    ``seed`` alone, so every loss and level of a seed sees the same order), ``steps = ceil(n * epochs /
    batch_size)``; the last batch is completed from the next permutation."""
    steps = int(math.ceil(n * epochs / batch_size))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xE90C]))
    need = steps * batch_size
    order = np.concatenate([rng.permutation(n) for _ in range(-(-need // n))])
    return order[:need].reshape(steps, batch_size)


class FreshPairs(GroundTruthPairs):
    """``GroundTruthPairs`` (fresh pairs every step, the paper's path) on ``noisy_annotations`` of any unit;
    batches add NR's matched ``sigma`` (cells) of each search annotation."""

    def __init__(self, cfg, sequences, level: float, seed: int, stride: int = STRIDE, cache=None):
        nc, sup = cfg.noise, cfg.supervised
        super().__init__(sequences, cfg.model, sup.max_gap, sup.search_shift_px, noise_px=0, seed=seed,
                         stride=stride, cache=cache if cache is not None else CropCache(disk_mb=cfg.data.crop_cache_disk_mb))
        self.noise_px = float(level) if nc.unit == "px" else 0.0
        self.noisy_boxes = [noisy_annotations(s.boxes, level, nc.unit, seed, s.name) for s in self.sequences]
        self.halfwidth = [noise_halfwidth(s.boxes, level, nc.unit) for s in self.sequences]
        self.sigma_floor_px = float(nc.sigma_floor_px)

    def sample_batch(self, batch_size, generator):
        b = super().sample_batch(batch_size, generator)
        m, sig = self.model_cfg, []
        for i, fb in zip(b["index"].tolist(), b["frames"][:, 1].tolist()):
            _, x_sz = crops.crop_sizes(*self.noisy_boxes[i][fb, 2:], m.exemplar_sz, m.instance_sz, m.context)
            sig.append(matched_sigma_px(self.halfwidth[i][fb], m.instance_sz / x_sz, self.sigma_floor_px))
        return {**b, "sigma": torch.tensor(np.asarray(sig, np.float32)) / self.stride}


def training_data(cfg, sequences, level: float, seed: int, draw=None):
    """A run's data: the fixed noisy set (``fixed_training_set``) or ``FreshPairs``."""
    if fixed_set(cfg):
        return fixed_training_set(cfg, sequences, level, seed, draw)
    return FreshPairs(cfg, sequences, level, seed)


# --------------------------------------------------------------------------- one run
def run_loss(logits: torch.Tensor, batch: Mapping[str, torch.Tensor], loss: str, nr_cfg, stride: int = STRIDE):
    """The response loss of a batch: ``bce`` and ``nr_fixed`` as ``supervised.response_loss`` (NR at
    ``nr_cfg.sigma_px``); ``nr``: the NR loss with each pair's matched ``batch["sigma"]`` (cells)."""
    if loss == "bce":
        return response_loss(logits, batch["centers"], "bce", nr_cfg, stride)
    if loss == "nr_fixed":
        return response_loss(logits, batch["centers"], "nr", nr_cfg, stride)
    if loss == "nr":
        value, stats = nr_loss(logits, batch["sigma"], nr_cfg.r_pos / stride, center=batch["centers"],
                               form=nr_cfg.form, norm=nr_cfg.norm, return_stats=True)
        return value, {"nr_loss": value.detach(), "giveup_frac": stats["giveup_frac"], "mean_Eg": stats["mean_Eg"],
                       "sigma_px": float(batch["sigma"].float().mean()) * stride}
    raise ValueError(f"noise loss must be one of {LOSSES}, got {loss!r}")


def run_complete(ckpt, rcfg, loss: str) -> bool:
    """True when ``ckpt`` is a complete checkpoint of this run (stage, training config, steps)."""
    if not is_complete(ckpt):
        return False
    ck = load_training_checkpoint(ckpt)
    return (ck.get("stage") == stage_name(loss) and _signature(ck.get("config")) == _signature(rcfg.to_dict())
            and int(ck.get("step", 0)) >= int(rcfg.supervised.steps))


def _signature(config) -> dict[str, Any]:
    return {**training_signature(config), "noise": (config or {}).get("noise")}


def train_noise_run(cfg, loss: str, level: float, seed: int, data, ckpt, device="auto", progress: bool = True,
                    resume: bool = True) -> Path:
    """Train one run (``noise_run_config``) on ``data`` (``training_data``); return ``ckpt``.

    A complete checkpoint of the same run is reused; an interrupted one resumes bitwise; one from another
    run is retrained (warned).  Initial weights, head calibration and batch order depend on the seed
    alone, so every loss and level of a seed starts alike and sees the same pairs in the same order.
    """
    rcfg = noise_run_config(cfg, loss, level, seed)
    sup, ckpt = rcfg.supervised, Path(ckpt)
    if resume and run_complete(ckpt, rcfg, loss):
        return ckpt
    if resume and ckpt.is_file():
        old = load_training_checkpoint(ckpt)
        changed = config_diff(_signature(old.get("config")), _signature(rcfg.to_dict()))
        if old.get("stage") != stage_name(loss) or changed:
            warnings.warn(f"{ckpt}: written by another run ({', '.join(changed[:6]) or old.get('stage')}); "
                          "retraining it", stacklevel=2)
            resume = False
    dev = resolve_device(device)
    net = build_initial_net(rcfg.model, seed)
    if sup.head_calibration is not None:
        calibrate_head(net, data, sup.head_calibration, sup.batch_size, seed, device=dev)
    if isinstance(data, NoisyPairs):
        order = epoch_order(len(data), rcfg.noise.epochs, sup.batch_size, seed)

        def batch_fn(step, g):
            return data.batch(order[step])
    else:
        def batch_fn(step, g):
            return data.sample_batch(sup.batch_size, g)

    def step_fn(model, batch, step):
        value, metrics = run_loss(model(batch["z"], batch["x"]), batch, loss, rcfg.nr, net.stride)
        return {"loss": value, **metrics}

    opt = torch.optim.SGD(net.parameters(), lr=sup.lr, momentum=sup.momentum, weight_decay=sup.weight_decay)
    sched = lr_schedule(opt, sup.schedule, sup.lr, sup.steps, sup.lr_end, sup.warmup)
    train(net, opt, step_fn, batch_fn, sup.steps, scheduler=sched, checkpoint=ckpt,
          checkpoint_every=sup.checkpoint_every, resume=resume, log=log_path(ckpt), log_every=sup.log_every,
          stage=stage_name(loss), cfg=rcfg, device=dev, progress=progress, resume_keys=RUN_KEYS)
    return ckpt


# --------------------------------------------------------------------------- measures
def training_fit(net, data: NoisyPairs, r_pos: float, device="auto", precision: str = "fp32") -> dict[str, Any]:
    """Where ``net`` peaks on its own training pairs: ``noisy`` / ``clean``, the fractions within ``r_pos``
    (search-crop px) of the noisy label / of the true centre, with the per-pair ``hit_noisy`` / ``hit_clean``;
    ``precision``: as ``powered.localisation``."""
    loc = powered.localisation(net, data.pairset("label"), r_pos, device=device, precision=precision)
    hit_clean = np.linalg.norm(loc["pred_px"] - data.true.numpy().astype(np.float64), axis=1) <= r_pos
    return {"noisy": float(loc["hit"].mean()), "clean": float(hit_clean.mean()), "hit_noisy": loc["hit"],
            "hit_clean": hit_clean}


def evaluation_pairs(cfg) -> powered.PairSet:
    """The clean held-out pairs every model is scored on: ``powered.eval_pairs(cfg)``, or ``noise.eval_pairs``
    of them evenly spaced (pair ``i * N // k``: the same share of every held-out video)."""
    full = powered.eval_pairs(cfg)
    k = cfg.noise.eval_pairs
    if k is None or k >= len(full):
        return full
    idx = torch.from_numpy(np.arange(int(k), dtype=np.int64) * len(full) // int(k))
    return powered.PairSet(full.z[idx], full.x[idx], full.offset[idx], full.video[idx],
                           None if full.frames is None else full.frames[idx])


def reference_scores(cfg, pairs, device="auto", sequences=None) -> dict[str, Any]:
    """``random_bn`` (the seeded random AlexNet, BN statistics on label-free crops of ``sequences``,
    default ``training_video(cfg)``) scored on ``pairs``: ``name``, ``hit`` and ``error_px`` per pair."""
    seqs = training_video(cfg) if sequences is None else list(sequences)
    net = random_bn(cfg, seqs, device=device)
    loc = powered.localisation(net, pairs, cfg.nr.r_pos, device=device,
                               precision=resolve_precision(cfg.precision, device))
    return {"name": "random_bn", "hit": loc["hit"], "error_px": loc["error_px"]}


@dataclass
class NoiseRuns:
    """What ``run_noise_experiment`` measured: ``runs`` (one row per run, ``RUN_COLUMNS``), per-pair clean
    ``hits`` and training ``fits`` by run key, the ``reference`` scores, the unit and eval pair count."""
    runs: pd.DataFrame
    hits: dict[str, np.ndarray]
    fits: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    reference: dict[str, Any] | None = None
    unit: str = "px"
    eval_pairs: int = 0
    keys: dict[tuple[str, float, int], str] = field(default_factory=dict)

    def hit(self, loss: str, level: float, seed: int) -> np.ndarray:
        return self.hits[self.keys[(loss, float(level), int(seed))]]


# --------------------------------------------------------------------------- the experiment
def run_noise_experiment(cfg, out=None, device="auto", *, sequences: Mapping[str, list] | None = None,
                         pairs: powered.PairSet | None = None, reference: bool = True, reference_sequences=None,
                         progress: bool = True) -> NoiseRuns:
    """Train and score every cell of ``grid(cfg)`` at every seed; return a ``NoiseRuns``.

    ``out``: folder for checkpoints (``<run key>.pt`` + ``.jsonl``; None: ``checkpoints/<profile>/noise/``);
    complete checkpoints of the same run are reused.  ``sequences``: ``{"train": [...]}`` instead of
    ``experiment_sequences(cfg)``; ``pairs``: the clean pairs (default ``evaluation_pairs``).  Each run:
    clean ``accuracy`` (hit rate within ``nr.r_pos``) with its SE and mean ``error_px`` on the pairs,
    ``fit_noisy`` / ``fit_clean`` on its fixed set (NaN with fresh pairs), mean matched ``sigma_px``,
    ``final_loss`` / ``giveup_frac`` of its log.  ``reference``: also score ``reference_scores``.
    """
    from tqdm.auto import tqdm

    check_noise_config(cfg)
    nc = cfg.noise
    train_seqs = list((sequences or experiment_sequences(cfg))["train"])
    check_training_sequences(cfg, train_seqs)
    pairs = evaluation_pairs(cfg) if pairs is None else pairs
    cells = grid(cfg)
    precision = resolve_precision(cfg.precision, device)     # scored as trained
    res = NoiseRuns(pd.DataFrame(columns=list(RUN_COLUMNS)), {}, unit=nc.unit, eval_pairs=len(pairs))
    rows = []
    bar = tqdm(total=len(cells) * len(nc.seeds), desc="noise runs", disable=not progress)
    for seed in nc.seeds:
        draw = draw_pairs(cfg, train_seqs, seed) if fixed_set(cfg) else None
        for level in sorted({n for _, n in cells}):
            data = training_data(cfg, train_seqs, level, seed, draw)
            for loss in [c for c, n in cells if n == level]:
                ckpt = checkpoint_path(cfg, loss, level, seed, out)
                train_noise_run(cfg, loss, level, seed, data, ckpt, device, progress)
                net = load_net(ckpt, device=device)
                loc = powered.localisation(net, pairs, cfg.nr.r_pos, device=device, precision=precision)
                summ = powered.localisation_summary(loc)
                key = ckpt.stem
                res.keys[(loss, float(level), int(seed))] = key
                res.hits[key] = loc["hit"]
                fit = training_fit(net, data, cfg.nr.r_pos, device, precision) if isinstance(data, NoisyPairs) else None
                if fit is not None:
                    res.fits[key] = {"noisy": fit["hit_noisy"], "clean": fit["hit_clean"]}
                sigma = (float(data.sigma_px.mean()) if isinstance(data, NoisyPairs) and loss == "nr" else
                         float(cfg.nr.sigma_px) if loss == "nr_fixed" else np.nan)
                last = last_jsonl_record(log_path(ckpt))
                rows.append({"loss": loss, "level": float(level), "seed": int(seed), "accuracy": summ["accuracy"],
                             "accuracy_se": summ["accuracy_se"], "error_px": summ["error_px"],
                             "fit_noisy": fit["noisy"] if fit else np.nan, "fit_clean": fit["clean"] if fit else np.nan,
                             "sigma_px": sigma if loss != "bce" else np.nan, "steps": train_steps(cfg),
                             "final_loss": last.get("loss", np.nan), "giveup_frac": last.get("giveup_frac", np.nan),
                             "checkpoint": str(ckpt)})
                bar.update(1)
    bar.close()
    res.runs = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    if reference:
        res.reference = reference_scores(cfg, pairs, device, reference_sequences)
    return res


# --------------------------------------------------------------------------- statistics
def _runs(table) -> pd.DataFrame:
    df = table.runs if isinstance(table, NoiseRuns) else table
    df = pd.DataFrame(df) if not isinstance(df, pd.DataFrame) else df
    missing = [c for c in ("loss", "level", "seed", "accuracy") if c not in df.columns]
    if missing:
        raise ValueError(f"noise table lacks columns {missing}; it has {list(df.columns)}")
    bad = sorted(set(df["loss"]) - set(LOSSES))
    if bad:
        raise ValueError(f"noise table: unknown loss(es) {bad}; expected {LOSSES}")
    if df.duplicated(["loss", "level", "seed"]).any():
        raise ValueError("noise table: more than one row for some (loss, level, seed)")
    return df


def accuracy_table(table) -> pd.DataFrame:
    """Per (loss, level): seeds, and mean / min / max over seeds of clean accuracy and of the fits."""
    df = _runs(table)
    g = df.groupby(["loss", "level"], sort=True)
    out = g.size().rename("seeds").to_frame()
    for m in ("accuracy", "fit_noisy", "fit_clean"):
        if m in df.columns:
            col = pd.to_numeric(df[m], errors="coerce").groupby([df["loss"], df["level"]])
            out[f"{m}_mean"], out[f"{m}_min"], out[f"{m}_max"] = col.mean(), col.min(), col.max()
    return out.reset_index()


def paired_over_seeds(res: NoiseRuns, treatment: tuple[str, float], control: tuple[str, float]) -> dict | None:
    """``combine_seeds`` of the per-seed ``paired_diff`` (treatment - control) of clean hits, over the seeds
    where both runs exist (None when none); adds ``per_seed``: ``{seed: diff}``."""
    per, seeds = [], []
    for s in sorted({k[2] for k in res.keys}):
        t, c = (treatment[0], float(treatment[1]), s), (control[0], float(control[1]), s)
        if t in res.keys and c in res.keys:
            per.append(powered.paired_diff(res.hits[res.keys[t]], res.hits[res.keys[c]]))
            seeds.append(s)
    if not per:
        return None
    return {**powered.combine_seeds(per), "seed_list": seeds,
            "per_seed": {str(s): round(d["diff"], 6) for s, d in zip(seeds, per)}}


def comparisons(res: NoiseRuns) -> pd.DataFrame:
    """Every paired comparison, per level: each NR arm - BCE at that level, and BCE at level 0 - BCE at
    that level (the BCE drop); ``diff`` (positive: the first better), ``se``, ``n`` pairs, ``seeds``, ``verdict``."""
    levels = sorted({k[1] for k in res.keys})
    rows = []
    for n in levels:
        pairs = [((loss, n), ("bce", n)) for loss in ("nr", "nr_fixed")]
        if n != 0 and 0.0 in levels:
            pairs.append((("bce", 0.0), ("bce", n)))
        for t, c in pairs:
            d = paired_over_seeds(res, t, c)
            if d is not None:
                rows.append({"level": n, "treatment": f"{t[0]}@{t[1]:g}", "control": f"{c[0]}@{c[1]:g}",
                             "diff": d["diff"], "se": d["se"], "n": d["n"], "seeds": d["seeds"],
                             "verdict": powered.verdict(d["diff"], d["se"])})
    return pd.DataFrame(rows, columns=["level", "treatment", "control", "diff", "se", "n", "seeds", "verdict"])


def bce_drop(res: NoiseRuns, level: float | None = None) -> dict | None:
    """BCE's clean accuracy at level 0 minus at ``level`` (default the largest), paired and combined over
    seeds (positive: BCE got worse with noise); None without both runs."""
    top = max(k[1] for k in res.keys) if level is None else float(level)
    return paired_over_seeds(res, ("bce", 0.0), ("bce", top))


def _fit_at(res: NoiseRuns, loss: str, level: float) -> dict[str, float] | None:
    df = _runs(res)
    sub = df[(df["loss"] == loss) & (df["level"] == float(level))]
    if sub.empty or sub["fit_noisy"].isna().all():
        return None
    return {"noisy": float(sub["fit_noisy"].mean()), "clean": float(sub["fit_clean"].mean())}


def level_label(level: float, unit: str) -> str:
    """``n = 50 px`` or ``n = 0.5 sqrt(wh)``."""
    return f"n = {float(level):g} px" if unit == "px" else f"n = {float(level):g} sqrt(wh)"


def claims(cfg, res: NoiseRuns) -> list[dict[str, Any]]:
    """The ``nr_noise`` claim records at the largest level: NR (sigma matched) vs BCE and NR (sigma fixed)
    vs BCE on clean localisation accuracy (positive: NR better), each with ``bce_drop`` ({diff, se}: BCE at
    level 0 minus at the top level), ``bce_fit`` ({noisy, clean}: BCE's fit to its training labels at the
    top level), the level, unit and the design's target drop."""
    top = max(k[1] for k in res.keys)
    drop = bce_drop(res, top)
    out = []
    for loss in ("nr", "nr_fixed"):
        d = paired_over_seeds(res, (loss, top), ("bce", top))
        if d is None:
            continue
        sigma = "matched to the noise" if loss == "nr" else f"{cfg.nr.sigma_px:g} px"
        out.append(powered.claim_record(
            claim="nr_noise", metric=f"clean localisation accuracy ({res.eval_pairs} held-out pairs), "
                                     f"{level_label(top, res.unit)}",
            unit="fraction", treatment=f"NR (sigma {sigma})", control="BCE", diff=d, seeds=d["seed_list"],
            level=float(top), noise_unit=res.unit, per_seed=d["per_seed"],
            bce_drop=None if drop is None else {"diff": drop["diff"], "se": drop["se"]},
            bce_fit=_fit_at(res, "bce", top), target_bce_drop=TARGET_BCE_DROP,
            target_met=None if drop is None else bool(drop["diff"] >= TARGET_BCE_DROP)))
    return out


def summary_numbers(res: NoiseRuns) -> dict[str, float | int | bool | None]:
    """The flat ``summary`` of the results file: counts, mean clean accuracy per (loss, level), the
    reference's, the claims' differences and BCE's drop and fit at the top level."""
    df = _runs(res)
    top = float(df["level"].max())
    out: dict[str, Any] = {"runs": int(len(df)), "seeds": int(df["seed"].nunique()),
                           "levels": int(df["level"].nunique()), "eval_pairs": int(res.eval_pairs)}
    for r in accuracy_table(df).itertuples():
        out[f"acc_{r.loss}_{level_tag(r.level)}"] = round(float(r.accuracy_mean), 4)
    if res.reference is not None:
        out["acc_random_bn"] = round(float(np.mean(res.reference["hit"])), 4)
    drop = bce_drop(res, top)
    out["bce_drop"] = None if drop is None else round(drop["diff"], 4)
    out["bce_drop_se"] = None if drop is None else round(drop["se"], 4)
    out["bce_drop_target_met"] = None if drop is None else bool(drop["diff"] >= TARGET_BCE_DROP)
    for loss in ("nr", "nr_fixed"):
        d = paired_over_seeds(res, (loss, top), ("bce", top))
        out[f"{loss}_minus_bce_top"] = None if d is None else round(d["diff"], 4)
        out[f"{loss}_minus_bce_top_se"] = None if d is None else round(d["se"], 4)
    for loss in LOSSES:
        fit = _fit_at(res, loss, top)
        if fit is not None:
            out[f"fit_noisy_{loss}_top"], out[f"fit_clean_{loss}_top"] = round(fit["noisy"], 4), round(fit["clean"], 4)
    return out


def describe_trend(res: NoiseRuns) -> str:
    """What the runs show, in words (no claim beyond the numbers)."""
    df = _runs(res)
    acc = accuracy_table(df).set_index(["loss", "level"])
    lines = []
    if res.reference is not None:
        lines.append(f"random_bn (no training): clean accuracy {np.mean(res.reference['hit']):.3f}")
    for (loss, n), r in acc.iterrows():
        fit = "" if pd.isna(r.get("fit_noisy_mean")) else \
            f"; fit to its noisy labels {r['fit_noisy_mean']:.3f}, to the true centres {r['fit_clean_mean']:.3f}"
        lines.append(f"{LOSS_NAMES[loss]:<20} {level_label(n, res.unit):<18}: clean accuracy {r['accuracy_mean']:.3f} "
                     f"[{r['accuracy_min']:.3f}, {r['accuracy_max']:.3f}] over {int(r['seeds'])} seed(s){fit}")
    for r in comparisons(res).itertuples():
        lines.append(f"{r.treatment} - {r.control}: {r.diff:+.3f} +- {r.se:.3f} (paired, {r.seeds} seeds): {r.verdict}")
    top = float(df["level"].max())
    drop = bce_drop(res, top)
    if drop is not None:
        met = "met" if drop["diff"] >= TARGET_BCE_DROP else "not met"
        lines.append(f"BCE's drop from n = 0 to {level_label(top, res.unit)}: {drop['diff']:+.3f} +- {drop['se']:.3f} "
                     f"(target >= {TARGET_BCE_DROP:.2f}: {met})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- Figs. 3 / 4 examples
def _checkpoint_map(res_or_ckpts, seed: int) -> dict[tuple[str, float], Path]:
    if isinstance(res_or_ckpts, (NoiseRuns, pd.DataFrame)):
        df = _runs(res_or_ckpts)
        if "checkpoint" not in df.columns:
            raise ValueError("response_examples: the runs have no 'checkpoint' column (use run_noise_experiment's)")
        sel = df[df["seed"] == seed]
        return {(str(r.loss), float(r.level)): Path(r.checkpoint) for r in sel.itertuples()}
    return {(str(k[0]), float(k[1])): Path(v) for k, v in dict(res_or_ckpts).items()}


def default_picks(cfg, eval_sequences) -> list[tuple[str, int]]:
    """``(sequence, frame)`` shown in Figs. 3 / 4: ``noise.display_sequences`` present among the
    evaluation sequences (else the first two), at ``noise.display_frame`` clipped to the last frame."""
    by_name = {s.name: s for s in eval_sequences}
    names = [n for n in cfg.noise.display_sequences if n in by_name] or [s.name for s in eval_sequences[:2]]
    return [(n, int(max(1, min(cfg.noise.display_frame, len(by_name[n]) - 1)))) for n in names]


def make_tracker(cfg, ckpt, name: str, device="auto"):
    """``SiamFCTracker`` for a checkpoint, with ``cfg.tracker``'s rules (None fields: the backbone's)."""
    return SiamFCTracker(load_net(ckpt, device=device), cfg.tracker, device=device, name=name, precision=cfg.precision)


def _track_to(tracker, seq: Sequence, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Box and raw response (chosen scale, R x R logits) at ``frame`` after tracking from frame 0."""
    tracker.init(seq.image(0), seq.boxes[0].copy())
    box = seq.boxes[0]
    for f in range(1, frame + 1):
        box = tracker.update(seq.image(f))
    return np.asarray(box, dtype=np.float64), np.asarray(tracker.last_responses[tracker.last_scale_id], np.float64)


def _display_crop(img: np.ndarray, true_box: np.ndarray, boxes: list[np.ndarray], model_cfg) -> tuple[np.ndarray, list[int]]:
    """The frame region shown: SiamFC's search region around the true box, grown to hold every box."""
    cx, cy, w, h = crops.xywh_to_cxcywh(true_box)[0]
    _, x_sz = crops.crop_sizes(w, h, model_cfg.exemplar_sz, model_cfg.instance_sz, model_cfg.context)
    lo = np.array([cx - x_sz / 2, cy - x_sz / 2])
    hi = np.array([cx + x_sz / 2, cy + x_sz / 2])
    for b in boxes:
        if np.all(np.isfinite(b)):
            lo = np.minimum(lo, b[:2] - 8)
            hi = np.maximum(hi, b[:2] + b[2:] + 8)
    H, W = img.shape[:2]
    x0, y0 = int(max(0, np.floor(lo[0]))), int(max(0, np.floor(lo[1])))
    x1, y1 = int(min(W, np.ceil(hi[0]))), int(min(H, np.ceil(hi[1])))
    return np.ascontiguousarray(img[y0:y1, x0:x1]), [x0, y0]


def response_examples(cfg, res_or_ckpts, levels=None, picks=None, seed: int | None = None, device="auto",
                      sequences: list[Sequence] | None = None) -> dict[str, Any]:
    """Display frames for Figs. 3 / 4, as plain data.

    ``res_or_ckpts``: ``run_noise_experiment``'s result (or its runs table), or ``{(loss, level):
    checkpoint}``; ``levels``: default ``display_levels`` plus ``fig4_level``; ``picks``: ``[(sequence,
    frame), ...]`` (default ``default_picks``; frame >= 1); ``seed``: whose models (default the first of
    ``noise.seeds``); ``sequences``: display sequences (default ``experiment_sequences(cfg)["eval"]``).
    BCE must exist at every level; NR (sigma matched) is shown where it was trained.

    Returns ``{"seed", "unit", "levels", "display_levels", "fig4_level", "picks": [{"sequence", "frame",
    "image" (uint8 crop), "origin" [x0, y0], "true_box"}], "panels": [{"pick", "level", "true_box",
    "noisy_box", "boxes", "responses" (R x R logits of the chosen scale), "iou", "center_error"}]}``, the
    last four keyed by loss; boxes 0-based ``[x, y, w, h]`` frame px.  The noisy box is the experiment's
    noise model applied to that frame (``noisy_annotations``), for display only: trackers start from the true box.
    """
    from tqdm.auto import tqdm

    nc = cfg.noise
    levels = sorted({float(n) for n in (*nc.display_levels, nc.fig4_level)}) if levels is None else \
        [float(n) for n in levels]
    display = [float(n) for n in nc.display_levels if float(n) in levels] or list(levels)
    fig4 = float(nc.fig4_level) if float(nc.fig4_level) in levels else float(max(levels))
    seed = int(nc.seeds[0] if seed is None else seed)
    ckpts = _checkpoint_map(res_or_ckpts, seed)
    missing = [n for n in levels if ("bce", n) not in ckpts]
    if missing:
        raise ValueError(f"response_examples: no BCE checkpoint at level(s) {missing} for seed {seed}")
    seqs = list(sequences) if sequences is not None else experiment_sequences(cfg)["eval"]
    by_name = {s.name: s for s in seqs}
    picks = default_picks(cfg, seqs) if picks is None else [(str(p[0]), int(p[1])) for p in picks]
    for name, f in picks:
        if name not in by_name:
            raise ValueError(f"response_examples: no evaluation sequence named {name!r}; have {sorted(by_name)}")
        if not 1 <= f < len(by_name[name]):
            raise ValueError(f"response_examples: frame {f} of {name} is outside 1..{len(by_name[name]) - 1}")
    trackers = {key: make_tracker(cfg, path, f"noise_{key[0]}_{level_tag(key[1])}_s{seed}", device)
                for key, path in ckpts.items() if key[1] in levels and key[0] in SHOWN}
    panels: list[dict[str, Any]] = []
    for i, (name, f) in enumerate(tqdm(picks, desc="examples", leave=False)):
        seq = by_name[name]
        true_box = seq.boxes[f].copy()
        for n in levels:
            noisy = noisy_annotations(seq.boxes, n, nc.unit, seed, seq.name)[f]
            panel = {"pick": i, "level": n, "true_box": true_box.tolist(), "noisy_box": noisy.tolist(),
                     "boxes": {}, "responses": {}, "iou": {}, "center_error": {}}
            for loss in [s for s in SHOWN if (s, n) in trackers]:
                box, resp = _track_to(trackers[(loss, n)], seq, f)
                ok = bool(np.all(np.isfinite(true_box)))
                panel["boxes"][loss] = box.tolist()
                panel["responses"][loss] = np.round(resp, 6).tolist()
                panel["iou"][loss] = float(crops.iou(box, true_box)[0]) if ok else None
                panel["center_error"][loss] = float(crops.center_error(box, true_box)[0]) if ok else None
            panels.append(panel)
    out_picks = []
    for i, (name, f) in enumerate(picks):
        seq = by_name[name]
        shown = [np.asarray(b, dtype=np.float64) for p in panels if p["pick"] == i
                 for b in (p["noisy_box"], *p["boxes"].values())]
        image, origin = _display_crop(seq.image(f), seq.boxes[f], shown, cfg.model)
        out_picks.append({"sequence": name, "frame": int(f), "image": image, "origin": origin,
                          "true_box": seq.boxes[f].tolist()})
    return {"seed": seed, "unit": nc.unit, "levels": levels, "display_levels": display, "fig4_level": fig4,
            "picks": out_picks, "panels": panels}


# --------------------------------------------------------------------------- results files
def split_examples(examples: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(JSON-able examples with image keys, {key: image})`` of ``response_examples``' output."""
    picks, images = [], {}
    for i, p in enumerate(examples["picks"]):
        key = f"pick{i}"
        images[key] = np.asarray(p["image"], dtype=np.uint8)
        picks.append({k: v for k, v in p.items() if k != "image"} | {"image_key": key})
    return {**{k: v for k, v in examples.items() if k != "picks"}, "picks": picks}, images


def figure_data(cfg, res: NoiseRuns) -> dict[str, Any]:
    """What Fig. 6 and the fit figure draw, as the results file stores it: ``runs`` (records), ``reference``
    ({name, accuracy, accuracy_se} or None), ``comparisons`` (records) and ``setup`` (unit, levels, ...)."""
    df = _runs(res)
    runs = df.assign(checkpoint=df["checkpoint"].map(checkpoint_name)) if "checkpoint" in df.columns else df
    ref = None
    if res.reference is not None:
        s = powered.localisation_summary(res.reference)
        ref = {"name": res.reference["name"], "accuracy": s["accuracy"], "accuracy_se": s["accuracy_se"],
               "error_px": s["error_px"]}
    nc = cfg.noise
    setup = {"unit": nc.unit, "levels": [float(n) for n in nc.levels], "seeds": [int(s) for s in nc.seeds],
             "grid": [[loss, n] for loss, n in grid(cfg)], "fixed_set": fixed_set(cfg),
             "train_pairs": nc.train_pairs, "epochs": nc.epochs, "steps": train_steps(cfg),
             "batch_size": int(cfg.supervised.batch_size), "train_shift_px": shift_range(cfg) if fixed_set(cfg) else None,
             "search_shift_px": None if fixed_set(cfg) else float(cfg.supervised.search_shift_px),
             "sigma_floor_px": float(nc.sigma_floor_px), "nr_sigma_px": float(cfg.nr.sigma_px),
             "r_pos_px": float(cfg.nr.r_pos), "eval_pairs": int(res.eval_pairs), "backbone": cfg.model.backbone,
             "target_bce_drop": TARGET_BCE_DROP}
    return {"runs": _records(runs), "reference": ref, "comparisons": _records(comparisons(res)), "setup": setup}


def results_record(cfg, res: NoiseRuns, examples: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON record of the experiment (no arrays, timings or machine paths): ``figure_data`` plus
    ``aggregate``, ``claims``, ``summary`` and the Fig. 3 / 4 ``examples``."""
    record = {**figure_data(cfg, res), "aggregate": _records(accuracy_table(res)), "claims": claims(cfg, res),
              "summary": summary_numbers(res)}
    if examples is not None:
        record["examples"] = split_examples(examples)[0]
    return record


def result_arrays(res: NoiseRuns, examples: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The ``.npz`` arrays: per-pair clean hits (``hit_<run key>``, ``hit_random_bn``), training fits
    (``fit_noisy_<run key>``, ``fit_clean_<run key>``) and the example crops (``pick<i>``)."""
    arrays = {f"hit_{k}": np.asarray(v, dtype=bool) for k, v in res.hits.items()}
    for k, f in res.fits.items():
        arrays[f"fit_noisy_{k}"], arrays[f"fit_clean_{k}"] = np.asarray(f["noisy"], bool), np.asarray(f["clean"], bool)
    if res.reference is not None:
        arrays["hit_random_bn"] = np.asarray(res.reference["hit"], dtype=bool)
    if examples is not None:
        arrays.update(split_examples(examples)[1])
    return arrays


def write_results(cfg, res: NoiseRuns, examples: Mapping[str, Any] | None = None) -> Path:
    """Write ``04_noise_robustness.json`` (``results_record``, provenance) and ``.npz`` (``result_arrays``);
    returns the JSON path."""
    return save_results(cfg.profile, NOTEBOOK, results_record(cfg, res, examples), cfg=cfg,
                        arrays=result_arrays(res, examples))


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in df.to_dict(orient="records"):
        rec = {}
        for k, v in row.items():
            v = v.item() if isinstance(v, np.generic) else v
            rec[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        out.append(rec)
    return out


__all__ = ["run_noise_experiment", "NoiseRuns", "grid", "train_steps", "noise_halfwidth", "noisy_annotations",
           "matched_sigma_px", "draw_pairs", "fixed_training_set", "epoch_order", "training_fit", "accuracy_table",
           "comparisons", "bce_drop", "claims", "summary_numbers", "describe_trend", "response_examples",
           "figure_data", "results_record", "write_results", "check_noise_config", "with_levels",
           "experiment_sequences", "checkpoint_path", "default_picks", "evaluation_pairs", "reference_scores"]
