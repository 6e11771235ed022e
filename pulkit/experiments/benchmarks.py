"""Notebook 07's benchmark and ablation tables, from ``pulkit.evaluation`` results.

Scores every trained tracker and two references on the OTB, GOT-10k and VOT protocols and
computes the acceptance numbers.  Trackers, benchmarks and acceptance: docs/modules.md.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from pulkit import evaluation as ev
from pulkit.core import artifacts, paths
from pulkit.core.io import atomic_write_bytes, write_json
from pulkit.core.provenance import provenance
from pulkit.core.results import MissingResultsError, load_results, machine, save_results
from pulkit.data.inventory import dataset_root, profile_sequences, training_video
from pulkit.data.sequences import DataError
from pulkit.data.synthetic import ensure_synthetic
from pulkit.evaluation.powered import claim_record, combine_seeds, eval_pairs, eval_videos, localisation, paired_diff
from pulkit.experiments.temporal_correspondence import claim_seeds
from pulkit.method.loop import require_complete
from pulkit.method.reference import bn_crops, estimate_bn, random_bn, raw_init
from pulkit.models.net import load_net
from pulkit.models.precision import resolve_precision
from pulkit.tracking.siamfc import SiamFCTracker, load_tracker
from pulkit.tracking.static import STATIC, StaticTracker

RANDOM_BN = "random_bn AlexNet"                  # the fair no-training reference of AlexPUL
RANDOM_BN_RES = "random_bn CIResNet-22"          # ... and of ResPUL
RAW_INIT = "raw init AlexNet (diagnostic)"       # BN at its initial statistics: a diagnostic, never a baseline
REFERENCES = (STATIC, RANDOM_BN, RANDOM_BN_RES, RAW_INIT)
PAIRED_REFERENCE = {"AlexPUL": RANDOM_BN, "ResPUL": RANDOM_BN_RES}
ACCEPTANCE_RATIO = 1.5     # AlexPUL success AUC / the static tracker's, at least
ACCEPTANCE_DIFF = 0.10     # AlexPUL success AUC - random_bn's, at least
METRICS = {"otb": ("success_auc", "precision"), "got10k": ("ao", "sr50", "sr75"),
           "vot": ("accuracy", "robustness", "eao")}
BENCHMARKS = tuple(METRICS)
NOTEBOOK = "07_benchmarks"
MAIN_TRACKERS = artifacts.MAIN_TRACKERS
CLAIM_SOURCES = ("01_background_discrimination", "02_temporal_correspondence", "04_noise_robustness")


# --------------------------------------------------------------------------- reference trackers
def reference_trackers(cfg, device: str = "auto", sequences=None, resnet: bool = True) -> dict[str, Any]:
    """The references: the static box, ``random_bn`` of AlexNet and (``resnet``) of CIResNet-22 (BN
    statistics estimated on label-free crops of the unlabeled training video) and the raw-init AlexNet,
    labelled a diagnostic."""
    seqs = training_video(cfg) if sequences is None else sequences
    out: dict[str, Any] = {STATIC: StaticTracker()}
    for name, backbone in ((RANDOM_BN, "alexnet"), (RANDOM_BN_RES, "ciresnet22"))[:2 if resnet else 1]:
        out[name] = random_bn_tracker(cfg, seqs, backbone, name, device)
    out[RAW_INIT] = SiamFCTracker(raw_init(cfg, "alexnet"), cfg.tracker,
                                  dataclasses.replace(cfg.model, backbone="alexnet"), device=device, name=RAW_INIT,
                                  precision=cfg.precision)
    return out


def random_bn_tracker(cfg, sequences, backbone: str, name: str, device: str = "auto") -> SiamFCTracker:
    """The ``random_bn`` network of ``cfg.seed`` and ``backbone`` (BN statistics from label-free crops of
    ``sequences``) as a ``SiamFCTracker`` named ``name``, in ``cfg.precision``."""
    model_cfg = dataclasses.replace(cfg.model, backbone=backbone)
    return SiamFCTracker(random_bn(cfg, sequences, backbone, device), cfg.tracker, model_cfg, device=device,
                         name=name, precision=cfg.precision)


# --------------------------------------------------------------------------- which trackers
@dataclass
class TrackerSet:
    """The trackers of a benchmark run.

    ``trackers``: display name -> tracker, one per distinct checkpoint plus the references;
    ``aliases``: display name -> the name evaluated in its place (same checkpoint file);
    ``checkpoints``: display name -> checkpoint of every present trained tracker;
    ``missing``: display name -> ``{"checkpoint": path under checkpoints/<profile>/, "notebook": ...}``.
    """
    trackers: dict[str, Any]
    aliases: dict[str, str] = field(default_factory=dict)
    checkpoints: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Every display name with results: trained (in ``tracker_checkpoints`` order), then references."""
        trained = [n for n in self.checkpoints]
        return trained + [n for n in self.trackers if n not in self.checkpoints]


