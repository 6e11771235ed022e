"""Notebooks 02 / 03's steps on a micro profile: upstream errors name the notebook, runs resume,
the mining report never touches evaluation sequences, results and figures rebuild from files."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import use_output_dirs

from pulkit.core import artifacts
from pulkit.core.config import load_config
from pulkit.core.results import MissingResultsError, load_results
from pulkit.experiments import temporal_correspondence as pipeline
from pulkit.experiments import training
from pulkit.models.net import build_net, load_net, save_checkpoint

PROFILE = "smoke"


def micro_cfg(**data):
    """Two 8-frame synthetic training videos (one val video), random-net-friendly mining, 1-step rounds."""
    return load_config(PROFILE, {
        "data": {**dict(train_sources=("synthetic",), eval_sources=("synthetic",), synthetic_train_videos=2,
                        synthetic_val_videos=1, synthetic_frames=8, synthetic_width=96, synthetic_height=72,
                        synthetic_distractors=1, max_frames=None), **data},
        "model": dict(exemplar_sz=103, instance_sz=167),
        "mining": dict(spans=(1, 2), candidates_per_video=2, start_stride=2, scale_num=1, response_up=4,
                       confidence="cosine", min_response=-1.0, fb_iou=0.0, eval_k=(1, 2), quality_videos=1),
        "tc": dict(rounds=2, steps_per_round=1, batch_size=3, checkpoint_every=1, log_every=1),
        "bd": dict(bank_batch=8, exclude_frames=2, separation_frames=2, bank_refresh=10),
        "supervised": dict(steps=1, batch_size=2, checkpoint_every=1, log_every=1),
    }, device="cpu")


def fake_bd(cfg, backbone="alexnet", complete=True):
    """A BD-like checkpoint (random weights) where notebook 01 would write it."""
    torch.manual_seed(0)
    c = cfg.override({"model": {"backbone": backbone}})
    return save_checkpoint(artifacts.bd_checkpoint(PROFILE, "ahm", backbone), build_net(c.model), c,
                           stage="bd/ahm", step=1, complete=complete)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """AlexPUL's two micro rounds, trained once for the tests below."""
    root = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as mp:
        use_output_dirs(mp, root)
        cfg = micro_cfg()
        fake_bd(cfg)
        rounds = pipeline.run_alexpul(cfg, device="cpu", progress=False)
        yield root, cfg, rounds


@pytest.fixture
def env(trained, monkeypatch):
    root, cfg, rounds = trained
    use_output_dirs(monkeypatch, root)
    return cfg, rounds


# --------------------------------------------------------------------------- upstream errors
def test_missing_bd_checkpoint_names_notebook_01(tmp_path, monkeypatch):
    use_output_dirs(monkeypatch, tmp_path)
    cfg = micro_cfg()
    for run in (pipeline.run_alexpul, training.run_respul, training.run_tc_bce_ablation, pipeline.mining_report):
        with pytest.raises(MissingResultsError, match="notebooks/01_background_discrimination.ipynb") as e:
            run(cfg, device="cpu", progress=False)
        assert e.value.notebook == "01_background_discrimination" and "--only 01" in str(e.value)
        assert e.value.path.name.startswith("bd_ahm_")
    fake_bd(cfg, complete=False)                              # an interrupted notebook 01
    with pytest.raises(MissingResultsError, match="incomplete"):
        pipeline.run_alexpul(cfg, device="cpu", progress=False)


def test_missing_tc_rounds_name_their_notebook(tmp_path, monkeypatch):
    use_output_dirs(monkeypatch, tmp_path)
    cfg = micro_cfg()
    fake_bd(cfg)
    with pytest.raises(MissingResultsError, match="02_temporal_correspondence") as e:
        pipeline.mining_models(cfg)                            # round 2's miner is round 1's TC model
    assert e.value.path == artifacts.tc_checkpoint(PROFILE, 1, "nr", "alexnet")
    with pytest.raises(MissingResultsError, match="03_training"):
        pipeline.round_records(cfg, "nr", "ciresnet22")
    with pytest.raises(MissingResultsError, match="03_training"):
        training.training_runs(cfg, "supervised")


def test_rounds_from_an_older_bd_checkpoint_are_retrained(tmp_path, monkeypatch):
    use_output_dirs(monkeypatch, tmp_path)
    cfg = micro_cfg().override({"tc": {"rounds": 1}})
    fake_bd(cfg)
    pipeline.run_alexpul(cfg, device="cpu", progress=False)
    assert pipeline.stale_round(cfg, "nr", "alexnet") is None
    first = artifacts.tc_checkpoint(PROFILE, 1).read_bytes()
    torch.manual_seed(1)                                       # notebook 01 re-ran: another BD checkpoint
    save_checkpoint(artifacts.bd_checkpoint(PROFILE), build_net(cfg.model), cfg, stage="bd/ahm", step=1, complete=True)
    assert pipeline.stale_round(cfg, "nr", "alexnet") == 1
    pipeline.run_alexpul(cfg, device="cpu", progress=False)
    assert pipeline.stale_round(cfg, "nr", "alexnet") is None
    assert artifacts.tc_checkpoint(PROFILE, 1).read_bytes() != first


