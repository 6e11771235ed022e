"""Stage 3: temporal-correspondence (TC) learning with the NR loss, in progressive rounds.

Starts from BD's checkpoint, alternates mining (``pulkit.method.mining``) and training on the mined
pairs round by round, and hands the final checkpoint to the tracker.
Batch recipe, head calibration, log fields and rounds: docs/modules.md.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pulkit.core.io import last_jsonl_record, read_json, write_json
from pulkit.core.provenance import config_hash, provenance
from pulkit.data.augment import TwoViews
from pulkit.data.sequences import unlabeled
from pulkit.losses import balanced_bce, infonce, nr_loss, positive_masks
from pulkit.method.calibration import calibrate_head
from pulkit.method.loop import (
    DistInfo,
    config_diff,
    is_complete,
    load_training_checkpoint,
    lr_schedule,
    train,
    unwrap,
    warmup_steps,
)
from pulkit.method.mining import load_pairs, mine_pairs, pairs_suffix, save_pairs
from pulkit.method.pairs import CropCache, MinedPairs, hold_decision, validate_pairs
from pulkit.method.reference import estimate_bn_on
from pulkit.method.sampling import BankState, EmbeddingBank, ahm_batch, batch_hardness, rss_batch
from pulkit.models.net import build_net, load_checkpoint, load_net, resolve_device
from pulkit.models.precision import resolve_precision
from pulkit.models.projection import Embedder, ProjectionHead

LOSSES = ("nr", "bce")
SAMPLERS = ("ahm", "rss")


# --------------------------------------------------------------------------- exemplars of a pairs table
class Exemplars:
    """The distinct exemplars ``(video, frame_a, box_a)`` of a pairs table and their rows.

    ``rows[i]`` are the table rows (pairs) of exemplar ``i``; ``video`` / ``frame`` feed the AHM
    exclusion.  ``batch(idx)`` gives their un-augmented exemplar crops (B x 3 x Hz x Wz float32,
    raw pixels) through the pairs dataset's crop cache: the same pixels as the pairs' ``z``.
    """

    def __init__(self, pairs: MinedPairs):
        self.pairs = pairs
        t = pairs.table
        key = t[["video", "frame_a", "xa", "ya", "wa", "ha"]]
        codes = key.groupby(list(key.columns), sort=True, observed=True).ngroup().to_numpy()
        order = np.argsort(codes, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
        self.rows = np.split(order, starts[1:])
        first = np.array([r[0] for r in self.rows], dtype=np.int64)
        self.video = t["video"].to_numpy()[first]
        self.frame = t["frame_a"].to_numpy(np.int64)[first]
        self._first = first

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, idx) -> torch.Tensor:
        rows = self._first[np.asarray(idx, dtype=np.int64)]
        # z never depends on the draws (only x's shift does): a throwaway generator keeps the run's intact
        return self.pairs.batch(rows, torch.Generator().manual_seed(0))["z"]

    def pick_pairs(self, ex_idx: torch.Tensor, generator: torch.Generator) -> np.ndarray:
        """One table row per exemplar, uniform among its rows (draws from ``generator``)."""
        out = np.empty(len(ex_idx), dtype=np.int64)
        for n, e in enumerate(ex_idx.tolist()):
            rows = self.rows[e]
            out[n] = rows[int(torch.randint(len(rows), (1,), generator=generator))]
        return out


def select_exemplars(bank: EmbeddingBank | None, n: int, sampler: str, batch_size: int, exclude_frames: int,
                     generator: torch.Generator, separation: int | None = None) -> tuple[torch.Tensor, bool]:
    """Exemplar indices of one mini-batch (AHM: anchor first) and whether AHM had to narrow its exclusion.

    AHM leaves out the anchor's video within +-``exclude_frames`` frames and, with ``separation``,
    keeps every two members at least that far apart within a video; when too few exemplars
    remain (a small table), only the anchor's own frame is left out (returned flag True).
    """
    if sampler == "rss":
        return rss_batch(n, batch_size, generator=generator), False
    anchor = int(torch.randint(n, (1,), generator=generator))
    try:
        return ahm_batch(bank, batch_size, anchor=anchor, exclude=bank.exclusion(anchor, exclude_frames),
                         generator=generator, separation=separation), False
    except ValueError:
        return ahm_batch(bank, batch_size, anchor=anchor, exclude=bank.exclusion(anchor, 0),
                         generator=generator), True


@torch.no_grad()
def embed_exemplars(embedder: Embedder, exemplars: Exemplars, batch_size: int, device, bn_batches: int = 4,
                    seed: int = 0) -> torch.Tensor:
    """Un-augmented embeddings of every exemplar: N x D on the CPU; the embedder is untouched.

    A copy first estimates its BatchNorm statistics on ``bn_batches`` random batches of exemplars
    (``reference.estimate_bn``): the function the model trains with, not its lagging running statistics.
    """
    model = copy.deepcopy(embedder).to(device)
    estimate_bn_on(model, exemplars.batch, len(exemplars), batch_size, bn_batches, seed=seed, device=device)
    model.eval()
    out = [model(exemplars.batch(np.arange(s, min(s + batch_size, len(exemplars)))).to(device)).float().cpu()
           for s in range(0, len(exemplars), batch_size)]
    return torch.cat(out)


# --------------------------------------------------------------------------- model
def _load_init(cfg, init_ckpt) -> tuple[torch.nn.Module, ProjectionHead, dict]:
    """``Net`` (``cfg.model`` geometry) with ``init_ckpt``'s weights, and its projection head (or a fresh one)."""
    ckpt = load_checkpoint(init_ckpt, map_location="cpu")
    arch = ckpt["arch"] or {}
    if arch.get("backbone") != cfg.model.backbone:
        raise ValueError(f"{init_ckpt}: checkpoint holds a {arch.get('backbone')!r} network, "
                         f"but cfg.model.backbone is {cfg.model.backbone!r}")
    # crop geometry from cfg.model, head (scale, bias) from the checkpoint: a calibrated scale travels on
    net = build_net(dataclasses.replace(cfg.model, head_scale=arch.get("head_scale", cfg.model.head_scale),
                                        head_bias=arch.get("head_bias", cfg.model.head_bias)))
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise ValueError(f"{init_ckpt}: weights do not fit cfg.model ({cfg.model.backbone}): "
                         f"{str(e).splitlines()[0]}") from None
    state = (ckpt.get("extra") or {}).get("projection")
    if state is not None:
        w = state["net.0.weight"]
        proj = ProjectionHead(w.shape[1], w.shape[0], state["net.3.weight"].shape[0])
        proj.load_state_dict(state)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.seed))
            proj = ProjectionHead(net.backbone.out_channels, cfg.bd.proj_hidden, cfg.bd.proj_out)
    if proj.in_dim != net.backbone.out_channels:
        raise ValueError(f"{init_ckpt}: projection head expects {proj.in_dim} channels, "
                         f"the backbone gives {net.backbone.out_channels}")
    return net, proj, ckpt


