"""Figures of notebook 07: OTB success and precision plots and the VOT expected-overlap curve of
stored ``pulkit.evaluation`` results, and ``claims_forest`` (the paper's claims tested at laptop scale)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from pulkit.core import artifacts
from pulkit.core.io import read_json
from pulkit.figures.style import BCE, NR, PALETTE, new_figure

OTB_MAX_ERROR = 50           # px: the last centre-error threshold of OTB's precision plot


def otb_plots(results: Mapping[str, Mapping[str, Any]], width: float = 10.0) -> Figure:
    """Success and precision plots of OTB-protocol results (label -> result), side by side."""
    fig, axes = new_figure(1, 2, width=width, height=width * 0.4)
    plot_success(results, ax=axes[0, 0])
    plot_precision(results, ax=axes[0, 1])
    return fig


def _labelled(results) -> list[tuple[str, Mapping]]:
    if isinstance(results, Mapping) and "benchmark" in results:
        return [(results["tracker"], results)]
    if isinstance(results, Mapping):
        return list(results.items())
    return [(r["tracker"], r) for r in results]


def plot_success(results, ax=None, title: str | None = None):
    """Success plot (OTB: 21 thresholds, GOT-10k: 101) of one result, a list of results or a
    mapping label -> result; legend ``label [AUC or AO]``, best first.  Returns the Figure."""
    items = _labelled(results)
    score = {"otb": "success_auc", "got10k": "ao"}
    for label, r in items:
        if r.get("benchmark") not in score:
            raise ValueError(f"{label}: success plots need OTB or GOT-10k results, got {r.get('benchmark')!r}")
    fig = ax.figure if ax is not None else Figure(figsize=(5, 4))
    ax = ax if ax is not None else fig.add_subplot()
    for label, r in sorted(items, key=lambda it: -it[1][score[it[1]["benchmark"]]]):
        c = r["curves"]
        ax.plot(c["iou_thresholds"], c["success"], label=f"{label} [{r[score[r['benchmark']]]:.3f}]")
    ax.set(xlabel="Overlap threshold", ylabel="Success rate", xlim=(0, 1), ylim=(0, 1),
           title=title or "Success plots of OPE")
    ax.grid(True)
    ax.legend(loc="lower left")
    return fig


def plot_precision(results, ax=None, title: str | None = None):
    """OTB precision plot (centre error thresholds 0..50 px); legend ``label [precision at 20 px]``."""
    items = _labelled(results)
    for label, r in items:
        if r.get("benchmark") != "otb":
            raise ValueError(f"{label}: precision plots need OTB results, got {r.get('benchmark')!r}")
    fig = ax.figure if ax is not None else Figure(figsize=(5, 4))
    ax = ax if ax is not None else fig.add_subplot()
    for label, r in sorted(items, key=lambda it: -it[1]["precision"]):
        c = r["curves"]
        ax.plot(c["error_thresholds"], c["precision"], label=f"{label} [{r['precision']:.3f}]")
    ax.set(xlabel="Location error threshold (px)", ylabel="Precision", xlim=(0, OTB_MAX_ERROR),
           ylim=(0, 1), title=title or "Precision plots of OPE")
    ax.grid(True)
    ax.legend(loc="lower right")
    return fig


def plot_eao_curve(result: Mapping[str, Any], ax=None, title: str | None = None):
    """VOT expected-overlap curve with the EAO interval shaded.  Returns the Figure."""
    if result.get("benchmark") != "vot":
        raise ValueError(f"EAO curves need a VOT result, got {result.get('benchmark')!r}")
    fig = ax.figure if ax is not None else Figure(figsize=(5, 4))
    ax = ax if ax is not None else fig.add_subplot()
    curve = np.asarray(result["eao_curve"])
    ax.plot(np.arange(len(curve)), curve, label=f"{result['tracker']} [EAO {result['eao']:.3f}]")
    lo, hi = result["eao_interval"]
    ax.axvspan(lo, hi, alpha=0.15)
    ax.set(xlabel="Sequence length (frames after initialisation)", ylabel="Expected average overlap",
           ylim=(0, 1), title=title or "Expected average overlap")
    ax.grid(True)
    ax.legend(loc="upper right")
    return fig


# --------------------------------------------------------------------------- claims forest plot
CLAIMS = ("ahm_small_batch", "rounds", "nr_noise", "pul_vs_random_bn")   # the paper's claims, in row order
UNITS = ("fraction", "AUC", "px")                                      # one panel per unit, in this order
VERDICT_COLORS = {"holds": BCE, "does not hold": NR, "not resolved": PALETTE[5]}   # the palette's green, red, grey
Z95 = 1.96                   # half-width of a 95 % normal interval, in standard errors
_CLAIM_KEYS = ("claim", "metric", "unit", "treatment", "control", "diff", "se", "verdict")


def _claim_records(data) -> list[Mapping[str, Any]]:
    """The records of a claims file (``{"claims": [...], ...}``) or a list of records, checked."""
    records = data.get("claims") if isinstance(data, Mapping) else data
    if records is None:
        raise ValueError("claims_forest: expected a claims file ({'claims': [record, ...]}) or a list of records; "
                         "the mapping has no 'claims' key")
    records = list(records)
    if not records:
        raise ValueError("claims_forest: the claims list is empty; there is nothing to draw "
                         "(notebook 07 writes one record per tested claim and metric)")
    for i, r in enumerate(records):
        absent = [k for k in _CLAIM_KEYS if k not in r]
        if absent:
            raise ValueError(f"claims_forest: record {i} ({r.get('claim', '?')}) lacks {absent}")
        if r["verdict"] not in VERDICT_COLORS:
            raise ValueError(f"claims_forest: record {i} ({r['claim']}): verdict {r['verdict']!r}; "
                             f"expected one of {list(VERDICT_COLORS)}")
    return records


def _float(x) -> float:
    return float("nan") if x is None else float(x)


def claims_forest(data: Mapping[str, Any] | Sequence[Mapping[str, Any]], width: float = 10.0) -> Figure:
    """Forest plot of the paper's claims tested at laptop scale: one row per record (claim and metric).

    Each row shows ``diff`` (treatment - control, oriented so that right of 0 = treatment better, also
    for errors) with its 95 % interval ``diff +- 1.96 se``, labelled ``claim: treatment vs control
    (metric)``, with the verdict at the right in green (holds), red (does not hold) or grey (not
    resolved).  Rows are grouped by claim (``CLAIMS`` order; groups shaded alternately).  Units differ
    (fraction, px, AUC), so rather than normalising (a z-score would hide the effect size) each unit
    gets its own panel with its own x axis; the panels share the rows, and a row's point sits in its
    unit's panel only.  ``data`` is the claims file or its list of records; an empty one is a ValueError.
    """
    records = _claim_records(data)
    order = {c: k for k, c in enumerate(CLAIMS)}
    rank = {}
    for r in records:                                 # unknown claims after the known ones, as they come
        rank.setdefault(r["claim"], order.get(r["claim"], len(CLAIMS) + len(rank)))
    rows = sorted(records, key=lambda r: rank[r["claim"]])     # stable: a claim's records keep their order
    units = [u for u in UNITS if any(r["unit"] == u for r in rows)]
    units += [u for u in dict.fromkeys(r["unit"] for r in rows) if u not in units]
    n = len(rows)
    fig, axes = new_figure(1, len(units), width=width, height=1.3 + 0.34 * n, sharey=True)
    axes = axes[0]
    ys = np.arange(n, dtype=float)
    bounds = [k for k in range(1, n) if rows[k]["claim"] != rows[k - 1]["claim"]]
    starts = [0] + bounds
    ends = bounds + [n]
    for ax, unit in zip(axes, units):
        for g, (a, b) in enumerate(zip(starts, ends)):
            if g % 2 == 0:
                ax.axhspan(a - 0.5, b - 0.5, color="0.93", lw=0, zorder=0)
        for k in bounds:
            ax.axhline(k - 0.5, color="0.6", lw=0.6, zorder=1)
        ax.axvline(0.0, color="0.25", lw=0.9, zorder=1, gid="zero")
        sel = [k for k, r in enumerate(rows) if r["unit"] == unit]
        diff = np.array([_float(rows[k]["diff"]) for k in sel])
        se = np.array([_float(rows[k]["se"]) for k in sel])
        colors = [VERDICT_COLORS[rows[k]["verdict"]] for k in sel]
        lo, hi = diff - Z95 * se, diff + Z95 * se
        has_ci = np.isfinite(lo) & np.isfinite(hi)
        ax.hlines(ys[sel][has_ci], lo[has_ci], hi[has_ci], colors=[c for c, ok in zip(colors, has_ci) if ok],
                  lw=1.8, zorder=2, gid="intervals")
        ax.scatter(diff, ys[sel], c=colors, s=26, marker="D", zorder=3, gid="points", edgecolors="white",
                   linewidths=0.5)
        span = np.concatenate([[0.0], lo[np.isfinite(lo)], hi[np.isfinite(hi)], diff[np.isfinite(diff)]])
        left, right = float(span.min()), float(span.max())
        pad = 0.08 * (right - left) if right > left else max(abs(left), 1.0) * 0.1
        ax.set_xlim(left - pad, right + pad)
        ax.set_xlabel(f"difference ({unit})", fontsize=7)
        ax.set_title(unit, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.grid(False, axis="y")
    axes[0].set_ylim(n - 0.5, -0.5)                   # first row on top
    axes[0].set_yticks(ys)
    axes[0].set_yticklabels([f"{r['claim']}: {r['treatment']} vs {r['control']} ({r['metric']})" for r in rows],
                            fontsize=7)
    last = axes[-1]
    to_right = blended_transform_factory(last.transAxes, last.transData)
    for y, r in zip(ys, rows):
        last.text(1.03, y, r["verdict"], transform=to_right, ha="left", va="center", fontsize=7.5,
                  fontweight="bold", color=VERDICT_COLORS[r["verdict"]], clip_on=False, gid="verdict")
    fig.suptitle("The paper's claims at laptop scale: difference treatment - control (right of 0: treatment "
                 f"better), 95 % interval \u00b1{Z95} se", fontsize=8)
    return fig


def load_claims(profile: str) -> dict[str, Any]:
    """``results/<profile>/claims.json`` (plain JSON, not a ``save_results`` file: ``claims`` names no
    notebook); a missing file names notebook 07, which writes it."""
    path = artifacts.claims_path(profile)
    if not path.is_file():
        raise artifacts.missing(path, profile, "claims file (the paper's claims at laptop scale)")
    return read_json(path)


def claims_forest_from_results(profile: str) -> Figure:
    return claims_forest(load_claims(profile))