# --------------------------------------------------------------------------- AlexPUL (02)
def test_alexpul_writes_the_artifacts_names_and_a_second_call_trains_nothing(env, monkeypatch):
    cfg, rounds = env
    assert list(rounds["round"]) == [1, 2] and list(rounds["span"]) == [1, 2]
    assert list(rounds["checkpoint"]) == ["tc_nr_alexnet/tc_round1.pt", "tc_nr_alexnet/tc_round2.pt"]
    for r in (1, 2):
        assert artifacts.tc_checkpoint(PROFILE, r).is_file() and artifacts.pairs_table(PROFILE, r).is_file()
        assert load_net(artifacts.tc_checkpoint(PROFILE, r), "cpu").arch["backbone"] == "alexnet"
    assert (rounds["pairs"] > 0).all() and rounds["fb_pass_rate"].between(0, 1).all()
    assert rounds["final_giveup_frac"].between(0, 1).all() and np.isfinite(rounds["final_loss"]).all()
    assert not any(c.startswith("/") for c in rounds["checkpoint"])                  # names, not machine paths

    from pulkit.method import tc

    def boom(*a, **k):
        raise AssertionError("a complete round was mined or trained again")
    monkeypatch.setattr(tc, "mine_pairs", boom)
    monkeypatch.setattr(tc, "train", boom)
    again = pipeline.run_alexpul(cfg, device="cpu", progress=False)
    pd.testing.assert_frame_equal(again, rounds)


def test_mining_report_uses_no_evaluation_sequence_and_is_cached(env, monkeypatch):
    cfg, _ = env
    report = pipeline.mining_report(cfg, device="cpu", progress=False)
    evaluation = pipeline.evaluation_names(cfg)
    assert evaluation and all(n.startswith("synthetic_s2000_") for n in evaluation)       # the val split
    assert not set(report["sequence"]) & evaluation and not set(report.attrs["sequences"]) & evaluation
    assert report.attrs["sequences"] == ["synthetic_s1000_0000"]            # quality_videos = 1, train split
    assert set(report["round"]) == {1, 2} and set(report["k"]) == {1, 2}
    assert list(report[report["sequence"] == "mean"].groupby("round")["model"].first()) == ["BD (AHM)", "TC round 1"]
    table = pipeline.error_by_round(report)
    assert table.shape == (2, 2) and (table.to_numpy() >= 0).all()

    from pulkit.method import mining

    monkeypatch.setattr(mining, "mining_quality", lambda *a, **k: pytest.fail("measured again"))
    pd.testing.assert_frame_equal(pipeline.mining_report(cfg, device="cpu", progress=False), report)


def test_quality_sequences_exclude_evaluation_and_unlabeled_video(tmp_path, monkeypatch, shared_root):
    use_output_dirs(monkeypatch, tmp_path)
    cfg = micro_cfg(train_sources=("synthetic", "shared"), eval_sources=("synthetic", "shared"), max_frames=4)
    cfg = cfg.override({"mining": {"quality_videos": None}})
    names = [s.name for s in pipeline.quality_sequences(cfg)]
    assert names == ["synthetic_s1000_0000", "synthetic_s1000_0001"]
    for n in ("otb/Crossing", "otb/Deer", "vot/bag", "otb/Skating1", "vot/ball1", "synthetic_s2000_0000"):
        assert n not in names
    assert set(cfg.data.shared_eval) <= pipeline.evaluation_names(cfg)


def test_gallery_and_results_rebuild_from_files(env):
    cfg, rounds = env
    gallery = pipeline.gallery_examples(cfg, per_round=3)
    assert gallery["pairs"] and {p["round"] for p in gallery["pairs"]} == {1, 2}
    table1 = pd.read_csv(artifacts.pairs_table(PROFILE, 1))
    for p in gallery["pairs"]:
        assert p["z"].shape == p["x"].shape == (103, 103, 3) and p["z"].dtype == np.uint8
        assert p["frame_b"] - p["frame_a"] == p["k"] >= 1
    p = next(p for p in gallery["pairs"] if p["round"] == 1)
    assert ((table1["video"] == p["video"]) & (table1["frame_a"] == p["frame_a"]) & (table1["k"] == p["k"])).any()

    report = pipeline.mining_report(cfg, device="cpu", progress=False)
    path = pipeline.write_results(cfg, rounds, report, gallery)
    saved = load_results(PROFILE, "02_temporal_correspondence")
    assert path.name == "02_temporal_correspondence.json" and artifacts.results_path(PROFILE, "02", "npz").is_file()
    s = saved["summary"]
    assert s["rounds"] == 2 and s["pairs_round1"] == rounds["pairs"][0]
    assert "center_error_k10_round1" not in s                      # k = 10 was not measured (eval_k = 1, 2)
    assert {r["round"] for r in saved["curve"]} == {1, 2}
    assert not any(k in rec for rec in saved["curve"] for k in ("elapsed", "pairs_per_s"))   # no timings
    from pulkit.core import paths
    text = path.read_text()
    assert str(paths.checkpoints_dir(PROFILE)) not in text and str(paths.data_dir()) not in text

    from matplotlib.figure import Figure

    from pulkit.figures.registry import FIGURES
    for name in ("tc_pairs_gallery", "tc_mining_error", "tc_training_curves"):
        assert isinstance(FIGURES[name](PROFILE), Figure)


