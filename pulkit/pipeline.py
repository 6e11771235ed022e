"""The steps of notebooks 02 (temporal correspondence) and 03 (training), as plain functions.

Each function reads what an earlier notebook wrote through ``pulkit.artifacts`` (a missing or
interrupted upstream checkpoint is a ``MissingResultsError`` naming the notebook that writes it),
is resumable (complete checkpoints are reused, so a second call trains nothing) and returns plain
data (DataFrames, dicts of numbers) that the notebook shows and ``write_*_results`` saves.

Notebook 02 (AlexPUL):

* ``run_alexpul``: R progressive rounds (``pulkit.train.tc.run_progressive``) from
  ``bd_ahm_alexnet.pt`` with the NR loss into ``tc_nr_alexnet/``: round r mines with the current
  model at span ``mining.spans[r-1]`` and trains from the previous round's weights;
* ``round_records``: per round, the mining statistics (pairs kept, FB pass rate, mean confidence,
  tracks whose FB check was relaxed by ``mining.min_tracks``) and the training's final numbers
  (loss, give-up fraction of the NR loss, last logged and mean over the round's log);
* ``mining_report``: the miner's error against ground truth at fixed k (``mining.eval_k``) with
  each round's *mining* model (BD for round 1, round r-1's TC model for round r), seeded at
  ground-truth boxes of labelled **training** video (``quality_sequences``: the synthetic train
  split; never an evaluation sequence).  Labels are read for this measurement only, never to train.
  Results are cached beside the model (``quality_round<r>.json``, keyed by the model's digest);
* ``gallery_examples``: mined pairs from the saved pairs tables, the exemplar crop and its partner
  crop k frames later (both cut like SiamFC's ``z``), with confidence and k.

Notebook 03: ``run_respul`` (CIResNet-22 from ``bd_ahm_ciresnet22.pt`` into ``tc_nr_ciresnet22/``),
``run_supervised_baselines`` (SiamFC ``sup_bce_alexnet.pt`` and SiamDW ``sup_bce_ciresnet22.pt``
on ground-truth pairs of the labelled training video only), ``run_tc_bce_ablation`` (AlexPUL's rounds
with ``tc.loss = "bce"`` from the same BD checkpoint into ``tc_bce_alexnet/``), ``training_runs``.

Results record checkpoints by their name under ``checkpoints/<profile>/`` (no machine paths) and
no timings (``pulkit.notebook.save_timings`` keeps those apart).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import artifacts, paths
from .config import ConfigError
from .notebook import MissingResultsError, save_results

BD_NOTEBOOK = "01_background_discrimination"
TC_NOTEBOOK = "02_temporal_correspondence"
TRAINING_NOTEBOOK = "03_training"
TC_RESULTS, TRAINING_RESULTS = "02_tc", "03_training"
SUMMARY_K = 10                       # the k whose centre error 02's summary compares over rounds
# Log fields kept in results (the loop's lr, grad_norm, pairs_per_s, elapsed are left out: timings vary).
CURVE_KEYS = ("loss", "nr_loss", "bce_loss", "infonce", "giveup_frac")
QUALITY_COLUMNS = ("round", "model", "sequence", "k", "n", "center_error", "iou", "kept_frac",
                   "center_error_kept", "iou_kept")


# --------------------------------------------------------------------------- upstream files
def missing_input(profile: str, path, what: str, notebook: str, state: str = "missing") -> MissingResultsError:
    """The error for an input an earlier notebook writes: names the file, the notebook and the command."""
    return MissingResultsError(
        f"{path}: the {what} of profile {profile!r} is {state}; it is written by notebooks/{notebook}.ipynb: "
        f"run `pulkit reproduce --profile {profile} --only {notebook[:2]}`", Path(path), notebook)


def require_checkpoint(profile: str, path, what: str, notebook: str) -> Path:
    """``path`` when it holds a complete checkpoint, else ``MissingResultsError`` naming ``notebook``."""
    from .train.loop import is_complete

    path = Path(path)
    if not path.is_file():
        raise missing_input(profile, path, what, notebook)
    if not is_complete(path):
        raise missing_input(profile, path, what, notebook, state="incomplete (its training run was interrupted)")
    return path


def producer(loss: str, backbone: str) -> str:
    """The notebook that trains the TC run ``(loss, backbone)``: AlexPUL is 02's, the others 03's."""
    return TC_NOTEBOOK if (loss, backbone) == ("nr", "alexnet") else TRAINING_NOTEBOOK


def checkpoint_name(profile: str, path) -> str:
    """``path`` relative to ``checkpoints/<profile>/`` (what results record), e.g. ``tc_nr_alexnet/tc_round2.pt``."""
    path = Path(path)
    try:
        return path.relative_to(paths.checkpoints_dir(profile)).as_posix()
    except ValueError:
        return path.name


# --------------------------------------------------------------------------- sequences
def training_video(cfg, data_root=None) -> list:
    """The profile's training video (notebook 00's ``train`` split); TC uses it without labels."""
    from .data.inventory import profile_sequences

    return profile_sequences(cfg, data_root)["train"]


def evaluation_names(cfg, data_root=None) -> set[str]:
    """Names of the profile's evaluation-only sequences (never trained on, never used to measure mining)."""
    from .data.inventory import profile_sequences

    return {s.name for s in profile_sequences(cfg, data_root)["eval"]}


