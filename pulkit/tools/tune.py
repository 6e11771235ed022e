"""Choose a profile's learning rates on the tuning split (synthetic videos of seed 4000), never on evaluation data.

``python -m pulkit.tools.tune --profile cpu --stage bd --lr 0.003 0.01 0.03`` trains the stage at each
rate with the profile's schedule and step count (``tc``: round 1 on the run's round-1 pairs, from its BD
checkpoint), scores localisation on held-out tuning pairs and writes ``artifacts.tuning_path(profile)``.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any, Sequence

from pulkit.core import artifacts
from pulkit.core.config import load_config
from pulkit.core.io import read_json, write_json
from pulkit.core.provenance import provenance
from pulkit.core.results import cpu_model
from pulkit.data.inventory import training_video
from pulkit.evaluation.powered import clean_pairs, heldout_videos, localisation, localisation_summary
from pulkit.method.bd import train_bd
from pulkit.method.reference import random_bn
from pulkit.method.supervised import supervised_sequences, train_supervised
from pulkit.method.tc import train_tc_round
from pulkit.models.net import load_net
from pulkit.models.precision import resolve_precision

STAGES = ("bd", "tc", "supervised")


def tune(profile: str, stage: str, lrs: Sequence[float], pairs: int = 2000, seed: int = 0,
         device: str = "auto", progress: bool = True) -> list[dict[str, Any]]:
    """Train ``stage`` at each learning rate and score it on the tuning split; returns (and saves) the records."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; valid: {', '.join(STAGES)}")
    base = load_config(profile, seed=seed)
    tune_pairs = clean_pairs(base, heldout_videos(base, "tune"), n=pairs, seed=seed)
    out_dir = artifacts.tuning_dir(profile)
    records = []
    precision = resolve_precision(base.precision, device)     # scored as trained
    ref = localisation_summary(localisation(random_bn(base, training_video(base), device=device), tune_pairs,
                                            device=device, precision=precision))
    for lr in lrs:
        t0 = time.time()
        cfg = base.override({stage: {"lr": float(lr)}})
        ckpt = out_dir / f"{stage}_lr{lr:g}_s{seed}.pt"
        if stage == "bd":
            train_bd(cfg, training_video(cfg), ckpt, device=device, progress=progress)
        elif stage == "tc":     # round 1 of the profile's schedule, on the pairs its BD model mined
            init, table = artifacts.bd_checkpoint(profile), artifacts.pairs_table(profile, 1)
            for f, nb in ((init, "01"), (table, "02")):
                if not f.is_file():
                    raise artifacts.missing(f, profile, "input of the TC learning-rate search")
            train_tc_round(cfg, init, table, training_video(cfg), 1, ckpt, device=device, progress=progress)
        else:
            train_supervised(cfg, supervised_sequences(cfg), ckpt, loss="bce", device=device, progress=progress)
        summary = localisation_summary(localisation(load_net(ckpt, device), tune_pairs, device=device,
                                                    precision=precision))
        records.append({"stage": stage, "lr": float(lr), "seed": seed, **summary, "random_bn": ref,
                        "scored_in": precision,
                        "seconds": round(time.time() - t0, 1),
                        "schedule": {k: v for k, v in cfg.to_dict()[stage].items()
                                     if k in ("lr", "lr_end", "schedule", "warmup", "steps", "batch_size")}})
        print(json.dumps(records[-1]), flush=True)
    path = artifacts.tuning_path(profile)
    old = read_json(path) if path.is_file() else {"records": []}
    keep = [r for r in old.get("records", []) if not (r["stage"] == stage and r["seed"] == seed
                                                      and r["lr"] in {float(x) for x in lrs})]
    notes = {k: v for k, v in old.items() if k.startswith("note")}      # hand-written notes are kept
    write_json(path, {**notes, "records": keep + records, "split": "tune", "pairs": pairs, "cpu_model": cpu_model(),
                      "provenance": provenance(profile, seed, base)})
    return records


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pulkit.tools.tune", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--stage", choices=STAGES, required=True)
    p.add_argument("--lr", type=float, nargs="+", required=True)
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    tune(a.profile, a.stage, a.lr, a.pairs, a.seed, a.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
