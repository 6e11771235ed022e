"""Notebook 02 / 03 figures from constructed data and from saved files; missing files name the notebook."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pulkit.core import artifacts
from pulkit.core.io import write_npz
from pulkit.core.results import MissingResultsError, save_results
from pulkit.experiments import temporal_correspondence as pipeline
from pulkit.figures import temporal_correspondence as figs_tc
from pulkit.figures.registry import FIGURES, export_figures


def _gallery(rounds=(1, 2), per_round=4, sz=24):
    rng = np.random.default_rng(0)
    pairs = [{"round": r, "video": f"v{i}", "frame_a": i, "frame_b": i + 1 + i % 3, "k": 1 + i % 3,
              "confidence": 0.5 + 0.1 * i, "box_a": [10.0, 12.0, 20.0, 16.0], "box_b": [11.0, 12.0, 20.0, 16.0],
              "z": rng.integers(0, 255, (sz, sz, 3), dtype=np.uint8), "x": rng.integers(0, 255, (sz, sz, 3), dtype=np.uint8)}
             for r in rounds for i in range(per_round)]
    return {"crop_sz": sz, "context": 0.5, "pairs": pairs}


def _report():
    rows = []
    for r in (1, 2, 3):
        for k in (1, 5, 10, 20):
            for seq in ("a", "b", "mean"):
                rows.append({"round": r, "model": f"m{r}", "sequence": seq, "k": k, "n": 3,
                             "center_error": 2.0 * k / r, "iou": 0.9 - 0.01 * k, "kept_frac": 0.5,
                             "center_error_kept": 1.0, "iou_kept": 0.9})
    return pd.DataFrame(rows)


def _curve(rounds=2, steps=5, start=1.0):
    return [{"round": r, "step": s, "global_step": (r - 1) * steps + s, "loss": start / (s + r), "nr_loss": 0.5,
             "infonce": 1.0, "giveup_frac": 0.1} for r in range(1, rounds + 1) for s in range(1, steps + 1)]


# --------------------------------------------------------------------------- constructed data
def test_gallery_from_constructed_data():
    g = _gallery()
    fig = figs_tc.tc_pairs_gallery(g, ncols=3)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4 * 6                          # 2 rounds x 2 rows (4 pairs, 3 per row) x 6 axes
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 * len(g["pairs"])               # exemplar and partner of every pair
    titles = " ".join(ax.get_title() for ax in shown)
    assert "k = 3, c = 0.70" in titles and "R2" in titles
    boxes = [p for ax in shown for p in ax.patches if isinstance(p, Rectangle)]
    assert len(boxes) == len(shown)                        # the mined box outlined in each crop
    w = boxes[0].get_width()                               # 20 x 16 box, context 0.5: side sqrt(38 * 34)
    assert w == pytest.approx(20 * 24 / np.sqrt(38 * 34))
    no_context = figs_tc.tc_pairs_gallery({"pairs": g["pairs"][:1]})
    assert not [p for ax in no_context.axes for p in ax.patches]


def test_gallery_refuses_bad_input():
    with pytest.raises(ValueError, match="no mined pairs"):
        figs_tc.tc_pairs_gallery({"pairs": []})
    g = _gallery(per_round=1)
    with pytest.raises(ValueError, match="lacks"):
        figs_tc.tc_pairs_gallery({"pairs": [{k: v for k, v in g["pairs"][0].items() if k != "x"}]})
    with pytest.raises(ValueError, match="H x W x 3"):
        figs_tc.tc_pairs_gallery({"pairs": [{**g["pairs"][0], "z": np.zeros((5, 5))}]})


def test_mining_error_from_constructed_data():
    fig = figs_tc.tc_mining_error(_report())
    err, iou = fig.axes[:2]
    assert len(err.get_lines()) == len(iou.get_lines()) == 4              # one line per fixed k
    line = next(ln for ln in err.get_lines() if ln.get_label() == "k = 10")
    np.testing.assert_allclose(line.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(line.get_ydata(), [20.0, 10.0, 20.0 / 3])   # the mean rows only
    assert isinstance(figs_tc.tc_mining_error(_report().to_dict("records")), Figure)
    with pytest.raises(ValueError, match="mean"):
        figs_tc.tc_mining_error(_report().query("sequence != 'mean'"))
    with pytest.raises(ValueError, match="lacks columns"):
        figs_tc.tc_mining_error(pd.DataFrame({"round": [1]}))


def test_training_curves_from_constructed_data():
    fig = figs_tc.plot_training_curves({"A": _curve(), "B": [{"step": 1, "loss": 500.0, "bce_loss": 500.0}]})
    loss_ax, response_ax, giveup_ax = fig.axes[:3]
    assert {ln.get_label() for ln in loss_ax.get_lines() if not ln.get_label().startswith("_")} == {"A", "B"}
    assert loss_ax.get_yscale() == "log" and giveup_ax.get_yscale() == "linear"   # losses 0.2 .. 500
    a = next(ln for ln in loss_ax.get_lines() if ln.get_label() == "A")
    assert list(a.get_xdata()) == list(range(1, 11))                        # rounds end to end
    assert any(ln.get_xdata()[0] == 5 for ln in loss_ax.get_lines() if ln.get_linestyle() == ":")   # round 2 starts
    with pytest.raises(ValueError, match="unknown metric"):
        figs_tc.plot_training_curves({"A": _curve()}, metrics=("accuracy",))
    with pytest.raises(ValueError, match="no logged records"):
        figs_tc.plot_training_curves({"A": []})


# --------------------------------------------------------------------------- saved files
@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PULKIT_FIGURES", str(tmp_path / "figures"))
    return tmp_path


def test_figures_rebuild_from_saved_files(results):
    record, images = pipeline.split_gallery(_gallery())
    write_npz(artifacts.results_path("smoke", "02", "npz"), images)
    save_results("smoke", "02_temporal_correspondence", {"gallery": record, "mining_quality": _report().to_dict("records"),
                                    "curve": _curve()}, seed=0)
    save_results("smoke", "03_training", {"runs": [{"name": "ResPUL", "curve": _curve()},
                                                   {"name": "SiamFC (supervised)", "curve": _curve(1)}]}, seed=0)
    back = figs_tc.load_gallery("smoke")
    assert len(back["pairs"]) == 8
    np.testing.assert_array_equal(back["pairs"][3]["x"], _gallery()["pairs"][3]["x"])
    for name in ("tc_pairs_gallery", "tc_mining_error", "tc_training_curves", "training_curves"):
        assert isinstance(FIGURES[name]("smoke"), Figure)
    made, missing = export_figures("smoke", ["tc_pairs_gallery", "tc_mining_error"], seed=0)
    assert set(made) == {"tc_pairs_gallery", "tc_mining_error"} and not missing
    assert all(p.is_file() for pair in made.values() for p in pair)


def test_missing_files_name_the_notebook(results):
    for name in ("tc_pairs_gallery", "tc_mining_error", "tc_training_curves"):
        with pytest.raises(MissingResultsError, match="02_temporal_correspondence"):
            FIGURES[name]("smoke")
    with pytest.raises(MissingResultsError, match="03_training"):
        FIGURES["training_curves"]("smoke")
    record, _ = pipeline.split_gallery(_gallery())
    save_results("smoke", "02_temporal_correspondence", {"gallery": record, "mining_quality": [], "curve": []}, seed=0)
    with pytest.raises(MissingResultsError, match="arrays of 02_temporal_correspondence") as e:   # json without its npz
        figs_tc.load_gallery("smoke")
    assert e.value.notebook == "02_temporal_correspondence"
    write_npz(artifacts.results_path("smoke", "02", "npz"), {"z0": np.zeros((2, 2, 3), np.uint8)})
    with pytest.raises(ValueError, match="lacks crop"):
        figs_tc.load_gallery("smoke")


def test_gallery_pdf_embeds_crops_at_their_own_resolution(tmp_path):
    """Photo crops resampled to the figure dpi made the committed cpu gallery 2 MB (CI's tracked-file cap);
    embedded natively, the PDF stays near the crops' raw bytes."""
    from pulkit.figures.style import save_figure

    g = _gallery(rounds=(1, 2, 3), per_round=6, sz=103)           # the cpu profile's gallery shape
    raw = sum(p[k].nbytes for p in g["pairs"] for k in ("z", "x"))
    pdf, png = save_figure(figs_tc.tc_pairs_gallery(g), "gallery", "test", 0, out_dir=tmp_path)
    assert pdf.stat().st_size < 1.3 * raw, (pdf.stat().st_size, raw)