def quality_sequences(cfg, data_root=None) -> list:
    """Labelled *training* video for the mining-error report: the synthetic train split when the
    profile has one (else its labelled training video), at most ``mining.quality_videos`` of them
    evenly spaced.  Evaluation sequences are refused (``DataError``)."""
    from .data.sequences import DataError
    from .train.supervised import supervised_sequences

    n = cfg.mining.quality_videos
    if n is not None and n < 1:
        raise ConfigError(f"mining.quality_videos must be >= 1 or None, got {n}")
    labelled = supervised_sequences(cfg, data_root)        # refuses evaluation-only sequences itself
    seqs = [s for s in labelled if s.attributes.get("source") == "synthetic"] or labelled
    if n is not None and len(seqs) > n:
        seqs = [seqs[i] for i in np.unique(np.linspace(0, len(seqs) - 1, n).round().astype(int))]
    leaked = sorted({s.name for s in seqs} & evaluation_names(cfg, data_root))
    if leaked:
        raise DataError(f"evaluation sequences among the mining-quality sequences: {leaked}")
    return seqs


# --------------------------------------------------------------------------- TC runs (02, 03)
def tc_run_config(cfg, loss: str, backbone: str):
    """``cfg`` with the run's TC loss and backbone written in (what its checkpoints record)."""
    return cfg.override({"tc": {"loss": loss}, "model": {"backbone": backbone}})


def run_tc(cfg, loss: str, backbone: str, device="auto", progress: bool = True, data_root=None) -> pd.DataFrame:
    """Progressive rounds of one TC run from ``bd_ahm_<backbone>.pt`` into ``tc_<loss>_<backbone>/``;
    complete rounds are skipped, unless they descend from another BD checkpoint than the current one
    (``stale_round``): then every round is retrained.  Returns ``round_records`` of the run."""
    from .train.tc import run_progressive

    bd = require_checkpoint(cfg.profile, artifacts.bd_checkpoint(cfg.profile, "ahm", backbone),
                            f"BD checkpoint (AHM, {backbone})", BD_NOTEBOOK)
    rcfg = tc_run_config(cfg, loss, backbone)
    stale = stale_round(cfg, loss, backbone)
    if stale is not None:
        print(f"tc_{loss}_{backbone}: round {stale} was mined by another model than the current "
              f"{'BD checkpoint' if stale == 1 else f'round {stale - 1}'} (notebook 01 re-ran?): retraining every round")
    out = run_progressive(rcfg, bd, training_video(cfg, data_root), artifacts.tc_dir(cfg.profile, loss, backbone),
                          device=device, resume=stale is None, progress=progress)
    expected = [artifacts.tc_checkpoint(cfg.profile, r, loss, backbone) for r in range(1, rcfg.tc.rounds + 1)]
    if [Path(p) for p in out] != expected:
        raise RuntimeError(f"run_progressive wrote {[Path(p).name for p in out]}, but pulkit.artifacts names "
                           f"{[p.name for p in expected]}: the two disagree on checkpoint names")
    return round_records(cfg, loss, backbone)


