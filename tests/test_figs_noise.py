"""Figs. 3, 4, 6 from plain data and from saved results; missing results name notebook 04."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from pulkit.core import artifacts
from pulkit.core.results import MissingResultsError, save_results
from pulkit.figures import noise_robustness as figs_noise
from pulkit.figures.style import BCE, NR
from pulkit.figures.registry import FIGURES, export_figures


def _table():
    rng = np.random.default_rng(0)
    rows = [{"loss": loss, "noise": n, "seed": s, "auc": 0.5 - n / 500 + (0.02 * (loss == "nr")) + 0.01 * rng.random()}
            for loss in ("bce", "nr") for n in (0, 25, 50) for s in (0, 1)]
    return pd.DataFrame(rows)


def _examples(levels=(0, 50)):
    rng = np.random.default_rng(1)
    picks = [{"sequence": f"seq{i}", "frame": 3, "image": rng.integers(0, 255, (40, 60, 3), dtype=np.uint8),
              "origin": [10, 5], "true_box": [20.0, 15.0, 12.0, 10.0]} for i in range(2)]
    panels = [{"pick": i, "level": n, "true_box": [20.0, 15.0, 12.0, 10.0], "noisy_box": [20.0 + n / 10, 14.0, 12.0, 10.0],
               "boxes": {"bce": [25.0, 18.0, 12.0, 10.0], "nr": [21.0, 15.0, 12.0, 10.0]},
               "responses": {loss: rng.normal(size=(5, 5)).tolist() for loss in ("bce", "nr")},
               "iou": {"bce": 0.4, "nr": 0.8}, "center_error": {"bce": 5.0, "nr": 1.0}}
              for i in range(2) for n in levels]
    return {"seed": 0, "levels": list(levels), "display_levels": list(levels), "fig4_level": 50,
            "picks": picks, "panels": panels}


def test_fig6_from_a_table():
    fig = figs_noise.fig6_auc_vs_noise(_table())
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    colors = {line.get_color() for line in ax.get_lines()}
    assert {NR, BCE} <= colors
    gains = [t.get_text() for t in ax.texts]
    assert len(gains) == 3 and all(g.endswith("%") for g in gains)
    t = _table()
    b, r = t[(t.loss == "bce") & (t.noise == 50)].auc.mean(), t[(t.loss == "nr") & (t.noise == 50)].auc.mean()
    assert f"{100 * (r - b) / b:+.1f} %" in gains
    assert isinstance(figs_noise.fig6_auc_vs_noise(_table().to_dict("records")), Figure)      # records work too
    with pytest.raises(ValueError, match="auc"):
        figs_noise.fig6_auc_vs_noise(pd.DataFrame({"loss": ["nr"], "noise": [0], "seed": [0]}))


def test_fig3_and_fig4_from_examples():
    ex = _examples()
    fig3 = figs_noise.fig3_noise_response_maps(ex)
    assert len(fig3.axes) == 2 * 3 * 2                     # 2 frames x 2 levels x (frame, NR map, BCE map)
    fig4 = figs_noise.fig4_noise50(ex)
    assert len(fig4.axes) == 2 * 3
    edge = {tuple(np.round(p.get_edgecolor()[:3], 3)) for p in fig4.axes[0].patches}
    assert len(edge) == 4                                  # noisy GT, true GT, NR, BCE
    with pytest.raises(ValueError, match="noise level"):
        figs_noise.fig4_noise50(ex, level=25)
    no_image = {**ex, "picks": [{k: v for k, v in p.items() if k != "image"} for p in ex["picks"]]}
    with pytest.raises(ValueError, match="load_examples"):
        figs_noise.fig3_noise_response_maps(no_image)


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PULKIT_FIGURES", str(tmp_path / "figures"))
    return tmp_path


NAMES = ("fig3_noise_response_maps", "fig4_noise50", "fig6_auc_vs_noise")


def test_missing_results_name_notebook_04(results):
    for name in NAMES:
        with pytest.raises(MissingResultsError, match="04") as e:
            FIGURES[name]("smoke")
        assert e.value.notebook == "04_noise_robustness"
    save_results("smoke", "04_noise_robustness", {"runs": _table().to_dict("records")})
    assert isinstance(FIGURES["fig6_auc_vs_noise"]("smoke"), Figure)
    with pytest.raises(MissingResultsError, match="04_noise_robustness"):   # no examples in the JSON
        FIGURES["fig3_noise_response_maps"]("smoke")


def test_figures_rebuild_from_saved_files(results):
    from pulkit.core.io import write_npz
    from pulkit.experiments.noise_robustness import split_examples

    record, images = split_examples(_examples())
    save_results("smoke", "04_noise_robustness", {"runs": _table().to_dict("records"), "examples": record})
    with pytest.raises(MissingResultsError, match="04_noise_robustness.npz"):
        FIGURES["fig4_noise50"]("smoke")
    path = write_npz(artifacts.results_path("smoke", "04", "npz"), images)
    first = path.read_bytes()
    assert write_npz(path, images).read_bytes() == first           # deterministic bytes
    back = figs_noise.load_examples("smoke")
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(back["picks"], _examples()["picks"]))
    made, missing = export_figures("smoke", names=list(NAMES), seed=0)
    assert not missing and set(made) == set(NAMES)
    assert all(p.is_file() for pair in made.values() for p in pair)


def test_figures_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, pulkit.figures.style; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
