"""Stage 1 of PUL: background discrimination (BD) by contrastive learning on unlabeled video.

Learns the backbone from candidate patches with InfoNCE over AHM or RSS batches; its checkpoint
starts TC mining and learning and also tracks on its own ("BD only").
Step recipe, bank, checkpoint and log: docs/modules.md.
"""
from __future__ import annotations

import copy
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pulkit.core import paths
from pulkit.core.io import atomic_write_bytes
from pulkit.core.provenance import seed_everything
from pulkit.data.augment import TwoViews
from pulkit.data.sequences import unlabeled
from pulkit.losses import infonce
from pulkit.method.candidates import CandidateCrops, sample_candidates, table_hash
from pulkit.method.loop import DistInfo, is_complete, load_training_checkpoint, lr_schedule, train, warmup_steps
from pulkit.method.reference import estimate_bn_on
from pulkit.method.sampling import BankState, EmbeddingBank, ahm_batch, batch_hardness, rss_batch
from pulkit.models.net import build_net, fuse_bn, load_checkpoint, load_net, resolve_device
from pulkit.models.projection import Embedder, ProjectionHead

SAMPLERS = ("ahm", "rss")


# --------------------------------------------------------------------------- pieces
def bd_candidates(cfg, sequences, progress: bool = True) -> tuple[Any, CandidateCrops]:
    """The candidate table and its cached exemplar crops for ``cfg`` (labels never read)."""
    seqs = [unlabeled(s) for s in sequences]
    if not seqs:
        raise ValueError("train_bd needs at least one unlabeled training sequence")
    # frame_stride is already applied by the loader (pulkit.data.inventory.profile_sequences)
    table = sample_candidates(seqs, cfg.bd, cfg.seed, progress=progress)
    if len(table) < cfg.bd.batch_size:
        raise ValueError(f"only {len(table)} candidates were found (batch_size {cfg.bd.batch_size}): "
                         "give more frames or lower bd.texture_min")
    crops = CandidateCrops(table, cfg.bd.crop_sz, cfg.model.context, progress=progress)
    return table, crops


def build_embedder(cfg, backbone: torch.nn.Module) -> Embedder:
    """Backbone -> GAP -> ``ProjectionHead(out_channels, proj_hidden, proj_out)``."""
    head = ProjectionHead(backbone.out_channels, cfg.bd.proj_hidden, cfg.bd.proj_out)
    return Embedder(backbone, head)


def embed_crops(embedder: Embedder, crops: CandidateCrops, batch_size: int = 256,
                device: str | torch.device = "auto", progress: bool = True, bn_batches: int | None = 4,
                seed: int = 0) -> torch.Tensor:
    """Un-augmented embeddings of every candidate crop: N x D float32 on the CPU, unit rows.

    With ``bn_batches`` (the bank during training), a copy of the embedder first estimates its
    BatchNorm statistics on that many random batches of the crops (``reference.estimate_bn``), so the
    bank is the function the model trains with (batch statistics), not its lagging running statistics;
    ``None`` keeps the embedder's running statistics (a trained model).  The copy is BN-folded and
    channels-last (``fuse_bn``); the embedder itself is untouched.
    """
    device = resolve_device(device)
    model = embedder
    if bn_batches:
        model = copy.deepcopy(embedder).to(device)
        estimate_bn_on(model, crops.batch, len(crops), batch_size, bn_batches, seed=seed, device=device)
    model = fuse_bn(model).to(device=device, memory_format=torch.channels_last)
    out = []
    with torch.inference_mode():
        starts = range(0, len(crops), batch_size)
        for s in tqdm(starts, desc="embedding bank", unit="batch", disable=not progress, leave=False):
            x = crops.batch(np.arange(s, min(s + batch_size, len(crops))))
            out.append(model(x.to(device).contiguous(memory_format=torch.channels_last)).float().cpu())
    return torch.cat(out)


def make_bank(embeddings: torch.Tensor, table, step: int = 0) -> EmbeddingBank:
    """An ``EmbeddingBank`` over the candidates, with their video and frame for the AHM exclusion."""
    return EmbeddingBank(embeddings, video=table["video"].to_numpy(), frame=table["frame"].to_numpy(), step=step)