class Calibration:
    """The round's head calibration as checkpoint state (``extra["calibration"]``): a record only."""

    def __init__(self, record: dict[str, Any] | None = None):
        self.record = dict(record or {})

    def state_dict(self) -> dict[str, Any]:
        return dict(self.record)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.record = dict(state)


def _check(cfg) -> None:
    if cfg.tc.loss not in LOSSES:
        raise ValueError(f"tc.loss must be one of {LOSSES}, got {cfg.tc.loss!r}")
    if cfg.tc.sampler not in SAMPLERS:
        raise ValueError(f"tc.sampler must be one of {SAMPLERS}, got {cfg.tc.sampler!r}")
    if cfg.tc.batch_size < 2 and cfg.tc.lam > 0:
        raise ValueError(f"tc.batch_size must be >= 2 for InfoNCE (lam > 0), got {cfg.tc.batch_size}")
    if cfg.tc.steps_per_round < 1:
        raise ValueError(f"tc.steps_per_round must be >= 1, got {cfg.tc.steps_per_round}")


def log_path(ckpt_path: str | os.PathLike) -> Path:
    """The JSON-lines training log written beside a TC checkpoint."""
    return Path(ckpt_path).with_suffix(".jsonl")


def round_stage(round_idx: int) -> str:
    return f"tc/round{int(round_idx)}"


