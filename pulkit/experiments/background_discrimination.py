"""Notebook 01, background discrimination: the profile's BD runs (AHM and RSS on AlexNet, AHM on
CIResNet-22), their training curves, AHM vs RSS batch hardness, the claim "AHM helps small batches"
(AHM vs RSS at each ``bd.claim_batches`` B, scored by localisation) and the results file."""
from __future__ import annotations

import hashlib
import inspect
import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from pulkit.core import artifacts, paths
from pulkit.core.config import without_claims
from pulkit.core.io import read_jsonl, write_npz
from pulkit.core.results import save_results
from pulkit.data.inventory import training_video  # noqa: F401 (notebook 01's video)
from pulkit.evaluation.powered import (
    Z95,
    claim_record,
    combine_seeds,
    eval_pairs,
    localisation,
    localisation_summary,
    paired_diff,
)
from pulkit.method.bd import bd_batches, hardness_stats, log_path, train_bd
from pulkit.method.loop import config_diff, load_training_checkpoint
from pulkit.method.reference import random_bn
from pulkit.models.net import load_net, resolve_device
from pulkit.models.precision import resolve_precision

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
    ``bd.steps_ciresnet22`` steps when that is set.  The claims' settings (which runs a claim compares,
    not how one trains) are reset to their defaults (``without_claims``), so changing them retrains no BD run."""
    sampler, backbone = _run(name)
    steps = cfg.bd.steps_ciresnet22 if backbone == "ciresnet22" and cfg.bd.steps_ciresnet22 else cfg.bd.steps
    return without_claims(cfg).override({"model": {"backbone": backbone}, "bd": {"sampler": sampler, "steps": int(steps)}})


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
    return _status(checkpoint(cfg.profile, name), run_config(cfg, name))


def _status(path: Path, c) -> str:
    if not path.is_file():
        return "missing"
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


# --------------------------------------------------------------------------- claim: AHM helps small batches
CLAIM = "ahm_small_batch"
CLAIM_MARGIN = 0.0           # verdict margin (fraction): "does not hold" needs AHM measurably worse than RSS
POWER_Z = Z95 + 0.8416       # a true difference of POWER_Z x se is detected with 80 % power (two-sided 5 %)


def claim_seeds(cfg, batch_size: int) -> tuple[int, ...]:
    """Seeds of the AHM / RSS pairs at ``batch_size``: ``bd.claim_seeds``; at the main runs' B
    (``bd.batch_size``) ``bd.claim_seeds_main``, whose default (None) is the main runs' seed alone."""
    if int(batch_size) == int(cfg.bd.batch_size):
        seeds = cfg.bd.claim_seeds_main
        return (int(cfg.seed),) if seeds is None else tuple(int(s) for s in seeds)
    return tuple(int(s) for s in cfg.bd.claim_seeds)


def claim_run_config(cfg, sampler: str, batch_size: int, seed: int):
    """The AlexNet run of ``sampler`` (``run_config``) with ``seed`` and ``bd.batch_size`` set: the AHM and
    RSS runs of one (B, seed) differ in ``bd.sampler`` only (same steps, schedule, initial weights, draws)."""
    return run_config(cfg.override({"bd": {"batch_size": int(batch_size)}}, seed=int(seed)), f"{sampler}_alexnet")


def pair_difference(cfg, batch_size: int, seed: int) -> list[str]:
    """The config keys in which the AHM and the RSS run of (``batch_size``, ``seed``) differ."""
    return config_diff(claim_run_config(cfg, "ahm", batch_size, seed).to_dict(),
                       claim_run_config(cfg, "rss", batch_size, seed).to_dict())


def claim_checkpoint(cfg, sampler: str, batch_size: int, seed: int) -> Path:
    """The main run's checkpoint when the claim run is that very run (same config), else
    ``artifacts.bd_claim_checkpoint``."""
    main = f"{sampler}_alexnet"
    if claim_run_config(cfg, sampler, batch_size, seed).to_dict() == run_config(cfg, main).to_dict():
        return checkpoint(cfg.profile, main)
    return artifacts.bd_claim_checkpoint(cfg.profile, sampler, batch_size, seed)


