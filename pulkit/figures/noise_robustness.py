"""Figures of notebook 04 (supplementary D): Fig. 6 (clean localisation accuracy vs annotation noise per
loss), the fit to the noisy training labels, Fig. 3 (boxes and response maps at several noise levels) and
Fig. 4 (the same at one large level)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from pulkit.core import artifacts
from pulkit.core.results import load_arrays, load_results
from pulkit.figures.style import BCE, NOISY_GT, NR, PALETTE, TRUE_GT, NotMeasured, draw_box, new_figure

NOTEBOOK = "04_noise_robustness"
LOSS_STYLE = {"bce": ("BCE", BCE), "nr": ("NR, sigma matched", NR), "nr_fixed": ("NR, sigma fixed", PALETTE[1])}
REFERENCE = "#555555"


def _runs(data, need=("loss", "level", "seed", "accuracy"), who: str = "fig6_accuracy_vs_noise"):
    import pandas as pd

    runs = data.get("runs") if isinstance(data, Mapping) else data
    if runs is None:
        raise ValueError(f"{who}: the data has no 'runs' (expected notebook 04's results or figure_data)")
    df = runs if isinstance(runs, pd.DataFrame) else pd.DataFrame(list(runs))
    missing = [c for c in need if c not in df.columns]
    if missing or df.empty:
        raise ValueError(f"{who}: a table of runs with {', '.join(need)} is needed; "
                         f"{'it is empty' if df.empty else f'missing {missing}'}")
    return df


def _unit(data) -> str:
    return (data.get("setup") or {}).get("unit", "px") if isinstance(data, Mapping) else "px"


def _xlabel(unit: str) -> str:
    if unit == "size":
        return "annotation noise f\n(centre + U[-n, n] per axis, n = f sqrt(wh) of the box)"
    return "annotation noise n (px)\n(centre + U[-n, n] per axis)"


def _per_loss(ax, df, metric: str, levels: np.ndarray, step: float, ls="-", marker="o", filled=True,
              label_suffix: str = "") -> None:
    """Mean over seeds (line), seed min-max (band) and the seeds (dots) of ``metric`` per loss."""
    for k, (loss, (label, color)) in enumerate(LOSS_STYLE.items()):
        sub = df[(df["loss"] == loss) & df[metric].notna()]
        if sub.empty:
            continue
        g = sub.groupby("level")[metric]
        m, lo, hi = g.mean(), g.min(), g.max()
        if filled:
            ax.fill_between(m.index, lo.values, hi.values, color=color, alpha=0.16, lw=0)
        ax.plot(m.index, m.values, ls=ls, marker=marker, color=color, ms=4.5, lw=1.5,
                mfc=color if filled else "white", label=f"{label}{label_suffix} ({sub['seed'].nunique()} seeds)")
        jitter = (k - 1) * 0.05 * step
        ax.plot(sub["level"] + jitter, sub[metric], ".", color=color, alpha=0.6, ms=4)


# --------------------------------------------------------------------------- Fig. 6
def fig6_accuracy_vs_noise(data, width: float = 5.6) -> Figure:
    """Clean localisation accuracy vs noise level per loss: mean over seeds, seed min-max band, seeds as
    dots; ``random_bn`` (no training) as a dashed line; NR - BCE paired differences as text.

    ``data``: notebook 04's results (or ``figure_data``): ``runs`` (records / DataFrame with loss, level,
    seed, accuracy), optional ``reference`` ({accuracy}), ``comparisons`` and ``setup`` ({unit}).
    """
    df = _runs(data)
    unit = _unit(data)
    fig, axes = new_figure(1, 1, width=width, height=width * 0.72)
    ax = axes[0, 0]
    levels = np.array(sorted(df["level"].astype(float).unique()))
    step = float(np.min(np.diff(levels))) if len(levels) > 1 else 1.0
    _per_loss(ax, df, "accuracy", levels, step)
    ref = data.get("reference") if isinstance(data, Mapping) else None
    if ref:
        ax.axhline(float(ref["accuracy"]), color=REFERENCE, ls="--", lw=1.1,
                   label=f"{ref.get('name', 'random_bn')} (no training): {float(ref['accuracy']):.3f}")
    comps = list(data.get("comparisons") or []) if isinstance(data, Mapping) else []
    top = df.groupby("level")["accuracy"].max()
    span = max(float(df["accuracy"].max() - df["accuracy"].min()), 0.05)
    texts = []
    for c in comps:
        if c.get("control", "").startswith("bce@") and c.get("treatment", "").startswith("nr@"):
            n = float(c["level"])
            texts.append(ax.annotate(f"NR-BCE\n{c['diff']:+.3f}\n+-{c['se']:.3f}", (n, float(top.get(n, 0)) + 0.05 * span),
                                     ha="center", va="bottom", fontsize=6, color=NR))
    if texts:
        ax.set_ylim(top=float(df["accuracy"].max()) + 0.45 * span)
    ax.set_xticks(levels)
    ax.set_xticklabels([f"{v:g}" for v in levels])
    ax.set_xlabel(_xlabel(unit))
    ax.set_ylabel("clean localisation accuracy\n(held-out pairs: peak within r_pos of the true centre)")
    ax.set_title("Training on noisy labels: clean accuracy per loss\n(line: mean over seeds; band: seed min-max;\n"
                 "dots: seeds; text: paired NR - BCE +- SE)", fontsize=8)
    ax.legend(fontsize=6.5, loc="lower left")
    return fig


def noise_label_fit(data, width: float = 5.6) -> Figure:
    """The fit to the training labels per loss vs noise level: the fraction of training pairs whose
    response peaks within r_pos of their *noisy* label (solid) and of the true centre (dashed).  A loss that
    memorises its noisy labels keeps the solid line high while the dashed one falls."""
    df = _runs(data, ("loss", "level", "seed", "fit_noisy", "fit_clean"), "noise_label_fit")
    df = df[df["fit_noisy"].notna()]
    if df.empty:
        raise NotMeasured("noise_label_fit: no run measured its fit (fresh pairs every step have no fixed labels)")
    unit = _unit(data)
    fig, axes = new_figure(1, 1, width=width, height=width * 0.72)
    ax = axes[0, 0]
    levels = np.array(sorted(df["level"].astype(float).unique()))
    step = float(np.min(np.diff(levels))) if len(levels) > 1 else 1.0
    _per_loss(ax, df, "fit_noisy", levels, step, label_suffix=": noisy label")
    _per_loss(ax, df, "fit_clean", levels, step, ls="--", marker="s", filled=False, label_suffix=": true centre")
    ax.set_xticks(levels)
    ax.set_xticklabels([f"{v:g}" for v in levels])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(_xlabel(unit))
    ax.set_ylabel("fraction of training pairs\nwith the peak within r_pos")
    ax.set_title("Fit to the noisy training labels (solid) vs to the true centres (dashed)\n"
                 "memorisation: solid stays high while dashed falls", fontsize=8)
    ax.legend(fontsize=6, loc="lower left", ncol=2)
    return fig


# --------------------------------------------------------------------------- Figs. 3 and 4
def _check_examples(examples: Mapping[str, Any]) -> None:
    for key in ("picks", "panels", "levels"):
        if key not in examples:
            raise ValueError(f"examples lack {key!r} (expected pulkit.experiments.noise_robustness.response_examples' output)")
    for i, p in enumerate(examples["picks"]):
        if "image" not in p:
            raise ValueError(f"examples pick {i} ({p.get('sequence')}) has no image: load them with load_examples")


def _level_text(n: float, unit: str) -> str:
    return f"n = {float(n):g} px" if unit == "px" else f"f = {float(n):g}"


def _plot_examples(examples: Mapping[str, Any], levels, title: str, width_per_col: float = 1.55) -> Figure:
    _check_examples(examples)
    levels = [float(n) for n in levels]
    have = [float(v) for v in examples["levels"]]
    absent = [n for n in levels if n not in have]
    if absent:
        raise ValueError(f"no examples at noise level(s) {absent}; have {examples['levels']}")
    picks = examples["picks"]
    if not picks:
        raise ValueError("examples hold no frames")
    unit = examples.get("unit", "px")
    panels = {(int(p["pick"]), float(p["level"])): p for p in examples["panels"]}
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
                raise ValueError(f"examples have no panel for frame {i} at noise {n:g}")
            ax_img.imshow(img, interpolation="bilinear")
            draw_box(ax_img, p["noisy_box"], NOISY_GT, origin=origin, lw=1.4, ls="--")
            draw_box(ax_img, p["true_box"], TRUE_GT, origin=origin, lw=1.4)
            if "nr" in p["boxes"]:      # wider, under BCE: both show when they agree
                draw_box(ax_img, p["boxes"]["nr"], NR, origin=origin, lw=2.4)
            if "bce" in p["boxes"]:
                draw_box(ax_img, p["boxes"]["bce"], BCE, origin=origin, lw=1.2)
            ax_img.set_xlim(-0.5, img.shape[1] - 0.5)
            ax_img.set_ylim(img.shape[0] - 0.5, -0.5)
            ax_img.set_title(f"{pick['sequence']} #{pick['frame']}, {_level_text(n, unit)}", fontsize=6)
            for ax, loss in ((ax_nr, "nr"), (ax_bce, "bce")):
                label, color = LOSS_STYLE[loss]
                if loss not in p["responses"]:
                    ax.text(0.5, 0.5, f"{label}:\nnot trained\nat this level", ha="center", va="center",
                            fontsize=6, color=color, transform=ax.transAxes)
                    continue
                r = np.asarray(p["responses"][loss], dtype=float)
                ax.imshow(r, cmap="viridis", interpolation="bicubic")
                row, col = np.unravel_index(int(np.argmax(r)), r.shape)
                ax.plot(col, row, "+", color="white", ms=6, mew=1.2)
                iou = p.get("iou", {}).get(loss)
                ax.set_title(f"{label.split(',')[0]} response" + (f", IoU {iou:.2f}" if iou is not None else ""),
                             fontsize=6, color=color)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=NOISY_GT, ls="--", label="noisy GT"), Line2D([], [], color=TRUE_GT, label="true GT"),
               Line2D([], [], color=NR, label="NR (sigma matched)"), Line2D([], [], color=BCE, label="BCE")]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=8)
    return fig


def fig3_noise_response_maps(examples: Mapping[str, Any], levels=None) -> Figure:
    """Response maps and boxes, NR vs BCE, at several noise levels (default ``display_levels``)."""
    levels = examples.get("display_levels", examples.get("levels")) if levels is None else levels
    unit = examples.get("unit", "px")
    return _plot_examples(examples, levels, f"Models trained at {', '.join(_level_text(n, unit) for n in levels)} "
                                            f"(seed {examples.get('seed')}): boxes and response maps")


def fig4_noise50(examples: Mapping[str, Any], level=None) -> Figure:
    """The same at one large noise level (default ``fig4_level``: 50 px in the paper, the top level here)."""
    level = float(examples.get("fig4_level", 50) if level is None else level)
    return _plot_examples(examples, [level], f"{_level_text(level, examples.get('unit', 'px'))}: boxes and "
                                             f"response maps (seed {examples.get('seed')})", width_per_col=1.9)


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


def fig6_accuracy_vs_noise_from_results(profile: str) -> Figure:
    return fig6_accuracy_vs_noise(load_results(profile, NOTEBOOK))


def noise_label_fit_from_results(profile: str) -> Figure:
    return noise_label_fit(load_results(profile, NOTEBOOK))


def fig3_noise_response_maps_from_results(profile: str) -> Figure:
    return fig3_noise_response_maps(load_examples(profile))


def fig4_noise50_from_results(profile: str) -> Figure:
    return fig4_noise50(load_examples(profile))