# --------------------------------------------------------------------------- one round
def train_tc_round(cfg, init_ckpt, pairs_table, sequences, round_idx: int, ckpt_path, resume: bool = True,
                   device="auto", progress: bool = True) -> Path:
    """Train one TC round on mined pairs; return ``ckpt_path`` (a complete ``load_net`` checkpoint).

    ``pairs_table``: a DataFrame in ``PAIR_COLUMNS`` or a file written by ``save_pairs``;
    ``sequences``: the (unlabeled) videos it names; ``init_ckpt``: the weights to start from.
    ``resume=True`` continues an interrupted run bitwise and returns at once when ``ckpt_path`` is
    already complete for this stage and config.  The checkpoint stores the projection head
    (``extra["projection"]``), the AHM bank, the round and the init checkpoint.  After head calibration
    the pairs' crops are held on the training device when ``hold_decision`` says so (``data.hold_crops``;
    the same pixels as the crop cache's), else every batch is cut through the cache.
    """
    _check(cfg)
    tc = cfg.tc
    ckpt_path = Path(ckpt_path)
    stage = round_stage(round_idx)
    if DistInfo.from_env().distributed:
        raise RuntimeError("train_tc_round runs on one process: InfoNCE and AHM need the whole mini-batch on "
                           "one device (launch it without torchrun)")
    if resume and is_complete(ckpt_path):
        done = load_training_checkpoint(ckpt_path)
        if done.get("stage") == stage and done.get("config") == cfg.to_dict() and done.get("step", 0) >= tc.steps_per_round:
            return ckpt_path
    source = str(pairs_table) if not isinstance(pairs_table, pd.DataFrame) else "pairs table"
    table = load_pairs(pairs_table) if not isinstance(pairs_table, pd.DataFrame) else validate_pairs(pairs_table)
    by_name = {str(s.name): unlabeled(s) for s in sequences}
    dev = resolve_device(device)
    net, proj, _ = _load_init(cfg, init_ckpt)
    net, proj = net.to(dev), proj.to(dev)
    pairs = MinedPairs(table, by_name, cfg.model, tc.search_shift_px, seed=cfg.seed, stride=net.stride,
                       source=source, cache=CropCache(disk_mb=cfg.data.crop_cache_disk_mb))
    exemplars = Exemplars(pairs)
    if len(exemplars) < tc.batch_size:
        raise ValueError(f"{source}: {len(exemplars)} distinct exemplars (tracks) for a batch of {tc.batch_size}: "
                         "mine more pairs (more candidates, lower thresholds) or lower tc.batch_size")
    calibration = Calibration()
    if round_idx == 1 and tc.head_calibration is not None:
        calibration.record = calibrate_head(net, pairs, tc.head_calibration, tc.batch_size, cfg.seed, device=dev)
    if hold_decision(cfg.data, dev, pairs):     # data.hold_crops: the pairs' crops as one uint8 tensor on dev
        pairs.hold(dev, progress)
    embedder = Embedder(net.backbone, proj)
    bank = BankState(lambda e, step: EmbeddingBank(e, video=exemplars.video, frame=exemplars.frame, step=step),
                     lambda: embed_exemplars(embedder, exemplars, cfg.bd.bank_batch, dev, seed=cfg.seed),
                     cfg.bd.bank_refresh)
    views = TwoViews(cfg.augment)
    sigma, radius = cfg.nr.sigma_px / net.stride, cfg.nr.r_pos / net.stride

    def batch_fn(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        b = bank.at(step) if tc.sampler == "ahm" else None
        ex, narrowed = select_exemplars(b, len(exemplars), tc.sampler, tc.batch_size, cfg.bd.exclude_frames, g,
                                         cfg.bd.separation_frames)
        batch = pairs.batch(exemplars.pick_pairs(ex, g), g)
        out = {"z": batch["z"], "x": batch["x"], "centers": batch["centers"],
               "confidence": batch["confidence"].mean(),
               "hardness": torch.tensor(batch_hardness(b, ex) if b is not None else float("nan")),
               "ahm_narrowed": torch.tensor(float(narrowed))}
        if tc.lam > 0:
            out["v1"], out["v2"] = views(batch["z"], g)
        return out

    def step_fn(model, batch, step):
        proj.train()
        logits = model(batch["z"], batch["x"])
        if tc.loss == "nr":
            main, stats = nr_loss(logits, sigma, radius, center=batch["centers"], form=cfg.nr.form,
                                  norm=cfg.nr.norm, return_stats=True)
            giveup = stats["giveup_frac"]
        else:
            labels = positive_masks(logits.shape[-2:], radius, batch["centers"], norm=cfg.nr.norm)
            per_sample = balanced_bce(logits, labels, reduction="none")
            main, giveup = per_sample.mean(), float((per_sample.detach() > 1).float().mean())
        out = {f"{tc.loss}_loss": main.detach(), "giveup_frac": giveup, "confidence": batch["confidence"],
               "hardness": batch["hardness"], "ahm_narrowed": batch["ahm_narrowed"]}
        loss = main
        if tc.lam > 0:
            h = unwrap(model).features(torch.cat([batch["v1"], batch["v2"]])).mean(dim=(2, 3))
            e1, e2 = proj(h).chunk(2)
            nce = infonce(e1, e2, cfg.bd.temperature)
            loss = loss + tc.lam * nce
            out["infonce"] = nce.detach()
        else:
            out["infonce"] = float("nan")
        return {"loss": loss, **out}

    params = list(net.parameters()) + list(proj.parameters())
    opt = torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    offset, total = (0, tc.steps_per_round) if tc.restart else ((round_idx - 1) * tc.steps_per_round,
                                                                tc.rounds * tc.steps_per_round)
    sched = lr_schedule(opt, tc.schedule, tc.lr, tc.steps_per_round, tc.lr_end, warmup_steps(tc.warmup, total),
                        offset, total)
    train(net, opt, step_fn, batch_fn, tc.steps_per_round, scheduler=sched, checkpoint=ckpt_path,
          checkpoint_every=tc.checkpoint_every, resume=resume, log=log_path(ckpt_path), log_every=tc.log_every,
          stage=stage, cfg=cfg, device=dev, progress=progress, extra_state={"projection": proj, "bank": bank, "calibration": calibration})
    return ckpt_path


# --------------------------------------------------------------------------- progressive rounds
def file_digest(path: str | os.PathLike) -> str:
    """sha256 (16 hex digits) of a file's bytes: ties mined pairs to the model that mined them."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def mine_round(cfg, init_ckpt: Path, seqs, r: int, span: int, pairs_path: Path, meta_path: Path,
                resume: bool, device, progress: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Mine round ``r``'s pairs with the model of ``init_ckpt``, or reuse the saved table it mined."""
    digest = file_digest(init_ckpt)
    key = {"seed": cfg.seed, "mining": cfg.mining, "model": cfg.model, "bd": cfg.bd}   # what mining reads
    precision = resolve_precision(cfg.precision, device)       # mined pairs depend on the matcher's precision
    want = {"round": r, "span": int(span), "init_digest": digest, "mining_hash": config_hash(key),
            "precision": precision}
    if resume and pairs_path.is_file() and meta_path.is_file():
        meta = read_json(meta_path)
        if all(meta.get(k) == v for k, v in want.items()):
            return load_pairs(pairs_path), meta
    net = load_net(init_ckpt, device="cpu", expect_backbone=cfg.model.backbone)
    table = mine_pairs(net, seqs, cfg.mining, cfg.model, r, span, seed=int(cfg.seed) * 1000 + r,
                       device=device, bd_cfg=cfg.bd, progress=progress, precision=precision)
    stats = dict(table.attrs.get("mining", {}))
    save_pairs(table, pairs_path)
    meta = {**want, **stats, "init_ckpt": str(init_ckpt), "pairs_file": pairs_path.name,
            "provenance": provenance(cfg.profile, cfg.seed, cfg)}
    write_json(meta_path, meta)
    return table, meta


def run_progressive(cfg, bd_ckpt, train_sequences, out_dir, loss: str | None = None, device="auto",
                    resume: bool = True, progress: bool = True) -> list[Path]:
    """Rounds r = 1..``tc.rounds``: mine at span ``mining.spans[r-1]`` with the current model, train
    from the previous round's weights (BD's in round 1).  Returns the round checkpoints.

    Files in ``out_dir``: ``pairs_round{r}.csv`` (``.parquet`` with pyarrow) and its
    ``pairs_round{r}.json`` (mining statistics, the digest of the model that mined it);
    ``tc_round{r}.pt`` (+ ``.jsonl`` log); ``tc_round{r}.json``: the round's summary (pairs kept,
    mean confidence, FB pass rate, final loss, give-up fraction, provenance).  ``loss`` overrides
    ``tc.loss`` ("nr" | "bce").  ``resume=True`` skips rounds whose complete checkpoint was written
    with this config and reuses a round's mined pairs when they came from the same model.
    """
    if loss is not None:
        cfg = cfg.override({"tc": {"loss": loss}})
    _check(cfg)
    rounds, spans = int(cfg.tc.rounds), tuple(cfg.mining.spans)
    if rounds < 1 or len(spans) < rounds:
        raise ValueError(f"tc.rounds = {rounds} needs that many mining.spans, got {spans}")
    bd_ckpt, out_dir = Path(bd_ckpt), Path(out_dir)
    if not bd_ckpt.is_file():
        raise FileNotFoundError(f"{bd_ckpt}: no such BD checkpoint (run train_bd first)")
    seqs = [unlabeled(s) for s in train_sequences]
    if not seqs:
        raise ValueError("run_progressive needs at least one unlabeled training sequence")
    out_dir.mkdir(parents=True, exist_ok=True)
    prev, done = bd_ckpt, []
    for r in range(1, rounds + 1):
        ckpt = out_dir / f"tc_round{r}.pt"
        summary_path = out_dir / f"tc_round{r}.json"
        if resume and is_complete(ckpt):
            c = load_training_checkpoint(ckpt)
            saved = c.get("config") or {}
            if c.get("stage") != round_stage(r) or (saved.get("tc") or {}).get("loss") != cfg.tc.loss:
                raise ValueError(f"{ckpt}: a complete checkpoint of another run (stage {c.get('stage')!r}, loss "
                                 f"{(saved.get('tc') or {}).get('loss')!r}); use another out_dir or resume=False")
            changed = config_diff(saved, cfg.to_dict())
            if changed:            # the user changed the config: this round and every later one are retrained
                warnings.warn(f"{ckpt}: trained under another config (changed: {', '.join(changed[:8])}); "
                              f"retraining rounds {r}..{rounds}", stacklevel=2)
                resume = False
            elif summary_path.is_file():
                done.append(ckpt)
                prev = ckpt
                continue
        span = spans[r - 1]
        pairs_path = out_dir / f"pairs_round{r}{pairs_suffix()}"
        table, meta = mine_round(cfg, prev, seqs, r, span, pairs_path, out_dir / f"pairs_round{r}.json",
                                  resume, device, progress)
        train_tc_round(cfg, prev, table, seqs, r, ckpt, resume=resume, device=device, progress=progress)
        last = last_jsonl_record(log_path(ckpt))
        write_json(summary_path, {
            "round": r, "span": int(span), "loss_kind": cfg.tc.loss, "sampler": cfg.tc.sampler,
            "init_ckpt": str(prev), "checkpoint": ckpt.name, "pairs_file": pairs_path.name,
            "pairs": int(len(table)), "tracks": meta.get("tracks"), "fb_pass_rate": meta.get("fb_pass_rate"),
            "mean_confidence": float(table["confidence"].mean()) if len(table) else float("nan"),
            "mining_seconds": meta.get("seconds"), "mining_updates_per_s": meta.get("updates_per_s"),
            "steps": int(cfg.tc.steps_per_round), "final_loss": last.get("loss"),
            f"final_{cfg.tc.loss}_loss": last.get(f"{cfg.tc.loss}_loss"), "final_infonce": last.get("infonce"),
            "final_giveup_frac": last.get("giveup_frac"),
            "calibration": (load_training_checkpoint(ckpt).get("extra") or {}).get("calibration") or None,
            "provenance": provenance(cfg.profile, cfg.seed, cfg)})
        done.append(ckpt)
        prev = ckpt
    return done
