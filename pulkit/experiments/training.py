"""Notebook 03, training: ResPUL (TC with CIResNet-22), the TC-BCE ablation (AlexPUL's rounds with
balanced BCE), the supervised SiamFC / SiamDW baselines on labelled training video, their curves and
the results file.  The TC runs reuse notebook 02's runner."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pulkit.core import artifacts
from pulkit.core.results import save_results
from pulkit.data.inventory import training_video  # noqa: F401 (notebook 03 checks the split)
from pulkit.experiments.temporal_correspondence import (
    _finite,
    _read_log,
    _records,
    checkpoint_name,
    round_records,
    run_tc,
    tc_curve,
)
from pulkit.method import supervised
from pulkit.method.loop import load_training_checkpoint, require_complete
from pulkit.method.supervised import supervised_sequences, train_supervised

NOTEBOOK = "03_training"


# --------------------------------------------------------------------------- TC runs
def run_respul(cfg, device="auto", progress: bool = True, data_root=None) -> pd.DataFrame:
    """ResPUL (notebook 03): CIResNet-22, NR loss, ``tc.rounds`` rounds from ``bd_ahm_ciresnet22.pt``."""
    return run_tc(cfg, "nr", "ciresnet22", device, progress, data_root)


def run_tc_bce_ablation(cfg, device="auto", progress: bool = True, data_root=None) -> pd.DataFrame:
    """The ablation (notebook 03): AlexPUL's rounds with balanced BCE instead of the NR loss."""
    return run_tc(cfg, "bce", "alexnet", device, progress, data_root)


# --------------------------------------------------------------------------- supervised baselines (03)
SUPERVISED_BACKBONES = {"SiamFC (supervised)": "alexnet", "SiamDW (supervised)": "ciresnet22"}


def run_supervised_baselines(cfg, device="auto", progress: bool = True, data_root=None) -> pd.DataFrame:
    """Supervised SiamFC (``sup_bce_alexnet.pt``) and SiamDW (``sup_bce_ciresnet22.pt``) with balanced
    BCE on ground-truth pairs of the labelled training video only (``supervised_sequences``; evaluation
    sequences are refused); complete checkpoints are reused.  Returns one row per run."""
    seqs = supervised_sequences(cfg, data_root)
    for backbone in SUPERVISED_BACKBONES.values():
        train_supervised(cfg, seqs, artifacts.supervised_checkpoint(cfg.profile, "bce", backbone), loss="bce",
                         backbone=backbone, device=device, progress=progress)
    return runs_table(training_runs(cfg, "supervised"))


def supervised_curve(cfg, backbone: str) -> list[dict[str, Any]]:
    return [{**rec, "global_step": rec["step"]}
            for rec in _read_log(supervised.log_path(artifacts.supervised_checkpoint(cfg.profile, "bce", backbone)))]


# --------------------------------------------------------------------------- 03's results
TC_RUNS = {"ResPUL": ("nr", "ciresnet22"), "TC-BCE (ablation)": ("bce", "alexnet")}


def training_runs(cfg, which: str = "all") -> list[dict[str, Any]]:
    """Notebook 03's runs as records: name, kind (tc | supervised), loss, backbone, steps (total),
    final_loss, final_giveup_frac (NR runs only), checkpoints, rounds (TC runs), curve.

    ``which``: ``all`` | ``tc`` | ``supervised``.  Every run must be trained (``MissingResultsError``).
    """
    out = []
    if which in ("all", "tc"):
        for name, (loss, backbone) in TC_RUNS.items():
            rounds = round_records(cfg, loss, backbone)
            last = rounds.iloc[-1]
            out.append({"name": name, "kind": "tc", "loss": loss, "backbone": backbone,
                        "steps": int(rounds["steps"].sum()), "final_loss": _finite(last["final_loss"]),
                        "final_giveup_frac": _finite(last["final_giveup_frac"]) if loss == "nr" else None,
                        "checkpoints": list(rounds["checkpoint"]), "rounds": _records(rounds),
                        "curve": tc_curve(cfg, loss, backbone)})
    if which in ("all", "supervised"):
        for name, backbone in SUPERVISED_BACKBONES.items():
            ckpt = require_complete(artifacts.supervised_checkpoint(cfg.profile, "bce", backbone), cfg.profile, f"supervised checkpoint ({backbone})")
            curve = supervised_curve(cfg, backbone)
            out.append({"name": name, "kind": "supervised", "loss": "bce", "backbone": backbone,
                        "steps": int(load_training_checkpoint(ckpt)["step"]),
                        "final_loss": _finite(curve[-1]["loss"]) if curve else None, "final_giveup_frac": None,
                        "checkpoints": [checkpoint_name(cfg.profile, ckpt)], "rounds": [], "curve": curve})
    if which not in ("all", "tc", "supervised"):
        raise ValueError(f"which must be 'all', 'tc' or 'supervised', got {which!r}")
    return out


def runs_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """The runs without their curves and round records: one row each, for display."""
    return pd.DataFrame([{k: v for k, v in r.items() if k not in ("curve", "rounds")} for r in runs])


def training_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """03's key numbers: final loss and steps per run (giveup fraction for NR runs)."""
    out: dict[str, Any] = {}
    for r in runs:
        key = {"ResPUL": "respul", "TC-BCE (ablation)": "tc_bce", "SiamFC (supervised)": "siamfc",
               "SiamDW (supervised)": "siamdw"}.get(r["name"], r["name"])
        out[f"{key}_final_loss"] = r["final_loss"]
        out[f"{key}_steps"] = r["steps"]
        if r["loss"] == "nr":
            out[f"{key}_giveup_frac"] = r["final_giveup_frac"]
    return out


def write_results(cfg, runs: list[dict[str, Any]]) -> Path:
    """Save ``results/<profile>/03_training.json`` (runs with curves, summary, provenance)."""
    if not runs:
        raise ValueError("write_results: no runs to save")
    return save_results(cfg.profile, NOTEBOOK, {
        "runs": runs, "setup": {"rounds": int(cfg.tc.rounds), "tc_steps_per_round": int(cfg.tc.steps_per_round),
                                "supervised_steps": int(cfg.supervised.steps),
                                "supervised_sequences": "labelled training video (synthetic train split)"},
        "summary": training_summary(runs)}, cfg=cfg)


__all__ = ["run_respul", "run_tc_bce_ablation", "run_supervised_baselines", "training_runs", "runs_table",
           "training_summary", "write_results"]