def stale_round(cfg, loss: str, backbone: str) -> int | None:
    """The first round whose saved pairs were mined by a model other than the file now at its place
    (BD's checkpoint for round 1, round r-1's for round r), or None.

    ``run_progressive`` skips a complete round by its config alone; when notebook 01 re-trains BD,
    its rounds would be kept although they descend from the old BD.  ``run_tc`` then retrains them.
    """
    from .io import read_json
    from .train.tc import file_digest

    out_dir = artifacts.tc_dir(cfg.profile, loss, backbone)
    for r in range(1, cfg.tc.rounds + 1):
        meta = out_dir / f"pairs_round{r}.json"
        init = (artifacts.bd_checkpoint(cfg.profile, "ahm", backbone) if r == 1
                else artifacts.tc_checkpoint(cfg.profile, r - 1, loss, backbone))
        if not meta.is_file() or not init.is_file():
            return None
        if read_json(meta).get("init_digest") != file_digest(init):
            return r
    return None


def run_alexpul(cfg, device="auto", progress: bool = True, data_root=None) -> pd.DataFrame:
    """AlexPUL (notebook 02): AlexNet, NR loss, ``tc.rounds`` rounds from ``bd_ahm_alexnet.pt``."""
    return run_tc(cfg, "nr", "alexnet", device, progress, data_root)


def run_respul(cfg, device="auto", progress: bool = True, data_root=None) -> pd.DataFrame:
    """ResPUL (notebook 03): CIResNet-22, NR loss, ``tc.rounds`` rounds from ``bd_ahm_ciresnet22.pt``."""
    return run_tc(cfg, "nr", "ciresnet22", device, progress, data_root)


def run_tc_bce_ablation(cfg, device="auto", progress: bool = True, data_root=None) -> pd.DataFrame:
    """The ablation (notebook 03): AlexPUL's rounds with balanced BCE instead of the NR loss."""
    return run_tc(cfg, "bce", "alexnet", device, progress, data_root)


def _read_log(path: Path) -> list[dict[str, Any]]:
    """The ``CURVE_KEYS`` of a JSON-lines training log (missing file: no records)."""
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                out.append({"step": int(rec["step"]), **{k: rec[k] for k in CURVE_KEYS if k in rec}})
    return out


