"""Notebook 02, temporal correspondence: AlexPUL's progressive rounds (mine with the current model,
learn with the NR loss), per-round records and curves, the miner's error against ground truth at
fixed k on labelled *training* video, the mined-pairs gallery, and the results file.  ``run_tc``
is the runner notebook 03 reuses for ResPUL and the TC-BCE ablation."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pulkit.core import artifacts, paths
from pulkit.core.config import ConfigError, without_claims
from pulkit.core.io import read_json, write_json
from pulkit.core.provenance import config_hash
from pulkit.core.results import save_results
from pulkit.data.crops import exemplar_crop, iou, mean_color
from pulkit.data.inventory import profile_sequences, training_video
from pulkit.data.sequences import DataError, unlabeled
from pulkit.evaluation.powered import (
    claim_record,
    combine_seeds,
    eval_pairs,
    eval_videos,
    localisation,
    localisation_summary,
    mining_error,
    paired_diff,
)
from pulkit.method.loop import require_complete
from pulkit.method.mining import load_pairs, mining_quality, pairs_suffix
from pulkit.method.reference import random_bn
from pulkit.method.supervised import supervised_sequences
from pulkit.method.tc import file_digest, log_path, mine_round, run_progressive, train_tc_round
from pulkit.models.net import load_net, save_checkpoint
from pulkit.models.precision import resolve_precision

NOTEBOOK = "02_temporal_correspondence"
SUMMARY_K = 10                       # the k whose centre error 02's summary compares over rounds
# Log fields kept in results (the loop's lr, grad_norm, pairs_per_s, elapsed are left out: timings vary).
CURVE_KEYS = ("loss", "nr_loss", "bce_loss", "infonce", "giveup_frac")
QUALITY_COLUMNS = ("round", "model", "sequence", "k", "n", "center_error", "iou", "kept_frac",
                   "center_error_kept", "iou_kept")


# --------------------------------------------------------------------------- upstream files
def checkpoint_name(profile: str, path) -> str:
    """``path`` relative to ``checkpoints/<profile>/`` (what results record), e.g. ``tc_nr_alexnet/tc_round2.pt``."""
    path = Path(path)
    try:
        return path.relative_to(paths.checkpoints_dir(profile)).as_posix()
    except ValueError:
        return path.name


# --------------------------------------------------------------------------- sequences
def evaluation_names(cfg, data_root=None) -> set[str]:
    """Names of the profile's evaluation-only sequences (never trained on, never used to measure mining)."""
    return {s.name for s in profile_sequences(cfg, data_root)["eval"]}


def quality_sequences(cfg, data_root=None) -> list:
    """Labelled *training* video for the mining-error report: the synthetic train split when the
    profile has one (else its labelled training video), at most ``mining.quality_videos`` of them
    evenly spaced.  Evaluation sequences are refused (``DataError``)."""
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
    """``cfg`` with the run's TC loss and backbone written in (what its checkpoints record); the claims' fields
    (which runs a claim compares, not how one trains) are reset (``without_claims``), so changing them retrains no run."""
    return without_claims(cfg).override({"tc": {"loss": loss}, "model": {"backbone": backbone}})


def run_tc(cfg, loss: str, backbone: str, device="auto", progress: bool = True, data_root=None) -> pd.DataFrame:
    """Progressive rounds of one TC run from ``bd_ahm_<backbone>.pt`` into ``tc_<loss>_<backbone>/``;
    complete rounds are skipped, unless they descend from another BD checkpoint than the current one
    (``stale_round``): then every round is retrained.  Returns ``round_records`` of the run."""
    bd = require_complete(artifacts.bd_checkpoint(cfg.profile, "ahm", backbone), cfg.profile, f"BD checkpoint (AHM, {backbone})")
    rcfg = tc_run_config(cfg, loss, backbone)
    stale = stale_round(cfg, loss, backbone)
    if stale is not None:
        print(f"tc_{loss}_{backbone}: round {stale} was mined by another model than the current "
              f"{'BD checkpoint' if stale == 1 else f'round {stale - 1}'} (notebook 01 re-ran?): retraining every round")
    out = run_progressive(rcfg, bd, training_video(cfg, data_root), artifacts.tc_dir(cfg.profile, loss, backbone),
                          device=device, resume=stale is None, progress=progress)
    expected = [artifacts.tc_checkpoint(cfg.profile, r, loss, backbone) for r in range(1, rcfg.tc.rounds + 1)]
    if [Path(p) for p in out] != expected:
        raise RuntimeError(f"run_progressive wrote {[Path(p).name for p in out]}, but pulkit.core.artifacts names "
                           f"{[p.name for p in expected]}: the two disagree on checkpoint names")
    return round_records(cfg, loss, backbone)