def find_checkpoints(profile: str, rounds: int) -> tuple[dict[str, Path], dict[str, dict[str, str]]]:
    """``(present {name: path}, missing {name: {checkpoint, notebook}})`` of ``tracker_checkpoints``.

    Raises ``MissingResultsError`` when no trained tracker exists at all (nothing to benchmark)."""
    root = paths.checkpoints_dir(profile)
    present, missing = {}, {}
    for name, path in artifacts.tracker_checkpoints(profile, rounds).items():
        if path.is_file():
            present[name] = path
        else:
            missing[name] = {"checkpoint": _relative(path, root), "notebook": artifacts.producer(path, profile)}
    if not present:
        nbs = sorted({m["notebook"] for m in missing.values()})
        raise MissingResultsError(
            f"{root}: no trained tracker checkpoint for profile {profile!r}; they are trained by "
            + ", ".join(f"notebooks/{nb}.ipynb" for nb in nbs)
            + f": run `pulkit reproduce --profile {profile}` first", root, nbs[0])
    return present, missing


def tracker_set(profile: str, cfg, device: str = "auto") -> TrackerSet:
    """Load every present trained tracker (once per checkpoint file) and build the references."""
    present, missing = find_checkpoints(profile, cfg.tc.rounds)
    trackers: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    first_of: dict[Path, str] = {}
    for name, path in present.items():
        real = path.resolve()
        if real in first_of:
            aliases[name] = first_of[real]
            continue
        first_of[real] = name
        trackers[name] = load_tracker(name, path, device, precision=cfg.precision)
    trackers.update(reference_trackers(cfg, device, resnet="ResPUL" in present))   # ResPUL's paired reference
    return TrackerSet(trackers, aliases, present, missing)


def tracker_record(ts: TrackerSet, profile: str, results: Mapping[str, Mapping]) -> dict[str, dict]:
    """JSON-able description of every evaluated tracker: kind (trained | reference), checkpoint
    (under ``checkpoints/<profile>/``), ``same_checkpoint_as`` and its result key."""
    root = paths.checkpoints_dir(profile)
    out = {}
    for n in ts.names:
        bench = next((b for b in BENCHMARKS if n in results.get(b, {})), None)
        out[n] = {"kind": "reference" if n in REFERENCES else "trained",
                  "checkpoint": _relative(ts.checkpoints[n], root) if n in ts.checkpoints else None,
                  "same_checkpoint_as": ts.aliases.get(n),
                  "result_key": results[bench][n]["result_key"] if bench else None}
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


