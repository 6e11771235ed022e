"""Supervised baselines: SiamFC (AlexNet) and SiamDW (CIResNet-22) on ground-truth pairs.

The trackers PUL is compared with (the paper profile's noise runs too; the short profiles' noise
experiment trains on its fixed noisy set in ``pulkit.experiments.noise_robustness``).  Run recipe and
log fields: docs/modules.md.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch

from pulkit.data import curate, loader
from pulkit.data.inventory import profile_sequences
from pulkit.data.sequences import DataError, Sequence
from pulkit.data.synthetic import video_name
from pulkit.losses import balanced_bce, nr_loss, positive_masks
from pulkit.method.calibration import calibrate_head
from pulkit.method.loop import config_diff, is_complete, load_training_checkpoint, lr_schedule, train, warmup_steps
from pulkit.method.pairs import CropCache, GroundTruthPairs, hold_decision
from pulkit.models.net import build_net, resolve_device

LOSSES = ("bce", "nr")
BACKBONES = ("alexnet", "ciresnet22")
# The parts of a Config that determine a supervised run's weights (compared before reusing a checkpoint).
TRAINING_KEYS = ("seed", "data", "model", "nr", "supervised")


def stage_name(loss: str) -> str:
    """The loop's stage name of a supervised run (checkpoints of another stage are never resumed)."""
    return f"supervised/{loss}"


def log_path(ckpt_path: str | os.PathLike) -> Path:
    """The JSON-lines training log written beside a supervised checkpoint."""
    return Path(ckpt_path).with_suffix(".jsonl")


def run_config(cfg, loss: str | None = None, noise_px: float | None = None, seed: int | None = None,
               backbone: str | None = None):
    """``cfg`` with this run's loss, noise, seed and backbone written in (what the checkpoint records)."""
    loss = cfg.supervised.loss if loss is None else loss
    backbone = cfg.model.backbone if backbone is None else backbone
    if loss not in LOSSES:
        raise ValueError(f"supervised loss must be one of {LOSSES}, got {loss!r}")
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    noise = float(cfg.supervised.noise_px if noise_px is None else noise_px)
    if not noise >= 0:
        raise ValueError(f"noise_px must be >= 0 (pixels), got {noise_px}")
    return cfg.override({"supervised": {"loss": loss, "noise_px": noise}, "model": {"backbone": backbone}},
                        seed=int(cfg.seed if seed is None else seed))


def training_signature(config: dict[str, Any] | None) -> dict[str, Any]:
    """The entries of a ``Config.to_dict()`` that determine a run's weights (``TRAINING_KEYS``)."""
    return {k: (config or {}).get(k) for k in TRAINING_KEYS}


def matches(ckpt_path: str | os.PathLike, cfg) -> bool:
    """True when ``ckpt_path`` is a complete supervised checkpoint of the run ``cfg`` describes
    (same stage and training config; stages it does not use, e.g. the tracker, may differ)."""
    if not is_complete(ckpt_path):
        return False
    ck = load_training_checkpoint(ckpt_path)
    return (ck.get("stage") == stage_name(cfg.supervised.loss)
            and training_signature(ck.get("config")) == training_signature(cfg.to_dict())
            and int(ck.get("step", 0)) >= int(cfg.supervised.steps))


# --------------------------------------------------------------------------- data
def check_training_sequences(cfg, sequences: Iterable[Any]) -> list[Sequence]:
    """The sequences as a list, or a ``DataError`` when one is unlabeled or an evaluation sequence.

    Evaluation-only are the bundled ``data.shared_eval`` sequences and the synthetic val split
    (its names come from ``data.synthetic_val_seed``).
    """
    seqs = list(sequences)
    if not seqs:
        raise DataError("supervised training needs at least one labelled training sequence, got none")
    d = cfg.data
    forbidden = set(d.shared_eval) | {video_name(d.synthetic_val_seed, i) for i in range(d.synthetic_val_videos)}
    for s in seqs:
        if not isinstance(s, Sequence):
            raise DataError(f"{getattr(s, 'name', s)!r}: supervised training needs labelled Sequence objects, "
                            f"got {type(s).__name__}")
        if s.name in forbidden:
            raise DataError(f"{s.name}: an evaluation-only sequence cannot be trained on "
                            "(data.shared_eval / the synthetic val split)")
        if s.boxes is None:
            raise DataError(f"{s.name}: no ground truth (supervised training needs labelled sequences)")
    return seqs


