"""Figures of background discrimination (notebook 01, supplementary A and C), from plain data.

* ``fig1_ahm_batch(batches)``: Fig. 1, an AHM mini-batch: the un-augmented exemplar crops in a grid,
  row-major, the anchor top-left and outlined in red, then its nearest neighbours (most similar first).
* ``fig2_rss_batch(batches)``: Fig. 2, an RSS mini-batch (uniformly drawn candidates), same layout.
* ``plot_bd_curves(curves)``: InfoNCE loss and logged batch hardness against the training step, one
  line per BD run.  AHM's loss is not comparable to RSS's: its batches are harder by design.
* ``plot_hardness(hardness)``: batch hardness of AHM vs RSS batches under each trained model's bank:
  every batch as a dot, mean +- std beside them.

``batches`` is ``pulkit.train.bd.bd_batches``' output or ``pulkit.bd_report.load_bd(profile)["batches"]``
(``{"ahm": {"crops", "hardness", "cand_ids", ...}, "rss": {...}, "batch_size", ...}``; crops uint8
B x S x S x 3).  ``curves`` is ``{run: table with step, loss, hardness}`` (``bd_report.training_curves``
or the ``curves`` of ``01_bd.json``); ``hardness`` is ``bd_report.hardness_by_bank``' dict or the JSON's.
The ``*_from_results(profile)`` functions read ``results/<profile>/01_bd.json`` and
``01_bd_batches.npz`` only, and raise ``MissingResultsError`` naming notebook 01 when they are missing.
Hardness: the mean cosine similarity of the first candidate (the anchor) to the others, in [-1, 1].
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from .bd_report import RESULTS, load_bd
from .figures import NR, PALETTE, new_figure
from .notebook import load_results

SAMPLER_COLORS = {"ahm": NR, "rss": PALETTE[0]}
RUN_COLORS = {"ahm_alexnet": NR, "rss_alexnet": PALETTE[0], "ahm_ciresnet22": PALETTE[1]}
RUN_LABELS = {"ahm_alexnet": "AHM, AlexNet", "rss_alexnet": "RSS, AlexNet", "ahm_ciresnet22": "AHM, CIResNet-22"}


# --------------------------------------------------------------------------- Figs. 1 and 2
def mosaic(crops: np.ndarray, ncols: int | None = None, gap: int = 3) -> tuple[np.ndarray, int]:
    """Crops (B x S x S x 3 uint8) as one row-major grid image with white gaps; ``(image, ncols)``,
    ``ncols`` defaulting to ceil(sqrt(B)).  Crop k's top-left pixel: ``((S + gap) * (k // ncols),
    (S + gap) * (k % ncols))``."""
    a = np.asarray(crops)
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8 or len(a) == 0:
        raise ValueError(f"expected a non-empty B x S x S x 3 uint8 batch of crops, got {a.dtype} {a.shape}")
    b, h, w, _ = a.shape
    ncols = int(ncols or math.ceil(math.sqrt(b)))
    nrows = math.ceil(b / ncols)
    out = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap, 3), 255, np.uint8)
    for k in range(b):
        r, c = divmod(k, ncols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = a[k]
    return out, ncols


def plot_batch(crops: np.ndarray, title: str, anchor: bool = False, ncols: int | None = None,
               width: float = 6.0) -> Figure:
    """One mini-batch as a grid of crops; ``anchor``: outline the first (top-left) crop in red."""
    from matplotlib.patches import Rectangle

    image, ncols = mosaic(crops, ncols)
    fig, axes = new_figure(1, 1, width=width, height=width * image.shape[0] / image.shape[1] + 0.45)
    ax = axes[0, 0]
    ax.imshow(image, interpolation="none")     # embedded at the crops' own resolution in the PDF
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    if anchor:
        h, w = np.asarray(crops).shape[1:3]
        ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor=NR, linewidth=2.0))
        ax.text(2, 2, "anchor", color="white", fontsize=6, va="top", ha="left",
                bbox=dict(facecolor=NR, edgecolor="none", pad=1.0))
    return fig


def _batch(batches: Mapping[str, Any], sampler: str) -> Mapping[str, Any]:
    if not isinstance(batches, Mapping) or sampler not in batches or "crops" not in batches[sampler]:
        raise ValueError(f"expected bd_batches' output or load_bd(profile)['batches'] with {sampler!r} crops, "
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
def fig1_from_results(profile: str) -> Figure:
    return fig1_ahm_batch(load_bd(profile)["batches"])


def fig2_from_results(profile: str) -> Figure:
    return fig2_rss_batch(load_bd(profile)["batches"])


def curves_from_results(profile: str) -> Figure:
    return plot_bd_curves(load_results(profile, RESULTS)["curves"])


def hardness_from_results(profile: str) -> Figure:
    return plot_hardness(load_results(profile, RESULTS)["hardness"])
