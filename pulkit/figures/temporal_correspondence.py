"""Figures of notebook 02: the mined-pairs gallery, the miner's error per round at fixed k, and
training curves (``plot_training_curves``, shared with notebook 03's figure)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pulkit.core import artifacts
from pulkit.core.results import load_arrays, load_results
from pulkit.data.crops import context_size
from pulkit.figures.style import NR, PALETTE, draw_box, new_figure

NOTEBOOK = "02_temporal_correspondence"
# Plotted metrics of a training log: label and the log keys that hold it (first present wins).
METRICS = {"loss": ("total loss", ("loss",)),
           "response": ("response term (NR or BCE)", ("nr_loss", "bce_loss")),
           "infonce": ("InfoNCE", ("infonce",)),
           "giveup_frac": ("give-up fraction", ("giveup_frac",))}
LOG_SCALE_RATIO = 30.0        # a loss panel whose values span more than this factor gets a log axis


# --------------------------------------------------------------------------- mined-pairs gallery
def _check_gallery(gallery: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    pairs = list(gallery.get("pairs", []))
    if not pairs:
        raise ValueError("pairs gallery: no mined pairs to show (every round's table is empty?)")
    for i, p in enumerate(pairs):
        missing = [k for k in ("round", "k", "confidence", "z", "x") if k not in p]
        if missing:
            raise ValueError(f"pairs gallery: pair {i} lacks {missing}")
        for key in ("z", "x"):
            a = np.asarray(p[key])
            if a.ndim != 3 or a.shape[-1] != 3:
                raise ValueError(f"pairs gallery: pair {i}'s {key} crop has shape {a.shape}, expected H x W x 3")
    return pairs


def tc_pairs_gallery(gallery: Mapping[str, Any], ncols: int = 3, width: float = 9.0) -> Figure:
    """Mined pairs, grouped by round: each pair is its exemplar crop (``z``, frame t) beside its partner
    crop (``x``, frame t + k), titled with the video, frames, k and the miner's confidence."""
    pairs = _check_gallery(gallery)
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    rounds = sorted({int(p["round"]) for p in pairs})
    by_round = {r: [p for p in pairs if int(p["round"]) == r] for r in rounds}
    rows = [(r, chunk) for r in rounds for chunk in (by_round[r][i:i + ncols] for i in range(0, len(by_round[r]), ncols))]
    cell = width / (2 * ncols)
    fig, axes = new_figure(len(rows), 2 * ncols, width=width, height=cell * 1.3 * len(rows))
    for ax in axes.flat:
        ax.set_axis_off()
    for (r, chunk), row in zip(rows, axes):
        for j, p in enumerate(chunk):
            az, ax_ = row[2 * j], row[2 * j + 1]
            # interpolation "none": the crops go into the PDF at their own resolution instead of
            # being resampled to the figure dpi (a 3x larger, photo-sized file for no new detail)
            az.imshow(np.asarray(p["z"], np.uint8), interpolation="none")
            ax_.imshow(np.asarray(p["x"], np.uint8), interpolation="none")
            video = str(p.get("video", "")).replace("synthetic_", "")
            az.set_title(f"R{r} {video}\n#{p.get('frame_a', '?')} (z)", fontsize=6)
            ax_.set_title(f"k = {int(p['k'])}, c = {float(p['confidence']):.2f}\n#{p.get('frame_b', '?')} (t + k)",
                          fontsize=6)
            for spine_ax, color, box in ((az, "black", p.get("box_a")), (ax_, NR, p.get("box_b"))):
                if box is not None and "context" in gallery:
                    _box_in_crop(spine_ax, box, np.asarray(p["z"]).shape[0], float(gallery["context"]), color)
                spine_ax.set_axis_on()
                spine_ax.set_xticks([])
                spine_ax.set_yticks([])
                for s in spine_ax.spines.values():
                    s.set_edgecolor(color)
                    s.set_linewidth(1.2)
    fig.suptitle("Mined pairs per round: exemplar (black) and its partner k frames later (red)", fontsize=8)
    return fig