def supervised_sequences(cfg, data_root=None) -> list[Sequence]:
    """The profile's labelled training sequences: its training video minus the bundled sequences
    (``data.shared_train`` is unlabeled-only video).  Synthetic train split for smoke / cpu."""
    train = [s for s in profile_sequences(cfg, data_root)["train"] if s.attributes.get("source") != "shared"]
    if not train:
        raise DataError(f"profile {cfg.profile!r}: no labelled training sequences among data.train_sources "
                        f"{cfg.data.train_sources} (the bundled sequences are unlabeled-only)")
    return check_training_sequences(cfg, train)


def batch_source(cfg, pairs: GroundTruthPairs, device, progress: bool = True):
    """A run's ``batch_fn(step, generator)`` -> ``z``, ``x``, ``centers`` on ``device``, from one of three paths.

    Curated loader: every training sequence is curated (``attributes["curated"]``) and ``data.loader_workers``
    > 0: ``pulkit.data.loader.supervised_batches`` over their stores, the run's noisy boxes when
    ``noise_px > 0`` (batches a function of the seed and the step, drawn in worker processes).  Otherwise
    ``pairs.sample_batch``: from its crops held on ``device`` when ``hold_decision`` says so
    (``data.hold_crops``), else through the crop cache; the same pixels either way.
    """
    seqs = pairs.sequences
    if cfg.data.loader_workers > 0 and all(s.attributes.get("curated") for s in seqs):
        stores = [curate.open_store(r) for r in sorted({str(s.attributes["curated"]) for s in seqs})]
        boxes = {s.name: b for s, b in zip(seqs, pairs.noisy_boxes)} if pairs.noise_px > 0 else None
        batches = loader.supervised_batches(cfg, stores, device, boxes=boxes, sequences=seqs)
    else:
        if hold_decision(cfg.data, device, pairs):
            pairs.hold(device, progress)

        def batches(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
            return pairs.sample_batch(cfg.supervised.batch_size, g)

    def batch_fn(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        b = batches(step, g)
        return {"z": b["z"], "x": b["x"], "centers": b["centers"]}
    return batch_fn


# --------------------------------------------------------------------------- the step
def response_loss(logits: torch.Tensor, centers: torch.Tensor, loss: str, nr_cfg, stride: int
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
    """The response-map loss of a batch and its log metrics.

    ``logits``: B x 1 x R x R; ``centers``: B x 2 label offsets (dx, dy) in cells.  ``bce``:
    balanced BCE on the L1 diamond (``nr_cfg.norm``) of radius ``r_pos / stride`` cells; ``nr``: the
    NR loss with sigma ``sigma_px / stride`` cells and the same positive region.
    """
    radius = nr_cfg.r_pos / stride
    if loss == "nr":
        value, stats = nr_loss(logits, nr_cfg.sigma_px / stride, radius, center=centers, form=nr_cfg.form,
                               norm=nr_cfg.norm, return_stats=True)
        return value, {"nr_loss": value.detach(), "giveup_frac": stats["giveup_frac"], "mean_Eg": stats["mean_Eg"]}
    if loss == "bce":
        labels = positive_masks(logits.shape[-2:], radius, centers, norm=nr_cfg.norm).to(logits.device)
        per_sample = balanced_bce(logits, labels, reduction="none")
        value = per_sample.mean()
        return value, {"bce_loss": value.detach(), "giveup_frac": float((per_sample.detach() > 1).float().mean())}
    raise ValueError(f"supervised loss must be one of {LOSSES}, got {loss!r}")


def build_initial_net(model_cfg, seed: int):
    """A fresh ``Net`` whose weights depend on ``seed`` alone (global RNG state left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build_net(model_cfg)


# --------------------------------------------------------------------------- one run
def train_supervised(cfg, sequences, ckpt_path, loss: str | None = None, noise_px: float = 0, seed: int | None = None,
                     resume: bool = True, device="auto", backbone: str | None = None, progress: bool = True,
                     cache=None) -> Path:
    """Train a supervised SiamFC / SiamDW on ground-truth pairs of ``sequences``; return ``ckpt_path``.

    ``loss``: ``bce`` | ``nr`` (None: ``cfg.supervised.loss``); ``noise_px``: annotation noise n in
    frame pixels (0: the true boxes); ``seed``: the run's seed (None: ``cfg.seed``), which fixes the
    initial weights, the noisy dataset and the batch order; ``backbone``: ``alexnet`` | ``ciresnet22``
    (None: ``cfg.model.backbone``).  Steps, batch, optimiser: ``cfg.supervised``; crop geometry:
    ``cfg.model``.  The checkpoint records the run's config with these values filled in
    (``run_config``).  ``resume=True`` returns at once when ``ckpt_path`` is complete for this run,
    and continues an interrupted one bitwise; ``resume=False`` starts afresh.  ``cache``: a
    ``pulkit.method.pairs.CropCache`` (None: the default on-disk cache).

    Data path (``batch_source``): curated training sequences with ``data.loader_workers`` > 0 read their
    batches from the curated stores through DataLoader workers; any other run samples ``GroundTruthPairs``,
    its crops held on the training device when ``data.hold_crops`` says so (``auto``: a CUDA device and a
    store within ``data.hold_crops_mb``), else cut through the crop cache.  Head calibration always reads
    ``GroundTruthPairs`` through the cache.
    """
    rcfg = run_config(cfg, loss, noise_px, seed, backbone)
    sup = rcfg.supervised
    if sup.steps < 1 or sup.batch_size < 1:
        raise ValueError(f"supervised.steps and batch_size must be >= 1, got {sup.steps}, {sup.batch_size}")
    ckpt_path = Path(ckpt_path)
    if resume and matches(ckpt_path, rcfg):
        return ckpt_path
    if resume and ckpt_path.is_file():
        old = load_training_checkpoint(ckpt_path)
        changed = config_diff(training_signature(old.get("config")), training_signature(rcfg.to_dict()))
        if old.get("stage") != stage_name(sup.loss) or changed:
            warnings.warn(f"{ckpt_path}: trained under another run ({'changed: ' + ', '.join(changed[:8]) if changed else 'stage ' + repr(old.get('stage'))}); "
                          "retraining from scratch", stacklevel=2)
            resume = False
    seqs = check_training_sequences(rcfg, sequences)
    dev = resolve_device(device)
    net = build_initial_net(rcfg.model, rcfg.seed)
    pairs = GroundTruthPairs(seqs, rcfg.model, sup.max_gap, sup.search_shift_px, noise_px=sup.noise_px,
                             seed=rcfg.seed, stride=net.stride,
                             cache=cache if cache is not None else CropCache(disk_mb=rcfg.data.crop_cache_disk_mb))
    if sup.head_calibration is not None:       # a fresh CIResNet-22 head gives logits ~ +-100: give-up / saturation
        calibrate_head(net, pairs, sup.head_calibration, sup.batch_size, rcfg.seed, device=dev)
    batch_fn = batch_source(rcfg, pairs, dev, progress)

    def step_fn(model, batch, step):
        value, metrics = response_loss(model(batch["z"], batch["x"]), batch["centers"], sup.loss, rcfg.nr,
                                       net.stride)
        return {"loss": value, **metrics}

    opt = torch.optim.SGD(net.parameters(), lr=sup.lr, momentum=sup.momentum, weight_decay=sup.weight_decay)
    sched = lr_schedule(opt, sup.schedule, sup.lr, sup.steps, sup.lr_end, warmup_steps(sup.warmup, sup.steps))
    train(net, opt, step_fn, batch_fn, sup.steps, scheduler=sched, checkpoint=ckpt_path,
          checkpoint_every=sup.checkpoint_every, resume=resume, log=log_path(ckpt_path), log_every=sup.log_every,
          stage=stage_name(sup.loss), cfg=rcfg, device=dev, progress=progress, resume_keys=TRAINING_KEYS)
    return ckpt_path