# --------------------------------------------------------------------------- which data
@dataclass
class BenchmarkSets:
    """The evaluation data of each benchmark (see the module doc).

    ``otb``: Sequence objects; ``got10k``: a root for ``evaluate_got10k`` (None: no GOT-10k
    data); ``vot``: Sequence objects; ``groups``: OTB sequence names by origin
    (``"synthetic"``, ``"real"``) for the acceptance numbers; ``max_frames``: the cut applied.
    """
    otb: list
    got10k: Path | None
    got10k_label: str | None
    vot: list
    groups: dict[str, list[str]]
    max_frames: int | None

    def describe(self) -> dict[str, Any]:
        return {"otb": [s.name for s in self.otb], "got10k": self.got10k_label, "vot": [s.name for s in self.vot],
                "groups": self.groups, "max_frames": self.max_frames}


def benchmark_sets(cfg, data_root: str | Path | None = None, sequences: Mapping[str, list] | None = None) -> BenchmarkSets:
    """The profile's evaluation data per benchmark; ``sequences`` defaults to ``profile_sequences``."""
    seqs = (sequences or profile_sequences(cfg, data_root))["eval"]
    src = {s.name: s.attributes.get("source") for s in seqs}
    otb = [s for s in seqs if src[s.name] in ("synthetic", "shared", "otb")]
    vot = [s for s in seqs if src[s.name] == "vot" or (src[s.name] == "shared" and s.name.startswith("vot/"))]
    groups = {"synthetic": [s.name for s in otb if src[s.name] == "synthetic"],
              "real": [s.name for s in otb if src[s.name] != "synthetic"]}
    got10k, label = None, None
    if "got10k" in cfg.data.eval_sources:
        got10k, label = dataset_root("got10k", data_root), "GOT-10k val"
    elif "synthetic" in cfg.data.eval_sources:
        got10k, label = ensure_synthetic(cfg.data)["val"], "synthetic val"
    return BenchmarkSets(otb, got10k, label, vot, groups, cfg.data.max_frames)


# --------------------------------------------------------------------------- running
def strip_speed(result: Any) -> Any:
    """``result`` without its timing entries (``speed_fps``) and per-sequence curves."""
    if isinstance(result, Mapping):
        return {k: strip_speed(v) for k, v in result.items()
                if k not in ("speed_fps", "success_curve", "precision_curve")}
    if isinstance(result, list):
        return [strip_speed(v) for v in result]
    return result


def run_benchmarks(ts: TrackerSet, sets: BenchmarkSets, cfg, profile: str | None,
                   progress: bool = True) -> tuple[dict[str, dict[str, dict]], dict[str, dict[str, float]]]:
    """Evaluate every tracker of ``ts`` on every benchmark with data.

    Returns ``(results {benchmark: {name: result}}, speeds {benchmark: {name: fps}})``; aliases get
    their original's result with ``tracker`` renamed and ``same_checkpoint_as`` set.  Results are
    ``strip_speed``-ed; with ``profile`` the tracking runs are stored and re-used."""
    results: dict[str, dict[str, dict]] = {b: {} for b in BENCHMARKS}
    speeds: dict[str, dict[str, float]] = {b: {} for b in BENCHMARKS}
    for name, tracker in ts.trackers.items():
        runs = {}
        if sets.otb:
            runs["otb"] = ev.evaluate_otb(tracker, sets.otb, profile=profile, max_frames=sets.max_frames,
                                          progress=progress)
        if sets.got10k is not None:
            runs["got10k"] = ev.evaluate_got10k(tracker, sets.got10k, "val", profile=profile,
                                                max_frames=sets.max_frames, progress=progress)
        if sets.vot:
            runs["vot"] = ev.evaluate_vot(tracker, sets.vot, cfg=cfg.eval, profile=profile,
                                          max_frames=sets.max_frames, progress=progress)
        for bench, r in runs.items():
            speeds[bench][name] = float(r["speed_fps"])
            results[bench][name] = strip_speed(r)
    for alias, original in ts.aliases.items():
        for bench in BENCHMARKS:
            if original in results[bench]:
                results[bench][alias] = {**results[bench][original], "tracker": alias, "same_checkpoint_as": original}
    for bench in BENCHMARKS:   # display order: trained in tracker_checkpoints order, then references
        results[bench] = {n: results[bench][n] for n in ts.names if n in results[bench]}
    return results, speeds


