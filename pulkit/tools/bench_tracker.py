"""Tracker speed: ``python -m pulkit.tools.bench tracker [--backbone alexnet|ciresnet22] [--precision fp32,bf16]``.

Times the optimised ``SiamFCTracker`` (per precision) against a plain eager one on a bundled sequence; with
``--checkpoint`` also the accuracy of each precision.  Ends with one JSON line.  What and how: docs/modules.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from pulkit.core.config import PRECISIONS, TrackerConfig, load_config
from pulkit.core.paths import shared_sequences
from pulkit.core.results import cpu_model
from pulkit.data.sequences import load_shared, read_otb_sequence
from pulkit.evaluation.otb import otb_metrics
from pulkit.evaluation.powered import eval_pairs, localisation, localisation_summary, paired_diff
from pulkit.models.net import Net, build_net, load_net
from pulkit.models.precision import PrecisionError, bf16_backbones, probe_speedup, resolve_precision
from pulkit.tracking.siamfc import SiamFCTracker

PLAIN = dict(fuse_bn=False, channels_last=False, crop_backend="cv2")   # eager NCHW, BN as separate ops
ACCURACY_SEQUENCES = "otb/Crossing,otb/Deer,vot/bag"                     # the bundled evaluation sequences
BF16_XCORR = "bf16_xcorr"   # diagnostic: bf16 with the cross-correlation head under autocast too


# --------------------------------------------------------------------------- inputs
def load_frames(sequence: str, frames: int) -> tuple[list[np.ndarray], np.ndarray]:
    """First ``frames`` frames (RGB arrays) and the first box (0-based) of a bundled OTB sequence."""
    seq = read_otb_sequence(shared_sequences() / sequence)
    return [seq.image(i) for i in tqdm(range(min(frames, len(seq))), desc="decode", leave=False)], seq.boxes[0]


# --------------------------------------------------------------------------- FLOPs and peaks
def count_gflops(net: Net, exemplar_sz: int, instance_sz: int, scales: int) -> tuple[float, float]:
    """(per-frame, template) GFLOP: 2 x multiply-adds of every conv (from its shapes) and the xcorr."""
    macs = []

    def hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
        macs.append(out.numel() * k)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            z = net.features(torch.zeros(1, 3, exemplar_sz, exemplar_sz))
            template = 2 * sum(macs) / 1e9
            macs.clear()
            x = net.features(torch.zeros(scales, 3, instance_sz, instance_sz))
            r = net.head(z, x)
    finally:
        for h in handles:
            h.remove()
    xcorr_macs = r.numel() * z[0].numel()
    return 2 * (sum(macs) + xcorr_macs) / 1e9, template


def sgemm_gflops(device: torch.device, n: int = 4096, repeats: int = 5) -> float:
    """Large fp32 matrix multiply throughput (the practical peak), median of ``repeats``."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False      # true fp32 on GPUs
    try:
        a @ b
        times = []
        for _ in range(repeats):
            _sync(device)
            t = time.perf_counter()
            a @ b
            _sync(device)
            times.append(time.perf_counter() - t)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    return 2 * n ** 3 / statistics.median(times) / 1e9


