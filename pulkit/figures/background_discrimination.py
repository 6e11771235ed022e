"""Figures of notebook 01 (supplementary A and C): Fig. 1 (an AHM mini-batch, anchor top-left),
Fig. 2 (an RSS mini-batch), the BD training curves and AHM vs RSS batch hardness."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from pulkit.core.results import load_arrays, load_results
from pulkit.figures.style import NR, PALETTE, crop_mosaic, draw_box, new_figure

NOTEBOOK = "01_background_discrimination"
SAMPLERS = ("ahm", "rss")
SAMPLER_COLORS = {"ahm": NR, "rss": PALETTE[0]}
RUN_COLORS = {"ahm_alexnet": NR, "rss_alexnet": PALETTE[0], "ahm_ciresnet22": PALETTE[1]}
RUN_LABELS = {"ahm_alexnet": "AHM, AlexNet", "rss_alexnet": "RSS, AlexNet", "ahm_ciresnet22": "AHM, CIResNet-22"}


# --------------------------------------------------------------------------- Figs. 1 and 2
def plot_batch(crops: np.ndarray, title: str, anchor: bool = False, ncols: int | None = None,
               width: float = 6.0) -> Figure:
    """One mini-batch as a grid of crops; ``anchor``: outline the first (top-left) crop in red."""
    image, ncols = crop_mosaic(crops, ncols, gap=3)
    fig, axes = new_figure(1, 1, width=width, height=width * image.shape[0] / image.shape[1] + 0.45)
    ax = axes[0, 0]
    ax.imshow(image, interpolation="none")     # embedded at the crops' own resolution in the PDF
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    if anchor:
        h, w = np.asarray(crops).shape[1:3]
        draw_box(ax, (0, 0, w, h), NR, lw=2.0)
        ax.text(2, 2, "anchor", color="white", fontsize=6, va="top", ha="left",
                bbox=dict(facecolor=NR, edgecolor="none", pad=1.0))
    return fig


def _batch(batches: Mapping[str, Any], sampler: str) -> Mapping[str, Any]:
    if not isinstance(batches, Mapping) or sampler not in batches or "crops" not in batches[sampler]:
        raise ValueError(f"expected bd_batches' output or load_batches(profile) with {sampler!r} crops, "
                         f"got {type(batches).__name__} with keys {list(batches) if isinstance(batches, Mapping) else []}")
    return batches[sampler]


def fig1_ahm_batch(batches: Mapping[str, Any], width: float = 6.0) -> Figure:
    """Fig. 1: the AHM mini-batch, anchor top-left (outlined), its nearest neighbours row by row."""
    rec = _batch(batches, "ahm")
    b = len(rec["crops"])
    return plot_batch(rec["crops"], f"AHM mini-batch (B = {b}, un-augmented): the anchor and its {b - 1} nearest "
                      f"neighbours; hardness {float(rec['hardness']):.3f}", anchor=True, width=width)


def fig2_rss_batch(batches: Mapping[str, Any], width: float = 6.0) -> Figure:
    """Fig. 2: the RSS mini-batch (uniformly drawn candidates), same layout as Fig. 1."""
    rec = _batch(batches, "rss")
    b = len(rec["crops"])
    return plot_batch(rec["crops"], f"RSS mini-batch (B = {b}, un-augmented): random candidates; "
                      f"hardness {float(rec['hardness']):.3f}", width=width)


# --------------------------------------------------------------------------- training curves and hardness
def _columns(curve: Any, name: str) -> dict[str, np.ndarray]:
    get = curve.__getitem__
    try:
        return {k: np.asarray(get(k), dtype=float) for k in ("step", "loss", "hardness")}
    except (KeyError, TypeError):
        raise ValueError(f"curve {name!r}: needs step, loss and hardness columns") from None


def plot_bd_curves(curves: Mapping[str, Any], width: float = 9.0) -> Figure:
    """(a) InfoNCE loss and (b) logged batch hardness against the training step, one line per run."""
    if not curves:
        raise ValueError("plot_bd_curves: no training curves given")
    fig, axes = new_figure(1, 2, width=width, height=width * 0.36)
    for k, (name, curve) in enumerate(curves.items()):
        c = _columns(curve, name)
        style = dict(color=RUN_COLORS.get(name, PALETTE[k % len(PALETTE)]), label=RUN_LABELS.get(name, name),
                     marker="o" if len(c["step"]) < 12 else None, ms=3)
        axes[0, 0].plot(c["step"], c["loss"], **style)
        axes[0, 1].plot(c["step"], c["hardness"], **style)
    axes[0, 0].set_ylabel("InfoNCE loss")
    axes[0, 0].set_title("(a) training loss (AHM batches are harder by design)", fontsize=9)
    axes[0, 1].set_ylabel("batch hardness (anchor cosine sim.)")
    axes[0, 1].set_title("(b) hardness of the training batches, current bank", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    return fig


def plot_hardness(hardness: Mapping[str, Mapping[str, Any]], width: float = 5.0) -> Figure:
    """AHM vs RSS batch hardness under each bank: a dot per batch, mean +- std beside them."""
    if not hardness:
        raise ValueError("plot_hardness: no hardness statistics given")
    fig, axes = new_figure(1, 1, width=width, height=width * 0.7)
    ax = axes[0, 0]
    rng = np.random.default_rng(0)                 # horizontal jitter of the dots only
    for i, (bank, st) in enumerate(hardness.items()):
        for j, s in enumerate(("ahm", "rss")):
            x = i * 3 + j
            v = np.asarray(st[s]["values"], dtype=float)
            ax.plot(x - 0.15 + rng.uniform(-0.12, 0.12, len(v)), v, ".", ms=3, alpha=0.5, color=SAMPLER_COLORS[s])
            ax.errorbar(x + 0.2, st[s]["mean"], yerr=st[s]["std"], fmt="o", ms=5, capsize=4,
                        color=SAMPLER_COLORS[s], label=s.upper() if i == 0 else None)
    ax.set_xticks([i * 3 + 0.5 for i in range(len(hardness))],
                  [f"bank of the {RUN_LABELS.get(b, b)} model" for b in hardness], fontsize=7)
    ax.set_ylabel("batch hardness (anchor cosine sim.)")
    n = next(iter(hardness.values()))
    ax.set_title(f"AHM vs RSS: {n['n_batches']} batches of B = {n['batch_size']} each, mean ± std", fontsize=9)
    ax.legend(fontsize=7)
    return fig


# --------------------------------------------------------------------------- from results files
def load_batches(profile: str) -> dict[str, Any]:
    """The Fig. 1 / 2 batches of ``01_background_discrimination.json`` with their crops from its ``.npz``."""
    batches = load_results(profile, NOTEBOOK)["batches"]
    crops = load_arrays(profile, NOTEBOOK)
    for s in SAMPLERS:
        want = len(batches[s]["cand_ids"])
        if s not in crops or len(crops[s]) != want:
            raise ValueError(f"results of {NOTEBOOK}: the arrays hold {len(crops.get(s, ()))} {s} crops but the JSON "
                             f"lists {want} candidates (files from different runs: re-run notebook 01)")
        batches[s]["crops"] = crops[s]
    return batches


def fig1_ahm_batch_from_results(profile: str) -> Figure:
    return fig1_ahm_batch(load_batches(profile))


def fig2_rss_batch_from_results(profile: str) -> Figure:
    return fig2_rss_batch(load_batches(profile))


def bd_curves_from_results(profile: str) -> Figure:
    return plot_bd_curves(load_results(profile, NOTEBOOK)["curves"])


def hardness_from_results(profile: str) -> Figure:
    return plot_hardness(load_results(profile, NOTEBOOK)["hardness"])
