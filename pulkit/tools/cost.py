"""Estimated GPU cost of a profile: ``python -m pulkit.tools.cost --profile paper [--markdown]``.

FLOPs per step from the layer shapes (forward hooks on a meta-device forward) x the steps, passes and
frames of every stage / an assumed bf16 throughput, per notebook on 1 and on N GPUs, plus the disk
the curated crops take.  Nothing here runs on a GPU; assumptions and results: README.md ("Cost").
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
from dataclasses import dataclass

import torch
import torch.nn as nn

from pulkit.core import artifacts
from pulkit.core.config import PROFILES, ConfigError, load_config
from pulkit.data.sequences import load_shared
from pulkit.experiments import background_discrimination as bdx
from pulkit.experiments import noise_robustness as nzx
from pulkit.models.backbones import build_backbone

RES_TRACKERS = ("ResPUL", "SiamDW (supervised)")   # trained trackers on CIResNet-22; every other one is AlexNet


@dataclass(frozen=True)
class Assumptions:
    """The device model of the estimate (command-line options override each field)."""
    peak_tflops: float = 989.0      # H100 SXM5 dense bf16 tensor-core peak, TFLOP/s (1,979 is with 2:4 sparsity)
    utilisation: float = 0.05       # share of that peak a forward / backward reaches (issue 14's 2,000 AlexNet pairs/s is 4 %)
    step_ms: float = 2.0            # floor per training step: kernel launches of forward, backward, SGD at small batch
    frame_ms: float = 1000 / 300    # floor per tracked frame or mining frame step (issue 14's 300 fps tracking target)
    gpus: int = 8                   # the multi-GPU column: torchrun with this many ranks
    ddp_efficiency: float = 0.7     # DDP speed-up = gpus x this, on the FLOPs of the stages the loop runs under torchrun
    train_factor: float = 3.0       # forward + backward = 3 x the forward's FLOPs

    def __post_init__(self):
        for name in ("peak_tflops", "utilisation", "train_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"cost assumption {name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.utilisation <= 1 or not 0 < self.ddp_efficiency <= 1:
            raise ValueError(f"utilisation and ddp_efficiency must lie in (0, 1], got {self.utilisation}, "
                             f"{self.ddp_efficiency}")
        if self.step_ms < 0 or self.frame_ms < 0 or self.gpus < 1:
            raise ValueError(f"step_ms and frame_ms must be >= 0 and gpus >= 1, got {self.step_ms}, "
                             f"{self.frame_ms}, {self.gpus}")

    @property
    def flops_per_s(self) -> float:
        return self.peak_tflops * 1e12 * self.utilisation


# Real datasets are never read here: (videos, mean frames per video), approximate published sizes.
# GOT-10k: 10,000+ videos with 1.5 M boxes (about 150 per video), train 9,335 and val 180 videos;
# ILSVRC-2015 VID train: 3,862 snippets, about 1.12 M frames; OTB-2015: 100 sequences, about 59,000
# frames; VOT2016: 60 sequences, about 21,500 frames.  One box per frame (VID has more: a lower bound).
REAL_DATA: dict[str, tuple[int, float]] = {
    "got10k_train": (9335, 150.0), "vid_train": (3862, 290.0), "got10k_val": (180, 150.0),
    "otb": (100, 590.0), "vot": (60, 358.0),
}


# --------------------------------------------------------------------------- FLOPs from layer shapes
def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-adds of one ``Conv2d`` or ``Linear`` call that produced ``output`` (other layers: 0)."""
    if isinstance(module, nn.Conv2d):
        k = math.prod(module.kernel_size)
        return int(output.numel()) * (module.in_channels // module.groups) * k
    if isinstance(module, nn.Linear):
        return int(output.numel()) * module.in_features
    return 0


def count_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-adds of every conv and linear layer in one forward of ``module`` on ``inputs``
    (forward hooks; meta tensors give the shapes without computing anything)."""
    total = [0]

    def hook(m, _inputs, output):
        total[0] += layer_macs(m, output)

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total[0]


@functools.lru_cache(maxsize=None)
def _meta_backbone(name: str) -> nn.Module:
    with torch.device("meta"):
        return build_backbone(name).eval()


@functools.lru_cache(maxsize=None)
def backbone_flops(name: str, size: int) -> float:
    """FLOPs (2 x multiply-adds) of phi on one ``size`` x ``size`` crop."""
    return 2.0 * count_macs(_meta_backbone(name), torch.empty(1, 3, size, size, device="meta"))


def xcorr_flops(name: str, exemplar_sz: int, instance_sz: int) -> float:
    """FLOPs of the cross-correlation of one exemplar's features with one search crop's."""
    net = _meta_backbone(name)
    hz, hx = net.output_size(exemplar_sz), net.output_size(instance_sz)
    r = hx - hz + 1
    return 2.0 * net.out_channels * hz * hz * r * r


def projection_flops(name: str, hidden: int, out: int) -> float:
    """FLOPs of the projection MLP on one pooled feature vector."""
    return 2.0 * (_meta_backbone(name).out_channels * hidden + hidden * out)


def pair_flops(name: str, exemplar_sz: int, instance_sz: int) -> float:
    """Forward FLOPs of one training or localisation pair: phi(z) + phi(x) + xcorr."""
    return backbone_flops(name, exemplar_sz) + backbone_flops(name, instance_sz) + xcorr_flops(name, exemplar_sz,
                                                                                                  instance_sz)


def frame_flops(name: str, exemplar_sz: int, instance_sz: int, scales: int) -> float:
    """Forward FLOPs of one tracked frame: ``scales`` search crops through phi plus their xcorr."""
    return scales * (backbone_flops(name, instance_sz) + xcorr_flops(name, exemplar_sz, instance_sz))


# --------------------------------------------------------------------------- the profile's data, counted
@dataclass(frozen=True)
class Videos:
    """A set of videos by count and total frames."""
    videos: int
    frames: int

    def __add__(self, other: "Videos") -> "Videos":
        return Videos(self.videos + other.videos, self.frames + other.frames)

    @property
    def mean_frames(self) -> float:
        return self.frames / self.videos if self.videos else 0.0

    def touched(self, per_video: int) -> int:
        """Frames a sweep visits when at most ``per_video`` frames of each video are in use."""
        return int(self.videos * min(self.mean_frames, per_video))


def _clip(videos: int, mean_frames: float, max_frames: int | None, stride: int = 1) -> Videos:
    per = mean_frames if max_frames is None else min(mean_frames, max_frames)
    return Videos(int(videos), int(round(videos * math.ceil(per / stride))))


@functools.lru_cache(maxsize=None)
def _shared_lengths(names: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(len(s) for s in load_shared(list(names)))


def _shared(names, max_frames: int | None, stride: int = 1) -> Videos:
    lengths = _shared_lengths(tuple(names))
    return Videos(len(lengths), sum(math.ceil((n if max_frames is None else min(n, max_frames)) / stride)
                                    for n in lengths))


@dataclass(frozen=True)
class DataSizes:
    """What a profile trains and evaluates on, counted: ``train`` (all training video, unlabeled),
    ``labelled`` (its labelled part), ``eval_otb`` / ``eval_got10k`` / ``eval_vot`` (each protocol's
    sequences) and ``heldout`` (the powered measures' held-out videos)."""
    train: Videos
    labelled: Videos
    eval_otb: Videos
    eval_got10k: Videos
    eval_vot: Videos
    heldout: Videos


def data_sizes(cfg) -> DataSizes:
    """Count the profile's videos: synthetic and bundled ones from the config and the bundled annotations,
    real datasets from ``REAL_DATA`` (assumed sizes, never read)."""
    d, none = cfg.data, Videos(0, 0)
    mf, st = d.max_frames, d.frame_stride
    syn_train = _clip(d.synthetic_train_videos, d.synthetic_frames, mf, st)
    syn_val = _clip(d.synthetic_val_videos, d.synthetic_frames, mf)
    labelled = none
    if "synthetic" in d.train_sources:
        labelled = labelled + syn_train
    for src in ("got10k", "vid"):
        if src in d.train_sources:
            labelled = labelled + _clip(*REAL_DATA[f"{src}_train"], mf, st)
    train = labelled + (_shared(d.shared_train, mf, st) if "shared" in d.train_sources else none)
    shared_eval = list(d.shared_eval) if "shared" in d.eval_sources else []
    otb = (syn_val if "synthetic" in d.eval_sources else none) + _shared(shared_eval, mf)
    vot = _shared([n for n in shared_eval if n.startswith("vot/")], mf)
    if "otb" in d.eval_sources:
        otb = otb + _clip(*REAL_DATA["otb"], mf)
    if "vot" in d.eval_sources:
        vot = vot + _clip(*REAL_DATA["vot"], mf)
    got10k = (_clip(*REAL_DATA["got10k_val"], mf) if "got10k" in d.eval_sources
              else syn_val if "synthetic" in d.eval_sources else none)
    e = cfg.eval
    heldout = Videos(e.heldout_videos, e.heldout_videos * (e.heldout_frames or d.synthetic_frames))
    return DataSizes(train, labelled, otb, got10k, vot, heldout)


# --------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class Stage:
    """One piece of a notebook's device work: total FLOPs, the training steps and the tracked frames
    it consists of (each with a time floor), whether torchrun spreads it over GPUs, and how it was counted."""
    notebook: str
    name: str
    flops: float
    steps: int = 0
    frames: int = 0
    ddp: bool = False
    count: str = ""

    def seconds(self, a: Assumptions, gpus: int = 1) -> float:
        """Time on ``gpus`` GPUs: the FLOPs at the assumed throughput (split over the ranks when the stage
        runs under torchrun), never below its steps' and frames' floors (every rank takes every step)."""
        rate = a.flops_per_s * (gpus * a.ddp_efficiency if self.ddp and gpus > 1 else 1.0)
        return max(self.flops / rate, self.steps * a.step_ms / 1e3 + self.frames * a.frame_ms / 1e3)


def _bd_run(a: Assumptions, nb: str, name: str, c, n_cand: int) -> Stage:
    bd, bb = c.bd, c.model.backbone
    crop = backbone_flops(bb, bd.crop_sz) + projection_flops(bb, bd.proj_hidden, bd.proj_out)
    refreshes = math.ceil(bd.steps / bd.bank_refresh)
    flops = bd.steps * a.train_factor * 2 * bd.batch_size * crop + refreshes * n_cand * crop
    return Stage(nb, name, flops, steps=bd.steps,
                 count=f"{bd.steps} steps x 2 x {bd.batch_size} crops of {bd.crop_sz}; {refreshes} bank passes "
                       f"over {n_cand} candidates")


def _mining(cfg, nb: str, name: str, backbone: str, videos: Videos, span: int) -> Stage:
    m, mo = cfg.mining, cfg.model
    search = m.search_sz or mo.instance_sz
    tracks = videos.videos * m.candidates_per_video
    flops = 2 * tracks * (span * frame_flops(backbone, mo.exemplar_sz, search, m.scale_num)
                          + backbone_flops(backbone, mo.exemplar_sz))
    frames = 2 * videos.touched(m.candidates_per_video * (span + 1))
    return Stage(nb, name, flops, frames=frames,
                 count=f"{tracks} tracks x {span} frames forward and back, {m.scale_num} scale(s) of {search}")


def _tc_round(cfg, a: Assumptions, nb: str, name: str, backbone: str, steps: int, exemplars: int) -> Stage:
    tc, mo, bd = cfg.tc, cfg.model, cfg.bd
    view = backbone_flops(backbone, mo.exemplar_sz) + projection_flops(backbone, bd.proj_hidden, bd.proj_out)
    per_step = tc.batch_size * pair_flops(backbone, mo.exemplar_sz, mo.instance_sz)
    if tc.lam > 0:
        per_step += 2 * tc.batch_size * view
    refreshes = math.ceil(steps / bd.bank_refresh) if tc.sampler == "ahm" else 0
    flops = steps * a.train_factor * per_step + refreshes * exemplars * view
    return Stage(nb, name, flops, steps=steps,
                 count=f"{steps} steps x {tc.batch_size} pairs {mo.exemplar_sz}/{mo.instance_sz}"
                       + (" + 2 InfoNCE views" if tc.lam > 0 else "") + f"; {refreshes} bank passes over "
                       f"{exemplars} exemplars")


def _tc_run(cfg, a: Assumptions, nb: str, label: str, backbone: str, train: Videos) -> list[Stage]:
    out = []
    exemplars = train.videos * cfg.mining.candidates_per_video
    for r in range(1, cfg.tc.rounds + 1):
        span = cfg.mining.spans[min(r, len(cfg.mining.spans)) - 1]
        out.append(_mining(cfg, nb, f"{label} round {r}: mining (span {span})", backbone, train, span))
        out.append(_tc_round(cfg, a, nb, f"{label} round {r}: TC", backbone, cfg.tc.steps_per_round, exemplars))
    return out


def _tracking(cfg, nb: str, name: str, backbone: str, videos: Videos, trackers: int, scales: int | None = None,
              seeds_every: int | None = None, span: int | None = None) -> Stage:
    """``trackers`` trackers over ``videos`` (or, with ``seeds_every``, miner seeds every that many frames
    tracked ``span`` frames each, as ``mining_quality`` does)."""
    mo = cfg.model
    scales = scales or cfg.tracker.scale_num
    steps = videos.frames if seeds_every is None else int(videos.videos * math.ceil(videos.mean_frames / seeds_every)
                                                           * span)
    per = frame_flops(backbone, mo.exemplar_sz, mo.instance_sz, scales)
    return Stage(nb, name, trackers * steps * per, frames=trackers * videos.frames,
                 count=f"{trackers} x {steps} frame steps, {scales} scale(s)")


def _pairs(cfg, nb: str, name: str, models: int, pairs: int, backbone: str = "alexnet") -> Stage:
    mo = cfg.model
    return Stage(nb, name, models * pairs * pair_flops(backbone, mo.exemplar_sz, mo.instance_sz),
                 count=f"{models} model(s) x {pairs} pairs {mo.exemplar_sz}/{mo.instance_sz}")


def _bn_estimate(cfg, nb: str, name: str, models: int, backbone: str = "alexnet") -> Stage:
    mo = cfg.model
    crops = mo.bn_batches * mo.bn_batch_size
    per = (backbone_flops(backbone, mo.exemplar_sz) + backbone_flops(backbone, mo.instance_sz)) / 2
    return Stage(nb, name, models * crops * per, count=f"{models} x {crops} crops (exemplar / search alternating)")


def _supervised(cfg, a: Assumptions, nb: str, name: str, backbone: str, steps: int, runs: int = 1) -> Stage:
    s, mo = cfg.supervised, cfg.model
    flops = runs * steps * a.train_factor * s.batch_size * pair_flops(backbone, mo.exemplar_sz, mo.instance_sz)
    return Stage(nb, name, flops, steps=runs * steps, ddp=True,
                 count=f"{runs} run(s) x {steps} steps x {s.batch_size} pairs {mo.exemplar_sz}/{mo.instance_sz}")


def stages(cfg, a: Assumptions | None = None) -> list[Stage]:
    """Every stage of every notebook of ``cfg``'s profile, in notebook order (05 and 00 use no device)."""
    a = a or Assumptions()
    ds = data_sizes(cfg)
    m, e = cfg.mining, cfg.eval
    n_cand = min(cfg.bd.max_candidates, ds.train.frames * cfg.bd.candidates_per_frame)
    out: list[Stage] = []

    nb = "01_background_discrimination"
    for name in bdx.RUNS:
        c = bdx.run_config(cfg, name)
        out.append(_bd_run(a, nb, f"BD {name}", c, n_cand))
    plan = bdx.claim_plan(cfg)
    for row in plan[~plan["reused"]].itertuples(index=False):
        c = bdx.claim_run_config(cfg, row.sampler, int(row.batch_size), int(row.seed))
        out.append(_bd_run(a, nb, f"claim BD {row.sampler} B={row.batch_size} seed {row.seed}", c, n_cand))
    seeds = len(set(plan["seed"]))
    out.append(_bn_estimate(cfg, nb, "random_bn of each claim seed", seeds))
    out.append(_pairs(cfg, nb, "claim localisation (runs + random_bn)", len(plan) + seeds, e.heldout_pairs))
    view = backbone_flops("alexnet", cfg.bd.crop_sz)
    out.append(Stage(nb, "banks for Figs. 1, 2 and batch hardness", len(bdx.HARDNESS_BANKS) * n_cand * view,
                     count=f"{len(bdx.HARDNESS_BANKS)} x {n_cand} crops of {cfg.bd.crop_sz}"))

    nb = "02_temporal_correspondence"
    out += _tc_run(cfg, a, nb, "AlexPUL", "alexnet", ds.train)
    quality = Videos(min(m.quality_videos or ds.labelled.videos, ds.labelled.videos), 0)
    quality = Videos(quality.videos, int(quality.videos * ds.labelled.mean_frames))
    out.append(_tracking(cfg, nb, "mining-error report (each round's miner)", "alexnet", quality, cfg.tc.rounds,
                         scales=m.scale_num, seeds_every=m.start_stride, span=max(m.eval_k)))
    steps = cfg.tc.rounds * cfg.tc.steps_per_round
    exemplars = ds.train.videos * m.candidates_per_video
    out.append(_tc_round(cfg, a, nb, "control: no re-mining (all steps on round-1 pairs)", "alexnet", steps, exemplars))
    out.append(_bn_estimate(cfg, nb, "control: random_bn", 1))
    out.append(_mining(cfg, nb, "control: mining from random_bn", "alexnet", ds.train, m.spans[0]))
    out.append(_tc_round(cfg, a, nb, "control: TC round 1 from random_bn", "alexnet", cfg.tc.steps_per_round,
                         exemplars))
    out.append(_pairs(cfg, nb, "rounds claim: localisation", 4 + cfg.tc.rounds, e.heldout_pairs))
    out.append(_tracking(cfg, nb, "rounds claim: held-out mining error (k = 10)", "alexnet", ds.heldout, 2,
                         scales=m.scale_num, seeds_every=m.start_stride, span=10))

    nb = "03_training"
    out += _tc_run(cfg, a, nb, "ResPUL", "ciresnet22", ds.train)
    out.append(_supervised(cfg, a, nb, "supervised SiamFC", "alexnet", cfg.supervised.steps))
    out.append(_supervised(cfg, a, nb, "supervised SiamDW", "ciresnet22", cfg.supervised.steps))
    out += _tc_run(cfg, a, nb, "TC-BCE (ablation)", "alexnet", ds.train)

    nb = "04_noise_robustness"
    nzx.check_noise_config(cfg)
    nc = cfg.noise
    runs = len(nzx.grid(cfg)) * len(nc.seeds)
    out.append(_supervised(cfg, a, nb, f"noise runs ({len(nzx.grid(cfg))} cells x {len(nc.seeds)} seeds)", "alexnet",
                           nzx.train_steps(cfg), runs))
    scored = nc.eval_pairs or e.heldout_pairs
    out.append(_pairs(cfg, nb, "noise runs: clean localisation + fit", runs, scored + (nc.train_pairs or 0)))
    out.append(_bn_estimate(cfg, nb, "random_bn reference", 1))
    out.append(_pairs(cfg, nb, "random_bn reference: localisation", 1, scored))
    shown = min(nc.display_frame + 1, nc.eval_max_frames or nc.display_frame + 1)
    figs = Videos(len(nc.display_sequences), len(nc.display_sequences) * shown)
    out.append(_tracking(cfg, nb, "Figs. 3 / 4 response examples", "alexnet", figs, 2 * len(nc.display_levels)))

    nb = "06_qualitative"
    paper_vot = "vot" in cfg.data.eval_sources
    qual = (_clip(len(e.fig5_sequences) + len(e.fig7_sequences), REAL_DATA["vot"][1], cfg.data.max_frames)
            if paper_vot else ds.eval_otb)
    for name in artifacts.MAIN_TRACKERS:
        bb = "ciresnet22" if name in RES_TRACKERS else "alexnet"
        out.append(_tracking(cfg, nb, f"track {name}", bb, qual, 1))

    nb = "07_benchmarks"
    ckpts = artifacts.tracker_checkpoints(cfg.profile, cfg.tc.rounds)
    distinct: dict[str, str] = {}
    for name, path in ckpts.items():
        distinct.setdefault(str(path), name)
    trained = list(distinct.values())
    refs = {"random_bn AlexNet": "alexnet", "random_bn CIResNet-22": "ciresnet22", "raw init AlexNet": "alexnet"}
    trackers = {n: ("ciresnet22" if n in RES_TRACKERS else "alexnet") for n in trained} | refs
    for bench, videos in (("OTB protocol", ds.eval_otb), ("GOT-10k protocol", ds.eval_got10k),
                          ("VOT protocol", ds.eval_vot)):
        for bb in artifacts.BACKBONES:
            names = [n for n, b in trackers.items() if b == bb
                     and not (bench == "OTB protocol" and not paper_vot and n in artifacts.MAIN_TRACKERS)]
            if names and videos.frames:
                out.append(_tracking(cfg, nb, f"{bench}, {len(names)} {bb} trackers", bb, videos, len(names)))
    out.append(_tracking(cfg, nb, "pul claim: held-out videos (AlexPUL, random_bn)", "alexnet", ds.heldout, 2))
    out.append(_tracking(cfg, nb, "pul claim: held-out videos (ResPUL, random_bn)", "ciresnet22", ds.heldout, 2))
    out.append(_bn_estimate(cfg, nb, "random_bn references + AlexPUL BN re-estimated", 2))
    out.append(_bn_estimate(cfg, nb, "random_bn CIResNet-22", 1, "ciresnet22"))
    out.append(_pairs(cfg, nb, "pul claim: localisation (AlexNet)", 3, e.heldout_pairs))
    out.append(_pairs(cfg, nb, "pul claim: localisation (CIResNet-22)", 2, e.heldout_pairs, "ciresnet22"))
    return out


# --------------------------------------------------------------------------- curated crops
def crop_disk(cfg) -> dict[str, dict[str, float]]:
    """Bytes of the training crops (uint8, 3 channels, uncompressed), by what reads them:
    ``{part: {"bytes", "crops", "side", "notebooks"}}``.  Ground-truth crops: one per labelled frame, at the
    curated store's side (instance + 2 x ``data.curate_margin``) for a curated profile, else the crop cache's
    (instance + 2 x the shift margin); BD's candidates at ``bd.crop_sz``; mined pairs one crop per exemplar
    (track) and per search frame, at most ``mining.max_pairs`` pairs per round."""
    ds, mo, m, d = data_sizes(cfg), cfg.model, cfg.mining, cfg.data
    margin = (d.curate_margin if getattr(d, "curated", False)
              else int(math.floor(max(cfg.supervised.search_shift_px, cfg.tc.search_shift_px))))
    side = mo.instance_sz + 2 * margin
    cache_side = mo.instance_sz + 2 * int(math.floor(cfg.tc.search_shift_px))
    n_cand = min(cfg.bd.max_candidates, ds.train.frames * cfg.bd.candidates_per_frame)
    tracks = ds.train.videos * m.candidates_per_video
    per_round = []
    for r in range(1, cfg.tc.rounds + 1):
        pairs = min(m.max_pairs, tracks * m.spans[min(r, len(m.spans)) - 1])
        per_round.append(min(tracks, pairs) + pairs)
    out = {"ground-truth crops": {"crops": ds.labelled.frames, "side": side, "notebooks": "03, 04"},
           "BD candidate crops": {"crops": n_cand, "side": cfg.bd.crop_sz, "notebooks": "01"},
           "mined-pair crops, AlexPUL + control": {"crops": sum(per_round) + per_round[0], "side": cache_side,
                                                   "notebooks": "02"},
           "mined-pair crops, ResPUL + TC-BCE": {"crops": 2 * sum(per_round), "side": cache_side, "notebooks": "03"}}
    for v in out.values():
        v["bytes"] = float(v["crops"] * v["side"] ** 2 * 3)
    return out


# --------------------------------------------------------------------------- summary
def notebook_costs(cfg, a: Assumptions | None = None) -> dict[str, dict[str, float]]:
    """Per notebook: TFLOP, hours on 1 GPU, wall hours and GPU-hours on ``a.gpus``, and its crop disk (GB)."""
    a = a or Assumptions()
    st = stages(cfg, a)
    disk = crop_disk(cfg)
    out = {}
    for nb in artifacts.NOTEBOOKS:
        mine = [s for s in st if s.notebook == nb]
        h1 = sum(s.seconds(a, 1) for s in mine) / 3600
        hn = sum(s.seconds(a, a.gpus) for s in mine) / 3600
        gb = sum(v["bytes"] for v in disk.values() if nb[:2] in v["notebooks"].split(", ")) / 1e9
        out[nb] = {"tflop": sum(s.flops for s in mine) / 1e12, "hours_1": h1, "wall_hours_n": hn,
                   "gpu_hours_n": hn * a.gpus, "crop_gb": gb}
    return out


def summary(cfg, a: Assumptions | None = None) -> dict:
    """The JSON summary: assumptions, per-notebook costs, totals and the crop disk."""
    a = a or Assumptions()
    nbs = notebook_costs(cfg, a)
    disk = crop_disk(cfg)
    unique_gb = sum(v["bytes"] for v in disk.values()) / 1e9
    return {"profile": cfg.profile, "assumptions": dataclasses.asdict(a), "notebooks": nbs,
            "total": {"tflop": sum(v["tflop"] for v in nbs.values()), "hours_1": sum(v["hours_1"] for v in nbs.values()),
                      "minutes_1": 60 * sum(v["hours_1"] for v in nbs.values()),
                      "wall_hours_n": sum(v["wall_hours_n"] for v in nbs.values()),
                      "gpu_hours_n": sum(v["gpu_hours_n"] for v in nbs.values()), "crop_gb": unique_gb},
            "crop_disk": {k: {**v, "gb": v["bytes"] / 1e9} for k, v in disk.items()}}


def _hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.0f} s"
    if h < 1:
        return f"{h * 60:.1f} min"
    return f"{h:.1f} h"


def markdown(cfg, a: Assumptions | None = None) -> str:
    """The README's cost table for ``cfg``'s profile."""
    a = a or Assumptions()
    s = summary(cfg, a)
    rows = [f"| notebook | TFLOP | 1 H100 (GPU time) | {a.gpus} H100 (wall) | {a.gpus} H100 (GPU-hours) | crops (uint8) |",
            "|---|---|---|---|---|---|"]
    for nb, v in s["notebooks"].items():
        rows.append(f"| `{nb}` | {v['tflop']:,.0f} | {_hours(v['hours_1'])} | {_hours(v['wall_hours_n'])} | "
                    f"{v['gpu_hours_n']:.2f} | {v['crop_gb']:,.1f} GB |")
    t = s["total"]
    rows.append(f"| **total** | {t['tflop']:,.0f} | **{_hours(t['hours_1'])}** | {_hours(t['wall_hours_n'])} | "
                f"{t['gpu_hours_n']:.2f} | {t['crop_gb']:,.1f} GB (GT crops once) |")
    return "\n".join(rows)


def _parse(argv):
    d = Assumptions()
    p = argparse.ArgumentParser(prog="python -m pulkit.tools.cost", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="paper", help=f"one of {', '.join(PROFILES)} (default paper)")
    p.add_argument("--peak-tflops", type=float, default=d.peak_tflops, help="dense bf16 peak of one GPU, TFLOP/s")
    p.add_argument("--utilisation", type=float, default=d.utilisation, help="share of the peak reached")
    p.add_argument("--step-ms", type=float, default=d.step_ms, help="floor per training step, ms")
    p.add_argument("--frame-ms", type=float, default=d.frame_ms, help="floor per tracked / mined frame, ms")
    p.add_argument("--gpus", type=int, default=d.gpus, help="GPUs of the torchrun column")
    p.add_argument("--ddp-efficiency", type=float, default=d.ddp_efficiency, help="DDP scaling efficiency")
    p.add_argument("--stages", action="store_true", help="also list every stage")
    p.add_argument("--markdown", action="store_true", help="print the README table only")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        cfg = load_config(args.profile)
        a = Assumptions(peak_tflops=args.peak_tflops, utilisation=args.utilisation, step_ms=args.step_ms,
                        frame_ms=args.frame_ms, gpus=args.gpus, ddp_efficiency=args.ddp_efficiency)
    except (ConfigError, ValueError) as e:
        print(f"python -m pulkit.tools.cost: {e}", file=sys.stderr)
        return 2
    if args.markdown:
        print(markdown(cfg, a))
        return 0
    print(f"profile {cfg.profile}: {a.peak_tflops:g} TFLOP/s peak x {a.utilisation:g} utilisation = "
          f"{a.flops_per_s / 1e12:.1f} TFLOP/s per GPU; floors {a.step_ms:g} ms per step, {a.frame_ms:.2f} ms per "
          f"frame; {a.gpus} GPUs: DDP stages x {a.gpus} x {a.ddp_efficiency:g}, the rest on one")
    if args.stages:
        for s in stages(cfg, a):
            print(f"  {s.notebook[:2]} {s.name:58s} {s.flops / 1e12:12,.1f} TFLOP {s.seconds(a, 1):10,.1f} s"
                  f"{' ddp' if s.ddp else ''}  ({s.count})")
    print(markdown(cfg, a))
    print(json.dumps(summary(cfg, a), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
