"""Notebook 01, background discrimination: the profile's BD runs (AHM and RSS on AlexNet, AHM on
CIResNet-22), their training curves, AHM vs RSS batch hardness under each trained bank, and the
results file (``01_background_discrimination.json`` + the Fig. 1 / 2 crops in its ``.npz``)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from pulkit.core import artifacts
from pulkit.core.io import read_jsonl
from pulkit.core.results import save_results
from pulkit.data.inventory import training_video  # noqa: F401 (notebook 01's video)
from pulkit.method.bd import bd_batches, hardness_stats, log_path, train_bd
from pulkit.method.loop import load_training_checkpoint

NOTEBOOK = "01_background_discrimination"
SAMPLERS = ("ahm", "rss")
RUNS: dict[str, tuple[str, str]] = {   # run name -> (sampler, backbone)
    "ahm_alexnet": ("ahm", "alexnet"),
    "rss_alexnet": ("rss", "alexnet"),
    "ahm_ciresnet22": ("ahm", "ciresnet22"),
}
HARDNESS_BANKS = ("ahm_alexnet", "rss_alexnet")   # the trained models whose banks judge batch hardness
CANDIDATE_COLUMNS = ("cand_id", "video", "frame", "x", "y", "w", "h")   # saved per batch (frame paths are not)


def _run(name: str) -> tuple[str, str]:
    if name not in RUNS:
        raise ValueError(f"unknown BD run {name!r}; valid: {', '.join(RUNS)}")
    return RUNS[name]


# --------------------------------------------------------------------------- runs
def run_config(cfg, name: str):
    """The effective config of run ``name``: its backbone and sampler, and for CIResNet-22
    ``bd.steps_ciresnet22`` steps when that is set."""
    sampler, backbone = _run(name)
    steps = cfg.bd.steps_ciresnet22 if backbone == "ciresnet22" and cfg.bd.steps_ciresnet22 else cfg.bd.steps
    return cfg.override({"model": {"backbone": backbone}, "bd": {"sampler": sampler, "steps": int(steps)}})


def select_runs(names=None) -> list[str]:
    """The BD runs notebook 01 trains, in ``RUNS`` order: all of them for ``None``, else ``names``
    (its ``BD_RUNS`` parameter: a seed sweep of the AlexNet chain can skip ``ahm_ciresnet22``, which
    only ResPUL in notebook 03 reads).  The ``HARDNESS_BANKS`` runs are required: Figs. 1 and 2 and
    the hardness table come from them.  Unknown or missing names raise ``ValueError``."""
    if names is None:
        return list(RUNS)
    if isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        raise ValueError(f"unknown BD run(s) {unknown}; valid: {', '.join(RUNS)}")
    missing = [n for n in HARDNESS_BANKS if n not in names]
    if missing:
        raise ValueError(f"BD runs {missing} are required (Figs. 1, 2 and the batch hardness use their models); "
                         f"got {names}")
    return [n for n in RUNS if n in names]


def checkpoint(profile: str, name: str) -> Path:
    """``checkpoints/<profile>/bd_<sampler>_<backbone>.pt`` of run ``name``."""
    sampler, backbone = _run(name)
    return artifacts.bd_checkpoint(profile, sampler, backbone)


def runs_table(cfg) -> pd.DataFrame:
    """One row per run: sampler, backbone, steps, batch size, checkpoint file name."""
    rows = []
    for name in RUNS:
        c = run_config(cfg, name)
        rows.append({"run": name, "sampler": c.bd.sampler, "backbone": c.model.backbone, "steps": c.bd.steps,
                     "batch_size": c.bd.batch_size, "crop_sz": c.bd.crop_sz,
                     "checkpoint": checkpoint(cfg.profile, name).name})
    return pd.DataFrame(rows).set_index("run")


def checkpoint_status(cfg, name: str) -> str:
    """State of run ``name``'s checkpoint for ``cfg``: ``missing``; ``complete`` (same config, all steps);
    ``partial`` (same config, interrupted: resumes); ``stale`` (another stage or config: retrained)."""
    path = checkpoint(cfg.profile, name)
    if not path.is_file():
        return "missing"
    c = run_config(cfg, name)
    ck = load_training_checkpoint(path)
    if ck.get("stage") != f"bd/{c.bd.sampler}" or ck.get("config") != c.to_dict():
        return "stale"
    return "complete" if ck.get("complete") and int(ck.get("step", 0)) >= c.bd.steps else "partial"


def train_run(cfg, name: str, sequences, device: str = "auto", progress: bool = True) -> Path:
    """Train run ``name`` of ``cfg.profile``: a complete checkpoint returns at once, an interrupted one
    resumes, and one written with another config is trained afresh (the notice says so)."""
    c = run_config(cfg, name)
    status = checkpoint_status(cfg, name)
    if status == "stale":
        print(f"{checkpoint(cfg.profile, name)}: written with another config; training {name} afresh")
    return train_bd(c, sequences, checkpoint(cfg.profile, name), sampler=c.bd.sampler, resume=status != "stale",
                    device=device, progress=progress)


# --------------------------------------------------------------------------- logs
def read_log(ckpt_path: str | Path) -> pd.DataFrame:
    """The training log beside a BD checkpoint (``<ckpt>.jsonl``) as a table, one row per logged step:
    ``step``, ``loss`` (InfoNCE), ``hardness``, ``ahm``, ``lr``, ``grad_norm``, ``pairs_per_s``, ``elapsed``."""
    path = log_path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no BD training log (train the run first: notebooks/{NOTEBOOK}.ipynb)")
    rows = read_jsonl(path)
    missing = sorted({"step", "loss", "hardness"} - set(rows[0])) if rows else ["every record"]
    if missing:
        raise ValueError(f"{path}: BD log lacks {missing}")
    return pd.DataFrame(rows).sort_values("step").reset_index(drop=True)


def training_curves(ckpts: Mapping[str, str | Path]) -> dict[str, pd.DataFrame]:
    """``{run: read_log(ckpt)[["step", "loss", "hardness", "lr"]]}`` for every run given."""
    return {name: read_log(path)[["step", "loss", "hardness", "lr"]] for name, path in ckpts.items()}


def final_loss(curve: pd.DataFrame, fraction: float = 0.1) -> float:
    """Mean logged loss over the last ``fraction`` of the run's steps (at least the last record)."""
    if curve.empty:
        raise ValueError("final_loss: the training log is empty")
    last = int(curve["step"].max())
    tail = curve[curve["step"] > last - max(1, math.ceil(fraction * last))]
    return float(tail["loss"].mean())


