"""Figures of notebook 05 (supplementary Section B): the NR loss's Taylor form against the exact form
(``sectionB_taylor``), and mbar / V per sigma (``plot_moments``)."""
from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from pulkit.core.results import load_arrays, load_results
from pulkit.figures.style import NR, PALETTE, new_figure

NOTEBOOK = "05_sectionB_taylor"


def _arr(x) -> np.ndarray:
    """Nested lists (None = missing) or arrays -> float array with NaN for missing."""
    if isinstance(x, np.ndarray):
        return x.astype(float)

    def fix(v):
        return [fix(u) for u in v] if isinstance(v, (list, tuple, np.ndarray)) else (np.nan if v is None else v)
    return np.array(fix(x), dtype=float)


def _check(data: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise TypeError(f"Section B data must be a dict (pulkit.experiments.sectionB_taylor.sectionB or 05_sectionB_taylor.json), "
                        f"got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"Section B data lacks {missing}; expected the output of pulkit.experiments.sectionB_taylor.sectionB")


def _sigma_label(s: float) -> str:
    return f"σ = {s:g}"


def plot_error_vs_sigma(ax, ev: dict) -> None:
    """(b) |Taylor - exact| against sigma (cells), one line per exact-loss level (log scale)."""
    sig, err = np.asarray(ev["sigmas"], float), np.abs(_arr(ev["error"]))
    for i, level in enumerate(ev["levels"]):
        ax.plot(sig, err[i], "o-", ms=3, color=PALETTE[i % len(PALETTE)], label=f"L = {level:g}")
    ax.set_yscale("log")
    ax.set_xlabel("σ (cells)")
    ax.set_ylabel("|Taylor − exact|")
    ax.set_title("(b) error at fixed exact loss L", fontsize=9)
    ax.legend(fontsize=6, ncol=1)


def plot_loss_vs_b(ax, el: dict) -> None:
    """(c) exact (solid) and Taylor (dashed) NR loss against b, per sigma; log 2 marks the Taylor cap."""
    b = np.asarray(el["b"], float)
    for i, s in enumerate(el["sigmas"]):
        c = PALETTE[i % len(PALETTE)]
        ax.plot(b, _arr(el["exact"])[i], "-", color=c, label=f"exact, {_sigma_label(s)}")
        ax.plot(b, _arr(el["taylor"])[i], "--", color=c, label=f"Taylor, {_sigma_label(s)}")
    ax.axhline(np.log(2), color="0.4", lw=0.8, ls=":")
    ax.text(b[0], np.log(2), " log 2", va="bottom", fontsize=6, color="0.3")
    ax.set_xscale("log")
    ax.set_xlabel("b (balanced BCE at σ = 0)")
    ax.set_ylabel("NR loss")
    ax.set_title("(c) exact vs Taylor form", fontsize=9)
    ax.legend(fontsize=5, ncol=1)


def plot_error_vs_b(ax, el: dict) -> None:
    """(c) |Taylor - exact| against b (log-log), per sigma."""
    b = np.asarray(el["b"], float)
    for i, s in enumerate(el["sigmas"]):
        ax.plot(b, np.abs(_arr(el["error"])[i]), "-", color=PALETTE[i % len(PALETTE)], label=_sigma_label(s))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("b (balanced BCE at σ = 0)")
    ax.set_ylabel("|Taylor − exact|")
    ax.set_title("(c) error against loss level", fontsize=9)
    ax.legend(fontsize=6)


def plot_giveup(ax, gu: dict, population: dict | None = None) -> None:
    """(d) dL/db along the family per sigma, zero line, b = 1, and the refined sign changes."""
    b = np.asarray(gu["b"], float)
    for i, s in enumerate(gu["sigmas"]):
        c = PALETTE[i % len(PALETTE)]
        ax.plot(b, _arr(gu["dL_db"])[i], "-", color=c, label=_sigma_label(s))
        for ch in gu["sign_changes"][i]:
            ax.plot([ch["b"]], [0.0], "v" if ch["kind"] == "giveup" else "o", color=c, ms=5, mec="k", mew=0.5)
    ax.axhline(0, color="k", lw=0.8)
    ax.axvline(1.0, color=NR, lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_ylim(-1.2, 1.2)
    ax.set_xlabel("b (balanced BCE at σ = 0)")
    ax.set_ylabel("dL_NR / db")
    title = "(d) give-up: dL/db < 0 (▼)"
    if population is not None:
        title += f"\nplausible maps with E[g] < −1: {100 * population['giveup_frac']:.0f} %"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="lower left")


def _map_extent(size: int) -> list[float]:
    """imshow extent so that axes read cell offsets (dx, dy) from the map centre."""
    h = (size - 1) / 2
    return [-h - 0.5, h + 0.5, h + 0.5, -h - 0.5]


def plot_map(ax, img, title: str, center=None, cell=None, vmax: float = 1.0, half: float | None = 6.0) -> Any:
    """One R x R image in cell-offset coordinates; ``center`` (dx, dy) marked +, ``cell`` (row, col) marked o.

    ``half``: show offsets within +-half cells of the map centre (None: the whole map).
    """
    img = np.asarray(img, float)
    size = img.shape[0]
    im = ax.imshow(img, vmin=0.0, vmax=vmax, cmap="viridis", extent=_map_extent(size), interpolation="nearest")
    ax.grid(False)
    if half is not None and half < (size - 1) / 2:
        ax.set_xlim(-half - 0.5, half + 0.5)
        ax.set_ylim(half + 0.5, -half - 0.5)
    if center is not None:
        ax.plot([center[0]], [center[1]], "+", color="w", ms=7, mew=1.2)
    if cell is not None:
        h = (size - 1) / 2
        ax.plot([cell[1] - h], [cell[0] - h], "o", mfc="none", mec=NR, ms=6, mew=1.0)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def sectionB_taylor(data: dict) -> Figure:
    """The Section B figure: three curve panels and one summary panel on top, mbar and V(x0, .) below."""
    _check(data, ("error_vs_sigma", "error_vs_loss", "giveup", "moments", "geometry"))
    mo = data["moments"]
    sigmas = list(mo["sigmas"])
    ncols = max(4, len(sigmas))
    fig, axes = new_figure(3, ncols, width=2.6 * ncols, height=8.4)
    plot_error_vs_sigma(axes[0, 0], data["error_vs_sigma"])
    plot_loss_vs_b(axes[0, 1], data["error_vs_loss"])
    plot_error_vs_b(axes[0, 2], data["error_vs_loss"])
    plot_giveup(axes[0, 3], data["giveup"], data.get("population"))
    for ax in axes[0, 4:]:
        ax.set_axis_off()
    for j in range(ncols):
        if j >= len(sigmas):
            axes[1, j].set_axis_off()
            axes[2, j].set_axis_off()
            continue
        s = sigmas[j]
        im = plot_map(axes[1, j], mo["mbar"][j], f"m̄, {_sigma_label(s)} (Σ = {mo['mbar_sum'][j]:.2f})", mo["offset"])
        im2 = plot_map(axes[2, j], mo["V_slice"][j], f"V(x0, ·), {_sigma_label(s)}", mo["offset"], mo["slice_cell"])
    fig.colorbar(im, ax=list(axes[1, :len(sigmas)]), shrink=0.8, label="E[m(x)]")
    fig.colorbar(im2, ax=list(axes[2, :len(sigmas)]), shrink=0.8, label="E[m(x0) m(x)]")
    g = data["geometry"]
    fig.suptitle(f"Section B: {g['size']}×{g['size']} map, r = {g['radius']:g} cells ({g['norm'].upper()}), "
                 f"run σ = {g['sigma']:g} cell; m̄ and V at label offset ({mo['offset'][0]:g}, {mo['offset'][1]:g}) "
                 f"(+), x0 = nearest cell (o); ±6 cells shown", fontsize=10)
    return fig


def plot_moments(data: dict) -> Figure:
    """mbar (row 1), V(x0, .) (row 2) and the full N x N V (row 3) for each sigma of ``data["moments"]``."""
    _check(data, ("moments",))
    mo = data["moments"]
    if "V" not in mo:
        raise ValueError("plot_moments needs the full V matrices (data['moments']['V']): use the output of "
                         "pulkit.experiments.sectionB_taylor.sectionB or pulkit.experiments.sectionB_taylor.load_sectionB")
    sigmas = list(mo["sigmas"])
    fig, axes = new_figure(3, len(sigmas), width=2.5 * len(sigmas), height=7.8)
    for j, s in enumerate(sigmas):
        plot_map(axes[0, j], mo["mbar"][j], f"m̄, {_sigma_label(s)}", mo["offset"])
        plot_map(axes[1, j], mo["V_slice"][j], f"V(x0, ·), {_sigma_label(s)}", mo["offset"], mo["slice_cell"])
        ax = axes[2, j]
        support = np.flatnonzero(np.asarray(mo["mbar"][-1], float).ravel() > 1e-3)   # widest sigma's support
        v = np.asarray(mo["V"][j], float)[np.ix_(support, support)]
        ax.imshow(v, vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
        ax.grid(False)
        ax.set_title(f"V (N × N), {_sigma_label(s)}", fontsize=8)
        ax.set_xlabel(f"cell x' ({len(support)} cells with m̄ > 0.001 at σ = {sigmas[-1]:g})", fontsize=6)
        ax.set_ylabel("cell x", fontsize=7)
        ax.tick_params(labelsize=6)
    return fig


def load_sectionB(profile: str) -> dict[str, Any]:
    """The saved Section B data: the JSON with ``moments["V"]`` (S x N x N) added from the ``.npz``."""
    data = load_results(profile, NOTEBOOK)
    data["moments"]["V"] = load_arrays(profile, NOTEBOOK)["V"]
    return data


def sectionB_taylor_from_results(profile: str) -> Figure:
    return sectionB_taylor(load_results(profile, NOTEBOOK))


__all__ = ["sectionB_taylor", "plot_moments", "sectionB_taylor_from_results", "load_sectionB", "plot_map"]