def _box_in_crop(ax, box, crop_sz: int, context: float, color: str) -> None:
    """Outline a mined box inside its exemplar crop: the crop is centred on the box, side
    ``sqrt((w + p)(h + p))`` frame pixels (p = context (w + h)) resized to ``crop_sz``."""
    w, h = float(box[2]), float(box[3])
    s = crop_sz / context_size(w, h, context)
    c = (crop_sz - 1) / 2
    draw_box(ax, (c - w * s / 2 + 0.5, c - h * s / 2 + 0.5, w * s, h * s), color, lw=1.0, ls="--")


def load_gallery(profile: str) -> dict[str, Any]:
    """The gallery of ``02_temporal_correspondence.json`` with its crops from the ``.npz``."""
    record = load_results(profile, NOTEBOOK).get("gallery")
    if not record:
        path = artifacts.results_path(profile, NOTEBOOK)
        raise artifacts.missing(path, profile, "pairs gallery", state="absent from the results file")
    crops = load_arrays(profile, NOTEBOOK)
    try:
        pairs = [{**p, "z": crops[p["z_key"]], "x": crops[p["x_key"]]} for p in record["pairs"]]
    except KeyError as e:
        raise ValueError(f"results of {NOTEBOOK}: the arrays file lacks crop {e} that the JSON names "
                         "(files from different runs?)") from None
    return {**record, "pairs": pairs}


def tc_pairs_gallery_from_results(profile: str) -> Figure:
    return tc_pairs_gallery(load_gallery(profile))


# --------------------------------------------------------------------------- mining error per round
def _mean_rows(report) -> pd.DataFrame:
    df = pd.DataFrame(report)
    need = {"round", "k", "sequence", "center_error", "iou"}
    if not need <= set(df.columns):
        raise ValueError(f"mining report lacks columns {sorted(need - set(df.columns))}")
    mean = df[df["sequence"] == "mean"]
    if mean.empty:
        raise ValueError("mining report has no 'mean' rows (no sequence was measured)")
    return mean


def tc_mining_error(report, width: float = 7.0) -> Figure:
    """Centre error (px) and IoU of the miner against ground truth per round, one line per fixed k
    (mean over the labelled training videos).  Rounds compare at equal k only."""
    mean = _mean_rows(report)
    fig, axes = new_figure(1, 2, width=width, height=width * 0.4)
    ks = sorted(mean["k"].unique())
    for ax, metric, label in ((axes[0, 0], "center_error", "centre error (px)"), (axes[0, 1], "iou", "IoU")):
        for i, k in enumerate(ks):
            rows = mean[mean["k"] == k].sort_values("round")
            ax.plot(rows["round"], rows[metric], marker="o", color=PALETTE[i % len(PALETTE)], label=f"k = {int(k)}")
        ax.set_xlabel("round (model that mined it)")
        ax.set_ylabel(label)
        ax.set_xticks(sorted(mean["round"].unique()))
    axes[0, 1].set_ylim(0, 1)
    axes[0, 0].legend(fontsize=7, title="frames ahead", title_fontsize=7)
    fig.suptitle("Mining error against ground truth, seeded at GT boxes (labelled training video)", fontsize=8)
    return fig


def tc_mining_error_from_results(profile: str) -> Figure:
    return tc_mining_error(load_results(profile, NOTEBOOK)["mining_quality"])