def test_summary_reports_the_k10_trend_as_measured():
    rounds = pd.DataFrame({"round": [1, 2, 3], "pairs": [10, 20, 30], "final_giveup_frac": [0.5, 0.2, np.nan]})
    report = pd.DataFrame([{"round": r, "sequence": "mean", "k": k, "center_error": ce}
                           for r, ce in ((1, 30.0), (2, 35.0), (3, 20.0)) for k in (1, 10)])
    s = pipeline.tc_summary(rounds, report)
    assert s["center_error_k10_round1"] == 30.0 and s["center_error_k10_round3"] == 20.0
    assert s["center_error_k10_falls"] is True and s["pairs_round2"] == 20 and s["giveup_frac_round3"] is None
    rising = report.assign(center_error=report["center_error"].where(report["round"] != 3, 40.0))
    assert pipeline.tc_summary(rounds, rising)["center_error_k10_falls"] is False
    unmeasured = report.assign(center_error=report["center_error"].where(report["round"] != 1, np.nan))
    assert pipeline.tc_summary(rounds, unmeasured)["center_error_k10_falls"] is None
    assert "falls" in pipeline.describe_mining(report)


def test_pick_pairs_spreads_over_k_and_confidence():
    t = pd.DataFrame({"video": ["v"] * 10, "frame_a": range(10), "k": [1] * 5 + [3] * 5,
                      "confidence": np.linspace(0.1, 1.0, 10)})
    picked = pipeline.pick_pairs(t, 3)
    assert len(picked) == 3 and set(picked["k"]) == {1, 3}                   # the shortest and the longest steps
    assert picked["confidence"].iloc[0] == pytest.approx(0.1) and picked["confidence"].iloc[-1] == pytest.approx(1.0)
    assert len(pipeline.pick_pairs(t, 50)) == 10 and len(pipeline.pick_pairs(t.iloc[:0], 3)) == 0


# --------------------------------------------------------------------------- 03's runs
def test_training_runs_resume_and_save(env, monkeypatch):
    cfg = env[0].override({"tc": {"rounds": 1}})          # one round each: the rounds machinery is tested above
    fake_bd(cfg, "ciresnet22")
    respul = training.run_respul(cfg, device="cpu", progress=False)
    assert list(respul["checkpoint"]) == ["tc_nr_ciresnet22/tc_round1.pt"]
    bce = training.run_tc_bce_ablation(cfg, device="cpu", progress=False)
    ck = torch.load(artifacts.tc_checkpoint(PROFILE, 1, "bce", "alexnet"), map_location="cpu", weights_only=False)
    assert ck["config"]["tc"]["loss"] == "bce" and len(bce) == 1
    sup = training.run_supervised_baselines(cfg, device="cpu", progress=False)
    assert list(sup["backbone"]) == ["alexnet", "ciresnet22"]
    assert all(artifacts.supervised_checkpoint(PROFILE, "bce", b).is_file() for b in ("alexnet", "ciresnet22"))

    from pulkit.method import supervised, tc

    def boom(*a, **k):
        raise AssertionError("a complete run was trained again")
    monkeypatch.setattr(tc, "train", boom)
    monkeypatch.setattr(tc, "mine_pairs", boom)
    monkeypatch.setattr(supervised, "train", boom)
    training.run_respul(cfg, device="cpu", progress=False)
    training.run_tc_bce_ablation(cfg, device="cpu", progress=False)
    training.run_supervised_baselines(cfg, device="cpu", progress=False)

    runs = training.training_runs(cfg)
    assert [r["name"] for r in runs] == ["ResPUL", "TC-BCE (ablation)", "SiamFC (supervised)", "SiamDW (supervised)"]
    by = {r["name"]: r for r in runs}
    assert by["ResPUL"]["steps"] == 1 and by["SiamFC (supervised)"]["steps"] == 1
    assert 0 <= by["ResPUL"]["final_giveup_frac"] <= 1 and by["TC-BCE (ablation)"]["final_giveup_frac"] is None
    assert all(r["curve"] for r in runs)
    path = training.write_results(cfg, runs)
    saved = json.loads(path.read_text())
    assert saved["summary"]["respul_steps"] == 1 and "siamdw_final_loss" in saved["summary"]
    assert saved["runs"][2]["checkpoints"] == ["sup_bce_alexnet.pt"]

    from matplotlib.figure import Figure

    from pulkit.figures.registry import FIGURES
    assert isinstance(FIGURES["training_curves"](PROFILE), Figure)