def claim_plan(cfg) -> pd.DataFrame:
    """The claim's runs, AHM then RSS of each (B, seed): ``batch_size``, ``seed``, ``sampler``, ``steps``,
    ``lr``, ``warmup``, ``checkpoint`` (Path) and ``reused`` (a main run of the notebook: no extra training).
    Raises ``ValueError`` for unusable settings and ``RuntimeError`` when a pair would differ in more
    than the sampler."""
    batches = [int(b) for b in cfg.bd.claim_batches]
    if not batches or len(set(batches)) != len(batches) or min(batches) < 2:
        raise ValueError(f"bd.claim_batches must be distinct batch sizes >= 2, got {cfg.bd.claim_batches}")
    rows = []
    for b in batches:
        seeds = claim_seeds(cfg, b)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"the claim needs distinct seeds at B = {b}, got {seeds}")
        for s in seeds:
            diff = pair_difference(cfg, b, s)
            if diff != ["bd.sampler"]:
                raise RuntimeError(f"AHM and RSS at B = {b}, seed {s} would differ in {diff}, not the sampler alone")
            for sampler in SAMPLERS:
                c = claim_run_config(cfg, sampler, b, s)
                path = claim_checkpoint(cfg, sampler, b, s)
                rows.append({"batch_size": b, "seed": s, "sampler": sampler, "steps": int(c.bd.steps),
                             "lr": float(c.bd.lr), "warmup": float(c.bd.warmup), "checkpoint": path,
                             "reused": path == checkpoint(cfg.profile, f"{sampler}_alexnet")})
    return pd.DataFrame(rows)


def train_claim_runs(cfg, sequences, device: str = "auto", progress: bool = True) -> dict[tuple[str, int, int], Path]:
    """Train every run of ``claim_plan`` that is not a main run (complete checkpoints return at once,
    interrupted ones resume, stale ones retrain); ``{(sampler, B, seed): checkpoint}``."""
    out = {}
    for row in claim_plan(cfg).itertuples(index=False):
        key = (row.sampler, int(row.batch_size), int(row.seed))
        if row.reused:
            out[key] = train_run(cfg, f"{row.sampler}_alexnet", sequences, device=device, progress=progress)
            continue
        c = claim_run_config(cfg, *key)
        status = _status(row.checkpoint, c)
        if status == "stale":
            print(f"{row.checkpoint}: written with another config; training it afresh")
        out[key] = train_bd(c, sequences, row.checkpoint, sampler=row.sampler, resume=status != "stale",
                            device=device, progress=progress)
    return out


_LOC_CODE = hashlib.sha256(inspect.getsource(localisation).encode()).hexdigest()[:12]


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for name, t in tensors:
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"{name}{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def pairs_digest(pairs) -> str:
    """A digest of a ``PairSet``'s contents (crops, offsets, videos): the cache key of its localisations."""
    return _digest((k, getattr(pairs, k)) for k in ("z", "x", "offset", "video"))


def cached_localisation(net, pairs, pairs_key: str | None = None, device: str = "auto",
                        precision: str = "fp32") -> dict[str, np.ndarray]:
    """``localisation(net, pairs, precision=precision)``, kept on disk under ``cache_dir()/bd_claim_localisation``
    keyed by the network's state (weights and BatchNorm statistics), the pairs, the device type, the precision
    and the source of ``localisation``: a re-run of notebook 01 with unchanged checkpoints re-scores nothing."""
    key = "_".join((_digest(net.state_dict().items()), pairs_key or pairs_digest(pairs), resolve_device(device).type,
                    precision, _LOC_CODE))
    path = paths.cache_dir() / "bd_claim_localisation" / f"loc_{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in ("hit", "error_px", "pred_px")}
    loc = localisation(net, pairs, device=device, precision=precision)
    write_npz(path, {k: np.asarray(loc[k]) for k in ("hit", "error_px", "pred_px")})
    return loc


def _checkpoint_name(profile: str, path: Path) -> str:
    try:
        return Path(path).relative_to(paths.checkpoints_dir(profile)).as_posix()
    except ValueError:
        return Path(path).name


def _record(metric: str, treatment: str, control: str, per_seed: list[dict], seeds, **extra) -> dict[str, Any]:
    d = combine_seeds(per_seed)
    return claim_record(CLAIM, metric, "fraction", treatment, control, d, seeds, margin=CLAIM_MARGIN,
                        mde_80=POWER_Z * d["se"], per_seed=[{"seed": int(s), **p} for s, p in zip(seeds, per_seed)],
                        **extra)