def select_batch(bank: EmbeddingBank, sampler: str, batch_size: int, exclude_frames: int,
                 generator: torch.Generator, separation: int | None = None) -> torch.Tensor:
    """Candidate indices (LongTensor) of one mini-batch, drawn with ``generator``.

    ``"ahm"``: an anchor uniform over the bank, then its ``batch_size - 1`` nearest neighbours
    (most similar first) outside the anchor's video within +-``exclude_frames`` frames and, with
    ``separation``, no two members from one video within +-``separation`` frames.
    ``"rss"``: ``batch_size`` distinct candidates uniformly at random.
    """
    if sampler == "ahm":
        anchor = int(torch.randint(len(bank), (1,), generator=generator))
        return ahm_batch(bank, batch_size, anchor=anchor, exclude=bank.exclusion(anchor, exclude_frames),
                         separation=separation)
    if sampler == "rss":
        return rss_batch(len(bank), batch_size, generator=generator)
    raise ValueError(f"unknown BD sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")


def _check_sampler(sampler: str) -> str:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown BD sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    return sampler


def log_path(ckpt_path: str | os.PathLike) -> Path:
    """The JSON-lines training log written beside a BD checkpoint."""
    return Path(ckpt_path).with_suffix(".jsonl")


# --------------------------------------------------------------------------- training
def train_bd(cfg, sequences, ckpt_path: str | os.PathLike, sampler: str | None = None, resume: bool = True,
             device: str | torch.device = "auto", progress: bool = True) -> Path:
    """Train the BD model on unlabeled ``sequences``; return the checkpoint path.

    ``sampler`` overrides ``cfg.bd.sampler`` (``"ahm"`` | ``"rss"``); the checkpoint records the
    effective config.  ``resume=True`` continues an interrupted run (bitwise) and returns at once
    when the checkpoint is already complete; ``resume=False`` starts afresh.  Sequences are wrapped
    in ``unlabeled()``: a label read raises ``LabelAccessError``.
    """
    sampler = _check_sampler(sampler or cfg.bd.sampler)
    cfg = cfg.override({"bd": {"sampler": sampler}})
    bd = cfg.bd
    ckpt_path = Path(ckpt_path)
    stage = f"bd/{sampler}"
    if DistInfo.from_env().distributed:
        raise RuntimeError("train_bd runs on one process: InfoNCE needs the whole mini-batch on one device "
                           "(launch it without torchrun)")
    if resume and is_complete(ckpt_path):
        done = load_training_checkpoint(ckpt_path)
        if done.get("stage") == stage and done.get("config") == cfg.to_dict() and done.get("step", 0) >= bd.steps:
            return ckpt_path

    table, crops = bd_candidates(cfg, sequences, progress)
    dev = resolve_device(device)
    seed_everything(cfg.seed)                  # the initial weights are a function of the seed
    net = build_net(cfg.model).to(dev)
    embedder = build_embedder(cfg, net.backbone).to(dev)
    head = embedder.head
    views = TwoViews(cfg.augment)
    bank = BankState(lambda e, step: make_bank(e, table, step),
                     lambda: embed_crops(embedder, crops, bd.bank_batch, dev, progress, seed=cfg.seed),
                     bd.bank_refresh)

    def batch_fn(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        b = bank.at(step)
        idx = select_batch(b, sampler, bd.batch_size, bd.exclude_frames, g, bd.separation_frames)
        v1, v2 = views(crops.batch(idx.numpy()), g)
        return {"v1": v1, "v2": v2,
                "hardness": torch.tensor(float(batch_hardness(b, idx)))}

    def step_fn(model, batch, step):
        embedder.train()                       # one forward over both views: BatchNorm sees all 2B
        z1, z2 = embedder(torch.cat([batch["v1"], batch["v2"]])).chunk(2)
        return {"loss": infonce(z1, z2, bd.temperature), "hardness": batch["hardness"],
                "ahm": float(sampler == "ahm")}

    params = list(net.backbone.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=bd.lr, momentum=bd.momentum, weight_decay=bd.weight_decay)
    sched = lr_schedule(opt, "cosine", bd.lr, bd.steps, warmup=warmup_steps(bd.warmup, bd.steps))
    train(net, opt, step_fn, batch_fn, bd.steps, scheduler=sched, checkpoint=ckpt_path,
          checkpoint_every=bd.checkpoint_every, resume=resume, log=log_path(ckpt_path), log_every=bd.log_every,
          stage=stage, cfg=cfg, device=dev, progress=progress,
          extra_state={"projection": head, "bank": bank})
    return ckpt_path


# --------------------------------------------------------------------------- trained model
def load_projection(ckpt: str | os.PathLike | dict, device: str | torch.device = "auto") -> ProjectionHead:
    """The projection head saved in a BD checkpoint (eval mode)."""
    ckpt = ckpt if isinstance(ckpt, dict) else load_checkpoint(ckpt, map_location="cpu")
    state = (ckpt.get("extra") or {}).get("projection")
    if state is None:
        raise ValueError("checkpoint has no projection head (extra['projection']): not a BD checkpoint")
    w = state["net.0.weight"]
    head = ProjectionHead(w.shape[1], w.shape[0], state["net.3.weight"].shape[0])
    head.load_state_dict(state)
    return head.to(resolve_device(device)).eval()


def load_embedder(ckpt_path: str | os.PathLike, device: str | torch.device = "auto") -> Embedder:
    """The trained BD embedding (backbone + projection head) of a checkpoint, eval mode."""
    ckpt = load_checkpoint(ckpt_path, map_location="cpu")
    net = load_net(ckpt, device)
    return Embedder(net.backbone, load_projection(ckpt, device)).eval()


def final_bank(cfg, ckpt_path: str | os.PathLike, sequences, device: str | torch.device = "auto",
               progress: bool = True) -> tuple[Any, CandidateCrops, EmbeddingBank]:
    """``(table, crops, bank)``: the candidates of ``cfg`` embedded by the trained model.

    The embeddings are cached under ``cache_dir()/bd_banks`` keyed by the checkpoint's bytes and the
    candidate table, so the figure helpers below share one pass over the candidates.
    """
    table, crops = bd_candidates(cfg, sequences, progress)
    ckpt_path = Path(ckpt_path)
    digest = hashlib.sha256(ckpt_path.read_bytes()).hexdigest()[:16] if ckpt_path.is_file() else None
    if digest is None:
        raise FileNotFoundError(f"{ckpt_path}: no such BD checkpoint (run train_bd first)")
    cache = paths.cache_dir() / "bd_banks" / f"bank_{digest}_{table_hash(table, crops.crop_sz, crops.context)}.npy"
    if cache.is_file():
        emb = torch.from_numpy(np.load(cache))
    else:
        emb = embed_crops(load_embedder(ckpt_path, device), crops, cfg.bd.bank_batch, device, progress, bn_batches=None)
        buf = io.BytesIO()
        np.save(buf, emb.numpy())
        atomic_write_bytes(cache, buf.getvalue())
    return table, crops, make_bank(emb, table)


def _batch_record(table, crops: CandidateCrops, bank: EmbeddingBank, idx: torch.Tensor) -> dict[str, Any]:
    ids = idx.numpy().astype(np.int64)
    return {"cand_ids": ids, "crops": crops[ids], "hardness": float(batch_hardness(bank, idx)),
            "candidates": table.iloc[ids].reset_index(drop=True)}


def bd_batches(cfg, ckpt_path: str | os.PathLike, sequences, batch_size: int | None = None, seed: int = 0,
               device: str | torch.device = "auto", progress: bool = True) -> dict[str, Any]:
    """One AHM and one RSS mini-batch under the trained model's bank (supplementary Figs. 1 and 2).

    Returns ``{"ahm": rec, "rss": rec, "batch_size", "seed", "n_candidates"}`` with each ``rec``:
    ``cand_ids`` (int64 B, AHM anchor first), ``crops`` (uint8 B x S x S x 3, un-augmented),
    ``hardness`` (mean cosine similarity of the first candidate to the others in the bank) and
    ``candidates`` (their rows of the candidate table).
    """
    table, crops, bank = final_bank(cfg, ckpt_path, sequences, device, progress)
    b = int(batch_size or cfg.bd.batch_size)
    g = torch.Generator().manual_seed(int(seed))
    out = {name: _batch_record(table, crops, bank, select_batch(bank, name, b, cfg.bd.exclude_frames, g,
                                                                          cfg.bd.separation_frames))
           for name in SAMPLERS}
    return {**out, "batch_size": b, "seed": int(seed), "n_candidates": len(table)}


def hardness_stats(cfg, ckpt_path: str | os.PathLike, sequences, batch_size: int | None = None, seed: int = 0,
                   n_batches: int = 50, device: str | torch.device = "auto", progress: bool = True) -> dict[str, Any]:
    """Hardness of ``n_batches`` AHM and RSS batches under the trained model's bank.

    Returns ``{"ahm": {"mean", "std", "values"}, "rss": {...}, "n_batches", "batch_size", "seed"}``;
    hardness is the mean cosine similarity of a batch's first candidate (the AHM anchor) to the others.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    _, _, bank = final_bank(cfg, ckpt_path, sequences, device, progress)
    b = int(batch_size or cfg.bd.batch_size)
    g = torch.Generator().manual_seed(int(seed))
    out: dict[str, Any] = {"n_batches": int(n_batches), "batch_size": b, "seed": int(seed)}
    for name in SAMPLERS:
        vals = np.array([float(batch_hardness(bank, select_batch(bank, name, b, cfg.bd.exclude_frames, g,
                                                                          cfg.bd.separation_frames)))
                         for _ in range(n_batches)])
        out[name] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if n_batches > 1 else 0.0,
                     "values": vals.tolist()}
    return out