def fma_peak_gflops(threads: int) -> tuple[float | None, str]:
    """fp32 FMA theoretical peak of ``threads`` cores from /proc/cpuinfo, with its assumptions."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return None, "no /proc/cpuinfo"
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    mhz = [float(l.split(":", 1)[1]) for l in info.splitlines() if l.startswith("cpu MHz")]
    vendor = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("vendor_id")), "")
    if "fma" not in flags or not mhz:
        return None, "no FMA flag or clock in /proc/cpuinfo"
    # 2 FMA pipes per core (x86 cores since Haswell / Zen); 16 fp32 lanes with AVX-512 on Intel,
    # 8 otherwise (AMD Zen 4 splits 512-bit ops into two 256-bit halves).
    lanes = 16 if ("avx512f" in flags and vendor == "GenuineIntel") else 8
    ghz = max(mhz) / 1000
    peak = threads * 2 * lanes * 2 * ghz
    return peak, (f"{threads} cores x 2 FMA pipes x {lanes} fp32 lanes x 2 FLOP x {ghz:.2f} GHz "
                  f"(reported clock; turbo may exceed it)")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- timings
def time_loops(trackers: dict[str, SiamFCTracker], frames: list[np.ndarray], box0, repeats: int,
               warmup: int = 2) -> dict[str, np.ndarray]:
    """Seconds per ``update`` (repeats x frames) for each tracker, the trackers alternating frame by frame.

    Each tracker follows the sequence on its own; on every frame all of them run back to back, in
    an order that rotates, so a per-frame ratio compares runs made under the same background load.
    """
    names = list(trackers)
    times = {k: np.zeros((repeats, len(frames) - 1)) for k in names}
    for rep in tqdm(range(repeats), desc="repeats", leave=False):
        for t in trackers.values():
            t.init(frames[0], box0)
            for f in frames[1:1 + warmup]:
                t.update(f)
            t.init(frames[0], box0)
        for i, f in enumerate(frames[1:]):
            shift = (i + rep) % len(names)
            for k in names[shift:] + names[:shift]:
                t0 = time.perf_counter()
                trackers[k].update(f)
                times[k][rep, i] = time.perf_counter() - t0
    return times


def time_networks(trackers: dict[str, SiamFCTracker], frame: np.ndarray, box0, iters: int) -> dict[str, np.ndarray]:
    """Seconds per network pass (phi(x) on the scale batch + xcorr with the template, in the tracker's
    precision), alternating."""
    names = list(trackers)
    inputs = {}
    for k, t in trackers.items():
        t.init(frame, box0)
        inputs[k] = t._crops(frame, t.init_x_sz * t.scale_factors, t.instance_sz)
    times = {k: [] for k in names}
    with torch.inference_mode():
        for i in range(iters + 2):
            for k in names[i % len(names):] + names[:i % len(names)]:
                t = trackers[k]
                _sync(t.device)
                t0 = time.perf_counter()
                t.net.head(t.kernel, t._features(inputs[k]))
                _sync(t.device)
                if i >= 2:
                    times[k].append(time.perf_counter() - t0)
    return {k: np.asarray(v) for k, v in times.items()}


def optimised_name(precision: str) -> str:
    """The optimised tracker's name for a resolved precision: ``optimised`` (fp32), ``optimised_bf16``."""
    return "optimised" if precision == "fp32" else f"optimised_{precision}"


def bench_device(net: Net, device: torch.device, frames, box0, repeats: int, net_iters: int,
                 precisions=("fp32",)) -> dict:
    """Medians of the optimised path (one per resolved precision) and the plain one, and medians of paired
    per-frame ratios: plain / the first precision's, and fp32 / bf16 when both run."""
    trackers = {optimised_name(p): SiamFCTracker(net, TrackerConfig(), device=device, precision=p) for p in precisions}
    trackers["plain"] = SiamFCTracker(net, TrackerConfig(**PLAIN), device=device)
    loop = time_loops(trackers, frames, box0, repeats)
    netw = time_networks(trackers, frames[0], box0, net_iters)
    out = {}
    for k in trackers:
        out[f"loop_{k}"] = float(np.median(loop[k]))
        out[f"loop_{k}_best"] = float(loop[k].min())
        out[f"loop_{k}_repeats"] = [float(v) for v in np.median(loop[k], axis=1)]
        out[f"net_{k}"] = float(np.median(netw[k]))
    first = optimised_name(precisions[0])
    out["loop_ratio"] = float(np.median(loop["plain"] / loop[first]))
    out["net_ratio"] = float(np.median(netw["plain"] / netw[first]))
    if {"optimised", "optimised_bf16"} <= set(trackers):
        out["bf16_loop_ratio"] = float(np.median(loop["optimised"] / loop["optimised_bf16"]))
        out["bf16_net_ratio"] = float(np.median(netw["optimised"] / netw["optimised_bf16"]))
    return out


# --------------------------------------------------------------------------- accuracy per precision
class _AutocastXcorr(nn.Module):
    """The cross-correlation head run under bf16 autocast (the ``bf16_xcorr`` diagnostic), float32 out."""

    def __init__(self, head: nn.Module, device: torch.device):
        super().__init__()
        self.head, self.device_type = head, device.type

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.head(z, x).float()


def accuracy_trackers(checkpoint, device: torch.device, precisions, bf16_xcorr: bool) -> dict[str, SiamFCTracker]:
    """A tracker of ``checkpoint`` per resolved precision (and the ``bf16_xcorr`` diagnostic when asked)."""
    trackers = {p: SiamFCTracker.from_checkpoint(checkpoint, device=device, precision=p) for p in precisions}
    if bf16_xcorr:
        t = SiamFCTracker.from_checkpoint(checkpoint, device=device, precision="bf16")
        t.net.head = _AutocastXcorr(t.net.head, device)
        trackers[BF16_XCORR] = t
    return trackers