# --------------------------------------------------------------------------- tables
def _status(name: str, result: Mapping | None, missing: Mapping[str, Mapping]) -> str:
    if name in missing:
        return f"missing: run notebooks/{missing[name]['notebook']}.ipynb ({missing[name]['checkpoint']})"
    if name in REFERENCES:
        return "reference"
    if result is not None and result.get("same_checkpoint_as"):
        return f"same checkpoint as {result['same_checkpoint_as']}"
    return "ok"


def benchmark_table(bench: str, results: Mapping[str, Mapping], missing: Mapping[str, Mapping] | None = None):
    """One row per tracker (index ``tracker``): ``METRICS[bench]``, ``frames``, ``status``.

    Missing trackers are rows with NaN metrics and a status naming the notebook that trains them
    (after the evaluated ones, in their given order)."""
    import pandas as pd

    if bench not in METRICS:
        raise ValueError(f"unknown benchmark {bench!r}; valid: {', '.join(METRICS)}")
    missing = missing or {}
    cols = [*METRICS[bench], "frames", "status"]
    rows = {}
    for name, r in results.items():
        if r.get("benchmark") != bench:
            raise ValueError(f"{name}: a {r.get('benchmark')!r} result in the {bench!r} table")
        rows[name] = {**{m: float(r[m]) for m in METRICS[bench]}, "frames": int(r["frames"]),
                      "status": _status(name, r, missing)}
    for name in missing:
        if name not in rows:
            rows[name] = {**{m: np.nan for m in METRICS[bench]}, "frames": np.nan, "status": _status(name, None, missing)}
    df = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    df["frames"] = df["frames"].astype("Int64")      # stays an integer beside missing rows
    df.index.name = "tracker"
    return df


def sequence_table(otb_results: Mapping[str, Mapping], groups: Mapping[str, list[str]] | None = None):
    """OTB protocol per (tracker, sequence): ``success_auc``, ``precision``, ``frames``, ``group``."""
    import pandas as pd

    group_of = {s: g for g, names in (groups or {}).items() for s in names}
    rows = [{"tracker": name, "sequence": seq, "group": group_of.get(seq), "success_auc": float(v["success_auc"]),
             "precision": float(v["precision"]), "frames": int(v["frames"])}
            for name, r in otb_results.items() for seq, v in r["sequences"].items()]
    return pd.DataFrame(rows, columns=["tracker", "sequence", "group", "success_auc", "precision", "frames"])


def ablation_rows(rounds: int) -> list[tuple[str, str, str | None, str | None]]:
    """``(component, tracker, reference, previous)`` of the ablation table, in order.

    ``reference``: the variant it is compared with (AHM vs RSS, NR vs BCE at the same round,
    unsupervised AlexPUL vs supervised SiamFC); ``previous``: what the round started from (round 1
    from the AHM BD model, round r from round r - 1 of the same loss)."""
    rows = [("BD sampler", "BD only (AHM)", "BD only (RSS)", None), ("BD sampler", "BD only (RSS)", None, None)]
    for r in range(1, rounds + 1):
        prev = "BD only (AHM)" if r == 1 else None
        rows.append((f"TC loss, round {r}", f"TC-NR round {r}", f"TC-BCE round {r}", prev or f"TC-NR round {r - 1}"))
        rows.append((f"TC loss, round {r}", f"TC-BCE round {r}", None, prev or f"TC-BCE round {r - 1}"))
    rows += [("supervision", "AlexPUL", "SiamFC (supervised)", None), ("supervision", "SiamFC (supervised)", None, None)]
    return rows


