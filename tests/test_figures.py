"""Figure style and export: provenance in the files, byte-identical saves, re-export from results."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image

from pulkit.__main__ import main
from pulkit.core.results import save_results
from pulkit.figures import data as figures_data
from pulkit.figures import registry as figures_registry
from pulkit.figures import style as figures


def sample_figure():
    fig, axes = figures.new_figure(1, 2, width=4)
    axes[0, 0].plot(np.arange(5), np.arange(5) ** 2, color=figures.NR, label="NR")
    axes[0, 0].plot(np.arange(5), np.arange(5), color=figures.BCE, label="BCE")
    axes[0, 0].legend()
    axes[0, 0].set_title("success AUC")
    axes[0, 1].imshow(np.linspace(0, 1, 64).reshape(8, 8))
    return fig


def test_style_is_fixed():
    with matplotlib.rc_context():
        figures.setup_style()
        assert matplotlib.rcParams["font.sans-serif"][0] == "DejaVu Sans"
        assert matplotlib.rcParams["savefig.dpi"] == figures.DPI
    colours = [figures.NOISY_GT, figures.TRUE_GT, figures.NR, figures.BCE]
    assert len(set(colours)) == 4
    r, g, b = matplotlib.colors.to_rgb(figures.NR)
    assert r > g and r > b                                   # NR red
    r, g, b = matplotlib.colors.to_rgb(figures.BCE)
    assert g > r and g > b                                   # BCE green
    r, g, b = matplotlib.colors.to_rgb(figures.TRUE_GT)
    assert b > r and b > g                                   # true GT blue
    r, g, b = matplotlib.colors.to_rgb(figures.NOISY_GT)
    assert g > r and b > r                                   # noisy GT cyan


def test_save_figure_provenance_and_byte_identical(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "git_commit", lambda: "0123abc")   # provenance's is cached per process
    monkeypatch.setattr(figures, "git_dirty", lambda: False)
    with matplotlib.rc_context(figures.style_rc()):
        pdf, png = figures.save_figure(sample_figure(), "fig_test", "smoke", 7, out_dir=tmp_path / "a")
        pdf2, png2 = figures.save_figure(sample_figure(), "fig_test", "smoke", 7, out_dir=tmp_path / "b")
    assert (pdf.name, png.name) == ("fig_test.pdf", "fig_test.png")
    assert pdf.read_bytes() == pdf2.read_bytes()
    assert png.read_bytes() == png2.read_bytes()
    text = Image.open(png).text
    assert text["pulkit:commit"] == "0123abc" and text["pulkit:profile"] == "smoke"
    assert text["pulkit:seed"] == "7" and "commit=0123abc" in text["Description"]
    raw = pdf.read_bytes()
    assert b"commit=0123abc" in raw and b"profile=smoke" in raw and b"seed=7" in raw
    assert b"CreationDate" not in raw and b"ModDate" not in raw
    assert not any(p.name.startswith(".") for p in (tmp_path / "a").iterdir())


def test_save_figure_default_folder_and_bad_name(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_FIGURES", str(tmp_path))
    pdf, png = figures.save_figure(sample_figure(), "fig_x", "cpu", None)
    assert pdf == tmp_path / "cpu" / "fig_x.pdf" and png.is_file()
    assert Image.open(png).text["pulkit:seed"] == "unknown"
    with pytest.raises(ValueError, match="figure name"):
        figures.save_figure(sample_figure(), "../x", "cpu", 0)


def test_plot_sample_frames_draws_boxes(synthetic_split):
    from pulkit.data.sequences import read_got10k

    seqs = read_got10k(synthetic_split)
    seqs[1].boxes[:] = np.nan                                  # an absent target is labelled, not boxed
    fig = figures_data.plot_sample_frames(seqs[:2], n_frames=3)
    axes = fig.get_axes()
    assert len(axes) == 6
    assert all(len(ax.patches) == 1 for ax in axes[:3])
    assert all(len(ax.patches) == 0 and "absent" in ax.texts[0].get_text() for ax in axes[3:])
    x, y, w, h = seqs[0].boxes[0]
    assert axes[0].patches[0].get_xy() == (x - 0.5, y - 0.5) and axes[0].patches[0].get_width() == w
    with pytest.raises(ValueError):
        figures_data.plot_sample_frames([])


def test_export_figures_reports_missing_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PULKIT_FIGURES", str(tmp_path / "figures"))
    from pulkit.core.results import load_results

    def from_saved(profile):
        fig, axes = figures.new_figure(1, 1, width=3)
        axes[0, 0].bar([0, 1], load_results(profile, "04_noise_robustness")["auc"])
        return fig

    def from_missing(profile):
        load_results(profile, "06_qualitative")
        raise AssertionError("unreachable")

    registry = {"fig6_noise_auc": from_saved, "fig5_qualitative": from_missing}
    save_results("smoke", "04_noise_robustness", {"auc": [0.4, 0.5]}, seed=3)
    made, missing = figures_registry.export_figures("smoke", registry=registry)
    assert set(made) == {"fig6_noise_auc"} and set(missing) == {"fig5_qualitative"}
    assert missing["fig5_qualitative"].notebook == "06_qualitative"
    assert Image.open(made["fig6_noise_auc"][1]).text["pulkit:seed"] == "3"   # the results' seed

    monkeypatch.setattr(figures_registry, "FIGURES", registry)
    assert main(["figures", "--profile", "smoke"]) == 3
    err = capsys.readouterr().err
    assert "fig5_qualitative: NOT MADE" in err and "notebooks/06_qualitative.ipynb" in err
    assert main(["figures", "--profile", "smoke", "--only", "nope"]) == 2


def test_export_figures_draws_in_the_house_style_without_leaking_it(tmp_path, monkeypatch):
    """`pulkit figures` must give the notebooks' look (same rcParams), not matplotlib's defaults."""
    import matplotlib

    monkeypatch.setenv("PULKIT_FIGURES", str(tmp_path / "figures"))
    seen = {}

    def probe(profile):
        seen["font"] = list(matplotlib.rcParams["font.sans-serif"])
        seen["dpi"] = matplotlib.rcParams["savefig.dpi"]
        fig, _ = figures.new_figure(1, 1, width=2)
        return fig

    with matplotlib.rc_context({"font.sans-serif": ["Bitstream Vera Sans"], "savefig.dpi": 72}):
        figures_registry.export_figures("smoke", registry={"probe": probe}, seed=0)
        assert matplotlib.rcParams["savefig.dpi"] == 72                     # not leaked to the caller
    assert seen["font"][0] == figures.FONT and seen["dpi"] == figures.DPI


def test_save_figure_failing_png_leaves_the_old_pair(tmp_path, monkeypatch):
    """The PDF and PNG of a figure change together: a PNG render error must not leave a new PDF
    beside the old PNG."""
    pdf, png = figures.save_figure(sample_figure(), "fig_pair", "smoke", 0, out_dir=tmp_path)
    before = pdf.read_bytes(), png.read_bytes()
    fig = sample_figure()
    fig.axes[0].set_title("changed")
    real = fig.savefig

    def savefig(buf, format, **kw):
        if format == "png":
            raise RuntimeError("png backend failed")
        return real(buf, format=format, **kw)

    monkeypatch.setattr(fig, "savefig", savefig)
    with pytest.raises(RuntimeError, match="png backend failed"):
        figures.save_figure(fig, "fig_pair", "smoke", 0, out_dir=tmp_path)
    assert (pdf.read_bytes(), png.read_bytes()) == before


def test_frame_grid_figures_use_their_lower_dpi(tmp_path):
    """Fig. 5 / Fig. 7 (grids of whole frames) save at FIGURE_DPI so the committed files stay small;
    every other figure at the house DPI."""
    assert figures.FIGURE_DPI["fig5_qualitative"] < figures.DPI
    fig = sample_figure()
    w_in = fig.get_size_inches()[0]
    _, png5 = figures.save_figure(fig, "fig5_qualitative", "smoke", 0, out_dir=tmp_path)
    _, png_other = figures.save_figure(fig, "fig_other", "smoke", 0, out_dir=tmp_path)
    assert Image.open(png5).size[0] == round(w_in * figures.FIGURE_DPI["fig5_qualitative"])
    assert Image.open(png_other).size[0] == round(w_in * figures.DPI)