def track_accuracy(trackers: dict[str, SiamFCTracker], names: list[str], max_frames: int | None) -> dict:
    """Success AUC of every tracker on each bundled sequence (first ``max_frames`` frames), the trackers
    alternating frame by frame (each follows its own track), and the seconds of each ``update``."""
    aucs = {k: {} for k in trackers}
    times = {k: [] for k in trackers}
    names_order = list(trackers)
    for seq in load_shared(names):
        seq = seq.limit(max_frames)
        frames = [seq.image(i) for i in tqdm(range(len(seq)), desc=f"decode {seq.name}", leave=False)]
        boxes = {k: np.tile(seq.boxes[0], (len(seq), 1)) for k in trackers}
        for t in trackers.values():
            t.init(frames[0], seq.boxes[0])
        for i in tqdm(range(1, len(frames)), desc=f"track {seq.name}", leave=False):
            shift = i % len(names_order)
            for k in names_order[shift:] + names_order[:shift]:
                t0 = time.perf_counter()
                boxes[k][i] = trackers[k].update(frames[i])
                times[k].append(time.perf_counter() - t0)
        for k in trackers:
            aucs[k][seq.name] = otb_metrics(boxes[k], seq.boxes)["success_auc"]
    return {"auc": aucs, "times": {k: np.asarray(v) for k, v in times.items()}}