def stale_round(cfg, loss: str, backbone: str) -> int | None:
    """The first round whose saved pairs were mined by a model other than the file now at its place
    (BD's checkpoint for round 1, round r-1's for round r), or None.

    ``run_progressive`` skips a complete round by its config alone; when notebook 01 re-trains BD,
    its rounds would be kept although they descend from the old BD.  ``run_tc`` then retrains them.
    """
    return first_stale_round(artifacts.tc_dir(cfg.profile, loss, backbone),
                             artifacts.bd_checkpoint(cfg.profile, "ahm", backbone), cfg.tc.rounds)


def first_stale_round(out_dir: Path, bd: Path, rounds: int) -> int | None:
    """``stale_round`` of the ``rounds`` rounds that ``run_progressive`` wrote into ``out_dir`` from ``bd``."""
    out_dir = Path(out_dir)
    for r in range(1, int(rounds) + 1):
        meta = out_dir / f"pairs_round{r}.json"
        init = Path(bd) if r == 1 else out_dir / f"tc_round{r - 1}.pt"     # run_progressive's names
        if not meta.is_file() or not init.is_file():
            return None
        if read_json(meta).get("init_digest") != file_digest(init):
            return r
    return None


def run_alexpul(cfg, device="auto", progress: bool = True, data_root=None) -> pd.DataFrame:
    """AlexPUL (notebook 02): AlexNet, NR loss, ``tc.rounds`` rounds from ``bd_ahm_alexnet.pt``."""
    return run_tc(cfg, "nr", "alexnet", device, progress, data_root)


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
    rows = []
    out_dir = artifacts.tc_dir(cfg.profile, loss, backbone)
    for r in range(1, cfg.tc.rounds + 1):
        summary_path = out_dir / f"tc_round{r}.json"
        if not summary_path.is_file():
            raise artifacts.missing(summary_path, cfg.profile, f"round {r} summary of TC ({loss}, {backbone})")
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
    out = []
    for r in range(1, cfg.tc.rounds + 1):
        for rec in _read_log(log_path(artifacts.tc_checkpoint(cfg.profile, r, loss, backbone))):
            out.append({"round": r, "global_step": (r - 1) * int(cfg.tc.steps_per_round) + rec["step"], **rec})
    return out


# --------------------------------------------------------------------------- mining error per round (02)
def mining_models(cfg, loss: str = "nr", backbone: str = "alexnet") -> list[tuple[int, str, Path]]:
    """``(round, name, checkpoint)`` of the model that mined each round: BD for round 1, round r-1's TC model."""
    out = [(1, "BD (AHM)", require_complete(artifacts.bd_checkpoint(cfg.profile, "ahm", backbone), cfg.profile, f"BD checkpoint (AHM, {backbone})"))]
    for r in range(2, cfg.tc.rounds + 1):
        ckpt = require_complete(artifacts.tc_checkpoint(cfg.profile, r - 1, loss, backbone), cfg.profile, f"TC round {r - 1} checkpoint ({loss}, {backbone})")
        out.append((r, f"TC round {r - 1}", ckpt))
    return out


def _quality(cfg, ckpt: Path, seqs, cache: Path, device, progress: bool) -> pd.DataFrame:
    """``mining_quality`` of one model, reused from ``cache`` when model, settings and videos match."""
    key = {"model_digest": file_digest(ckpt), "settings": config_hash({"mining": cfg.mining, "model": cfg.model}),
           "ks": [int(k) for k in cfg.mining.eval_k], "sequences": [[s.name, len(s)] for s in seqs],
           "precision": resolve_precision(cfg.precision, device)}
    if cache.is_file():
        saved = read_json(cache)
        if saved.get("key") == key:
            return pd.DataFrame(saved["rows"])
    net = load_net(ckpt, device="cpu")
    table = mining_quality(net, seqs, cfg.mining, cfg.model, ks=cfg.mining.eval_k, device=device, progress=progress,
                           precision=key["precision"])
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