def round_records(cfg, loss: str = "nr", backbone: str = "alexnet") -> pd.DataFrame:
    """One row per round of a TC run, from its saved summaries, mining statistics and logs.

    Columns: round, span, pairs, tracks, fb_passed, fb_pass_rate (true FB passes / tracks with
    steps), fb_relaxed_tracks (added by ``mining.min_tracks``), mean_confidence, steps, final_loss,
    final_response_loss (NR or BCE term), final_infonce, final_giveup_frac, mean_giveup_frac (over
    the round's log), checkpoint, pairs_file (names under ``checkpoints/<profile>/``).
    """
    from .io import read_json
    from .train.tc import log_path

    rows = []
    out_dir = artifacts.tc_dir(cfg.profile, loss, backbone)
    for r in range(1, cfg.tc.rounds + 1):
        summary_path = out_dir / f"tc_round{r}.json"
        if not summary_path.is_file():
            raise missing_input(cfg.profile, summary_path, f"round {r} summary of TC ({loss}, {backbone})",
                                producer(loss, backbone))
        s = read_json(summary_path)
        meta_path = out_dir / f"pairs_round{r}.json"
        meta = read_json(meta_path) if meta_path.is_file() else {}
        ckpt = artifacts.tc_checkpoint(cfg.profile, r, loss, backbone)
        giveups = [rec["giveup_frac"] for rec in _read_log(log_path(ckpt)) if rec.get("giveup_frac") is not None]
        rows.append({
            "round": r, "span": s["span"], "pairs": s["pairs"], "tracks": s.get("tracks"),
            "fb_passed": meta.get("fb_passed"), "fb_pass_rate": s.get("fb_pass_rate"),
            "fb_relaxed_tracks": meta.get("fb_relaxed_tracks", 0), "mean_confidence": s.get("mean_confidence"),
            "steps": s["steps"], "final_loss": s.get("final_loss"),
            "final_response_loss": s.get(f"final_{loss}_loss"), "final_infonce": s.get("final_infonce"),
            "final_giveup_frac": s.get("final_giveup_frac"),
            "mean_giveup_frac": float(np.mean(giveups)) if giveups else float("nan"),
            "checkpoint": checkpoint_name(cfg.profile, ckpt),
            "pairs_file": checkpoint_name(cfg.profile, out_dir / s["pairs_file"])})
    return pd.DataFrame(rows)


def tc_curve(cfg, loss: str = "nr", backbone: str = "alexnet") -> list[dict[str, Any]]:
    """The logged training curve of a TC run, rounds end to end: each record has ``round``, the
    round's ``step`` and ``global_step`` (steps since round 1 began) and the ``CURVE_KEYS``."""
    from .train.tc import log_path

    out = []
    for r in range(1, cfg.tc.rounds + 1):
        for rec in _read_log(log_path(artifacts.tc_checkpoint(cfg.profile, r, loss, backbone))):
            out.append({"round": r, "global_step": (r - 1) * int(cfg.tc.steps_per_round) + rec["step"], **rec})
    return out


# --------------------------------------------------------------------------- mining error per round (02)
def mining_models(cfg, loss: str = "nr", backbone: str = "alexnet") -> list[tuple[int, str, Path]]:
    """``(round, name, checkpoint)`` of the model that mined each round: BD for round 1, round r-1's TC model."""
    out = [(1, "BD (AHM)", require_checkpoint(cfg.profile, artifacts.bd_checkpoint(cfg.profile, "ahm", backbone),
                                              f"BD checkpoint (AHM, {backbone})", BD_NOTEBOOK))]
    for r in range(2, cfg.tc.rounds + 1):
        ckpt = require_checkpoint(cfg.profile, artifacts.tc_checkpoint(cfg.profile, r - 1, loss, backbone),
                                  f"TC round {r - 1} checkpoint ({loss}, {backbone})", producer(loss, backbone))
        out.append((r, f"TC round {r - 1}", ckpt))
    return out


def _quality(cfg, ckpt: Path, seqs, cache: Path, device, progress: bool) -> pd.DataFrame:
    """``mining_quality`` of one model, reused from ``cache`` when model, settings and videos match."""
    from .io import read_json, write_json
    from .models.net import load_net
    from .provenance import config_hash
    from .train.mining import mining_quality
    from .train.tc import file_digest

    key = {"model_digest": file_digest(ckpt), "settings": config_hash({"mining": cfg.mining, "model": cfg.model}),
           "ks": [int(k) for k in cfg.mining.eval_k], "sequences": [[s.name, len(s)] for s in seqs]}
    if cache.is_file():
        saved = read_json(cache)
        if saved.get("key") == key:
            return pd.DataFrame(saved["rows"])
    net = load_net(ckpt, device="cpu")
    table = mining_quality(net, seqs, cfg.mining, cfg.model, ks=cfg.mining.eval_k, device=device, progress=progress)
    write_json(cache, {"key": key, "model": ckpt.name, "rows": table.to_dict(orient="records")})
    return table


