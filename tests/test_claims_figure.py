"""The claims forest plot of notebook 07: rows, 95 % intervals, verdicts, its results file and registry entry."""
from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from pulkit.core import artifacts, paths
from pulkit.core.artifacts import MissingResultsError
from pulkit.figures import benchmarks
from pulkit.figures.registry import FIGURES, export_figures


def _record(claim, metric, unit, treatment, control, diff, se, verdict, **extra):
    return {"claim": claim, "metric": metric, "unit": unit, "treatment": treatment, "control": control,
            "diff": diff, "se": se, "n": 40, "seeds": [0, 1, 2], "verdict": verdict, **extra}


RECORDS = [
    _record("rounds", "mining error at k=10 (px)", "px", "round 3", "round 1", 2.5, 1.9, "not resolved"),
    _record("ahm_small_batch", "localisation accuracy", "fraction", "AHM", "RSS", 0.08, 0.02, "holds"),
    _record("nr_noise", "success AUC (held-out synthetic)", "AUC", "NR", "BCE", 0.03, 0.01, "holds",
            bce_drop=0.1, bce_fit=-0.004),
    _record("pul_vs_random_bn", "success AUC (held-out synthetic)", "AUC", "PUL", "random init + BN", -0.02, 0.015,
            "does not hold"),
    _record("ahm_small_batch", "success AUC (held-out synthetic)", "AUC", "AHM", "RSS", 0.01, 0.02, "not resolved"),
]


def _by_gid(fig: Figure, gid: str) -> list:
    return [a for a in fig.findobj() if a.get_gid() == gid]


def test_one_row_per_record_grouped_by_claim_with_verdicts():
    fig = benchmarks.claims_forest({"claims": RECORDS, "provenance": {"seed": 0}})
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["fraction", "AUC", "px"]       # one panel per unit
    labels = [t.get_text() for t in panels[0].get_yticklabels()]
    assert len(labels) == 5
    assert labels[0] == "ahm_small_batch: AHM vs RSS (localisation accuracy)"   # grouped by claim, in CLAIMS order
    assert [lab.split(":")[0] for lab in labels] == ["ahm_small_batch", "ahm_small_batch", "rounds", "nr_noise",
                                                     "pul_vs_random_bn"]
    points = np.concatenate([c.get_offsets() for c in _by_gid(fig, "points")])
    assert len(points) == 5
    assert sorted(points[:, 1]) == [0, 1, 2, 3, 4]                               # every row has its point
    assert sorted(points[:, 0]) == sorted(r["diff"] for r in RECORDS)
    verdicts = _by_gid(fig, "verdict")
    assert [t.get_text() for t in verdicts] == ["holds", "not resolved", "not resolved", "holds", "does not hold"]
    colours = {t.get_text(): matplotlib.colors.to_hex(t.get_color()) for t in verdicts}
    assert colours == {v: matplotlib.colors.to_hex(c) for v, c in benchmarks.VERDICT_COLORS.items()}
    r, g, b = matplotlib.colors.to_rgb(colours["holds"])
    assert g > r and g > b
    r, g, b = matplotlib.colors.to_rgb(colours["does not hold"])
    assert r > g and r > b
    assert all(len(_by_gid_ax(ax, "zero")) == 1 for ax in panels)              # the line at 0 in every panel


def _by_gid_ax(ax, gid):
    return [a for a in ax.get_children() if a.get_gid() == gid]


def test_intervals_are_95_percent_in_data_coordinates():
    fig = benchmarks.claims_forest(RECORDS)
    by_row = {}
    for coll in _by_gid(fig, "intervals"):
        for seg in coll.get_segments():
            (x0, y0), (x1, y1) = seg
            assert y0 == y1
            by_row[int(y0)] = (x0, x1)
    assert len(by_row) == 5
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    for row, label in enumerate(labels):
        rec = next(r for r in RECORDS
                   if label == f"{r['claim']}: {r['treatment']} vs {r['control']} ({r['metric']})")
        x0, x1 = by_row[row]
        assert x1 - x0 == pytest.approx(2 * 1.96 * rec["se"])
        assert (x0 + x1) / 2 == pytest.approx(rec["diff"])


def test_text_is_not_clipped_and_height_grows_with_rows():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = benchmarks.claims_forest(RECORDS)
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    w, h = fig.bbox.width, fig.bbox.height
    for t in fig.findobj(matplotlib.text.Text):
        if t.get_text() and t.get_visible():
            bb = t.get_window_extent(renderer)
            assert bb.x0 >= -1 and bb.y0 >= -1 and bb.x1 <= w + 1 and bb.y1 <= h + 1, t.get_text()
    small = benchmarks.claims_forest(RECORDS[:2])
    assert small.get_figheight() < fig.get_figheight()


def test_empty_or_malformed_claims_are_refused():
    with pytest.raises(ValueError, match="empty"):
        benchmarks.claims_forest({"claims": []})
    with pytest.raises(ValueError, match="empty"):
        benchmarks.claims_forest([])
    with pytest.raises(ValueError, match="verdict"):
        benchmarks.claims_forest([{**RECORDS[0], "verdict": "maybe"}])
    with pytest.raises(ValueError, match="lacks"):
        benchmarks.claims_forest([{k: v for k, v in RECORDS[0].items() if k != "se"}])


def test_claims_path_and_producer(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path))
    path = artifacts.claims_path("smoke")
    assert path == paths.results_dir("smoke") / "claims.json"
    assert artifacts.producer(path, "smoke") == "07_benchmarks"
    assert artifacts.producer(artifacts.results_path("smoke", "04"), "smoke") == "04_noise_robustness"  # unchanged
    assert artifacts.producer(paths.results_dir("smoke") / "other.json", "smoke") is None


def test_missing_claims_file_names_notebook_07(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PULKIT_FIGURES", str(tmp_path / "figures"))
    with pytest.raises(MissingResultsError, match="07_benchmarks") as e:
        benchmarks.claims_forest_from_results("smoke")
    assert e.value.notebook == "07_benchmarks" and e.value.path == artifacts.claims_path("smoke")
    assert "--only 07" in str(e.value)
    made, missing = export_figures("smoke", ["claims_forest"], seed=0)
    assert not made and missing["claims_forest"].notebook == "07_benchmarks"


def test_registered_and_rebuilt_from_the_claims_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PULKIT_FIGURES", str(tmp_path / "figures"))
    assert FIGURES["claims_forest"] is benchmarks.claims_forest_from_results
    path = artifacts.claims_path("smoke")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"claims": RECORDS, "provenance": {"seed": 0}}))
    fig = FIGURES["claims_forest"]("smoke")
    assert [t.get_text() for t in _by_gid(fig, "verdict")].count("holds") == 2
    made, missing = export_figures("smoke", ["claims_forest"], seed=0)
    assert not missing and made["claims_forest"][1].name == "claims_forest.png"
