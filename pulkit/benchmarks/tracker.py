"""Tracker speed: ``python -m pulkit.bench tracker [--backbone alexnet|ciresnet22] [--frames N]``.

Measures, on CPU and on CUDA when present, over the first ``--frames`` frames of a bundled
sequence (decoded before timing; each ``update`` gets an RGB array):

* whole-loop fps: ``update(image) -> box`` including crops, the 3-scale forward, upsampling;
* network fps: phi(x) on the 3 x 255 scale batch plus the xcorr with the cached template;
* the same two for a plain eager path (BN not folded, NCHW) in the same run: the speed-up;
* GFLOP per frame, counted from the layer shapes (2 x multiply-adds of every conv and the xcorr);
* the fraction of this machine's fp32 peak, with a large sgemm measured in the same run as the
  reference and the FMA theoretical peak where /proc/cpuinfo allows deriving it.

Medians over repeats (optimised and plain runs interleaved so both see the same load).
The last line is one JSON object.  Timings on shared machines are noisy: compare ratios.
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

from ..config import ModelConfig, TrackerConfig
from ..data.crops import from_one_based
from ..data.images import read_rgb
from ..models.net import Net, build_net
from ..paths import shared_sequences
from ..tracker import SiamFCTracker

PLAIN = dict(fuse_bn=False, channels_last=False, crop_backend="cv2")   # eager NCHW, BN as separate ops


# --------------------------------------------------------------------------- inputs
def load_frames(sequence: str, frames: int) -> tuple[list[np.ndarray], np.ndarray]:
    """First ``frames`` frames (RGB arrays) and the first box (0-based) of a bundled OTB sequence."""
    root = shared_sequences() / sequence
    files = sorted((root / "img").glob("*.jpg"))[:frames]
    gt_file = root / "groundtruth_rect.txt"
    if not files or not gt_file.is_file():
        raise FileNotFoundError(f"{root}: not an OTB-layout sequence (img/*.jpg, groundtruth_rect.txt)")
    first = gt_file.read_text().splitlines()[0].replace("\t", ",").replace(" ", ",")
    box0 = from_one_based([float(v) for v in first.split(",") if v])[0]
    return [read_rgb(f) for f in tqdm(files, desc="decode", leave=False)], box0


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
def time_loop(tracker: SiamFCTracker, frames: list[np.ndarray], box0, warmup: int = 2) -> list[float]:
    """Seconds per ``update`` over ``frames[1:]`` after ``init`` on ``frames[0]``."""
    tracker.init(frames[0], box0)
    for f in frames[1:1 + warmup]:
        tracker.update(f)
    tracker.init(frames[0], box0)
    times = []
    for f in frames[1:]:
        t = time.perf_counter()
        tracker.update(f)
        times.append(time.perf_counter() - t)
    return times


def time_network(tracker: SiamFCTracker, frame: np.ndarray, box0, iters: int) -> list[float]:
    """Seconds per network pass (phi(x) on the scale batch + xcorr), crops prepared beforehand."""
    tracker.init(frame, box0)
    x = tracker._crops(frame, tracker.init_x_sz * tracker.scale_factors, tracker.instance_sz)
    times = []
    with torch.inference_mode():
        for i in range(iters + 2):
            _sync(tracker.device)
            t = time.perf_counter()
            tracker.net.head(tracker.kernel, tracker.net.features(x))
            _sync(tracker.device)
            if i >= 2:
                times.append(time.perf_counter() - t)
    return times


def bench_device(net: Net, device: torch.device, frames, box0, repeats: int, net_iters: int) -> dict:
    trackers = {"optimised": SiamFCTracker(net, TrackerConfig(), device=device),
                "plain": SiamFCTracker(net, TrackerConfig(**PLAIN), device=device)}
    loop = {k: [] for k in trackers}
    netw = {k: [] for k in trackers}
    best = {k: float("inf") for k in trackers}
    for _ in tqdm(range(repeats), desc=f"{device.type} repeats", leave=False):
        for k, t in trackers.items():       # interleaved: both see the same background load
            times = time_loop(t, frames, box0)
            loop[k].append(statistics.median(times))
            best[k] = min(best[k], min(times))
            netw[k].append(statistics.median(time_network(t, frames[0], box0, net_iters)))
    med = {f"{what}_{k}": statistics.median(d[k]) for what, d in (("loop", loop), ("net", netw)) for k in trackers}
    med["loop_spread"] = {k: [min(v), max(v)] for k, v in loop.items()}
    med["loop_best"] = best
    return med


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pulkit.bench tracker", description=__doc__.splitlines()[0])
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
            lo, hi = r["loop_spread"][k]
            print(f"  {k:9s} whole loop {1 / r[f'loop_{k}']:6.2f} fps ({1e3 * r[f'loop_{k}']:.1f} ms/frame median; "
                  f"repeats {1e3 * lo:.1f}-{1e3 * hi:.1f}, fastest frame {1e3 * r['loop_best'][k]:.1f} ms)   "
                  f"network {1 / r[f'net_{k}']:6.2f} fps ({1e3 * r[f'net_{k}']:.1f} ms)")
        net_gflops = gflops / r["net_optimised"]
        print(f"  network throughput {net_gflops:.0f} GFLOP/s = {100 * net_gflops / peak:.0f} % of sgemm"
              + (f", {100 * net_gflops / fma:.0f} % of FMA theoretical" if fma else ""))
        print(f"  speed-up vs plain eager NCHW: whole loop x{r['loop_plain'] / r['loop_optimised']:.2f}, "
              f"network x{r['net_plain'] / r['net_optimised']:.2f}; "
              f"loop overhead beyond the network {1e3 * (r['loop_optimised'] - r['net_optimised']):.1f} ms")
        results[dev.type] = {
            "whole_loop_fps": 1 / r["loop_optimised"], "network_fps": 1 / r["net_optimised"],
            "plain_whole_loop_fps": 1 / r["loop_plain"], "plain_network_fps": 1 / r["net_plain"],
            "speedup_vs_plain": r["loop_plain"] / r["loop_optimised"],
            "network_speedup_vs_plain": r["net_plain"] / r["net_optimised"],
            "sgemm_gflops": peak, "fma_peak_gflops": fma, "fraction_of_sgemm_peak": net_gflops / peak,
        }
    main_dev = "cuda" if "cuda" in results else "cpu"
    summary = {"backbone": args.backbone, "device": main_dev, "gflops_per_frame": gflops,
               "frames": len(frames), "threads": args.threads,
               **{k: results[main_dev][k] for k in ("whole_loop_fps", "network_fps", "speedup_vs_plain")},
               "per_device": results}
    print(json.dumps(summary, sort_keys=True, default=float))
    return 0