def ablation_table(otb_results: Mapping[str, Mapping], rounds: int, missing: Mapping[str, Mapping] | None = None):
    """The ablation table on the OTB protocol: one row per ``ablation_rows`` tracker with
    ``success_auc``, ``precision``, ``reference``, ``delta_auc`` (tracker - reference),
    ``previous``, ``gain_vs_previous`` and ``status`` (missing ones named with their notebook)."""
    import pandas as pd

    missing = missing or {}
    auc = {n: float(r["success_auc"]) for n, r in otb_results.items()}
    prec = {n: float(r["precision"]) for n, r in otb_results.items()}

    def diff(a, b):
        return auc[a] - auc[b] if b is not None and a in auc and b in auc else np.nan

    rows = []
    for component, name, ref, prev in ablation_rows(rounds):
        rows.append({"tracker": name, "component": component, "success_auc": auc.get(name, np.nan),
                     "precision": prec.get(name, np.nan), "reference": ref, "delta_auc": diff(name, ref),
                     "previous": prev, "gain_vs_previous": diff(name, prev),
                     "status": _status(name, otb_results.get(name), missing) if name in otb_results or name in missing
                     else "not evaluated"})
    return pd.DataFrame(rows).set_index("tracker")


# --------------------------------------------------------------------------- acceptance
def subset_auc(result: Mapping[str, Any], names: Iterable[str]) -> float:
    """OTB success AUC over a subset of a result's sequences: the mean of their per-sequence AUCs
    (the overall AUC is the same mean over all sequences).  NaN for an empty subset."""
    names = list(names)
    missing = [n for n in names if n not in result["sequences"]]
    if missing:
        raise KeyError(f"{result.get('tracker')}: no OTB result for sequences {missing}")
    return float(np.mean([result["sequences"][n]["success_auc"] for n in names])) if names else float("nan")


def acceptance(otb_results: Mapping[str, Mapping], groups: Mapping[str, list[str]], tracker: str = "AlexPUL",
               static: str = STATIC, reference: str = RANDOM_BN, ratio_target: float = ACCEPTANCE_RATIO,
               diff_target: float = ACCEPTANCE_DIFF) -> dict[str, Any]:
    """AlexPUL's success AUC against the static tracker (ratio) and ``random_bn`` (difference), over
    ``all`` OTB-protocol sequences and each non-empty group.

    Returns ``{"available": bool, "reason", "targets", "sets": {set: {sequences, auc, static_auc,
    random_bn_auc, ratio_vs_static, diff_vs_random_bn, ratio_met, diff_met}}, "summary": {...}}``;
    ``ratio_vs_static`` is None when the static AUC is 0."""
    targets = {"ratio_vs_static": float(ratio_target), "diff_vs_random_bn": float(diff_target)}
    absent = [n for n in (tracker, static, reference) if n not in otb_results]
    if absent:
        return {"available": False, "reason": f"no OTB results for {absent}", "targets": targets, "sets": {},
                "summary": {"acceptance_available": False}}
    subsets = {"all": list(otb_results[tracker]["sequences"])}
    subsets.update({g: list(n) for g, n in groups.items() if n})
    out = {}
    for label, names in subsets.items():
        a, s, u = (subset_auc(otb_results[n], names) for n in (tracker, static, reference))
        ratio = a / s if s > 0 else None
        out[label] = {"sequences": names, "auc": a, "static_auc": s, "random_bn_auc": u,
                      "ratio_vs_static": ratio, "diff_vs_random_bn": a - u,
                      "ratio_met": bool(ratio is not None and ratio >= ratio_target), "diff_met": bool(a - u >= diff_target)}
    main = out["all"]
    summary = {"acceptance_available": True, f"{tracker}_auc": main["auc"], "static_auc": main["static_auc"],
               "random_bn_auc": main["random_bn_auc"], "ratio_vs_static": main["ratio_vs_static"],
               "diff_vs_random_bn": main["diff_vs_random_bn"], "ratio_target_met": main["ratio_met"],
               "diff_target_met": main["diff_met"]}
    return {"available": True, "reason": None, "tracker": tracker, "targets": targets, "sets": out, "summary": summary}


