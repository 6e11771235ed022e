"""Tracker speed: ``python -m pulkit.tools.bench tracker [--backbone alexnet|ciresnet22] [--frames N]``.

Times the optimised ``SiamFCTracker`` against a plain eager one on a bundled sequence and ends with
one JSON line.  What is measured and how: docs/modules.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from pulkit.core.config import ModelConfig, TrackerConfig
from pulkit.core.paths import shared_sequences
from pulkit.data.sequences import read_otb_sequence
from pulkit.models.net import Net, build_net
from pulkit.tracking.siamfc import SiamFCTracker

PLAIN = dict(fuse_bn=False, channels_last=False, crop_backend="cv2")   # eager NCHW, BN as separate ops


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
    """Seconds per network pass (phi(x) on the scale batch + xcorr with the template), alternating."""
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
                t.net.head(t.kernel, t.net.features(inputs[k]))
                _sync(t.device)
                if i >= 2:
                    times[k].append(time.perf_counter() - t0)
    return {k: np.asarray(v) for k, v in times.items()}


def bench_device(net: Net, device: torch.device, frames, box0, repeats: int, net_iters: int) -> dict:
    """Medians of the optimised and plain paths and the median of their paired per-frame ratios."""
    trackers = {"optimised": SiamFCTracker(net, TrackerConfig(), device=device),
                "plain": SiamFCTracker(net, TrackerConfig(**PLAIN), device=device)}
    loop = time_loops(trackers, frames, box0, repeats)
    netw = time_networks(trackers, frames[0], box0, net_iters)
    out = {}
    for k in trackers:
        out[f"loop_{k}"] = float(np.median(loop[k]))
        out[f"loop_{k}_best"] = float(loop[k].min())
        out[f"loop_{k}_repeats"] = [float(v) for v in np.median(loop[k], axis=1)]
        out[f"net_{k}"] = float(np.median(netw[k]))
    out["loop_ratio"] = float(np.median(loop["plain"] / loop["optimised"]))
    out["net_ratio"] = float(np.median(netw["plain"] / netw["optimised"]))
    return out


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pulkit.tools.bench tracker", description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="alexnet", choices=["alexnet", "ciresnet22"])
    p.add_argument("--frames", type=int, default=120, help="frames of the sequence (first one initialises)")
    p.add_argument("--sequence", default="otb/Skating1", help="bundled OTB-layout sequence")
    p.add_argument("--repeats", type=int, default=3, help="runs over the sequence per path; medians reported")
    p.add_argument("--net-iters", type=int, default=10, help="network-only passes per repeat")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    p.add_argument("--device", default="all", choices=["all", "cpu", "cuda"],
                   help="all: CPU, and CUDA when present")
    args = p.parse_args(argv)
    if args.frames < 3:
        p.error("--frames must be at least 3")

    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] if args.device in ("all", "cpu") else []
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            p.error("--device cuda: CUDA is not available")

    torch.manual_seed(0)
    cfg = ModelConfig(backbone=args.backbone)
    net = build_net(cfg).eval()
    frames, box0 = load_frames(args.sequence, args.frames)
    scales = TrackerConfig().scale_num
    gflops, gflops_z = count_gflops(net, cfg.exemplar_sz, cfg.instance_sz, scales)

    print(f"tracker speed: {args.backbone} {cfg.exemplar_sz}/{cfg.instance_sz}, {scales} scales, "
          f"{args.sequence} first {len(frames)} frames, {args.repeats} repeats, torch {torch.__version__}, "
          f"{args.threads} threads, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"work per frame: {gflops:.2f} GFLOP (3 x {cfg.instance_sz} backbone + xcorr); template {gflops_z:.2f} GFLOP once")

    results = {}
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for dev in devices:
        peak = sgemm_gflops(dev)
        fma, fma_note = fma_peak_gflops(args.threads) if dev.type == "cpu" else (None, "")
        r = bench_device(net, dev, frames, box0, args.repeats, args.net_iters)
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
        print(f"\n[{dev.type}] {name}")
        print(f"  sgemm 4096^2 fp32: {peak:.0f} GFLOP/s (reference peak, measured now)")
        if fma:
            print(f"  FMA theoretical: {fma:.0f} GFLOP/s = {fma_note}")
        for k in ("optimised", "plain"):
            reps = ", ".join(f"{1e3 * v:.1f}" for v in r[f"loop_{k}_repeats"])
            print(f"  {k:9s} whole loop {1 / r[f'loop_{k}']:6.2f} fps ({1e3 * r[f'loop_{k}']:.1f} ms/frame median; "
                  f"per repeat {reps}; fastest frame {1e3 * r[f'loop_{k}_best']:.1f} ms)   "
                  f"network {1 / r[f'net_{k}']:6.2f} fps ({1e3 * r[f'net_{k}']:.1f} ms)")
        net_gflops = gflops / r["net_optimised"]
        print(f"  network throughput {net_gflops:.0f} GFLOP/s = {100 * net_gflops / peak:.0f} % of sgemm"
              + (f", {100 * net_gflops / fma:.0f} % of FMA theoretical" if fma else ""))
        print(f"  speed-up vs plain eager NCHW (median of paired per-frame ratios): whole loop "
              f"x{r['loop_ratio']:.2f}, network x{r['net_ratio']:.2f}; loop time beyond the network "
              f"{1e3 * (r['loop_optimised'] - r['net_optimised']):.1f} ms")
        results[dev.type] = {
            "whole_loop_fps": 1 / r["loop_optimised"], "network_fps": 1 / r["net_optimised"],
            "plain_whole_loop_fps": 1 / r["loop_plain"], "plain_network_fps": 1 / r["net_plain"],
            "speedup_vs_plain": r["loop_ratio"], "network_speedup_vs_plain": r["net_ratio"],
            "sgemm_gflops": peak, "fma_peak_gflops": fma, "fraction_of_sgemm_peak": net_gflops / peak,
        }
    if load_before is not None:
        print(f"\nload average (1 min) at start {load_before:.2f}, at end {os.getloadavg()[0]:.2f} "
              f"on {os.cpu_count()} CPUs: above ~1 the figures include other jobs' time")
    main_dev = "cuda" if "cuda" in results else "cpu"
    summary = {"backbone": args.backbone, "device": main_dev, "gflops_per_frame": gflops,
               "frames": len(frames), "threads": args.threads, "load_average_start": load_before,
               **{k: results[main_dev][k] for k in ("whole_loop_fps", "network_fps", "speedup_vs_plain")},
               "per_device": results}
    print(json.dumps(summary, sort_keys=True, default=float))
    return 0