def claim_records(cfg, hits: Mapping[tuple[str, int, int], np.ndarray], reference: Mapping[int, np.ndarray],
                  n_pairs: int) -> list[dict[str, Any]]:
    """The claim records from per-pair hits (``hits[(sampler, B, seed)]``, ``reference[seed]`` of
    ``random_bn``): per B, AHM - RSS paired over the same pairs per seed and combined over seeds
    (``role`` "claim"); then each sampler at each B against ``random_bn`` of its seed (``role`` "reference").
    Positive ``diff``: the treatment localises more pairs.  Extra keys: ``batch_size``, ``mde_80``, ``per_seed``."""
    metric = f"localisation accuracy ({int(n_pairs)} held-out pairs)"
    claims, refs = [], []
    for b in (int(x) for x in cfg.bd.claim_batches):
        seeds = claim_seeds(cfg, b)
        per = [paired_diff(hits[("ahm", b, s)], hits[("rss", b, s)]) for s in seeds]
        claims.append(_record(metric, f"AHM B={b}", f"RSS B={b}", per, seeds, role="claim", batch_size=b))
        for sampler in SAMPLERS:
            per = [paired_diff(hits[(sampler, b, s)], reference[s]) for s in seeds]
            refs.append(_record(metric, f"BD ({sampler.upper()}, B={b})", "random_bn", per, seeds, role="reference",
                                batch_size=b))
    return claims + refs


def ahm_small_batch_claim(cfg, ckpts: Mapping[tuple[str, int, int], Path], sequences,
                          device: str = "auto") -> dict[str, Any]:
    """Claim "AHM helps small batches" from ``train_claim_runs``' checkpoints: every BD backbone (``load_net``:
    a tracker's matcher; the untrained head's scale moves no peak) and ``random_bn`` of each seed localise
    the run's held-out pairs (``eval_pairs``; ``cached_localisation``).  Returns plain data: ``pairs``, ``batches``, ``seeds``
    ({B: [seeds]}), ``runs`` (one row per run: accuracy, error, mean logged training-batch hardness),
    ``random_bn`` (one row per seed) and ``claims`` (``claim_records``)."""
    pairs = eval_pairs(cfg)
    plan = claim_plan(cfg)
    missing = [k for k in plan[["sampler", "batch_size", "seed"]].itertuples(index=False, name=None)
               if tuple(k) not in ckpts]
    if missing:
        raise ValueError(f"ahm_small_batch_claim: no checkpoint for runs {missing} (run train_claim_runs first)")
    hits, runs, pkey = {}, [], pairs_digest(pairs)
    precision = resolve_precision(cfg.precision, device)       # scored as trained
    for row in plan.itertuples(index=False):
        key = (row.sampler, int(row.batch_size), int(row.seed))
        loc = cached_localisation(load_net(ckpts[key], device), pairs, pkey, device=device, precision=precision)
        hits[key] = loc["hit"]
        runs.append({"batch_size": key[1], "seed": key[2], "sampler": key[0], "steps": int(row.steps),
                     "reused": bool(row.reused), "checkpoint": _checkpoint_name(cfg.profile, ckpts[key]),
                     **_loc_numbers(loc), "train_hardness": float(read_log(ckpts[key])["hardness"].mean())})
    reference, ref_rows = {}, []
    for s in sorted({int(x) for x in plan["seed"]}):
        loc = cached_localisation(random_bn(cfg.override(seed=s), sequences, "alexnet", device), pairs, pkey, device,
                                  precision)
        reference[s] = loc["hit"]
        ref_rows.append({"seed": s, **_loc_numbers(loc)})
    batches = [int(b) for b in cfg.bd.claim_batches]
    return {"pairs": len(pairs), "batches": batches, "seeds": {str(b): list(claim_seeds(cfg, b)) for b in batches},
            "runs": runs, "random_bn": ref_rows, "claims": claim_records(cfg, hits, reference, len(pairs))}


def _loc_numbers(loc: Mapping[str, Any]) -> dict[str, float]:
    s = localisation_summary(loc)
    return {k: float(s[k]) for k in ("accuracy", "accuracy_se", "error_px", "error_px_se")}


def claim_table(claim: Mapping[str, Any]) -> pd.DataFrame:
    """The claim records as a table: treatment, control, diff, 95 % interval, MDE at 80 % power, verdict."""
    rows = [{"role": r["role"], "treatment": r["treatment"], "control": r["control"], "seeds": len(r["seeds"]),
             "diff": r["diff"], "ci_low": r["diff"] - Z95 * r["se"], "ci_high": r["diff"] + Z95 * r["se"],
             "mde_80": r["mde_80"], "verdict": r["verdict"]} for r in claim["claims"]]
    return pd.DataFrame(rows)