# --------------------------------------------------------------------------- 02's results
# --------------------------------------------------------------------------- the rounds claim (02)
def claim_seeds(cfg) -> tuple[int, ...]:
    """Seeds of the rounds claim's main comparison: ``tc.claim_seeds``, or the main run's seed alone (None).
    At the main seed the comparison uses AlexPUL's rounds and ``no_remine.pt``; every other seed a whole pipeline of
    its own: rounds and ``no_remine`` (``artifacts.rounds_seed_dir``) from the BD model of that seed (``seed_bd``)."""
    seeds = cfg.tc.claim_seeds
    if seeds is None:
        return (int(cfg.seed),)
    seeds = tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"tc.claim_seeds must be distinct seeds (or None: the main run's seed), "
                         f"got {cfg.tc.claim_seeds}")
    return seeds


def control_inputs_path(ckpt: Path) -> Path:
    """Beside a control's checkpoint: the digests of the model and the pairs file it was trained from."""
    return Path(ckpt).with_suffix(".inputs.json")


def _train_control(cfg, init: Path, pairs, seqs, ckpt: Path, device, progress: bool,
                   pairs_file: Path | None = None) -> Path:
    """One control round from ``init`` on ``pairs`` (a pairs file, or a table saved as ``pairs_file``).  A checkpoint
    left by another config is retrained (with a warning), as ``run_progressive`` does for the rounds; so is one trained
    from other inputs than ``init`` and the pairs file now (their digests in ``control_inputs_path``: notebook 01 or
    the rounds re-ran), or one without that record."""
    ckpt = Path(ckpt)
    inputs = {"init_digest": file_digest(init),
              "pairs_digest": file_digest(pairs if pairs_file is None else pairs_file)}
    record = control_inputs_path(ckpt)
    recorded = record.is_file() and read_json(record) == inputs
    resume = recorded or not ckpt.is_file()
    if not resume:
        print(f"{ckpt}: trained from another model or pairs than {Path(init).name} and the current pairs "
              "(or unrecorded): retraining from scratch")
    if not recorded:                      # written before training: an interrupted run resumes against it
        write_json(record, inputs)
    try:
        return train_tc_round(cfg, init, pairs, seqs, 1, ckpt, resume=resume, device=device, progress=progress)
    except ValueError as e:
        if "different config" not in str(e):
            raise
        warnings.warn(f"{ckpt}: trained under another config; retraining from scratch", stacklevel=2)
        return train_tc_round(cfg, init, pairs, seqs, 1, ckpt, resume=False, device=device, progress=progress)


def seed_bd(cfg, seed: int) -> Path:
    """The BD AHM AlexNet of ``seed``: the main checkpoint at the run's seed, else notebook 01's claim run at the main
    batch size (``artifacts.bd_claim_checkpoint``; the seed must be in ``bd.claim_seeds_main``, which trains it)."""
    if int(seed) == int(cfg.seed):
        return require_complete(artifacts.bd_checkpoint(cfg.profile, "ahm", "alexnet"), cfg.profile,
                                "BD checkpoint (AHM)")
    trained = (int(cfg.seed),) if cfg.bd.claim_seeds_main is None else tuple(int(s) for s in cfg.bd.claim_seeds_main)
    if int(seed) not in trained:
        raise ValueError(f"tc.claim_seeds has seed {seed}, whose pipeline starts from the BD model of seed {seed}; "
                         f"notebook 01 trains BD at B = {cfg.bd.batch_size} for bd.claim_seeds_main = {trained} only: "
                         f"add {seed} there")
    return require_complete(artifacts.bd_claim_checkpoint(cfg.profile, "ahm", cfg.bd.batch_size, seed), cfg.profile,
                            f"BD checkpoint (AHM, seed {seed})")


def _seed_runs(scfg, once, bd: Path, videos, seqs, device, progress: bool) -> dict[str, Any]:
    """A claim seed other than the main run's: ``tc.rounds`` re-mined rounds and ``no_remine`` (on its own round-1
    pairs), both from ``bd`` (the seed's BD model), into ``artifacts.rounds_seed_dir`` (complete ones reused; from
    another BD checkpoint: retrained)."""
    s = int(scfg.seed)
    out_dir = artifacts.rounds_seed_dir(scfg.profile, s)
    stale = first_stale_round(out_dir, bd, scfg.tc.rounds)
    if stale is not None:
        print(f"rounds claim, seed {s}: round {stale} was mined by another model than the current "
              f"{'BD checkpoint' if stale == 1 else f'round {stale - 1}'} (notebook 01 re-ran?): "
              "retraining every round")
    print(f"rounds claim, seed {s}: {scfg.tc.rounds} rounds from {bd.name} (complete rounds reused) into {out_dir}")
    rounds = [Path(p) for p in run_progressive(scfg, bd, videos, out_dir, device=device, resume=stale is None,
                                               progress=progress)]
    print(f"rounds claim, seed {s}: no re-mining control ({once.tc.steps_per_round} steps on its round-1 pairs)")
    no_remine = _train_control(once, bd, out_dir / f"pairs_round1{pairs_suffix()}", seqs, out_dir / "no_remine.pt",
                               device, progress)
    return {"rounds": rounds, "no_remine": no_remine}