def acceptance_table(acc: Mapping[str, Any]):
    """The acceptance numbers as a DataFrame, one row per sequence set."""
    import pandas as pd

    cols = ["auc", "static_auc", "random_bn_auc", "ratio_vs_static", "diff_vs_random_bn", "ratio_met", "diff_met",
            "n_sequences"]
    rows = {k: {**{c: v.get(c) for c in cols[:-1]}, "n_sequences": len(v["sequences"])} for k, v in acc["sets"].items()}
    df = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    df.index.name = "sequences"
    return df


# --------------------------------------------------------------------------- claims
def seed_name(name: str, seed: int) -> str:
    """The display name of tracker ``name`` at a claim seed other than the main run's: ``"AlexPUL (seed 1)"``."""
    return f"{name} (seed {int(seed)})"


def alexpul_seed_trackers(cfg, seed: int, device: str = "auto") -> dict[str, Any]:
    """AlexPUL and its ``random_bn`` AlexNet at claim seed ``seed``, built as ``tracker_set`` builds the main ones
    and named ``seed_name``: round ``tc.rounds`` of notebook 02's whole pipeline of that seed
    (``artifacts.rounds_seed_dir``; absent or incomplete: the error names the file and notebook 02) and
    ``random_bn`` of ``cfg.override(seed=seed)``."""
    s = int(seed)
    path = require_complete(artifacts.rounds_seed_dir(cfg.profile, s) / f"tc_round{cfg.tc.rounds}.pt", cfg.profile,
                            f"AlexPUL of claim seed {s} (round {cfg.tc.rounds} of its pipeline)")
    alex, ref = seed_name("AlexPUL", s), seed_name(RANDOM_BN, s)
    return {alex: load_tracker(alex, path, device, precision=cfg.precision),
            ref: random_bn_tracker(cfg.override(seed=s), training_video(cfg), "alexnet", ref, device)}


def real_sequences(cfg, names: Iterable[str], data_root=None) -> list:
    """The profile's evaluation sequences named ``names`` (``profile_sequences``, as ``benchmark_sets`` reads them)."""
    names = list(names)
    by_name = {s.name: s for s in profile_sequences(cfg, data_root)["eval"]}
    absent = [n for n in names if n not in by_name]
    if absent:
        raise DataError(f"{data_root or 'the profile default data'}: no evaluation sequence named {absent}; "
                        "pass pul_claims the data_root the benchmarks ran on")
    return [by_name[n] for n in names]


def _per_sequence(result: Mapping[str, Any], names: Iterable[str]) -> np.ndarray:
    return np.array([result["sequences"][n]["success_auc"] for n in names], dtype=np.float64)


