"""Figures of the noise experiment (supplementary D): Figs. 3, 4 and 6, from plain data.

* ``plot_fig6(table)``: success AUC vs annotation noise n for BCE (green) and NR (red): the mean
  over seeds (line), the seed range (band, min to max), each seed (dots), and NR's relative gain
  over BCE written above each level.
* ``plot_fig3(examples)``: one row per evaluation frame, one column group per noise level: the
  frame with the noisy annotation (cyan), the true box (blue), NR's box (red) and BCE's (green),
  then NR's and BCE's response maps (raw logits of the chosen scale, shown bicubic-smoothed as
  SiamFC upsamples them; the peak marked).
* ``plot_fig4(examples)``: the same at noise 50 (``fig4_level``).

``table`` is ``pulkit.noise.run_noise_experiment``'s DataFrame or its records (``runs`` of
``04_noise.json``); ``examples`` is ``pulkit.noise.response_examples``' dict, or the one
``load_examples(profile)`` rebuilds from ``results/<profile>/04_noise.json`` and
``04_noise_examples.npz``.  The ``*_from_results(profile)`` functions read those files only and
raise ``MissingResultsError`` naming notebook 04 when they are missing.  No torch here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from . import artifacts
from .figures import BCE, NOISY_GT, NR, TRUE_GT, new_figure
from .notebook import MissingResultsError, load_results

RESULTS_NAME = "04_noise"
NOTEBOOK = "04_noise_robustness"
LOSS_STYLE = {"bce": ("BCE", BCE), "nr": ("NR", NR)}


def examples_path(profile: str) -> Path:
    """``results/<profile>/04_noise_examples.npz``: the frame crops of Figs. 3 / 4."""
    return artifacts.results_file(profile, "04", "noise_examples", "npz")


# --------------------------------------------------------------------------- Fig. 6
def _table(table):
    import pandas as pd

    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    missing = [c for c in ("loss", "noise", "seed", "auc") if c not in df.columns]
    if missing or df.empty:
        raise ValueError(f"plot_fig6: a table of runs with loss, noise, seed, auc is needed; "
                         f"{'it is empty' if df.empty else f'missing {missing}'}")
    return df


def plot_fig6(table, width: float = 5.0) -> Figure:
    """AUC vs noise level, BCE vs NR: mean over seeds, min-max band, seeds as dots, relative gain."""
    df = _table(table)
    fig, axes = new_figure(1, 1, width=width, height=width * 0.7)
    ax = axes[0, 0]
    levels = np.array(sorted(df["noise"].unique()), dtype=float)
    step = float(np.min(np.diff(levels))) if len(levels) > 1 else 1.0
    means = {}
    for k, (loss, (label, color)) in enumerate(LOSS_STYLE.items()):
        sub = df[df["loss"] == loss]
        if sub.empty:
            continue
        g = sub.groupby("noise")["auc"]
        m, lo, hi = g.mean(), g.min(), g.max()
        means[loss] = m
        n_seeds = int(sub["seed"].nunique())
        ax.fill_between(m.index, lo.values, hi.values, color=color, alpha=0.18, lw=0)
        ax.plot(m.index, m.values, "-o", color=color, ms=4, lw=1.6, label=f"{label} (mean of {n_seeds} seeds)")
        jitter = (k - 0.5) * 0.06 * step
        ax.plot(sub["noise"] + jitter, sub["auc"], ".", color=color, alpha=0.55, ms=4)
    if "bce" in means and "nr" in means:
        top = df.groupby("noise")["auc"].max()
        span = max(float(df["auc"].max() - df["auc"].min()), 0.02)
        for n in means["bce"].index.intersection(means["nr"].index):
            b, r = float(means["bce"][n]), float(means["nr"][n])
            if b > 0:
                ax.annotate(f"{100 * (r - b) / b:+.1f} %", (n, float(top[n]) + 0.06 * span), ha="center",
                            va="bottom", fontsize=7, color=NR)
        ax.set_ylim(top=float(df["auc"].max()) + 0.25 * span)
    ax.set_xticks(levels)
    ax.set_xlabel("annotation noise n (px): centre shift ~ U[-n, n] per axis")
    ax.set_ylabel("success AUC (OTB protocol)")
    ax.set_title("Training on noisy annotations, NR vs BCE\n(line: mean over seeds; band: seed min-max; "
                 "text: NR's relative AUC gain)", fontsize=8)
    ax.legend(fontsize=7, loc="lower left")
    return fig


# --------------------------------------------------------------------------- Figs. 3 and 4
def _rect(ax, box, origin, color, ls="-", lw=1.4):
    from matplotlib.patches import Rectangle

    b = np.asarray(box, dtype=float)
    if not np.all(np.isfinite(b)):
        return
    ax.add_patch(Rectangle((b[0] - origin[0] - 0.5, b[1] - origin[1] - 0.5), b[2], b[3], fill=False,
                           edgecolor=color, linestyle=ls, linewidth=lw))


def _check_examples(examples: Mapping[str, Any]) -> None:
    for key in ("picks", "panels", "levels"):
        if key not in examples:
            raise ValueError(f"examples lack {key!r} (expected pulkit.noise.response_examples' output)")
    for i, p in enumerate(examples["picks"]):
        if "image" not in p:
            raise ValueError(f"examples pick {i} ({p.get('sequence')}) has no image: load them with load_examples")


def _plot_examples(examples: Mapping[str, Any], levels, title: str, width_per_col: float = 1.55) -> Figure:
    _check_examples(examples)
    levels = [int(n) for n in levels]
    absent = [n for n in levels if n not in [int(v) for v in examples["levels"]]]
    if absent:
        raise ValueError(f"no examples at noise level(s) {absent}; have {examples['levels']}")
    picks = examples["picks"]
    if not picks:
        raise ValueError("examples hold no frames")
    panels = {(int(p["pick"]), int(p["level"])): p for p in examples["panels"]}
    ncols = 3 * len(levels)
    fig, axes = new_figure(len(picks), ncols, width=width_per_col * ncols,
                           height=width_per_col * len(picks) + 0.6)
    for i, pick in enumerate(picks):
        img, origin = np.asarray(pick["image"]), pick["origin"]
        for j, n in enumerate(levels):
            p = panels.get((i, n))
            ax_img, ax_nr, ax_bce = axes[i, 3 * j:3 * j + 3]
            for ax in (ax_img, ax_nr, ax_bce):
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
            if p is None:
                raise ValueError(f"examples have no panel for frame {i} at noise {n}")
            ax_img.imshow(img, interpolation="bilinear")
            _rect(ax_img, p["noisy_box"], origin, NOISY_GT, "--")
            _rect(ax_img, p["true_box"], origin, TRUE_GT)
            _rect(ax_img, p["boxes"]["nr"], origin, NR, lw=2.4)      # wider, under BCE: both show when they agree
            _rect(ax_img, p["boxes"]["bce"], origin, BCE, lw=1.2)
            ax_img.set_xlim(-0.5, img.shape[1] - 0.5)
            ax_img.set_ylim(img.shape[0] - 0.5, -0.5)
            ax_img.set_title(f"{pick['sequence']} #{pick['frame']}, n = {n}", fontsize=6)
            for ax, loss in ((ax_nr, "nr"), (ax_bce, "bce")):
                r = np.asarray(p["responses"][loss], dtype=float)
                ax.imshow(r, cmap="viridis", interpolation="bicubic")
                row, col = np.unravel_index(int(np.argmax(r)), r.shape)
                ax.plot(col, row, "+", color="white", ms=6, mew=1.2)
                iou = p.get("iou", {}).get(loss)
                label, color = LOSS_STYLE[loss]
                ax.set_title(f"{label} response" + (f", IoU {iou:.2f}" if iou is not None else ""),
                             fontsize=6, color=color)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=NOISY_GT, ls="--", label="noisy GT"), Line2D([], [], color=TRUE_GT, label="true GT"),
               Line2D([], [], color=NR, label="NR"), Line2D([], [], color=BCE, label="BCE")]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=8)
    return fig


def plot_fig3(examples: Mapping[str, Any], levels=None) -> Figure:
    """Response maps and boxes, NR vs BCE, at several noise levels (default ``display_levels``)."""
    levels = examples.get("display_levels", examples.get("levels")) if levels is None else levels
    return _plot_examples(examples, levels, f"Models trained at noise n = {', '.join(map(str, levels))} px "
                                            f"(seed {examples.get('seed')}): boxes and response maps")


def plot_fig4(examples: Mapping[str, Any], level=None) -> Figure:
    """The same at one large noise level (default ``fig4_level``, 50 px)."""
    level = int(examples.get("fig4_level", 50) if level is None else level)
    return _plot_examples(examples, [level], f"Noise = {level} px: boxes and response maps "
                                             f"(seed {examples.get('seed')})", width_per_col=1.9)


# --------------------------------------------------------------------------- from saved results
def load_examples(profile: str) -> dict[str, Any]:
    """The examples of ``04_noise.json`` with their frame crops from ``04_noise_examples.npz``."""
    rec = load_results(profile, RESULTS_NAME)
    examples = rec.get("examples")
    path = examples_path(profile)
    how = f"run `pulkit reproduce --profile {profile} --only 04` (notebooks/{NOTEBOOK}.ipynb)"
    if examples is None:
        raise MissingResultsError(f"{path.parent / (RESULTS_NAME + '.json')}: holds no Fig. 3/4 examples; {how}",
                                  path, NOTEBOOK)
    if not path.is_file():
        raise MissingResultsError(f"{path}: missing frame crops of Figs. 3/4; {how}", path, NOTEBOOK)
    with np.load(path, allow_pickle=False) as z:
        picks = []
        for p in examples["picks"]:
            key = p.get("image_key")
            if key not in z.files:
                raise ValueError(f"{path}: no array {key!r} for {p.get('sequence')} (have {z.files})")
            picks.append({**p, "image": z[key]})
    return {**examples, "picks": picks}


def fig6_from_results(profile: str) -> Figure:
    return plot_fig6(load_results(profile, RESULTS_NAME)["runs"])


def fig3_from_results(profile: str) -> Figure:
    return plot_fig3(load_examples(profile))


def fig4_from_results(profile: str) -> Figure:
    return plot_fig4(load_examples(profile))