def mining_report(cfg, device="auto", progress: bool = True, data_root=None, loss: str = "nr",
                  backbone: str = "alexnet") -> pd.DataFrame:
    """The miner's error at fixed k against ground truth, per round (module docstring).

    One row per (round, sequence, k) plus ``sequence == "mean"`` rows (mean over sequences), in
    ``QUALITY_COLUMNS``: ``center_error`` (px) and ``iou`` of the raw track seeded at the ground-truth
    box, ``kept_frac`` the share the miner would emit, ``*_kept`` over those.  Rounds compare at
    equal k only.  ``attrs["sequences"]`` names the labelled training videos used.
    """
    seqs = quality_sequences(cfg, data_root)
    out_dir = artifacts.tc_dir(cfg.profile, loss, backbone)
    parts = []
    for r, name, ckpt in mining_models(cfg, loss, backbone):
        q = _quality(cfg, ckpt, seqs, out_dir / f"quality_round{r}.json", device, progress)
        parts.append(q.assign(round=r, model=name))
    report = pd.concat(parts, ignore_index=True)[list(QUALITY_COLUMNS)]
    report.attrs["sequences"] = [s.name for s in seqs]
    return report


def error_by_round(report: pd.DataFrame, metric: str = "center_error") -> pd.DataFrame:
    """``metric`` of the mean rows as a round x k table (rows: rounds; columns: k)."""
    mean = pd.DataFrame(report)
    mean = mean[mean["sequence"] == "mean"]
    return mean.pivot(index="round", columns="k", values=metric)