# --------------------------------------------------------------------------- the rounds claim
def rounds_claim(claim: Mapping[str, Any]) -> Figure:
    """Per model of the rounds claim (``rounds_claim``'s ``measures``): localisation accuracy on the
    held-out pairs and mining error at k on the held-out videos, each +- 1.96 SE; controls hatched, the
    other claim seeds' round R and no-re-mining models (``"... (seed s)"``) lighter."""
    measures = dict(claim.get("measures") or {})
    if not measures:
        raise ValueError("rounds claim: no measured models")
    k = claim.get("k", 10)
    names = list(measures)
    base = [n.split(" (seed ")[0] for n in names]              # "no re-mining (seed 1)" -> "no re-mining"
    fig, axes = new_figure(1, 2, width=9.0, height=0.9 + 0.32 * len(names))
    y = np.arange(len(names))[::-1]
    controls = {"no re-mining", "round 1 from random_bn", "random_bn"}
    for ax, (key, se_key, label) in zip(axes[0], (("accuracy", "accuracy_se", "localisation accuracy"),
                                                  (f"mining_error_k{k}", None, f"mining error at k={k} (px)"))):
        vals = np.array([float(measures[n].get(key) if measures[n].get(key) is not None else np.nan)
                         for n in names])
        err = np.array([1.96 * float(measures[n].get(se_key) or 0.0) for n in names]) if se_key else None
        colours = [PALETTE[5] if b in controls else NR for b in base]
        ax.barh(y, vals, xerr=err, color=colours, alpha=0.8, hatch=None,
                edgecolor=["black" if b in controls else "none" for b in base])
        for bar, n, b in zip(ax.patches, names, base):
            if n != b:
                bar.set_alpha(0.45)
        ax.set_yticks(y, names if ax is axes[0][0] else [""] * len(names))
        ax.set_xlabel(label)
    axes[0][0].set_title(f"{claim.get('heldout_pairs', '')} held-out pairs", fontsize=9)
    axes[0][1].set_title(f"{claim.get('heldout_videos', '')} held-out videos", fontsize=9)
    seeds = claim.get("seeds") or []
    if len(seeds) > 1:
        fig.suptitle(f"R rounds vs no re-mining over TC seeds {', '.join(str(s) for s in seeds)} "
                     "(a whole pipeline per seed)", fontsize=9)
    return fig


def rounds_claim_from_results(profile: str) -> Figure:
    return rounds_claim(load_results(profile, NOTEBOOK).get("rounds_claim") or {})


# --------------------------------------------------------------------------- training curves
def _metric(records: Sequence[Mapping[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray]:
    keys = METRICS[metric][1]
    xs, ys = [], []
    for rec in records:
        value = next((rec[k] for k in keys if rec.get(k) is not None), None)
        if value is not None:
            xs.append(rec.get("global_step", rec["step"]))
            ys.append(float(value))
    return np.asarray(xs, float), np.asarray(ys, float)


def plot_training_curves(curves: Mapping[str, Sequence[Mapping[str, Any]]],
                         metrics: Sequence[str] = ("loss", "response", "giveup_frac"), width: float = 8.0) -> Figure:
    """Logged training curves, one line per run, one panel per metric (``METRICS``).

    ``curves``: run name -> log records (``step``, optional ``global_step`` and ``round``, metrics).
    Progressive runs are drawn end to end over ``global_step``, round starts marked by dotted lines.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {list(METRICS)}")
    if not curves or not any(curves.values()):
        raise ValueError("training curves: no logged records to plot")
    fig, axes = new_figure(1, len(metrics), width=width, height=width * 0.32)
    for i, (name, records) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        for ax, metric in zip(axes[0], metrics):
            x, y = _metric(records, metric)
            if len(x):
                ax.plot(x, y, marker="o" if len(x) <= 20 else None, ms=3, color=color, label=name)
        starts = sorted({rec.get("global_step", rec["step"]) - rec["step"] for rec in records if rec.get("round", 1) > 1})
        for ax in axes[0]:
            for s in starts:
                ax.axvline(s, color=color, ls=":", lw=0.8)
    for ax, metric in zip(axes[0], metrics):
        ax.set_title(METRICS[metric][0], fontsize=8)
        ax.set_xlabel("step")
        ys = np.concatenate([_metric(r, metric)[1] for r in curves.values()] or [np.zeros(0)])
        ys = ys[np.isfinite(ys)]
        if metric != "giveup_frac" and len(ys) and ys.min() > 0 and ys.max() / ys.min() > LOG_SCALE_RATIO:
            ax.set_yscale("log")          # runs whose losses differ by orders of magnitude stay readable
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=7)
    return fig


def tc_training_curves(curve: Sequence[Mapping[str, Any]]) -> Figure:
    """AlexPUL's rounds end to end (notebook 02)."""
    return plot_training_curves({"AlexPUL (NR)": curve}, metrics=("loss", "response", "infonce", "giveup_frac"))


def tc_training_curves_from_results(profile: str) -> Figure:
    return tc_training_curves(load_results(profile, NOTEBOOK)["curve"])
