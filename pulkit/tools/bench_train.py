"""Training throughput: ``python -m pulkit.tools.bench train [--batch 8] [--reps 6] [--device auto]``.

Times supervised training steps (AlexNet and CIResNet-22, BCE vs NR) and ends with one JSON line.
What is measured and how: docs/modules.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from pulkit.core.config import ModelConfig, NRConfig
from pulkit.data.sequences import read_got10k
from pulkit.data.synthetic import generate_split
from pulkit.method.pairs import CropCache, GroundTruthPairs
from pulkit.method.supervised import BACKBONES, LOSSES, build_initial_net, response_loss
from pulkit.models.net import resolve_device


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m pulkit.tools.bench train", description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8, help="pairs per step")
    p.add_argument("--reps", type=int, default=6, help="timed repetitions of every configuration")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration first")
    p.add_argument("--loss-reps", type=int, default=50, help="timed calls of each loss alone")
    p.add_argument("--videos", type=int, default=4, help="synthetic training videos")
    p.add_argument("--frames", type=int, default=20, help="frames per video")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """One (backbone, loss) configuration: its net, optimiser, and a timed step on a given batch."""

    def __init__(self, backbone: str, loss: str, device: torch.device, seed: int):
        self.backbone, self.loss, self.device = backbone, loss, device
        self.net = build_initial_net(ModelConfig(backbone=backbone), seed).to(device).train()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=1e-2, momentum=0.9, weight_decay=5e-4)
        self.nr = NRConfig()

    def step(self, pairs: GroundTruthPairs, batch_size: int, generator: torch.Generator) -> tuple[float, float]:
        """(seconds of the whole step, seconds of the data assembly alone)."""
        _sync(self.device)
        t0 = time.perf_counter()
        b = pairs.sample_batch(batch_size, generator)
        z, x, c = b["z"].to(self.device), b["x"].to(self.device), b["centers"].to(self.device)
        t_data = time.perf_counter() - t0
        value, _ = response_loss(self.net(z, x), c, self.loss, self.nr, self.net.stride)
        self.opt.zero_grad(set_to_none=True)
        value.backward()
        self.opt.step()
        _sync(self.device)
        return time.perf_counter() - t0, t_data


def _loss_alone(batch: int, reps: int, device: torch.device) -> dict[str, float]:
    """Median ms of forward + backward of each loss on a fixed 17 x 17 map (interleaved)."""
    nr_cfg, g = NRConfig(), torch.Generator().manual_seed(1)
    logits = torch.randn(batch, 1, 17, 17, generator=g).to(device).requires_grad_(True)
    centers = (torch.randint(-8, 9, (batch, 2), generator=g).float() / 8).to(device)
    times: dict[str, list[float]] = {loss: [] for loss in LOSSES}
    for i in range(reps + 3):
        for loss in (LOSSES if i % 2 == 0 else LOSSES[::-1]):
            _sync(device)
            t0 = time.perf_counter()
            value, _ = response_loss(logits, centers, loss, nr_cfg, 8)
            value.backward()
            _sync(device)
            if i >= 3:
                times[loss].append(time.perf_counter() - t0)
            logits.grad = None
    return {loss: 1e3 * statistics.median(t) for loss, t in times.items()}


def main(argv=None) -> int:
    a = _parse(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {a.batch}, "
          f"crops 127/255, {a.reps} repetitions (median)")
    with tempfile.TemporaryDirectory(prefix="pulkit-bench-train-") as tmp:
        root = generate_split(Path(tmp) / "train", a.videos, a.frames, 320, 240, seed=a.seed)
        seqs = read_got10k(root, subset="train")
        pairs = GroundTruthPairs(seqs, ModelConfig(), max_gap=100, shift_px=8.0, seed=a.seed,
                                 cache=CropCache(root=None, memory_mb=1024))
        t0 = time.perf_counter()
        entries = pairs.precache(progress=False)
        print(f"crop cache: {entries} entries of {pairs.geometry.side}^2 px cut in {time.perf_counter() - t0:.1f} s "
              "(warm: memory hits only while timing)")

        runners = [Runner(bb, loss, device, a.seed) for bb in BACKBONES for loss in LOSSES]
        for r in runners:
            for w in range(a.warmup):
                r.step(pairs, a.batch, torch.Generator().manual_seed(10_000 + w))
        step: dict[tuple[str, str], list[float]] = {(r.backbone, r.loss): [] for r in runners}
        data: dict[tuple[str, str], list[float]] = {(r.backbone, r.loss): [] for r in runners}
        ratios: dict[str, list[float]] = {bb: [] for bb in BACKBONES}
        misses = pairs.cache.stats["miss"]
        for rep in range(a.reps):
            order = runners[rep % len(runners):] + runners[:rep % len(runners)]
            this: dict[tuple[str, str], float] = {}
            for r in order:
                s, d = r.step(pairs, a.batch, torch.Generator().manual_seed(rep))   # same batch for every config
                step[(r.backbone, r.loss)].append(s)
                data[(r.backbone, r.loss)].append(d)
                this[(r.backbone, r.loss)] = s
            for bb in BACKBONES:
                ratios[bb].append(this[(bb, "nr")] / this[(bb, "bce")])
        if pairs.cache.stats["miss"] != misses:
            raise RuntimeError("the crop cache missed while timing: the measurement is not from a warm cache")
        loss_ms = _loss_alone(a.batch, a.loss_reps, device)

    med = {k: statistics.median(v) for k, v in step.items()}
    med_data = {k: statistics.median(v) for k, v in data.items()}
    for bb in BACKBONES:
        for loss in LOSSES:
            print(f"  {bb:10s} {loss:3s}: {1e3 * med[(bb, loss)]:7.1f} ms/step median "
                  f"(min {1e3 * min(step[(bb, loss)]):.1f}, max {1e3 * max(step[(bb, loss)]):.1f}), "
                  f"{a.batch / med[(bb, loss)]:5.2f} pairs/s; data assembly {1e3 * med_data[(bb, loss)]:.1f} ms")
        print(f"  {bb:10s} NR / BCE step time: {statistics.median(ratios[bb]):.3f} median of adjacent pairs "
              f"(range {min(ratios[bb]):.3f}-{max(ratios[bb]):.3f})")
    print(f"  loss alone (forward + backward, {a.batch} x 1 x 17 x 17): BCE {loss_ms['bce']:.2f} ms, "
          f"NR {loss_ms['nr']:.2f} ms: NR adds {loss_ms['nr'] - loss_ms['bce']:.2f} ms = "
          f"{100 * (loss_ms['nr'] - loss_ms['bce']) / (1e3 * med[('alexnet', 'bce')]):.2f} % of an AlexNet BCE step")
    all_ratios = ratios["alexnet"] + ratios["ciresnet22"]
    summary = {
        "device": str(device), "threads": torch.get_num_threads(), "batch": a.batch, "reps": a.reps,
        "pairs_per_s_alexnet": a.batch / med[("alexnet", "bce")],
        "pairs_per_s_ciresnet22": a.batch / med[("ciresnet22", "bce")],
        "pairs_per_s_alexnet_nr": a.batch / med[("alexnet", "nr")],
        "pairs_per_s_ciresnet22_nr": a.batch / med[("ciresnet22", "nr")],
        "nr_over_bce_step_time": statistics.median(all_ratios),
        "nr_over_bce_step_time_alexnet": statistics.median(ratios["alexnet"]),
        "nr_over_bce_step_time_ciresnet22": statistics.median(ratios["ciresnet22"]),
        "data_ms_per_step": 1e3 * statistics.median(v for vs in data.values() for v in vs),
        "loss_ms_bce": loss_ms["bce"], "loss_ms_nr": loss_ms["nr"],
        # the step with NR's extra loss cost added: robust to load swings between adjacent steps
        "nr_over_bce_implied_alexnet": 1 + (loss_ms["nr"] - loss_ms["bce"]) / (1e3 * med[("alexnet", "bce")]),
    }
    print(json.dumps(summary, sort_keys=True, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