def pul_claims(ts: TrackerSet, cfg, otb_results: Mapping[str, Mapping], groups: Mapping[str, list[str]],
               profile: str | None, device: str = "auto", progress: bool = True, data_root=None) -> dict[str, Any]:
    """Claim ``pul_vs_random_bn``: AlexPUL and ResPUL against their ``random_bn`` and the static box, paired.

    Measures: localisation accuracy on the run's held-out clean pairs (``eval_pairs``), OTB success AUC
    on the held-out synthetic videos (``eval_videos``; runs stored under ``profile``) and on the real
    evaluation sequences (``groups["real"]``: ``otb_results``, or tracked here for the other seeds).
    AlexPUL's records span the claim seeds (``claim_seeds``): the main seed's trackers of ``ts``, every other
    seed's ``alexpul_seed_trackers``; one paired difference per seed, combined by ``combine_seeds``
    (``per_seed``); the static box is deterministic, its scores shared by every seed.  ResPUL's records and the
    diagnostic one: the main seed.  Returns ``{"claims": [records], "measures": {tracker: {...}}, "seeds", ...}``.
    """
    pairs, videos = eval_pairs(cfg), eval_videos(cfg)
    precision = resolve_precision(cfg.precision, device)     # every net scored as it trains and tracks
    real = list(groups.get("real", []))
    main = int(cfg.seed)
    seeds = list(claim_seeds(cfg)) if "AlexPUL" in ts.checkpoints else []
    others: dict[str, Any] = {}
    for s in seeds:
        if s != main:
            others.update(alexpul_seed_trackers(cfg, s, device))
    trackers = {**ts.trackers, **others}
    real_seqs = real_sequences(cfg, real, data_root) if others and len(real) >= 2 else []
    scores: dict[str, dict[str, Any]] = {}

    def score(name: str) -> dict[str, Any]:
        if name not in scores:
            if progress:
                print(f"pul claim: {name}: {len(videos)} held-out videos, {len(pairs)} pairs"
                      + (f", {len(real_seqs)} real sequences" if name in others and real_seqs else ""), flush=True)
            tracker = trackers[ts.aliases.get(name, name)]
            held = ev.evaluate_otb(tracker, videos, profile=profile, progress=progress)
            loc = (localisation(tracker.net, pairs, cfg.nr.r_pos, device=device, precision=precision)
                   if hasattr(tracker, "net") else None)
            if name in otb_results:
                real_auc = _per_sequence(otb_results[name], real)
            elif name in others and real_seqs:     # as run_benchmarks tracks the main seed's
                real_auc = _per_sequence(ev.evaluate_otb(tracker, real_seqs, profile=profile,
                                                         max_frames=cfg.data.max_frames, progress=progress), real)
            else:
                real_auc = None
            scores[name] = {"heldout_auc": _per_sequence(held, [v.name for v in videos]), "real_auc": real_auc,
                            "hit": None if loc is None else loc["hit"]}
        return scores[name]

    measured = ((f"localisation accuracy ({len(pairs)} held-out pairs)", "fraction", "hit"),
                (f"success AUC ({len(videos)} held-out synthetic videos)", "AUC", "heldout_auc"),
                (f"success AUC ({len(real)} real sequences)", "AUC", "real_auc"))
    records = []
    for trained, ref in PAIRED_REFERENCE.items():
        if trained not in ts.checkpoints:
            continue
        over_seeds = trained == "AlexPUL"
        runs = ({s: (trained, ref) if s == main else (seed_name(trained, s), seed_name(ref, s)) for s in seeds}
                if over_seeds else {main: (trained, ref)})
        for is_ref in (True, False):
            control = ref if is_ref else STATIC
            per = {s: (score(t), score(c if is_ref else STATIC)) for s, (t, c) in runs.items()}
            for metric, unit, key in measured:
                if key == "real_auc" and len(real) < 2:
                    continue
                if any(t[key] is None or c[key] is None for t, c in per.values()):
                    continue
                diffs = [paired_diff(t[key], c[key]) for t, c in per.values()]
                if over_seeds:
                    records.append(claim_record("pul_vs_random_bn", metric, unit, trained, control,
                                                combine_seeds(diffs), list(per),
                                                per_seed=[{"seed": int(s), **d} for s, d in zip(per, diffs)]))
                else:
                    records.append(claim_record("pul_vs_random_bn", metric, unit, trained, control, diffs[0], [main]))
    if "AlexPUL" in ts.checkpoints:   # diagnostic: AlexPUL's weights with BN statistics estimated like random_bn's
        net = load_net(ts.checkpoints["AlexPUL"], device)
        estimate_bn(net.backbone, (b.to(next(net.parameters()).device) for b in bn_crops(cfg, training_video(cfg))))
        hit = localisation(net, pairs, cfg.nr.r_pos, device=device, precision=precision)["hit"]
        reference_hit = score(RANDOM_BN)["hit"]
        scores["AlexPUL (BN re-estimated)"] = {"heldout_auc": np.full(len(videos), np.nan), "real_auc": None, "hit": hit}
        records.append(claim_record("pul_vs_random_bn", f"localisation accuracy ({len(pairs)} held-out pairs)",
                                    "fraction", "AlexPUL (BN re-estimated, diagnostic)", RANDOM_BN,
                                    paired_diff(hit, reference_hit), [main], role="diagnostic"))
    measures = {n: {"heldout_auc": float(np.nanmean(v["heldout_auc"])) if np.isfinite(v["heldout_auc"]).any() else None,
                    "heldout_auc_se": (float(np.std(v["heldout_auc"], ddof=1) / np.sqrt(len(v["heldout_auc"])))
                                       if np.isfinite(v["heldout_auc"]).all() and len(v["heldout_auc"]) > 1 else None),
                    "real_auc": None if v["real_auc"] is None or not len(v["real_auc"]) else float(np.mean(v["real_auc"])),
                    "localisation_accuracy": None if v["hit"] is None else float(np.mean(v["hit"]))}
                for n, v in scores.items()}
    return {"claims": records, "measures": measures, "heldout_videos": len(videos), "heldout_pairs": len(pairs),
            "seeds": seeds}