def train_rounds_controls(cfg, device="auto", progress: bool = True, data_root=None) -> dict[str, Any]:
    """The two controls of the claim "progressive rounds help" (complete checkpoints reused):

    ``no_remine``: the same total steps (rounds x steps) in one round on round-1 pairs, from the BD model,
    under the same schedule; ``from_random_bn``: round 1 mined and learned from ``random_bn`` instead of
    the BD model, with round 1's schedule (does BD help TC?).  Files under ``artifacts.rounds_controls_dir``.
    ``seeds``: per claim seed other than the main run's (``claim_seeds``) its own rounds and ``no_remine`` from
    that seed's BD model (``seed_bd``, ``_seed_runs``): ``{seed: {"rounds": [checkpoints], "no_remine": checkpoint}}``.
    """
    out_dir = artifacts.rounds_controls_dir(cfg.profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = claim_seeds(cfg)
    bds = {s: seed_bd(cfg, s) for s in seeds if s != int(cfg.seed)}     # checked before anything trains
    videos = training_video(cfg, data_root)
    seqs = [unlabeled(s) for s in videos]
    bd = require_complete(artifacts.bd_checkpoint(cfg.profile, "ahm", "alexnet"), cfg.profile, "BD checkpoint (AHM)")
    pairs1 = artifacts.tc_dir(cfg.profile, "nr", "alexnet") / f"pairs_round1{pairs_suffix()}"
    if not pairs1.is_file():
        raise artifacts.missing(pairs1, cfg.profile, "round-1 pairs of AlexPUL")
    rcfg = tc_run_config(cfg, "nr", "alexnet")
    steps = int(rcfg.tc.rounds * rcfg.tc.steps_per_round)
    once = rcfg.override({"tc": {"rounds": 1, "steps_per_round": steps}})
    no_remine = _train_control(once, bd, pairs1, seqs, out_dir / "no_remine.pt", device, progress)
    init = out_dir / "random_bn_init.pt"
    net = random_bn(rcfg, videos, "alexnet", device="cpu")
    saved = load_net(init, "cpu").state_dict() if init.is_file() else {}
    if any(k not in saved or not torch.equal(v, saved[k]) for k, v in net.state_dict().items()):
        save_checkpoint(init, net, rcfg, stage="random_bn")   # rewritten only when it changed: mining reuses pairs
    rbn_pairs = out_dir / f"from_random_bn_pairs{pairs_suffix()}"
    table, _ = mine_round(rcfg, init, seqs, 1, rcfg.mining.spans[0], rbn_pairs, out_dir / "from_random_bn_pairs.json",
                          True, device, progress)
    from_rbn = _train_control(rcfg, init, table, seqs, out_dir / "from_random_bn_round1.pt", device, progress,
                              pairs_file=rbn_pairs)
    others = {s: _seed_runs(rcfg.override(seed=s), once.override(seed=s), b, videos, seqs, device, progress)
              for s, b in bds.items()}
    return {"no_remine": no_remine, "random_bn_init": init, "from_random_bn": from_rbn, "seeds": others}


def pair_precision(table: pd.DataFrame, labelled: dict[str, Any], iou_min: float = 0.5) -> dict[str, Any]:
    """Share of mined pairs whose box at frame b overlaps the ground truth by IoU >= ``iou_min``, over
    the pairs of ``labelled`` videos (name -> Sequence; labels score the miner, they never train it)."""
    rows = table[table["video"].isin(list(labelled))]
    if rows.empty:
        return {"precision": None, "n": 0}
    gt = np.stack([labelled[v].boxes[int(f)] for v, f in zip(rows["video"], rows["frame_b"])])
    ok = iou(rows[["xb", "yb", "wb", "hb"]].to_numpy(np.float64), gt) >= iou_min
    return {"precision": float(ok.mean()), "se": float(ok.std(ddof=1) / np.sqrt(len(ok))) if len(ok) > 1 else None,
            "n": int(len(ok))}


def claim_arms(cfg, controls: dict[str, Any]) -> dict[int, tuple[str, Path, str, Path]]:
    """Per claim seed, ``(treatment name, round-R checkpoint, control name, no_remine checkpoint)``: the main seed's
    are AlexPUL's round R ("round R") and ``controls["no_remine"]`` ("no re-mining"); another seed's its own runs
    from ``controls["seeds"]`` ("round R (seed s)", "no re-mining (seed s)")."""
    last = f"round {cfg.tc.rounds}"
    out = {}
    for s in claim_seeds(cfg):
        if s == int(cfg.seed):
            out[s] = (last, artifacts.tc_checkpoint(cfg.profile, cfg.tc.rounds, "nr", "alexnet"), "no re-mining",
                      Path(controls["no_remine"]))
            continue
        runs = (controls.get("seeds") or {}).get(s)
        if runs is None:
            raise ValueError(f"rounds claim: no runs of claim seed {s} among the controls (seeds "
                             f"{sorted(controls.get('seeds') or {})}); run train_rounds_controls with this "
                             "config first")
        out[s] = (f"{last} (seed {s})", Path(runs["rounds"][-1]), f"no re-mining (seed {s})", Path(runs["no_remine"]))
    return out


def _seeds_record(metric: str, unit: str, treatment: str, control: str, per_seed: list[dict], seeds) -> dict[str, Any]:
    """A claim record whose paired differences, one per seed, are combined by ``combine_seeds``."""
    return claim_record("rounds", metric, unit, treatment, control, combine_seeds(per_seed), seeds,
                        per_seed=[{"seed": int(s), **p} for s, p in zip(seeds, per_seed)])


def rounds_claim(cfg, controls: dict[str, Any], device="auto", progress: bool = True, data_root=None,
                 k: int = SUMMARY_K) -> dict[str, Any]:
    """Measures and claim records of "progressive rounds help" (``powered`` functions, labels score only).

    Per model (BD, each round, both controls, ``random_bn``, and round R and ``no_remine`` of every other claim
    seed): localisation accuracy on the run's held-out clean pairs, in the precision the models train and track
    with; mining error at ``k`` on the held-out videos for round R and ``no_remine`` of each seed; per round the
    precision of its mined pairs.  Records: R rounds vs ``no_remine`` (accuracy and mining error; a paired
    difference per claim seed, ``combine_seeds``, ``per_seed``), then at the main seed round 1 from BD vs
    ``from_random_bn`` and round R vs ``random_bn``.
    """
    pairs, videos = eval_pairs(cfg), eval_videos(cfg)
    precision = resolve_precision(cfg.precision, device)
    arms = claim_arms(cfg, controls)
    seeds = list(arms)
    models = {"random_bn": controls["random_bn_init"],       # saved by train_rounds_controls: built once
              "BD (AHM)": artifacts.bd_checkpoint(cfg.profile, "ahm", "alexnet"),
              **{f"round {r}": artifacts.tc_checkpoint(cfg.profile, r, "nr", "alexnet")
                 for r in range(1, cfg.tc.rounds + 1)},
              "no re-mining": controls["no_remine"], "round 1 from random_bn": controls["from_random_bn"]}
    for treat, t_ckpt, ctrl, c_ckpt in arms.values():
        models.setdefault(treat, t_ckpt)
        models.setdefault(ctrl, c_ckpt)
    last = f"round {cfg.tc.rounds}"
    mined = {last, "no re-mining"} | {n for a in arms.values() for n in (a[0], a[2])}
    measures, per = {}, {}
    for i, (name, m) in enumerate(models.items(), 1):
        if progress:
            print(f"rounds claim: {name} ({i}/{len(models)}): localisation"
                  + (f", mining error at k={k}" if name in mined else ""), flush=True)
        net = load_net(m if name == "random_bn" else require_complete(m, cfg.profile, name), device)
        loc = localisation(net, pairs, cfg.nr.r_pos, device=device, precision=precision)
        per[name] = {"hit": loc["hit"], "error": loc["error_px"]}
        measures[name] = localisation_summary(loc)
        if name in mined:               # mining on the held-out videos costs minutes: the claim's pairs only
            err = mining_error(net, cfg, videos, k=k, device=device)
            per[name]["mining"] = err
            measures[name].update({f"mining_error_k{k}": float(np.nanmean(err)),
                                   "mining_videos": int(np.isfinite(err).sum())})
    labelled = {s.name: s for s in supervised_sequences(cfg, data_root)}
    out_dir = artifacts.tc_dir(cfg.profile, "nr", "alexnet")
    precision_of_pairs = {f"round {r}": pair_precision(load_pairs(out_dir / f"pairs_round{r}{pairs_suffix()}"),
                                                       labelled)
                          for r in range(1, cfg.tc.rounds + 1)}
    cdir = artifacts.rounds_controls_dir(cfg.profile)
    precision_of_pairs["round 1 from random_bn"] = pair_precision(
        load_pairs(cdir / f"from_random_bn_pairs{pairs_suffix()}"), labelled)
    for s, (treat, t_ckpt, _, _) in arms.items():
        if s != int(cfg.seed):
            precision_of_pairs[treat] = pair_precision(
                load_pairs(t_ckpt.parent / f"pairs_round{cfg.tc.rounds}{pairs_suffix()}"), labelled)
    steps = cfg.tc.rounds * cfg.tc.steps_per_round
    treat = f"AlexPUL ({cfg.tc.rounds} rounds, re-mined)"
    ctrl = f"{steps} steps on round-1 pairs"
    accuracy = f"localisation accuracy ({len(pairs)} held-out pairs)"
    main = [int(cfg.seed)]
    claims = [
        _seeds_record(accuracy, "fraction", treat, ctrl, [paired_diff(per[t]["hit"], per[c]["hit"])
                                                          for t, _, c, _ in arms.values()], seeds),
        _seeds_record(f"mining error at k={k} ({len(videos)} held-out videos)", "px", treat, ctrl,
                      [paired_diff(per[c]["mining"], per[t]["mining"]) for t, _, c, _ in arms.values()], seeds),
        claim_record("rounds", accuracy, "fraction", "TC round 1 from BD", "TC round 1 from random_bn",
                     paired_diff(per["round 1"]["hit"], per["round 1 from random_bn"]["hit"]), main),
        claim_record("rounds", accuracy, "fraction", treat, "random_bn",
                     paired_diff(per[last]["hit"], per["random_bn"]["hit"]), main),
    ]
    return {"claims": claims, "measures": measures, "pair_precision": precision_of_pairs, "k": int(k),
            "heldout_videos": len(videos), "heldout_pairs": len(pairs), "seeds": seeds, "precision": precision,
            "arms": {str(s): {"treatment": a[0], "control": a[2]} for s, a in arms.items()}}


def claim_table(claim: dict[str, Any]) -> pd.DataFrame:
    """``rounds_claim``'s measures as one row per model (accuracy, error, mining error, pair precision)."""
    rows = []
    for name, m in claim["measures"].items():
        p = claim["pair_precision"].get(name, {})
        rows.append({"model": name, **m, "pair_precision": p.get("precision"), "pairs_scored": p.get("n")})
    return pd.DataFrame(rows).set_index("model")


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


def write_results(cfg, rounds: pd.DataFrame, report: pd.DataFrame, gallery: dict[str, Any],
                  claim: dict[str, Any] | None = None) -> Path:
    """Save ``02_temporal_correspondence.json`` (rounds, mining error, curve, gallery records, the rounds
    claim's records and measures, summary, provenance) and the gallery crops in its ``.npz``."""
    record, images = split_gallery(gallery)
    claim = claim or {}
    return save_results(cfg.profile, NOTEBOOK, {
        "claims": list(claim.get("claims", [])), "rounds_claim": {k: v for k, v in claim.items() if k != "claims"},
        "rounds": _records(rounds), "mining_quality": _records(report),
        "quality_sequences": list(report.attrs.get("sequences", [])), "eval_k": [int(k) for k in cfg.mining.eval_k],
        "curve": tc_curve(cfg, "nr", "alexnet"), "gallery": record,
        "setup": {"backbone": "alexnet", "loss": "nr", "rounds": int(cfg.tc.rounds),
                  "spans": [int(s) for s in cfg.mining.spans[:cfg.tc.rounds]],
                  "steps_per_round": int(cfg.tc.steps_per_round), "bd_checkpoint":
                      checkpoint_name(cfg.profile, artifacts.bd_checkpoint(cfg.profile, "ahm", "alexnet"))},
        "summary": tc_summary(rounds, report)}, cfg=cfg, arrays=images)


__all__ = ["train_rounds_controls", "rounds_claim", "claim_table", "claim_seeds", "claim_arms", "pair_precision", "run_alexpul", "run_tc", "mining_report", "round_records", "gallery_examples", "tc_curve",
           "write_results", "quality_sequences", "training_video", "error_by_round", "describe_mining",
           "tc_summary", "split_gallery"]
