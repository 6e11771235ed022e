"""Figures of a parameter sweep (``pulkit sweep``): each key number per seed with its mean +- SE band, and the
training curves averaged over seeds with a +- SE band."""
from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from pulkit.figures.style import setup_style


def summary_figure(rows: Sequence[dict[str, Any]], max_panels: int = 24) -> Figure | None:
    """One panel per key number (the first ``max_panels``): a dot per seed, the mean as a bar and a +- SE band,
    one column per group of the other swept parameters."""
    keys = list(dict.fromkeys((r["notebook"], r["key"]) for r in rows))[:max_panels]
    if not keys:
        return None
    setup_style()
    groups = list(dict.fromkeys(r["group"] for r in rows))
    cols = min(4, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(max(3.2 * cols, 6.0), 2.4 * nrows + 0.4), squeeze=False,
                             layout="constrained")
    for ax, (nb, key) in zip(axes.flat, keys):
        for x, group in enumerate(groups):
            row = next((r for r in rows if r["group"] == group and r["notebook"] == nb and r["key"] == key), None)
            if row is None:
                continue
            values = np.asarray(row["values"])
            if row["se"] is not None:
                ax.fill_between([x - 0.3, x + 0.3], row["mean"] - row["se"], row["mean"] + row["se"],
                                color="C0", alpha=0.25, lw=0)
            ax.hlines(row["mean"], x - 0.3, x + 0.3, color="C0", lw=2)
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
            ax.plot(x + jitter, values, "o", color="k", ms=3)
        ax.set_title(f"{nb[:2]} {key}", fontsize=8)
        ax.set_xticks(range(len(groups)), groups if len(groups) > 1 else [""], fontsize=7, rotation=20)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    n = max(r["n"] for r in rows)
    fig.suptitle(f"per seed (dots), mean (bar) +- SE (band); n <= {n}", fontsize=9)
    return fig


def curves_figure(points: Sequence[dict[str, Any]]) -> Figure | None:
    """Every saved training curve (loss and other metrics against step), mean over the points +- SE band."""
    series: dict[tuple[str, str, str], list[tuple[list[float], list[float]]]] = {}
    for p in points:
        if p["status"] != "ok":
            continue
        for nb, curves in p["curves"].items():
            for name, c in curves.items():
                for metric, values in c.items():
                    if metric in ("step", "lr") or not isinstance(values, list) or len(values) != len(c["step"]):
                        continue
                    series.setdefault((nb, name, metric), []).append((c["step"], values))
    panels = [(k, v) for k, v in series.items() if len(v) > 0][:12]
    if not panels:
        return None
    setup_style()
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(max(3.6 * cols, 6.0), 2.6 * nrows + 0.4), squeeze=False,
                             layout="constrained")
    for ax, ((nb, name, metric), runs) in zip(axes.flat, panels):
        steps = runs[0][0]
        same = [np.asarray(v, dtype=float) for s, v in runs if s == steps]
        y = np.vstack(same)
        mean = np.nanmean(y, axis=0)
        for row in y:
            ax.plot(steps, row, color="0.7", lw=0.6)
        ax.plot(steps, mean, color="C0", lw=1.5)
        if len(y) > 1:
            se = np.nanstd(y, axis=0, ddof=1) / math.sqrt(len(y))
            ax.fill_between(steps, mean - se, mean + se, color="C0", alpha=0.3, lw=0)
        ax.set_title(f"{nb[:2]} {name}: {metric} (n = {len(y)})", fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("each seed (grey), mean (blue) +- SE (band)", fontsize=9)
    return fig