# --------------------------------------------------------------------------- mined-pairs gallery (02)
def pick_pairs(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` rows spread over the table sorted by (k, confidence): short and long steps, weak and strong."""
    if len(table) == 0 or n < 1:
        return table.iloc[:0]
    ordered = table.sort_values(["k", "confidence", "video", "frame_a"], kind="stable").reset_index(drop=True)
    idx = np.unique(np.linspace(0, len(ordered) - 1, min(n, len(ordered))).round().astype(int))
    return ordered.iloc[idx].reset_index(drop=True)


def gallery_examples(cfg, per_round: int = 6, loss: str = "nr", backbone: str = "alexnet",
                     data_root=None) -> dict[str, Any]:
    """Mined pairs of every round from the saved pairs tables, with their crops.

    Returns ``{"crop_sz", "context", "pairs": [{round, video, frame_a, frame_b, k, confidence, box_a, box_b,
    z, x}]}``: ``z`` the exemplar crop around ``box_a`` in ``frame_a`` and ``x`` the partner crop
    around ``box_b`` in ``frame_b = frame_a + k``, both cut like SiamFC's exemplar (side
    ``model.exemplar_sz``, context ``model.context``), RGB uint8.  Frames are read without labels.
    """
    from .data.crops import exemplar_crop, mean_color
    from .data.sequences import unlabeled
    from .train.mining import load_pairs

    records = round_records(cfg, loss, backbone)
    videos = {s.name: unlabeled(s) for s in training_video(cfg, data_root)}
    sz, context = int(cfg.model.exemplar_sz), float(cfg.model.context)
    pairs = []
    for r, pairs_file in zip(records["round"], records["pairs_file"]):
        table = load_pairs(paths.checkpoints_dir(cfg.profile) / pairs_file)
        for row in pick_pairs(table, per_round).itertuples(index=False):
            if row.video not in videos:
                raise ValueError(f"{pairs_file}: video {row.video!r} is not among the profile's training video")
            seq = videos[row.video]
            box_a = [row.xa, row.ya, row.wa, row.ha]
            box_b = [row.xb, row.yb, row.wb, row.hb]
            img_a, img_b = seq.image(int(row.frame_a)), seq.image(int(row.frame_b))
            pairs.append({"round": int(r), "video": str(row.video), "frame_a": int(row.frame_a),
                          "frame_b": int(row.frame_b), "k": int(row.k), "confidence": float(row.confidence),
                          "box_a": [float(v) for v in box_a], "box_b": [float(v) for v in box_b],
                          "z": exemplar_crop(img_a, box_a, sz, context, mean_color(img_a)),
                          "x": exemplar_crop(img_b, box_b, sz, context, mean_color(img_b))})
    return {"crop_sz": sz, "context": context, "pairs": pairs}


def split_gallery(gallery: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(JSON-able gallery with image keys, {key: uint8 image})``."""
    records, images = [], {}
    for i, p in enumerate(gallery["pairs"]):
        images[f"z{i}"], images[f"x{i}"] = np.asarray(p["z"], np.uint8), np.asarray(p["x"], np.uint8)
        records.append({k: v for k, v in p.items() if k not in ("z", "x")} | {"z_key": f"z{i}", "x_key": f"x{i}"})
    return {**{k: v for k, v in gallery.items() if k != "pairs"}, "pairs": records}, images


def gallery_path(profile: str) -> Path:
    """``results/<profile>/02_tc_gallery.npz``: the crops of the mined-pairs gallery."""
    return artifacts.results_file(profile, "02", "tc_gallery", "npz")


# --------------------------------------------------------------------------- 02's results
def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
            for row in pd.DataFrame(df).to_dict(orient="records")]


def _finite(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def tc_summary(rounds: pd.DataFrame, report: pd.DataFrame) -> dict[str, Any]:
    """02's key numbers: pairs per round, centre error at k = ``SUMMARY_K`` per round and whether it
    fell from round 1 to round R (None when either is unmeasured), give-up fraction per round."""
    out: dict[str, Any] = {"rounds": int(len(rounds))}
    for row in rounds.itertuples(index=False):
        out[f"pairs_round{row.round}"] = int(row.pairs)
        out[f"giveup_frac_round{row.round}"] = _finite(row.final_giveup_frac)
    ce = error_by_round(report) if len(report) else pd.DataFrame()
    if SUMMARY_K in ce.columns:
        for r, v in ce[SUMMARY_K].items():
            out[f"center_error_k{SUMMARY_K}_round{int(r)}"] = _finite(v)
        first, last = _finite(ce[SUMMARY_K].iloc[0]), _finite(ce[SUMMARY_K].iloc[-1])
        out[f"center_error_k{SUMMARY_K}_falls"] = None if first is None or last is None else bool(last < first)
    return out


def describe_mining(report: pd.DataFrame) -> str:
    """One line per k: the centre error of round 1 and round R as measured, and its direction."""
    ce = error_by_round(report)
    lines = []
    for k in ce.columns:
        a, b = ce[k].iloc[0], ce[k].iloc[-1]
        if not (np.isfinite(a) and np.isfinite(b)):
            lines.append(f"k = {k}: not measured in every round (no seed reaches t + {k})")
            continue
        trend = "falls" if b < a else "rises" if b > a else "stays"
        lines.append(f"k = {k}: centre error {a:.1f} px (round {ce.index[0]}) -> {b:.1f} px (round {ce.index[-1]}): "
                     f"{trend}")
    return "\n".join(lines)


def write_tc_results(cfg, rounds: pd.DataFrame, report: pd.DataFrame, gallery: dict[str, Any]) -> Path:
    """Save ``results/<profile>/02_tc.json`` (rounds, mining error, curve, gallery records, summary,
    provenance) and the gallery crops (``gallery_path``); returns the JSON path."""
    from .io import write_npz

    record, images = split_gallery(gallery)
    write_npz(gallery_path(cfg.profile), images)
    return save_results(cfg.profile, TC_RESULTS, {
        "rounds": _records(rounds), "mining_quality": _records(report),
        "quality_sequences": list(report.attrs.get("sequences", [])), "eval_k": [int(k) for k in cfg.mining.eval_k],
        "curve": tc_curve(cfg, "nr", "alexnet"), "gallery": record,
        "setup": {"backbone": "alexnet", "loss": "nr", "rounds": int(cfg.tc.rounds),
                  "spans": [int(s) for s in cfg.mining.spans[:cfg.tc.rounds]],
                  "steps_per_round": int(cfg.tc.steps_per_round), "bd_checkpoint":
                      checkpoint_name(cfg.profile, artifacts.bd_checkpoint(cfg.profile, "ahm", "alexnet"))},
        "summary": tc_summary(rounds, report)}, cfg=cfg)


# --------------------------------------------------------------------------- supervised baselines (03)
SUPERVISED_BACKBONES = {"SiamFC (supervised)": "alexnet", "SiamDW (supervised)": "ciresnet22"}


def run_supervised_baselines(cfg, device="auto", progress: bool = True, data_root=None) -> pd.DataFrame:
    """Supervised SiamFC (``sup_bce_alexnet.pt``) and SiamDW (``sup_bce_ciresnet22.pt``) with balanced
    BCE on ground-truth pairs of the labelled training video only (``supervised_sequences``; evaluation
    sequences are refused); complete checkpoints are reused.  Returns one row per run."""
    from .train.supervised import supervised_sequences, train_supervised

    seqs = supervised_sequences(cfg, data_root)
    for backbone in SUPERVISED_BACKBONES.values():
        train_supervised(cfg, seqs, artifacts.supervised_checkpoint(cfg.profile, "bce", backbone), loss="bce",
                         backbone=backbone, device=device, progress=progress)
    return runs_table(training_runs(cfg, "supervised"))


def supervised_curve(cfg, backbone: str) -> list[dict[str, Any]]:
    from .train.supervised import log_path

    return [{**rec, "global_step": rec["step"]}
            for rec in _read_log(log_path(artifacts.supervised_checkpoint(cfg.profile, "bce", backbone)))]


# --------------------------------------------------------------------------- 03's results
TC_RUNS = {"ResPUL": ("nr", "ciresnet22"), "TC-BCE (ablation)": ("bce", "alexnet")}


def training_runs(cfg, which: str = "all") -> list[dict[str, Any]]:
    """Notebook 03's runs as records: name, kind (tc | supervised), loss, backbone, steps (total),
    final_loss, final_giveup_frac (NR runs only), checkpoints, rounds (TC runs), curve.

    ``which``: ``all`` | ``tc`` | ``supervised``.  Every run must be trained (``MissingResultsError``).
    """
    from .train.loop import load_training_checkpoint

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
            ckpt = require_checkpoint(cfg.profile, artifacts.supervised_checkpoint(cfg.profile, "bce", backbone),
                                      f"supervised checkpoint ({backbone})", TRAINING_NOTEBOOK)
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


def write_training_results(cfg, runs: list[dict[str, Any]]) -> Path:
    """Save ``results/<profile>/03_training.json`` (runs with curves, summary, provenance)."""
    if not runs:
        raise ValueError("write_training_results: no runs to save")
    return save_results(cfg.profile, TRAINING_RESULTS, {
        "runs": runs, "setup": {"rounds": int(cfg.tc.rounds), "tc_steps_per_round": int(cfg.tc.steps_per_round),
                                "supervised_steps": int(cfg.supervised.steps),
                                "supervised_sequences": "labelled training video (synthetic train split)"},
        "summary": training_summary(runs)}, cfg=cfg)


__all__ = ["run_alexpul", "run_respul", "run_supervised_baselines", "run_tc_bce_ablation", "run_tc",
           "mining_report", "round_records", "gallery_examples", "tc_curve", "training_runs", "runs_table",
           "write_tc_results", "write_training_results", "quality_sequences", "training_video",
           "error_by_round", "describe_mining", "tc_summary", "training_summary", "require_checkpoint",
           "gallery_path", "split_gallery"]
