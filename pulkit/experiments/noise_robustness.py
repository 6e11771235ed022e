"""The noise experiment (paper 4.2.2, supplementary D, Figs. 3, 4, 6): BCE vs NR on noisy annotations.

Trains supervised BCE and NR runs per noise level and seed, scores them with the OTB protocol and
writes ``results/<profile>/04_noise_robustness.json`` for ``pulkit.figures.noise_robustness``.
Procedure and outputs: docs/modules.md.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from pulkit.core import artifacts
from pulkit.core.config import ConfigError
from pulkit.core.io import last_jsonl_record
from pulkit.core.results import save_results
from pulkit.data import crops
from pulkit.data.inventory import profile_sequences
from pulkit.data.sequences import DataError, Sequence
from pulkit.evaluation.otb import evaluate_otb
from pulkit.evaluation.outputs import tracker_key
from pulkit.method.loop import load_training_checkpoint
from pulkit.method.pairs import noisy_boxes
from pulkit.method.supervised import check_training_sequences, log_path, matches, run_config, train_supervised
from pulkit.models.net import load_net
from pulkit.tracking.siamfc import SiamFCTracker

LOSSES = ("bce", "nr")
NOTEBOOK = "04_noise_robustness"
RUN_COLUMNS = ("loss", "noise", "seed", "backbone", "auc", "precision", "success_rate", "frames",
               "final_loss", "giveup_frac", "checkpoint")


# --------------------------------------------------------------------------- configuration
def check_noise_config(cfg) -> None:
    """``ConfigError`` unless levels, seeds and the display levels make a runnable experiment."""
    nc = cfg.noise
    if not nc.levels or any(int(n) != n or n < 0 for n in nc.levels) or len(set(nc.levels)) != len(nc.levels):
        raise ConfigError(f"noise.levels must be distinct non-negative integers (pixels), got {nc.levels}")
    if not nc.seeds or len(set(nc.seeds)) != len(nc.seeds):
        raise ConfigError(f"noise.seeds must be distinct integers, got {nc.seeds}")
    missing = [n for n in (*nc.display_levels, nc.fig4_level) if n not in nc.levels]
    if missing:
        raise ConfigError(f"noise.display_levels / fig4_level {missing} are not among noise.levels {nc.levels} "
                          "(only trained levels can be shown)")
    if nc.steps is not None and nc.steps < 1:
        raise ConfigError(f"noise.steps must be >= 1 or None, got {nc.steps}")
    if nc.eval_max_frames is not None and nc.eval_max_frames < 2:
        raise ConfigError(f"noise.eval_max_frames must be >= 2 or None, got {nc.eval_max_frames}")


def with_levels(cfg, levels=None, seeds=None):
    """``cfg`` with other noise ``levels`` / ``seeds`` (None: the profile's); the display levels become
    those of the profile that remain (else all levels) and Fig. 4's level 50 (else the largest)."""
    nc, changes = cfg.noise, {}
    if levels is not None:
        levels = tuple(int(n) for n in levels)
        changes["levels"] = levels
        changes["display_levels"] = tuple(n for n in nc.display_levels if n in levels) or levels
        changes["fig4_level"] = nc.fig4_level if nc.fig4_level in levels else max(levels, default=0)
    if seeds is not None:
        changes["seeds"] = tuple(int(s) for s in seeds)
    out = cfg.override({"noise": changes}) if changes else cfg
    check_noise_config(out)
    return out


def noise_run_config(cfg, loss: str, noise: int, seed: int):
    """The config a run trains with: ``noise.steps`` (when set) as its steps, its loss, noise and seed."""
    if cfg.noise.steps is not None:
        cfg = cfg.override({"supervised": {"steps": int(cfg.noise.steps)}})
    return run_config(cfg, loss, noise, seed)


def checkpoint_path(cfg, loss: str, noise: int, seed: int, out=None) -> Path:
    """``artifacts.noise_checkpoint(profile, loss, n, seed)``, or the same file name under ``out``."""
    path = artifacts.noise_checkpoint(cfg.profile, loss, noise, seed)
    return path if out is None else Path(out) / path.name


def checkpoint_name(path) -> str:
    """A checkpoint's name as results record it: relative to its profile's checkpoints (no machine paths)."""
    return f"noise/{Path(path).name}"


# --------------------------------------------------------------------------- data
def experiment_sequences(cfg, data_root=None) -> dict[str, list[Sequence]]:
    """``{"train": labelled training sequences, "eval": evaluation sequences}`` of the experiment.

    Training: the profile's labelled training video (``supervised_sequences``).  Evaluation: the
    profile's evaluation sequences whose source is in ``noise.eval_sources``, truncated to
    ``noise.eval_max_frames`` frames when set.  No sequence is in both.
    """
    seqs = profile_sequences(cfg, data_root)
    train = [s for s in seqs["train"] if s.attributes.get("source") != "shared"]
    evals = [s for s in seqs["eval"] if s.attributes.get("source") in cfg.noise.eval_sources]
    if not evals:
        raise DataError(f"profile {cfg.profile!r}: no evaluation sequences from noise.eval_sources "
                        f"{cfg.noise.eval_sources} among data.eval_sources {cfg.data.eval_sources}")
    n = cfg.noise.eval_max_frames
    if n is not None:
        evals = [s.sub(0, n) for s in evals]
    return {"train": check_training_sequences(cfg, train), "eval": evals}


# --------------------------------------------------------------------------- evaluation
def make_tracker(cfg, ckpt, name: str, device="auto"):
    """``SiamFCTracker`` for a checkpoint, with ``cfg.tracker``'s rules (None fields: the backbone's)."""
    net = load_net(ckpt, device=device)
    return SiamFCTracker(net, cfg.tracker, device=device, name=name)


def evaluate_checkpoint(cfg, ckpt, sequences, name: str, tracking_root, device="auto",
                        progress: bool = True) -> dict[str, Any]:
    """OTB-protocol result (``evaluate_otb``) of a checkpoint; tracker outputs stored under
    ``tracking_root/<result key>/OTB`` and reused when key and sequences match."""
    tracker = make_tracker(cfg, ckpt, name, device)
    key = tracker_key(tracker)
    return evaluate_otb(tracker, sequences, key=key, result_dir=Path(tracking_root) / key, progress=progress)


# --------------------------------------------------------------------------- the experiment
def run_noise_experiment(cfg, out=None, device="auto", *, sequences: Mapping[str, list] | None = None,
                         progress: bool = True) -> pd.DataFrame:
    """Train and evaluate BCE and NR at every (n, seed); return one row per run (``RUN_COLUMNS``).

    ``out``: folder for checkpoints (``<loss>_n<n>_s<seed>.pt`` + ``.jsonl`` logs) and tracker
    outputs (``tracking/``); None: ``checkpoints/<profile>/noise/`` and ``results/<profile>/tracking/``.
    Complete checkpoints of the same training config are reused (a second call trains nothing);
    an interrupted run resumes; a checkpoint from another training config is retrained (warned).
    ``sequences``: ``{"train": [...], "eval": [...]}`` instead of ``experiment_sequences(cfg)``.
    Rows: ``auc`` (success AUC), ``precision`` (at 20 px), ``success_rate`` (IoU > 0.5),
    ``frames`` (evaluated), ``final_loss`` / ``giveup_frac`` (the last training log record),
    ``checkpoint`` (path).  ``table.attrs["per_sequence"]`` holds per-sequence scores as records
    (``per_sequence_table``).
    """
    from tqdm.auto import tqdm

    check_noise_config(cfg)
    seqs = dict(sequences) if sequences is not None else experiment_sequences(cfg)
    tracking_root = artifacts.tracking_dir(cfg.profile) if out is None else Path(out) / "tracking"
    runs = [(n, s, loss) for n in cfg.noise.levels for s in cfg.noise.seeds for loss in LOSSES]
    rows, per_seq = [], []
    for n, seed, loss in tqdm(runs, desc="noise runs", disable=not progress):
        rcfg = noise_run_config(cfg, loss, n, seed)
        ckpt = checkpoint_path(cfg, loss, n, seed, out)
        resume = True
        if ckpt.is_file() and not matches(ckpt, rcfg):
            ck = load_training_checkpoint(ckpt)
            if ck.get("complete") or ck.get("config") != rcfg.to_dict():
                warnings.warn(f"{ckpt}: written by another config; retraining it", stacklevel=2)
                resume = False
        train_supervised(rcfg, seqs["train"], ckpt, loss=loss, noise_px=n, seed=seed, resume=resume,
                         device=device, progress=progress)
        res = evaluate_checkpoint(rcfg, ckpt, seqs["eval"], f"noise_{loss}_n{n}_s{seed}", tracking_root,
                                  device, progress)
        last = last_jsonl_record(log_path(ckpt))
        rows.append({"loss": loss, "noise": int(n), "seed": int(seed), "backbone": rcfg.model.backbone,
                     "auc": res["success_auc"], "precision": res["precision"], "success_rate": res["success_rate"],
                     "frames": res["frames"], "final_loss": last.get("loss", np.nan),
                     "giveup_frac": last.get("giveup_frac", np.nan), "checkpoint": str(ckpt)})
        per_seq += [{"loss": loss, "noise": int(n), "seed": int(seed), "sequence": name,
                     "auc": r["success_auc"], "precision": r["precision"], "frames": r["frames"]}
                    for name, r in res["sequences"].items()]
    table = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    table.attrs["per_sequence"] = per_seq
    return table


def per_sequence_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per-sequence scores of a ``run_noise_experiment`` table: loss, noise, seed, sequence, auc, precision."""
    records = table.attrs.get("per_sequence")
    if records is None:
        raise ValueError("this table carries no per-sequence scores (it did not come from run_noise_experiment)")
    return pd.DataFrame(records, columns=["loss", "noise", "seed", "sequence", "auc", "precision", "frames"])


# --------------------------------------------------------------------------- aggregation
def _runs(table) -> pd.DataFrame:
    df = pd.DataFrame(table) if not isinstance(table, pd.DataFrame) else table
    missing = [c for c in ("loss", "noise", "seed", "auc") if c not in df.columns]
    if missing:
        raise ValueError(f"noise table lacks columns {missing}; it has {list(df.columns)}")
    bad = sorted(set(df["loss"]) - set(LOSSES))
    if bad:
        raise ValueError(f"noise table: unknown loss(es) {bad}; expected {LOSSES}")
    if df.duplicated(["loss", "noise", "seed"]).any():
        raise ValueError("noise table: more than one row for some (loss, noise, seed)")
    return df


def summarize(table) -> pd.DataFrame:
    """Per (loss, noise): seeds, and mean / std (ddof 0) / min / max over seeds of auc and precision."""
    df = _runs(table)
    metrics = [m for m in ("auc", "precision") if m in df.columns]
    g = df.groupby(["loss", "noise"], sort=True)
    out = g.size().rename("seeds").to_frame()
    for m in metrics:
        out[f"{m}_mean"] = g[m].mean()
        out[f"{m}_std"] = g[m].std(ddof=0)
        out[f"{m}_min"] = g[m].min()
        out[f"{m}_max"] = g[m].max()
    return out.reset_index()


def relative_gain(table) -> pd.DataFrame:
    """Per noise level: BCE and NR mean AUC over seeds, NR's relative gain ``(NR - BCE) / BCE``, the
    seeds where NR beat BCE at the same seed (``nr_wins`` of ``paired``), and whether the two seed
    ranges are disjoint (``separated``)."""
    df = _runs(table)
    s = summarize(df).set_index(["loss", "noise"])
    rows = []
    for n in sorted(df["noise"].unique()):
        if ("bce", n) not in s.index or ("nr", n) not in s.index:
            continue
        b, r = s.loc[("bce", n)], s.loc[("nr", n)]
        pair = df[df["noise"] == n].pivot(index="seed", columns="loss", values="auc").dropna()
        gain = (r["auc_mean"] - b["auc_mean"]) / b["auc_mean"] if b["auc_mean"] > 0 else np.nan
        rows.append({"noise": int(n), "auc_bce": float(b["auc_mean"]), "auc_nr": float(r["auc_mean"]),
                     "gain": float(gain), "nr_wins": int((pair["nr"] > pair["bce"]).sum()), "paired": int(len(pair)),
                     "separated": bool(r["auc_min"] > b["auc_max"] or b["auc_min"] > r["auc_max"])})
    return pd.DataFrame(rows, columns=["noise", "auc_bce", "auc_nr", "gain", "nr_wins", "paired", "separated"])


def summary_numbers(table) -> dict[str, float | int]:
    """The flat ``summary`` of the results file: mean AUC per (loss, n), relative gain in % per n,
    and how many levels have NR's mean above BCE's."""
    gain = relative_gain(table)
    out: dict[str, float | int] = {"runs": int(len(_runs(table))), "levels": int(len(gain)),
                                   "seeds": int(_runs(table)["seed"].nunique()),
                                   "levels_nr_better": int((gain["auc_nr"] > gain["auc_bce"]).sum())}
    for r in gain.itertuples():
        out[f"auc_bce_n{r.noise}"] = round(float(r.auc_bce), 4)
        out[f"auc_nr_n{r.noise}"] = round(float(r.auc_nr), 4)
        out[f"gain_pct_n{r.noise}"] = round(100 * float(r.gain), 2)
    return out


def describe_trend(table) -> str:
    """What the runs show, level by level, in words (no claim beyond the numbers)."""
    df = _runs(table)
    s = summarize(df).set_index(["loss", "noise"])
    lines = []
    for r in relative_gain(df).itertuples():
        b, nr = s.loc[("bce", r.noise)], s.loc[("nr", r.noise)]
        lines.append(f"n = {r.noise:>3} px: BCE {b['auc_mean']:.3f} [{b['auc_min']:.3f}, {b['auc_max']:.3f}], "
                     f"NR {nr['auc_mean']:.3f} [{nr['auc_min']:.3f}, {nr['auc_max']:.3f}] over {int(b['seeds'])} "
                     f"seed(s): NR {100 * r.gain:+.1f} % relative; NR ahead in {r.nr_wins}/{r.paired} paired seeds; "
                     + ("seed ranges disjoint" if r.separated else "seed ranges overlap"))
    gain = relative_gain(df)
    better = int((gain["auc_nr"] > gain["auc_bce"]).sum())
    lines.append(f"NR's mean AUC is above BCE's at {better} of {len(gain)} noise levels "
                 f"(paper: at every level, +5.7 % relative at n = 50).")
    return "\n".join(lines)


# --------------------------------------------------------------------------- Figs. 3 / 4 examples
def _checkpoint_map(table_or_ckpts, seed: int) -> dict[tuple[str, int], Path]:
    if isinstance(table_or_ckpts, pd.DataFrame):
        if "checkpoint" not in table_or_ckpts.columns:
            raise ValueError("response_examples: the table has no 'checkpoint' column (use run_noise_experiment's)")
        sel = table_or_ckpts[table_or_ckpts["seed"] == seed]
        return {(str(r.loss), int(r.noise)): Path(r.checkpoint) for r in sel.itertuples()}
    return {(str(k[0]), int(k[1])): Path(v) for k, v in dict(table_or_ckpts).items()}


def default_picks(cfg, eval_sequences) -> list[tuple[str, int]]:
    """``(sequence, frame)`` shown in Figs. 3 / 4: ``noise.display_sequences`` present among the
    evaluation sequences (else the first two), at ``noise.display_frame`` clipped to the last frame."""
    by_name = {s.name: s for s in eval_sequences}
    names = [n for n in cfg.noise.display_sequences if n in by_name] or [s.name for s in eval_sequences[:2]]
    return [(n, int(max(1, min(cfg.noise.display_frame, len(by_name[n]) - 1)))) for n in names]


def _track_to(tracker, seq: Sequence, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Box and raw response (chosen scale, R x R logits) at ``frame`` after tracking from frame 0."""
    tracker.init(seq.image(0), seq.boxes[0].copy())
    box = seq.boxes[0]
    for f in range(1, frame + 1):
        box = tracker.update(seq.image(f))
    return np.asarray(box, dtype=np.float64), np.asarray(tracker.last_responses[tracker.last_scale_id], np.float64)


def _display_crop(img: np.ndarray, true_box: np.ndarray, boxes: list[np.ndarray], model_cfg) -> tuple[np.ndarray, list[int]]:
    """The frame region shown: SiamFC's search region around the true box, grown to hold every box."""
    cx, cy, w, h = crops.xywh_to_cxcywh(true_box)[0]
    _, x_sz = crops.crop_sizes(w, h, model_cfg.exemplar_sz, model_cfg.instance_sz, model_cfg.context)
    lo = np.array([cx - x_sz / 2, cy - x_sz / 2])
    hi = np.array([cx + x_sz / 2, cy + x_sz / 2])
    for b in boxes:
        if np.all(np.isfinite(b)):
            lo = np.minimum(lo, b[:2] - 8)
            hi = np.maximum(hi, b[:2] + b[2:] + 8)
    H, W = img.shape[:2]
    x0, y0 = int(max(0, np.floor(lo[0]))), int(max(0, np.floor(lo[1])))
    x1, y1 = int(min(W, np.ceil(hi[0]))), int(min(H, np.ceil(hi[1])))
    return np.ascontiguousarray(img[y0:y1, x0:x1]), [x0, y0]


def response_examples(cfg, table_or_ckpts, levels=None, picks=None, seed: int | None = None, device="auto",
                      sequences: list[Sequence] | None = None) -> dict[str, Any]:
    """Evaluation frames for Figs. 3 / 4, as plain data.

    ``table_or_ckpts``: ``run_noise_experiment``'s table, or ``{(loss, n): checkpoint}``; ``levels``:
    noise levels (default ``display_levels`` plus ``fig4_level``); ``picks``: ``[(sequence name,
    frame), ...]`` (default ``default_picks``; frame >= 1); ``seed``: whose models (default the first
    of ``noise.seeds``); ``sequences``: the evaluation sequences (default ``experiment_sequences``).

    Returns ``{"seed", "levels", "display_levels" (Fig. 3), "fig4_level" (Fig. 4), "picks": [{"sequence", "frame", "image" (uint8 H x W x 3 crop of the
    frame), "origin" [x0, y0] (frame px of the crop's top-left pixel), "true_box"}], "panels": [{"pick",
    "level", "true_box", "noisy_box", "boxes": {"bce", "nr"}, "responses": {"bce", "nr"} (R x R
    logits of the chosen scale), "iou": {...}, "center_error": {...}}]}``; boxes 0-based
    ``[x, y, w, h]`` frame pixels.  The noisy box is the true box with the experiment's noise model
    applied (``noisy_boxes(boxes, n, seed, name)``): for display only, never used by the trackers,
    which start from the true first box.
    """
    from tqdm.auto import tqdm

    nc = cfg.noise
    levels = sorted({*nc.display_levels, nc.fig4_level}) if levels is None else [int(n) for n in levels]
    display = [n for n in nc.display_levels if n in levels] or list(levels)
    fig4 = int(nc.fig4_level) if nc.fig4_level in levels else int(max(levels))
    seed = int(nc.seeds[0] if seed is None else seed)
    ckpts = _checkpoint_map(table_or_ckpts, seed)
    missing = [(loss, n) for n in levels for loss in LOSSES if (loss, n) not in ckpts]
    if missing:
        raise ValueError(f"response_examples: no checkpoint for (loss, noise) {missing} at seed {seed}")
    seqs = list(sequences) if sequences is not None else experiment_sequences(cfg)["eval"]
    by_name = {s.name: s for s in seqs}
    picks = default_picks(cfg, seqs) if picks is None else [(str(p[0]), int(p[1])) for p in picks]
    for name, f in picks:
        if name not in by_name:
            raise ValueError(f"response_examples: no evaluation sequence named {name!r}; have {sorted(by_name)}")
        if not 1 <= f < len(by_name[name]):
            raise ValueError(f"response_examples: frame {f} of {name} is outside 1..{len(by_name[name]) - 1}")
    panels: list[dict[str, Any]] = []
    trackers = {key: make_tracker(cfg, path, f"noise_{key[0]}_n{key[1]}_s{seed}", device)
                for key, path in ckpts.items() if key[1] in levels}
    for i, (name, f) in enumerate(tqdm(picks, desc="examples", leave=False)):
        seq = by_name[name]
        true_box = seq.boxes[f].copy()
        for n in levels:
            noisy = noisy_boxes(seq.boxes, n, seed, seq.name)[f]
            panel = {"pick": i, "level": int(n), "true_box": true_box.tolist(), "noisy_box": noisy.tolist(),
                     "boxes": {}, "responses": {}, "iou": {}, "center_error": {}}
            for loss in LOSSES:
                box, resp = _track_to(trackers[(loss, n)], seq, f)
                panel["boxes"][loss] = box.tolist()
                panel["responses"][loss] = np.round(resp, 6).tolist()
                panel["iou"][loss] = float(crops.iou(box, true_box)[0]) if np.all(np.isfinite(true_box)) else None
                panel["center_error"][loss] = (float(crops.center_error(box, true_box)[0])
                                               if np.all(np.isfinite(true_box)) else None)
            panels.append(panel)
    out_picks = []
    for i, (name, f) in enumerate(picks):
        seq = by_name[name]
        shown = [np.asarray(b, dtype=np.float64) for p in panels if p["pick"] == i
                 for b in (p["noisy_box"], *p["boxes"].values())]
        image, origin = _display_crop(seq.image(f), seq.boxes[f], shown, cfg.model)
        out_picks.append({"sequence": name, "frame": int(f), "image": image, "origin": origin,
                          "true_box": seq.boxes[f].tolist()})
    return {"seed": seed, "levels": levels, "display_levels": display, "fig4_level": fig4, "picks": out_picks,
            "panels": panels}


# --------------------------------------------------------------------------- results files
def split_examples(examples: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(JSON-able examples with image keys, {key: image})`` of ``response_examples``' output."""
    picks, images = [], {}
    for i, p in enumerate(examples["picks"]):
        key = f"pick{i}"
        images[key] = np.asarray(p["image"], dtype=np.uint8)
        picks.append({k: v for k, v in p.items() if k != "image"} | {"image_key": key})
    return {**{k: v for k, v in examples.items() if k != "picks"}, "picks": picks}, images


def results_record(cfg, table, examples: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON record of the experiment (no images, no timings, no machine paths)."""
    df = _runs(table)
    runs = df.assign(checkpoint=df["checkpoint"].map(checkpoint_name)) if "checkpoint" in df.columns else df
    record = {
        "runs": _records(runs),
        "per_sequence": list(table.attrs.get("per_sequence", [])) if isinstance(table, pd.DataFrame) else [],
        "aggregate": _records(summarize(df)),
        "gain": _records(relative_gain(df)),
        "setup": {"levels": list(cfg.noise.levels), "seeds": list(cfg.noise.seeds), "losses": list(LOSSES),
                  "backbone": cfg.model.backbone,
                  "steps": int(cfg.noise.steps if cfg.noise.steps is not None else cfg.supervised.steps),
                  "batch_size": int(cfg.supervised.batch_size), "nr_sigma_px": float(cfg.nr.sigma_px),
                  "r_pos_px": float(cfg.nr.r_pos), "eval_max_frames": cfg.noise.eval_max_frames,
                  "eval_sources": list(cfg.noise.eval_sources)},
        "summary": summary_numbers(df),
    }
    if examples is not None:
        record["examples"] = split_examples(examples)[0]
    return record


def write_results(cfg, table, examples: Mapping[str, Any] | None = None) -> Path:
    """Write ``04_noise_robustness.json`` (``save_results``, provenance) and the example crops in its
    ``.npz``; returns the JSON path."""
    record = results_record(cfg, table, examples)
    arrays = split_examples(examples)[1] if examples is not None else None
    return save_results(cfg.profile, NOTEBOOK, record, cfg=cfg, arrays=arrays)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in df.to_dict(orient="records"):
        out.append({k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()})
    return out


__all__ = ["run_noise_experiment", "response_examples", "summarize", "relative_gain", "summary_numbers",
           "describe_trend", "per_sequence_table", "experiment_sequences", "write_results", "results_record",
           "check_noise_config", "with_levels", "checkpoint_path", "default_picks"]
