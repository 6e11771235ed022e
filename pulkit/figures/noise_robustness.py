"""Figures of notebook 04 (supplementary D): Fig. 6 (success AUC vs annotation noise, BCE vs NR),
Fig. 3 (boxes and response maps at several noise levels) and Fig. 4 (the same at 50 px)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from pulkit.core import artifacts
from pulkit.core.results import load_arrays, load_results
from pulkit.figures.style import BCE, NOISY_GT, NR, TRUE_GT, draw_box, new_figure

NOTEBOOK = "04_noise_robustness"
LOSS_STYLE = {"bce": ("BCE", BCE), "nr": ("NR", NR)}


# --------------------------------------------------------------------------- Fig. 6
def _table(table):
    import pandas as pd

    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    missing = [c for c in ("loss", "noise", "seed", "auc") if c not in df.columns]
    if missing or df.empty:
        raise ValueError(f"fig6_auc_vs_noise: a table of runs with loss, noise, seed, auc is needed; "
                         f"{'it is empty' if df.empty else f'missing {missing}'}")
    return df


def fig6_auc_vs_noise(table, width: float = 5.0) -> Figure:
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
def _check_examples(examples: Mapping[str, Any]) -> None:
    for key in ("picks", "panels", "levels"):
        if key not in examples:
            raise ValueError(f"examples lack {key!r} (expected pulkit.experiments.noise_robustness.response_examples' output)")
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
            draw_box(ax_img, p["noisy_box"], NOISY_GT, origin=origin, lw=1.4, ls="--")
            draw_box(ax_img, p["true_box"], TRUE_GT, origin=origin, lw=1.4)
            draw_box(ax_img, p["boxes"]["nr"], NR, origin=origin, lw=2.4)      # wider, under BCE: both show when they agree
            draw_box(ax_img, p["boxes"]["bce"], BCE, origin=origin, lw=1.2)
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


def fig3_noise_response_maps(examples: Mapping[str, Any], levels=None) -> Figure:
    """Response maps and boxes, NR vs BCE, at several noise levels (default ``display_levels``)."""
    levels = examples.get("display_levels", examples.get("levels")) if levels is None else levels
    return _plot_examples(examples, levels, f"Models trained at noise n = {', '.join(map(str, levels))} px "
                                            f"(seed {examples.get('seed')}): boxes and response maps")


def fig4_noise50(examples: Mapping[str, Any], level=None) -> Figure:
    """The same at one large noise level (default ``fig4_level``, 50 px)."""
    level = int(examples.get("fig4_level", 50) if level is None else level)
    return _plot_examples(examples, [level], f"Noise = {level} px: boxes and response maps "
                                             f"(seed {examples.get('seed')})", width_per_col=1.9)


# --------------------------------------------------------------------------- from saved results
def load_examples(profile: str) -> dict[str, Any]:
    """The examples of ``04_noise_robustness.json`` with their frame crops from its ``.npz``."""
    examples = load_results(profile, NOTEBOOK).get("examples")
    if examples is None:
        path = artifacts.results_path(profile, NOTEBOOK)
        raise artifacts.missing(path, profile, "Fig. 3/4 examples", state="absent from the results file")
    images = load_arrays(profile, NOTEBOOK)
    picks = []
    for p in examples["picks"]:
        key = p.get("image_key")
        if key not in images:
            raise ValueError(f"results of {NOTEBOOK}: no array {key!r} for {p.get('sequence')} (have {sorted(images)})")
        picks.append({**p, "image": images[key]})
    return {**examples, "picks": picks}


def fig6_auc_vs_noise_from_results(profile: str) -> Figure:
    return fig6_auc_vs_noise(load_results(profile, NOTEBOOK)["runs"])


def fig3_noise_response_maps_from_results(profile: str) -> Figure:
    return fig3_noise_response_maps(load_examples(profile))


def fig4_noise50_from_results(profile: str) -> Figure:
    return fig4_noise50(load_examples(profile))
