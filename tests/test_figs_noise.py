"""Figs. 3, 4, 6 and the fit figure from plain data and from saved results; missing results name notebook 04."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from pulkit.core import artifacts
from pulkit.core.results import MissingResultsError, save_results
from pulkit.figures import noise_robustness as figs_noise
from pulkit.figures.registry import FIGURES, export_figures
from pulkit.figures.style import BCE, NR


def _data(levels=(0, 0.25, 0.5, 1.0)):
    rng = np.random.default_rng(0)
    rows = []
    for n in levels:
        for s in (0, 1, 2):
            rows.append({"loss": "bce", "level": n, "seed": s, "accuracy": 0.9 - 0.15 * n + 0.01 * rng.random(),
                         "fit_noisy": 1 - 0.4 * n, "fit_clean": 1 - 0.6 * n})
            if n == max(levels):
                rows += [{"loss": "nr", "level": n, "seed": s, "accuracy": 0.86 + 0.01 * rng.random(),
                          "fit_noisy": 0.15, "fit_clean": 0.7},
                         {"loss": "nr_fixed", "level": n, "seed": s, "accuracy": 0.8 + 0.01 * rng.random(),
                          "fit_noisy": 0.3, "fit_clean": 0.6}]
    comps = [{"level": 1.0, "treatment": "nr@1", "control": "bce@1", "diff": 0.1, "se": 0.02, "n": 1500, "seeds": 3,
              "verdict": "holds"}]
    return {"runs": rows, "reference": {"name": "random_bn", "accuracy": 0.31, "accuracy_se": 0.02},
            "comparisons": comps, "setup": {"unit": "size"}}


def _examples(levels=(0.0, 1.0)):
    rng = np.random.default_rng(1)
    picks = [{"sequence": f"seq{i}", "frame": 3, "image": rng.integers(0, 255, (40, 60, 3), dtype=np.uint8),
              "origin": [10, 5], "true_box": [20.0, 15.0, 12.0, 10.0]} for i in range(2)]
    panels = []
    for i in range(2):
        for n in levels:
            losses = ("bce", "nr") if n > 0 else ("bce",)                  # NR not trained at level 0
            panels.append({"pick": i, "level": n, "true_box": [20.0, 15.0, 12.0, 10.0],
                           "noisy_box": [20.0 + 5 * n, 14.0, 12.0, 10.0],
                           "boxes": {"bce": [25.0, 18.0, 12.0, 10.0], "nr": [21.0, 15.0, 12.0, 10.0]} if n > 0 else
                           {"bce": [25.0, 18.0, 12.0, 10.0]},
                           "responses": {loss: rng.normal(size=(5, 5)).tolist() for loss in losses},
                           "iou": {loss: 0.5 for loss in losses}, "center_error": {loss: 2.0 for loss in losses}})
    return {"seed": 0, "unit": "size", "levels": list(levels), "display_levels": list(levels), "fig4_level": 1.0,
            "picks": picks, "panels": panels}


def test_fig6_from_data():
    fig = figs_noise.fig6_accuracy_vs_noise(_data())
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    colors = {line.get_color() for line in ax.get_lines()}
    assert {NR, BCE, figs_noise.REFERENCE} <= colors
    ref = [line for line in ax.get_lines() if line.get_color() == figs_noise.REFERENCE]
    assert np.allclose(ref[0].get_ydata(), 0.31)                               # random_bn as a line
    assert [t.get_text() for t in ax.texts] == ["NR-BCE\n+0.100\n+-0.020"]
    assert "sqrt(wh)" in ax.get_xlabel()
    bce = [line for line in ax.get_lines() if line.get_color() == BCE and line.get_linestyle() == "-"][0]
    runs = pd.DataFrame(_data()["runs"])
    want = runs[runs.loss == "bce"].groupby("level")["accuracy"].mean()
    assert np.allclose(bce.get_ydata(), want.values)                            # mean over seeds
    assert isinstance(figs_noise.fig6_accuracy_vs_noise(runs), Figure)          # a bare runs table works too
    with pytest.raises(ValueError, match="accuracy"):
        figs_noise.fig6_accuracy_vs_noise({"runs": [{"loss": "nr", "level": 0, "seed": 0}]})
    with pytest.raises(ValueError, match="runs"):
        figs_noise.fig6_accuracy_vs_noise({"reference": {}})


def test_fit_figure_from_data():
    fig = figs_noise.noise_label_fit(_data())
    ax = fig.axes[0]
    solid = [line for line in ax.get_lines() if line.get_color() == BCE and line.get_linestyle() == "-"]
    dashed = [line for line in ax.get_lines() if line.get_color() == BCE and line.get_linestyle() == "--"]
    assert np.allclose(solid[0].get_ydata(), [1, 0.9, 0.8, 0.6]) and np.allclose(dashed[0].get_ydata(), [1, 0.85, 0.7, 0.4])
    no_fit = [{**r, "fit_noisy": None, "fit_clean": None} for r in _data()["runs"]]
    with pytest.raises(ValueError, match="fresh pairs"):
        figs_noise.noise_label_fit({"runs": no_fit})


def test_fig3_and_fig4_from_examples():
    ex = _examples()
    fig3 = figs_noise.fig3_noise_response_maps(ex)
    assert len(fig3.axes) == 2 * 3 * 2                     # 2 frames x 2 levels x (frame, NR map, BCE map)
    assert any("not trained" in t.get_text() for ax in fig3.axes for t in ax.texts)   # NR absent at level 0
    fig4 = figs_noise.fig4_noise50(ex)
    assert len(fig4.axes) == 2 * 3 and "f = 1" in fig4.axes[0].get_title()
    edge = {tuple(np.round(p.get_edgecolor()[:3], 3)) for p in fig4.axes[0].patches}
    assert len(edge) == 4                                  # noisy GT, true GT, NR, BCE
    with pytest.raises(ValueError, match="noise level"):
        figs_noise.fig4_noise50(ex, level=0.5)
    no_image = {**ex, "picks": [{k: v for k, v in p.items() if k != "image"} for p in ex["picks"]]}
    with pytest.raises(ValueError, match="load_examples"):
        figs_noise.fig3_noise_response_maps(no_image)


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PULKIT_FIGURES", str(tmp_path / "figures"))
    return tmp_path


NAMES = ("fig3_noise_response_maps", "fig4_noise50", "fig6_accuracy_vs_noise", "noise_label_fit")


def test_registry_names():
    assert {n for n in FIGURES if n.startswith(("fig3_noise", "fig4_noise", "fig6_", "noise_"))} == set(NAMES)
    assert FIGURES["fig6_accuracy_vs_noise"] is figs_noise.fig6_accuracy_vs_noise_from_results


def test_missing_results_name_notebook_04(results):
    for name in NAMES:
        with pytest.raises(MissingResultsError, match="04") as e:
            FIGURES[name]("smoke")
        assert e.value.notebook == "04_noise_robustness"
    save_results("smoke", "04_noise_robustness", _data())
    assert isinstance(FIGURES["fig6_accuracy_vs_noise"]("smoke"), Figure)
    assert isinstance(FIGURES["noise_label_fit"]("smoke"), Figure)
    with pytest.raises(MissingResultsError, match="04_noise_robustness"):   # no examples in the JSON
        FIGURES["fig3_noise_response_maps"]("smoke")


def test_figures_rebuild_from_saved_files(results):
    from pulkit.core.io import write_npz
    from pulkit.experiments.noise_robustness import split_examples

    record, images = split_examples(_examples())
    save_results("smoke", "04_noise_robustness", {**_data(), "examples": record})
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

    code = "import sys, pulkit.figures.noise_robustness; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_figure_the_profile_does_not_measure_is_skipped_not_a_crash(results, capsys):
    """The paper profile's noise runs draw fresh pairs every step (no fixed labels to fit): ``pulkit figures``
    says so and goes on (it raised a ValueError and lost every later figure)."""
    from pulkit.__main__ import main as cli
    from pulkit.figures.style import NotMeasured

    no_fit = {**_data(), "runs": [{**r, "fit_noisy": None, "fit_clean": None} for r in _data()["runs"]]}
    save_results("smoke", "04_noise_robustness", no_fit)
    with pytest.raises(NotMeasured):                          # without a ``skipped`` dict it propagates
        export_figures("smoke", names=["noise_label_fit"], seed=0)
    skipped: dict = {}
    made, missing = export_figures("smoke", names=["fig6_accuracy_vs_noise", "noise_label_fit"], seed=0,
                                   skipped=skipped)
    assert list(made) == ["fig6_accuracy_vs_noise"] and not missing and list(skipped) == ["noise_label_fit"]
    assert cli(["figures", "--profile", "smoke", "--only", "noise_label_fit", "--seed", "0"]) == 0
    assert "noise_label_fit: not made, this profile does not measure it" in capsys.readouterr().out