def collect_claims(cfg, own: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Every claim record of the run: those notebooks 01, 02 and 04 stored under ``"claims"`` and 07's own.

    A notebook whose results are absent contributes nothing and is listed under ``"missing"``."""
    records, missing = [], []
    for nb in CLAIM_SOURCES:
        try:
            records.extend(load_results(cfg.profile, nb).get("claims", []))
        except MissingResultsError:
            missing.append(nb)
    records.extend(own)
    return {"claims": records, "missing": missing, "cpu_model": machine()["cpu_model"]}


def claims_table(claims: Mapping[str, Any]):
    """The claim records as a DataFrame (one row each: claim, metric, treatment, control, diff, se, n, verdict)."""
    cols = ["claim", "metric", "treatment", "control", "diff", "se", "n", "seeds", "verdict"]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in claims["claims"]], columns=cols)


def write_claims(cfg, claims: Mapping[str, Any]) -> Path:
    """``results/<profile>/claims.json`` (``artifacts.claims_path``) with the run's provenance."""
    return write_json(artifacts.claims_path(cfg.profile),
                      {**claims, "provenance": provenance(cfg.profile, cfg.seed, cfg)})


# --------------------------------------------------------------------------- files
def save_table(df, profile: str, name: str) -> Path:
    """``artifacts.table_path(profile, name)`` (CSV) written atomically (floats at full precision)."""
    return atomic_write_bytes(artifacts.table_path(profile, name), df.to_csv().encode())


def load_table(profile: str, name: str):
    """A table saved by ``save_table``; a missing file names notebook 07."""
    path = artifacts.table_path(profile, name)
    if not path.is_file():
        raise artifacts.missing(path, profile, f"table {name!r}")
    return pd.read_csv(path, index_col=0)


def results_record(ts: TrackerSet, sets: BenchmarkSets, profile: str, results: Mapping[str, Mapping],
                   acc: Mapping[str, Any], pul: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Notebook 07's record: the trackers, the missing ones, the data, every benchmark's results, the
    acceptance numbers, the ``pul_claims`` measures and the summary."""
    return {
        "trackers": tracker_record(ts, profile, results), "missing": ts.missing, "data": sets.describe(),
        "results": results, "acceptance": acc, "claims": list((pul or {}).get("claims", [])),
        "heldout": {k: v for k, v in (pul or {}).items() if k != "claims"},
        "summary": {**acc["summary"], "trackers_evaluated": len(ts.names), "trackers_missing": len(ts.missing)},
    }


def write_results(cfg, record: Mapping[str, Any]) -> Path:
    """``07_benchmarks.json`` (provenance added); the tables are written by ``save_table``."""
    return save_results(cfg.profile, NOTEBOOK, dict(record), cfg=cfg)
