"""Section B numerically (pulkit.experiments.sectionB_taylor) and its figure (pulkit.figures.sectionB_taylor)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pulkit.core import artifacts
from pulkit.core.config import load_config
from pulkit.core.results import MissingResultsError
from pulkit.experiments import sectionB_taylor as taylor
from pulkit.figures import sectionB_taylor as figs_taylor
from pulkit.losses import balanced_bce

GEOM = {"size": 11, "radius": 2.0, "norm": "l1", "sigma": 1.0}
TINY = taylor.SectionBSettings(sigmas_sweep=(0.0, 1.0), levels=(0.3, 1.2), agree_levels=(0.1, 2.0),
                               b_grid=(0.05, 3.0, 8), loss_sigmas=(0.0,), agree_sigmas=(1.0,), n_eps=300,
                               moment_sigmas=(0.0, 1.0), grid_per_sigma=8, n_population=16)


@pytest.fixture(scope="module")
def data():
    """The whole analysis on the smoke geometry (14 x 14) with tiny settings."""
    return taylor.sectionB(load_config("smoke", seed=3), TINY, progress=False)


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path))
    return tmp_path


def test_geometry_follows_the_model_crops():
    g = taylor.geometry(load_config("cpu"))
    assert (g["size"], g["stride"], g["radius"], g["sigma"], g["norm"]) == (13, 8, 2.0, 1.0, "l1")   # 103 / 199 crops
    assert taylor.geometry(load_config("smoke"))["size"] == 14          # 103 / 207 crops


def test_logits_at_loss_hits_the_level_and_refuses_the_unreachable():
    mask = taylor.label_mask(11, 2.0)
    for b in (0.01, 0.3, np.log(2), 1.0, 4.0):
        x = taylor.logits_at_loss(b, 11, 2.0)
        assert taylor.balanced_bce_np(x, mask) == pytest.approx(b, abs=1e-9)
        t = torch.from_numpy(x)[None, None]
        assert float(balanced_bce(t, torch.from_numpy(mask)[None, None])) == pytest.approx(b, abs=1e-9)
    agree = taylor.logits_at_loss(0.1, 11, 2.0)
    assert (agree[mask > 0] > 0).all() and (agree[mask == 0] < 0).mean() > 0.9   # s > 0: agrees with the label
    assert (taylor.logits_at_loss(2.0, 11, 2.0)[mask > 0] < 0).mean() > 0.9     # s < 0: contradicts it
    with pytest.raises(taylor.Unreachable, match="below what this pattern reaches"):
        taylor.logits_at_loss(0.01, 11, 2.0, noise=2.0)
    with pytest.raises(ValueError, match="finite number > 0"):
        taylor.logits_at_loss(-1.0, 11, 2.0)


def test_direct_and_V_routes_agree_on_one_sample():
    logits = np.stack([taylor.logits_at_loss(b, 11, 2.0, seed=1) for b in (0.05, 0.5, 2.0)])
    logits[1] += np.random.default_rng(0).normal(0, 1, (11, 11))     # also an irregular map
    for sigma in (0.5, 1.5):
        r = taylor.route_agreement(logits, GEOM, sigma, n_eps=400, seed=2, center=(0.25, -0.5))
        assert r["max_abs_direct_vs_V"] < 1e-10
        assert r["max_abs_Eg2_direct_vs_V"] < 1e-10
        assert r["max_abs_pulkit_vs_direct"] < 1e-10
        assert r["max_abs_exact_pulkit_vs_direct"] < 1e-10
        assert np.all(np.asarray(r["taylor_direct"]) <= np.log(2) + 1e-12)
    # the routes really differ from a different sample
    other = taylor.route_agreement(logits, GEOM, 1.5, n_eps=400, seed=3, center=(0.25, -0.5))
    assert np.abs(np.asarray(other["taylor_V"]) - np.asarray(r["taylor_V"])).max() > 1e-6


def test_sigma0_closed_forms_and_error_growing_with_loss():
    b = np.array([0.02, 0.1, 0.3, 0.7, 1.5, 3.0])
    logits = np.stack([taylor.logits_at_loss(v, 11, 2.0) for v in b])
    r = taylor.nr_losses(logits, 0.0, GEOM)
    np.testing.assert_allclose(r["exact"], b, atol=1e-9)                        # exact = b at sigma 0
    np.testing.assert_allclose(r["taylor"], -np.log(1 - b + b * b / 2), atol=1e-9)
    err = np.abs(r["taylor"] - r["exact"])
    assert err[b <= 0.1].max() < 1e-3 and np.all(np.diff(err) > 0)
    assert r["taylor"].max() <= np.log(2) + 1e-12                              # the Taylor form saturates


def test_error_at_fixed_exact_loss(data):
    ev = data["error_vs_sigma"]
    exact = np.array(taylor.el_none(ev["exact"]), float)
    err = np.abs(np.array(taylor.el_none(ev["error"]), float))
    ok = np.isfinite(exact)
    levels = np.broadcast_to(np.array(ev["levels"])[:, None], exact.shape)
    np.testing.assert_allclose(exact[ok], levels[ok], atol=1e-7)             # the solved levels
    assert not ok[0, 1]                  # L = 0.3 is below the exact loss's floor at sigma = 1: None, not faked
    assert ev["exact"][0][1] is None and ok[1].all()
    assert err[0, 0] < err[1, 0] and err[0, 0] < err[1, 1]                   # larger loss, larger error


def test_giveup_sign_change_at_b_equal_1(data):
    gu = data["giveup"]
    i0 = gu["sigmas"].index(0.0)
    assert gu["b_giveup"][i0] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(gu["dL_db"][i0], gu["analytic_dL_db_sigma0"], atol=1e-6)
    np.testing.assert_allclose(gu["loss"][i0], gu["analytic_loss_sigma0"], atol=1e-9)
    b = np.asarray(gu["b"])
    assert np.all(gu["dL_db"][i0][b < 0.99] > 0) and np.all(gu["dL_db"][i0][b > 1.01] < 0)
    ch = gu["sign_changes"][i0]
    assert len(ch) == 1 and ch[0]["kind"] == "giveup" and ch[0]["Eg"] == pytest.approx(-1.0, abs=1e-6)
    pop = data["population"]
    assert pop["giveup_frac"] == pytest.approx(float((np.asarray(pop["Eg"]) < -1).mean()))
    assert pop["frac_b_above_1"] == pytest.approx(float((np.asarray(pop["b"]) > 1).mean()))


def test_moments_sums_centroids_and_checks():
    settings = taylor.SectionBSettings(moment_sigmas=(0.0, 0.5, 1.0), offset=(0.375, -0.25), grid_per_sigma=12)
    mo = taylor.moments({"size": 13, "radius": 2.0, "norm": "l1"}, settings)
    assert mo["mbar_sum"][0] == mo["hard_mask"].sum()
    for s, total, c in zip(mo["sigmas"][1:], mo["mbar_sum"][1:], mo["centroid"][1:]):
        assert total == pytest.approx(mo["area"], abs=1e-3)                   # E|P| = 2 r^2 away from the border
        assert c == pytest.approx([0.375, -0.25], abs=0.01)                  # the soft label follows the offset
    assert max(mo["max_abs_diag"]) < 1e-12 and max(mo["max_asym"]) < 1e-12
    assert min(mo["min_cov_eig"]) > -1e-9
    assert max(v for v in mo["grid_max_abs_mbar"] if v is not None) < 0.02
    assert np.asarray(mo["V_slice"][1]).max() <= np.asarray(mo["mbar"][1]).max() + 1e-12
    assert mo["slice_cell"] == [6, 6]


def test_summary_is_flat_and_says_what_it_found(data):
    s = data["summary"]
    assert all(not isinstance(v, (dict, list)) for v in s.values())
    assert s["max_abs_direct_vs_V"] < 1e-10 and s["b_giveup_sigma0"] == pytest.approx(1.0, abs=1e-6)
    assert s["map_size"] == 14 and s["taylor_max"] <= np.log(2) + 1e-12


def test_save_load_and_figure_from_files(data, results):
    cfg = load_config("smoke", seed=3)
    json_path = taylor.write_results(cfg, data)
    npz_path = artifacts.results_path("smoke", "05", "npz")
    assert json_path.name == "05_sectionB_taylor.json" and npz_path.name == "05_sectionB_taylor.npz"
    first = npz_path.read_bytes()
    taylor.write_results(cfg, data)
    assert npz_path.read_bytes() == first                                     # byte-reproducible arrays
    back = figs_taylor.load_sectionB("smoke")
    np.testing.assert_allclose(back["moments"]["V"], np.asarray(data["moments"]["V"]), atol=1e-7)
    assert back["summary"] == pytest.approx(data["summary"])
    fig = figs_taylor.sectionB_taylor_from_results("smoke")
    assert len([ax for ax in fig.axes if ax.get_images()]) == 2 * len(TINY.moment_sigmas)
    from pulkit.figures.registry import FIGURES

    assert FIGURES["sectionB_taylor"]("smoke").axes
    assert figs_taylor.plot_moments(back).axes


def test_figure_from_the_data_dict(data):
    fig = figs_taylor.sectionB_taylor(data)
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "(b)" in titles and "(c)" in titles and "(d)" in titles
    assert figs_taylor.plot_moments(data).axes
    with pytest.raises(ValueError, match="lacks"):
        figs_taylor.sectionB_taylor({"geometry": {}})
    with pytest.raises(TypeError, match="dict"):
        figs_taylor.sectionB_taylor([1, 2])
    no_v = {**data, "moments": {k: v for k, v in data["moments"].items() if k != "V"}}
    with pytest.raises(ValueError, match="full V"):
        figs_taylor.plot_moments(no_v)


def test_missing_results_name_notebook_05(data, results):
    with pytest.raises(MissingResultsError, match="05_sectionB_taylor") as e:
        figs_taylor.sectionB_taylor_from_results("smoke")
    assert e.value.notebook == "05_sectionB_taylor" and "--only 05" in str(e.value)
    taylor.write_results(load_config("smoke"), data)
    arrays = artifacts.results_path("smoke", "05", "npz")
    arrays.unlink()
    with pytest.raises(MissingResultsError, match="05_sectionB_taylor.npz"):
        figs_taylor.load_sectionB("smoke")
    arrays.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="05_sectionB_taylor.npz"):
        figs_taylor.load_sectionB("smoke")
