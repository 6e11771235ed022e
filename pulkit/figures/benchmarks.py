"""Figures of notebook 07: OTB success and precision plots and the VOT expected-overlap curve of
stored ``pulkit.evaluation`` results."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from pulkit.figures.style import new_figure

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
