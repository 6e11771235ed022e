"""Figures of notebook 03: the training curves of ResPUL, the TC-BCE ablation and the supervised
baselines."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure

from pulkit.core.results import load_results
from pulkit.figures.temporal_correspondence import METRICS, plot_training_curves

NOTEBOOK = "03_training"


def training_curves(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("loss", "response", "giveup_frac")
                    ) -> Figure:
    """One line per run (``training_runs``' records: ``name``, ``curve``), one panel per metric."""
    return plot_training_curves({r["name"]: r["curve"] for r in runs}, metrics=metrics)


def training_curves_from_results(profile: str) -> Figure:
    return training_curves(load_results(profile, NOTEBOOK)["runs"])


__all__ = ["training_curves", "training_curves_from_results", "METRICS"]