# --------------------------------------------------------------------------- hardness
def hardness_by_bank(cfg, ckpts: Mapping[str, str | Path], sequences, n_batches: int = 50, seed: int = 0,
                     device: str = "auto", progress: bool = True) -> dict[str, dict[str, Any]]:
    """``{bank run: hardness_stats}``: ``n_batches`` AHM and RSS batches of ``bd.batch_size`` drawn under
    the embedding bank of each trained AlexNet model (``HARDNESS_BANKS``)."""
    return {name: hardness_stats(run_config(cfg, name), ckpts[name], sequences, seed=seed, n_batches=n_batches,
                                 device=device, progress=progress)
            for name in HARDNESS_BANKS}


def hardness_table(hardness: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Rows (bank, sampler) with the mean, std, min and max batch hardness over the drawn batches."""
    rows = []
    for bank, st in hardness.items():
        for s in SAMPLERS:
            v = np.asarray(st[s]["values"], dtype=float)
            rows.append({"bank": bank, "sampler": s.upper(), "mean": st[s]["mean"], "std": st[s]["std"],
                         "min": float(v.min()), "max": float(v.max()), "batches": len(v),
                         "batch_size": st["batch_size"]})
    return pd.DataFrame(rows).set_index(["bank", "sampler"])


# --------------------------------------------------------------------------- summary and files
def batches_record(batches: Mapping[str, Any]) -> dict[str, Any]:
    """``bd_batches``' output without the crops, JSON-ready (the crops go to the npz)."""
    out: dict[str, Any] = {k: batches[k] for k in ("batch_size", "seed", "n_candidates")}
    for s in SAMPLERS:
        rec = batches[s]
        cands = pd.DataFrame(rec["candidates"])[list(CANDIDATE_COLUMNS)]
        out[s] = {"cand_ids": [int(i) for i in rec["cand_ids"]], "hardness": float(rec["hardness"]),
                  "candidates": json.loads(cands.to_json(orient="records"))}
    return out


def batch_table(batches: Mapping[str, Any]) -> pd.DataFrame:
    """The candidates of both batches, one row each: ``sampler``, ``rank`` (position in the batch; AHM's
    0 is the anchor, then its neighbours most similar first) and ``CANDIDATE_COLUMNS``."""
    rows = [pd.DataFrame(batches[s]["candidates"])[list(CANDIDATE_COLUMNS)].assign(sampler=s.upper(), rank=np.arange(
        len(batches[s]["cand_ids"]))) for s in SAMPLERS]
    return pd.concat(rows, ignore_index=True).set_index(["sampler", "rank"])


def summarize(curves: Mapping[str, pd.DataFrame], hardness: Mapping[str, Mapping[str, Any]],
              batches: Mapping[str, Any]) -> dict[str, float | int]:
    """The key numbers (flat): batch hardness AHM vs RSS under each AlexNet bank (mean, std, AHM - RSS),
    the final loss of every run, the candidate count and the batch size."""
    out: dict[str, float | int] = {"candidates": int(batches["n_candidates"]), "batch_size": int(batches["batch_size"])}
    for bank, st in hardness.items():
        tag = "" if bank == HARDNESS_BANKS[0] else f"_{bank.split('_')[0]}_bank"
        for s in SAMPLERS:
            out[f"hardness_{s}{tag}"] = float(st[s]["mean"])
            out[f"hardness_{s}_std{tag}"] = float(st[s]["std"])
        out[f"hardness_gap{tag}"] = float(st["ahm"]["mean"] - st["rss"]["mean"])
    out["hardness_batches"] = int(next(iter(hardness.values()))["n_batches"]) if hardness else 0
    for name, curve in curves.items():
        out[f"final_loss_{name}"] = final_loss(curve)
    return out


def results_record(cfg, curves: Mapping[str, pd.DataFrame], hardness: Mapping[str, Mapping[str, Any]],
                   batches: Mapping[str, Any]) -> dict[str, Any]:
    """Everything ``01_background_discrimination.json`` holds: runs, curves, hardness, the Fig. 1 / 2 batches (no crops), summary."""
    runs = runs_table(cfg).reset_index()
    return {
        "runs": json.loads(runs.to_json(orient="records")),
        "curves": {name: {k: c[k].tolist() for k in c.columns} for name, c in curves.items()},
        "hardness": {bank: {"n_batches": int(st["n_batches"]), "batch_size": int(st["batch_size"]),
                            "seed": int(st["seed"]),
                            **{s: {"mean": float(st[s]["mean"]), "std": float(st[s]["std"]),
                                   "values": [float(v) for v in st[s]["values"]]} for s in SAMPLERS}}
                     for bank, st in hardness.items()},
        "batches": batches_record(batches),
        "summary": summarize(curves, hardness, batches),
    }


def write_results(cfg, record: Mapping[str, Any], batches: Mapping[str, Any]) -> Path:
    """Write ``01_background_discrimination.json`` (``record`` + provenance) and its ``.npz`` (the
    un-augmented crops of the Fig. 1 / 2 batches, uint8 B x S x S x 3 under ``ahm`` and ``rss``)."""
    crops = {s: np.asarray(batches[s]["crops"]) for s in SAMPLERS}
    for s, a in crops.items():
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3 or len(a) != len(record["batches"][s]["cand_ids"]):
            raise ValueError(f"write_results: {s} crops must be uint8 B x S x S x 3 matching the batch's candidates, "
                             f"got {a.dtype} {a.shape}")
    return save_results(cfg.profile, NOTEBOOK, dict(record), cfg=cfg, arrays=crops)


def browse_batches(cfg, ckpt_path: str | Path, sequences, n: int = 5, seed: int = 0,
                   device: str = "auto") -> list[dict[str, np.ndarray]]:
    """``n`` pairs of AHM and RSS batches (seeds ``seed .. seed + n - 1``) as ``{"ahm": crops, "rss": crops}``
    for ``pulkit.figures.widgets.batch_browser``."""
    out = []
    for i in range(n):
        b = bd_batches(run_config(cfg, "ahm_alexnet"), ckpt_path, sequences, seed=seed + i, device=device,
                       progress=False)
        out.append({s: b[s]["crops"] for s in SAMPLERS})
    return out


def figure_batches(cfg, ckpt_path: str | Path, sequences, device: str = "auto") -> dict[str, Any]:
    """One AHM and one RSS batch (Figs. 1 and 2) drawn with the AHM-trained AlexNet's bank."""
    return bd_batches(run_config(cfg, "ahm_alexnet"), ckpt_path, sequences, seed=cfg.seed, device=device)