def localisation_accuracy(checkpoint, device: torch.device, precisions, profile: str, bf16_xcorr: bool) -> dict:
    """``pulkit.evaluation.powered`` localisation accuracy of ``checkpoint`` on the profile's held-out pairs,
    per resolved precision (bf16: the backbones under autocast, as training and tracking run them)."""
    cfg = load_config(profile)
    pairs = eval_pairs(cfg)
    net = load_net(checkpoint, device=device)
    out = {}
    for p in precisions:
        with bf16_backbones(net, p, device):
            out[p] = localisation(net, pairs, device=device)
    if bf16_xcorr:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out[BF16_XCORR] = localisation(net, pairs, device=device)
    return out


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pulkit.tools.bench tracker", description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="alexnet", choices=["alexnet", "ciresnet22"])
    p.add_argument("--profile", default="paper", help="crop sizes of this profile (paper: 127 / 255, cpu: 103 / 199)")
    p.add_argument("--frames", type=int, default=120, help="frames of the sequence (first one initialises)")
    p.add_argument("--sequence", default="otb/Skating1", help="bundled OTB-layout sequence")
    p.add_argument("--repeats", type=int, default=3, help="runs over the sequence per path; medians reported")
    p.add_argument("--net-iters", type=int, default=10, help="network-only passes per repeat")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    p.add_argument("--device", default="all", choices=["all", "cpu", "cuda"],
                   help="all: CPU, and CUDA when present")
    p.add_argument("--precision", default="fp32",
                   help=f"comma-separated, of {', '.join(PRECISIONS)}: each resolved precision is timed (fp32,bf16: "
                        "both, interleaved, and their ratio)")
    p.add_argument("--checkpoint", default=None,
                   help="a trained checkpoint: also success AUC per precision on --accuracy-sequences")
    p.add_argument("--accuracy-sequences", default=ACCURACY_SEQUENCES, help="bundled sequences for the AUC")
    p.add_argument("--accuracy-frames", type=int, default=None,
                   help="frames per accuracy sequence (default: the profile's data.max_frames)")
    p.add_argument("--localisation", action="store_true",
                   help="with --checkpoint: powered localisation accuracy per precision (the profile's held-out pairs)")
    p.add_argument("--bf16-xcorr", action="store_true",
                   help="with --checkpoint: also bf16 with the cross-correlation head under autocast (diagnostic)")
    args = p.parse_args(argv)
    if args.frames < 3:
        p.error("--frames must be at least 3")
    if (args.localisation or args.bf16_xcorr) and not args.checkpoint:
        p.error("--localisation and --bf16-xcorr need --checkpoint")
    requested = [x.strip() for x in args.precision.split(",") if x.strip()]
    bad = [x for x in requested if x not in PRECISIONS]
    if bad or not requested:
        p.error(f"--precision takes a comma-separated list of {', '.join(PRECISIONS)}; got {args.precision!r}")
    try:
        profile_cfg = load_config(args.profile)
    except ValueError as e:
        p.error(str(e))

    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] if args.device in ("all", "cpu") else []
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            p.error("--device cuda: CUDA is not available")
    try:
        resolved = {dev.type: list(dict.fromkeys(resolve_precision(x, dev) for x in requested)) for dev in devices}
    except PrecisionError as e:
        p.error(str(e))

    torch.manual_seed(0)
    cfg = dataclasses.replace(profile_cfg.model, backbone=args.backbone)
    net = build_net(cfg).eval()
    frames, box0 = load_frames(args.sequence, args.frames)
    scales = TrackerConfig().scale_num
    gflops, gflops_z = count_gflops(net, cfg.exemplar_sz, cfg.instance_sz, scales)

    print(f"tracker speed: {args.backbone} {cfg.exemplar_sz}/{cfg.instance_sz}, {scales} scales, "
          f"{args.sequence} first {len(frames)} frames, {args.repeats} repeats, torch {torch.__version__}, "
          f"{args.threads} threads, {cpu_model()}, {os.cpu_count()} CPUs")
    print(f"work per frame: {gflops:.2f} GFLOP (3 x {cfg.instance_sz} backbone + xcorr); "
          f"template {gflops_z:.2f} GFLOP once")
    print("precision: " + "; ".join(f"{d}: {', '.join(requested)} -> {', '.join(r)}" for d, r in resolved.items())
          + (f" (start-up probe on cpu: bf16 x{probe_speedup('cpu')['speedup']:.2f})"
             if "auto" in requested and probe_speedup.cache_info().currsize else ""))

    results = {}
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for dev in devices:
        peak = sgemm_gflops(dev)
        fma, fma_note = fma_peak_gflops(args.threads) if dev.type == "cpu" else (None, "")
        precisions = resolved[dev.type]
        r = bench_device(net, dev, frames, box0, args.repeats, args.net_iters, precisions)
        first = optimised_name(precisions[0])
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
        print(f"\n[{dev.type}] {name}")
        print(f"  sgemm 4096^2 fp32: {peak:.0f} GFLOP/s (reference peak, measured now)")
        if fma:
            print(f"  FMA theoretical: {fma:.0f} GFLOP/s = {fma_note}")
        for k in [optimised_name(x) for x in precisions] + ["plain"]:
            reps = ", ".join(f"{1e3 * v:.1f}" for v in r[f"loop_{k}_repeats"])
            print(f"  {k:14s} whole loop {1 / r[f'loop_{k}']:6.2f} fps ({1e3 * r[f'loop_{k}']:.1f} ms/frame median; "
                  f"per repeat {reps}; fastest frame {1e3 * r[f'loop_{k}_best']:.1f} ms)   "
                  f"network {1 / r[f'net_{k}']:6.2f} fps ({1e3 * r[f'net_{k}']:.1f} ms)")
        net_gflops = gflops / r[f"net_{first}"]
        print(f"  network throughput ({precisions[0]}) {net_gflops:.0f} GFLOP/s = {100 * net_gflops / peak:.0f} % of "
              "fp32 sgemm" + (f", {100 * net_gflops / fma:.0f} % of FMA theoretical" if fma else ""))
        print(f"  speed-up vs plain eager NCHW fp32 (median of paired per-frame ratios): whole loop "
              f"x{r['loop_ratio']:.2f}, network x{r['net_ratio']:.2f}; loop time beyond the network "
              f"{1e3 * (r[f'loop_{first}'] - r[f'net_{first}']):.1f} ms")
        if "bf16_loop_ratio" in r:
            print(f"  bf16 vs fp32 (median of paired per-frame ratios): whole loop x{r['bf16_loop_ratio']:.2f}, "
                  f"network x{r['bf16_net_ratio']:.2f}")
        results[dev.type] = {
            "whole_loop_fps": 1 / r[f"loop_{first}"], "network_fps": 1 / r[f"net_{first}"],
            "plain_whole_loop_fps": 1 / r["loop_plain"], "plain_network_fps": 1 / r["net_plain"],
            "speedup_vs_plain": r["loop_ratio"], "network_speedup_vs_plain": r["net_ratio"],
            "sgemm_gflops": peak, "fma_peak_gflops": fma, "fraction_of_sgemm_peak": net_gflops / peak,
            "precisions": precisions,
            **{f"whole_loop_fps_{x}": 1 / r[f"loop_{optimised_name(x)}"] for x in precisions},
            **{f"network_fps_{x}": 1 / r[f"net_{optimised_name(x)}"] for x in precisions},
            **({"bf16_speedup_whole_loop": r["bf16_loop_ratio"], "bf16_speedup_network": r["bf16_net_ratio"]}
               if "bf16_loop_ratio" in r else {}),
        }
    main_dev = "cuda" if "cuda" in results else "cpu"
    accuracy = None
    if args.checkpoint:
        accuracy = _accuracy(args, torch.device(main_dev), resolved[main_dev], profile_cfg)
    if load_before is not None:
        print(f"\nload average (1 min) at start {load_before:.2f}, at end {os.getloadavg()[0]:.2f} "
              f"on {os.cpu_count()} CPUs: above ~1 the figures include other jobs' time")
    summary = {"backbone": args.backbone, "device": main_dev, "gflops_per_frame": gflops, "cpu_model": cpu_model(),
               "crops": [cfg.exemplar_sz, cfg.instance_sz], "precision_requested": requested,
               "frames": len(frames), "threads": args.threads, "load_average_start": load_before,
               **{k: results[main_dev][k] for k in ("whole_loop_fps", "network_fps", "speedup_vs_plain")},
               **{k: results[main_dev][k] for k in ("bf16_speedup_whole_loop", "bf16_speedup_network")
                  if k in results[main_dev]},
               "per_device": results, **({"accuracy": accuracy} if accuracy is not None else {})}
    print(json.dumps(summary, sort_keys=True, default=float))
    return 0


