"""Figs. 1 and 2 and the BD training plots (pulkit.figures.background_discrimination): from constructed batches and from saved files."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle

from pulkit.core.config import load_config
from pulkit.core.results import MissingResultsError
from pulkit.experiments import background_discrimination as bd_report
from pulkit.figures import background_discrimination as figs_bd
from pulkit.figures.style import NR, crop_mosaic
from pulkit.figures.registry import FIGURES, export_figures


def batches(b: int = 7, side: int = 15, seed: int = 0) -> dict:
    """What bd_batches returns, shrunk: crops, ids, hardness and candidate rows per sampler."""
    rng = np.random.default_rng(seed)
    out = {"batch_size": b, "seed": seed, "n_candidates": 40}
    for k, name in enumerate(("ahm", "rss")):
        ids = rng.choice(40, b, replace=False)
        cands = pd.DataFrame({"cand_id": ids, "video": [f"v{i % 3}" for i in ids], "frame": ids % 5,
                              "x": 1.0, "y": 2.0, "w": 10.0, "h": 12.0, "path": [f"f{i}.png" for i in ids]})
        out[name] = {"cand_ids": ids, "crops": rng.integers(0, 256, (b, side, side, 3), dtype=np.uint8),
                     "hardness": 0.8 - 0.6 * k, "candidates": cands}
    return out


def curves() -> dict:
    steps = np.arange(1, 6)
    return {"ahm_alexnet": pd.DataFrame({"step": steps, "loss": 3.0 / steps, "hardness": 0.7 + 0 * steps}),
            "rss_alexnet": {"step": steps.tolist(), "loss": (2.0 / steps).tolist(), "hardness": [0.1] * 5}}


def hardness() -> dict:
    def st(m):
        v = [m - 0.05, m, m + 0.05]
        return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "values": v}
    return {bank: {"ahm": st(0.8), "rss": st(0.2), "n_batches": 3, "batch_size": 7, "seed": 0}
            for bank in bd_report.HARDNESS_BANKS}


def _image(fig):
    return fig.axes[0].images[0].get_array()


def test_mosaic_layout_and_bad_input():
    b = batches(b=5, side=4)["ahm"]["crops"]
    img, ncols = crop_mosaic(b, gap=2)
    assert ncols == 3 and img.shape == (2 * 6 - 2, 3 * 6 - 2, 3)
    assert np.array_equal(img[6:10, 6:10], b[4])                  # crop 4: row 1, column 1
    assert (img[6:10, 12:16] == 255).all()                        # the unused cell stays white
    for bad in (np.zeros((0, 4, 4, 3), np.uint8), np.zeros((2, 4, 4, 3), np.float32), np.zeros((2, 4, 4), np.uint8)):
        with pytest.raises(ValueError, match="uint8"):
            crop_mosaic(bad)


def test_fig1_marks_the_anchor_top_left_and_fig2_does_not():
    data = batches()
    fig1 = figs_bd.fig1_ahm_batch(data)
    assert np.array_equal(_image(fig1), crop_mosaic(data["ahm"]["crops"], gap=3)[0])
    boxes = [p for p in fig1.axes[0].patches if isinstance(p, Rectangle)]
    assert len(boxes) == 1 and boxes[0].get_xy() == (-0.5, -0.5) and boxes[0].get_width() == 15
    assert np.allclose(boxes[0].get_edgecolor()[:3], [int(NR[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    assert "AHM" in fig1.axes[0].get_title() and "0.800" in fig1.axes[0].get_title()
    fig2 = figs_bd.fig2_rss_batch(data)
    assert np.array_equal(_image(fig2), crop_mosaic(data["rss"]["crops"], gap=3)[0])
    assert not fig2.axes[0].patches and "RSS" in fig2.axes[0].get_title()
    # the mosaic goes into the PDF at its own resolution (resampled to 200 dpi it was 1 MB at cpu scale)
    assert fig1.axes[0].images[0].get_interpolation() == "none"
    with pytest.raises(ValueError, match="'rss' crops"):
        figs_bd.fig2_rss_batch({"ahm": data["ahm"]})


def test_curve_and_hardness_plots():
    fig = figs_bd.plot_bd_curves(curves())
    loss_ax, hard_ax = fig.axes[:2]
    assert len(loss_ax.lines) == 2 and np.allclose(loss_ax.lines[0].get_ydata(), 3.0 / np.arange(1, 6))
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["AHM, AlexNet", "RSS, AlexNet"]
    with pytest.raises(ValueError, match="step, loss and hardness"):
        figs_bd.plot_bd_curves({"x": {"step": [1]}})
    with pytest.raises(ValueError, match="no training curves"):
        figs_bd.plot_bd_curves({})
    fig = figs_bd.plot_hardness(hardness())
    ax = fig.axes[0]
    means = [c.lines[0].get_ydata()[0] for c in ax.containers]
    assert np.allclose(means, [0.8, 0.2, 0.8, 0.2])              # AHM, RSS under each of the two banks


def test_figures_rebuild_from_saved_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PULKIT_FIGURES", str(tmp_path / "figures"))
    for name in ("fig1_ahm_batch", "fig2_rss_batch"):
        with pytest.raises(MissingResultsError, match="01_background_discrimination"):
            FIGURES[name]("smoke")
    with pytest.raises(MissingResultsError, match="01_background_discrimination"):
        figs_bd.bd_curves_from_results("smoke")
    made, missing = export_figures("smoke", ["fig1_ahm_batch", "fig2_rss_batch"], seed=0)
    assert not made and set(missing) == {"fig1_ahm_batch", "fig2_rss_batch"}

    data = batches()
    record = {"batches": bd_report.batches_record(data),
              "curves": {k: pd.DataFrame(v).to_dict(orient="list") for k, v in curves().items()},
              "hardness": hardness(), "summary": {"hardness_ahm": 0.8}}
    bd_report.write_results(load_config("smoke"), record, data)
    fig1 = FIGURES["fig1_ahm_batch"]("smoke")
    assert np.array_equal(_image(fig1), _image(figs_bd.fig1_ahm_batch(data)))
    assert fig1.axes[0].get_title() == figs_bd.fig1_ahm_batch(data).axes[0].get_title()
    assert np.array_equal(_image(FIGURES["fig2_rss_batch"]("smoke")), crop_mosaic(data["rss"]["crops"], gap=3)[0])
    assert len(figs_bd.bd_curves_from_results("smoke").axes[0].lines) == 2
    assert len(figs_bd.hardness_from_results("smoke").axes[0].containers) == 4
    made, missing = export_figures("smoke", ["fig1_ahm_batch", "fig2_rss_batch"], seed=0)
    assert not missing and all(p.is_file() for pair in made.values() for p in pair)