def claim_verdicts(claim: Mapping[str, Any]) -> str:
    """Markdown, one line per AHM vs RSS record, then whether the BD backbones beat ``random_bn``."""
    lines = []
    for r in claim["claims"]:
        if r["role"] != "claim":
            continue
        lo, hi = r["diff"] - Z95 * r["se"], r["diff"] + Z95 * r["se"]
        lines.append(f"* **B = {r['batch_size']}** ({len(r['seeds'])} seed(s) x {claim['pairs']} pairs): AHM - RSS = "
                     f"{r['diff']:+.4f} (95 % CI {lo:+.4f} .. {hi:+.4f}; a true difference of {r['mde_80']:.4f} or more "
                     f"is detected with 80 % power): **{r['verdict']}**")
    refs = [f"{r['treatment']} vs random_bn {r['diff']:+.4f} ({r['verdict']})" for r in claim["claims"]
            if r["role"] == "reference"]
    if refs:
        lines.append("* against the untrained reference: " + "; ".join(refs))
    return "\n".join(lines)


def claim_summary(claim: Mapping[str, Any]) -> dict[str, float | int]:
    """Flat key numbers: per B the AHM - RSS gain (``ahm_gain_b<B>``, ``_se``, and ``accuracy_<sampler>_b<B>``
    the mean over seeds), ``accuracy_random_bn`` (mean over seeds), ``heldout_pairs`` and, with two or more
    batch sizes, ``ahm_gain_small_minus_large`` (gain at the smallest B minus at the largest, with ``_se``)."""
    out: dict[str, float | int] = {"heldout_pairs": int(claim["pairs"])}
    runs = pd.DataFrame(claim["runs"])
    gains = {}
    for r in claim["claims"]:
        if r["role"] == "claim":
            b = int(r["batch_size"])
            gains[b] = (float(r["diff"]), float(r["se"]))
            out[f"ahm_gain_b{b}"], out[f"ahm_gain_b{b}_se"] = gains[b]
            for s in SAMPLERS:
                out[f"accuracy_{s}_b{b}"] = float(runs[(runs.batch_size == b) & (runs.sampler == s)]["accuracy"].mean())
    out["accuracy_random_bn"] = float(np.mean([r["accuracy"] for r in claim["random_bn"]]))
    if len(gains) >= 2:
        small, large = gains[min(gains)], gains[max(gains)]
        out["ahm_gain_small_minus_large"] = small[0] - large[0]
        out["ahm_gain_small_minus_large_se"] = math.sqrt(small[1] ** 2 + large[1] ** 2)
    return out


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
              batches: Mapping[str, Any], claim: Mapping[str, Any] | None = None) -> dict[str, float | int]:
    """The key numbers (flat): batch hardness AHM vs RSS under each AlexNet bank (mean, std, AHM - RSS),
    the final loss of every run, the candidate count, the batch size and (with ``claim``) ``claim_summary``."""
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
    if claim is not None:
        out.update(claim_summary(claim))
    return out


def results_record(cfg, curves: Mapping[str, pd.DataFrame], hardness: Mapping[str, Mapping[str, Any]],
                   batches: Mapping[str, Any], claim: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything ``01_background_discrimination.json`` holds: runs, curves, hardness, the Fig. 1 / 2 batches
    (no crops), summary; with ``claim`` (``ahm_small_batch_claim``) also ``ahm_claim`` (its data) and the
    top-level ``claims`` list that notebook 07 gathers."""
    runs = runs_table(cfg).reset_index()
    extra: dict[str, Any] = {}
    if claim is not None:
        extra = {"ahm_claim": {k: v for k, v in claim.items() if k != "claims"}, "claims": list(claim["claims"])}
    return {**extra,
        "runs": json.loads(runs.to_json(orient="records")),
        "curves": {name: {k: c[k].tolist() for k in c.columns} for name, c in curves.items()},
        "hardness": {bank: {"n_batches": int(st["n_batches"]), "batch_size": int(st["batch_size"]),
                            "seed": int(st["seed"]),
                            **{s: {"mean": float(st[s]["mean"]), "std": float(st[s]["std"]),
                                   "values": [float(v) for v in st[s]["values"]]} for s in SAMPLERS}}
                     for bank, st in hardness.items()},
        "batches": batches_record(batches),
        "summary": summarize(curves, hardness, batches, claim),
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
