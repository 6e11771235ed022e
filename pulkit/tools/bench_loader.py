"""Curated-pair loading speed: ``python -m pulkit.tools.bench loader [--consume 2000] [--workers 0 2]``.

Pairs per second per DataLoader worker over curated shards (read + decode + crop + collate) and the workers
needed to feed an assumed GPU consumption rate; ends with one JSON line.  Method: docs/modules.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from pulkit.core.config import load_config
from pulkit.core.results import cpu_model
from pulkit.data import curate, loader
from pulkit.data.fake_datasets import write_got10k


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m pulkit.tools.bench loader", description=__doc__.splitlines()[0])
    p.add_argument("--consume", type=float, default=2000.0,
                   help="pairs per second the GPU consumes (default 2,000: AlexNet bf16 on an H100, issue 14's target)")
    p.add_argument("--cores", type=int, default=16, help="CPU cores of the GPU machine (default 16, as an H100 here)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                   help="DataLoader worker counts timed (0: the main process alone; the headline is 1 worker)")
    p.add_argument("--codecs", nargs="+", default=["jpeg", "raw"], choices=curate.CODECS, help="record codecs timed")
    p.add_argument("--batch", type=int, default=8, help="pairs per batch (the paper's supervised / TC batch)")
    p.add_argument("--steps", type=int, default=40, help="timed batches per configuration")
    p.add_argument("--reps", type=int, default=3, help="repetitions of every configuration (median)")
    p.add_argument("--videos", type=int, default=4, help="generated GOT-10k videos (1280 x 720 and 1920 x 1080)")
    p.add_argument("--frames", type=int, default=24, help="frames per video")
    p.add_argument("--profile", default="paper", help="profile whose crop geometry is cut (default paper: 127 / 255)")
    return p.parse_args(argv)


def _time(dataset: loader.CuratedPairs, workers: int, steps: int) -> float:
    """Seconds for ``steps`` batches through a fresh loader, after its first batch (worker start-up excluded)."""
    it = iter(loader.curated_loader(dataset, workers, prefetch=4, device="cpu"))
    next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    a = _parse(argv)
    torch.set_num_threads(1)                       # a loader worker is one process on one core
    print(f"CPU {cpu_model()}, {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), batch {a.batch}, "
          f"{a.steps} batches x {a.reps} repetitions (median), profile {a.profile}")
    rates: dict[str, dict[int, float]] = {}
    sizes: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pulkit-bench-loader-") as tmp:
        os.environ["PULKIT_CURATED"] = str(Path(tmp) / "curated")
        source = write_got10k(Path(tmp) / "got10k", videos=a.videos, val_videos=1, frames=a.frames)
        for codec in a.codecs:
            cfg = load_config(a.profile, {"data": {"curate_codec": codec}})
            store = curate.prepare(cfg, "got10k", source, progress=False, log=lambda m: None)
            sizes[codec] = store.manifest["crop_bytes"] / max(store.manifest["crops"], 1)
            m = cfg.model
            steps = a.steps * (a.reps + 1)
            ds = loader.CuratedPairs([store], m.exemplar_sz, m.instance_sz, a.batch, steps + 1,
                                     cfg.supervised.max_gap, cfg.supervised.search_shift_px, seed=0)
            rates[codec] = {}
            for w in a.workers:
                times = [_time(ds, w, a.steps) for _ in range(a.reps)]
                total = a.batch * a.steps / statistics.median(times)
                rates[codec][w] = total / max(w, 1)
                print(f"  {codec:4s} records ({sizes[codec] / 1024:.1f} KB a crop of {store.side} px): {w} workers "
                      f"{total:7.1f} pairs/s = {rates[codec][w]:6.1f} per worker")
    codec = a.codecs[0]
    per_worker = rates[codec][1 if 1 in a.workers else min(a.workers)]
    need = math.ceil(a.consume / per_worker)
    print(f"{codec}: one worker loads {per_worker:.0f} pairs/s; {a.consume:.0f} pairs/s need {need} workers; "
          f"{a.cores} cores (one left to the training process) feed {per_worker * (a.cores - 1):.0f} pairs/s")
    summary = {"cpu_model": cpu_model(), "cores_here": os.cpu_count(), "batch": a.batch, "codec": codec,
               "pairs_per_s_per_worker": per_worker, "consume_pairs_per_s": a.consume, "workers_needed": need,
               "cores": a.cores, "pairs_per_s_on_cores": per_worker * (a.cores - 1),
               "per_worker": {c: {str(w): r for w, r in v.items()} for c, v in rates.items()},
               "bytes_per_crop": sizes}
    print(json.dumps(summary, sort_keys=True, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