def _accuracy(args, device: torch.device, precisions: list[str], profile_cfg) -> dict:
    """The ``--checkpoint`` part: success AUC and whole-loop speed per precision; localisation when asked."""
    names = [x.strip() for x in args.accuracy_sequences.split(",") if x.strip()]
    max_frames = args.accuracy_frames if args.accuracy_frames is not None else profile_cfg.data.max_frames
    trackers = accuracy_trackers(args.checkpoint, device, precisions, args.bf16_xcorr)
    print(f"\naccuracy: {args.checkpoint} on {', '.join(names)} (first {max_frames or 'all'} frames each), "
          f"trackers alternating frame by frame on {device.type}")
    acc = track_accuracy(trackers, names, max_frames)
    out: dict = {"checkpoint": str(args.checkpoint), "sequences": names, "max_frames": max_frames}
    base = precisions[0]
    for k in trackers:
        mean_auc = float(np.mean(list(acc["auc"][k].values())))
        fps = 1 / float(np.median(acc["times"][k]))
        per = ", ".join(f"{n} {v:.3f}" for n, v in acc["auc"][k].items())
        print(f"  {k:10s} success AUC mean {mean_auc:.3f} ({per}); whole loop {fps:.1f} fps (median frame)")
        out[k] = {"success_auc": acc["auc"][k], "mean_success_auc": mean_auc, "whole_loop_fps": fps}
    for k in trackers:
        if k != base:
            ratio = float(np.median(acc["times"][base] / acc["times"][k]))
            diff = out[k]["mean_success_auc"] - out[base]["mean_success_auc"]
            print(f"  {k} vs {base}: success AUC {diff:+.3f}, whole loop x{ratio:.2f} (median of paired frames)")
            out[k].update({"auc_diff_vs_" + base: diff, "speedup_vs_" + base: ratio})
    if args.localisation:
        cfg = profile_cfg
        print(f"localisation: {cfg.eval.heldout_pairs} held-out pairs of {cfg.eval.heldout_videos} videos "
              f"({args.profile} profile, crops {cfg.model.exemplar_sz} / {cfg.model.instance_sz})")
        t0 = time.perf_counter()
        loc = localisation_accuracy(args.checkpoint, device, precisions, args.profile, args.bf16_xcorr)
        for k, v in loc.items():
            summ = localisation_summary(v)
            line = (f"  {k:10s} accuracy {summ['accuracy']:.4f} +- {summ['accuracy_se']:.4f}, "
                    f"error {summ['error_px']:.2f} px")
            if k != base:
                d = paired_diff(v["hit"].astype(float), loc[base]["hit"].astype(float))
                changed = int((v["hit"] != loc[base]["hit"]).sum())
                line += f"; vs {base}: {d['diff']:+.4f} +- {d['se']:.4f} ({changed} of {len(v['hit'])} pairs change)"
                summ.update({"diff_vs_" + base: d["diff"], "diff_se": d["se"], "pairs_changed": changed})
            print(line)
            out.setdefault("localisation", {})[k] = summ
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    return out
