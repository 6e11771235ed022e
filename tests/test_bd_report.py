"""Notebook 01's steps (pulkit.experiments.background_discrimination): run configs, the three BD runs on a micro setup, logs as tables,
hardness by bank, summary, and the results files' round trip and errors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pulkit.core import artifacts
from pulkit.core.config import load_config
from pulkit.core.io import npz_bytes
from pulkit.core.results import MissingResultsError, load_results, save_results
from pulkit.data.sequences import Sequence
from pulkit.experiments import background_discrimination as bd_report
from pulkit.figures import background_discrimination as figs_bd
from pulkit.method.bd import bd_batches, log_path


@pytest.fixture
def env(tmp_path, monkeypatch, textured_videos):
    """Data, results and checkpoints under tmp_path; a micro config (crop 95, 2 AlexNet steps, 1 CIResNet step)."""
    for var, sub in (("PULKIT_DATA", "data"), ("PULKIT_RESULTS", "results"), ("PULKIT_CHECKPOINTS", "ckpt")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    cfg = load_config("smoke", {
        "bd": dict(steps=2, steps_ciresnet22=1, batch_size=4, bank_refresh=2, checkpoint_every=1, log_every=1,
                   crop_sz=95, candidates_per_frame=2, texture_prior=False, max_candidates=100, exclude_frames=1, separation_frames=1,
                   bank_batch=16),
    }, device="cpu")
    videos = textured_videos(tmp_path / "frames")
    return cfg, [Sequence(f"vid{v}", frames, None) for v, frames in enumerate(videos)]


def test_run_configs_and_checkpoints():
    cfg = load_config("smoke", {"bd": dict(steps=7, steps_ciresnet22=3)})
    c = bd_report.run_config(cfg, "ahm_ciresnet22")
    assert (c.model.backbone, c.bd.sampler, c.bd.steps) == ("ciresnet22", "ahm", 3)
    c = bd_report.run_config(cfg, "rss_alexnet")
    assert (c.model.backbone, c.bd.sampler, c.bd.steps) == ("alexnet", "rss", 7)
    same = bd_report.run_config(cfg.override({"bd": dict(steps_ciresnet22=None)}), "ahm_ciresnet22")
    assert same.bd.steps == 7
    assert bd_report.checkpoint("smoke", "ahm_ciresnet22").name == "bd_ahm_ciresnet22.pt"
    table = bd_report.runs_table(cfg)
    assert list(table.index) == list(bd_report.RUNS) and table.loc["ahm_ciresnet22", "steps"] == 3
    with pytest.raises(ValueError, match="unknown BD run"):
        bd_report.run_config(cfg, "ahm_resnet50")


def test_select_runs_for_notebook_01_parameter():
    assert bd_report.select_runs(None) == list(bd_report.RUNS)
    # RUNS order whatever order the sweep names them in; ResPUL's CIResNet-22 BD can be skipped
    assert bd_report.select_runs(["rss_alexnet", "ahm_alexnet"]) == ["ahm_alexnet", "rss_alexnet"]
    assert bd_report.select_runs(["ahm_ciresnet22", "rss_alexnet", "ahm_alexnet"]) == list(bd_report.RUNS)
    with pytest.raises(ValueError, match="unknown BD run.*ahm_resnet50"):
        bd_report.select_runs(["ahm_alexnet", "rss_alexnet", "ahm_resnet50"])
    with pytest.raises(ValueError, match=r"\[.rss_alexnet.\] are required"):
        bd_report.select_runs(["ahm_alexnet", "ahm_ciresnet22"])
    with pytest.raises(ValueError, match="required"):
        bd_report.select_runs("ahm_alexnet")


def test_three_runs_curves_hardness_summary_and_files(env):
    cfg, seqs = env
    assert bd_report.checkpoint_status(cfg, "ahm_alexnet") == "missing"
    ckpts = {name: bd_report.train_run(cfg, name, seqs, device="cpu", progress=False) for name in bd_report.RUNS}
    assert {p.name for p in ckpts.values()} == {"bd_ahm_alexnet.pt", "bd_rss_alexnet.pt", "bd_ahm_ciresnet22.pt"}
    assert {bd_report.checkpoint_status(cfg, n) for n in ckpts} == {"complete"}
    stamp = ckpts["ahm_alexnet"].stat().st_mtime_ns           # complete: a second call trains nothing
    assert bd_report.train_run(cfg, "ahm_alexnet", seqs, device="cpu", progress=False) == ckpts["ahm_alexnet"]
    assert ckpts["ahm_alexnet"].stat().st_mtime_ns == stamp
    other = cfg.override({"bd": dict(temperature=0.2)})        # another config: retrained, not refused
    assert bd_report.checkpoint_status(other, "rss_alexnet") == "stale"
    bd_report.train_run(other, "rss_alexnet", seqs, device="cpu", progress=False)
    assert bd_report.checkpoint_status(other, "rss_alexnet") == "complete"
    assert bd_report.checkpoint_status(cfg, "rss_alexnet") == "stale"
    bd_report.train_run(cfg, "rss_alexnet", seqs, device="cpu", progress=False)

    curves = bd_report.training_curves(ckpts)
    assert curves["ahm_alexnet"]["step"].tolist() == [1, 2] and curves["ahm_ciresnet22"]["step"].tolist() == [1]
    assert all(np.isfinite(c["loss"]).all() and c["hardness"].between(-1, 1).all() for c in curves.values())

    hardness = bd_report.hardness_by_bank(cfg, ckpts, seqs, n_batches=6, seed=0, device="cpu", progress=False)
    assert set(hardness) == set(bd_report.HARDNESS_BANKS)
    table = bd_report.hardness_table(hardness)
    assert table.loc[("ahm_alexnet", "AHM"), "batches"] == 6
    # AHM takes the anchor's nearest neighbours: never easier than uniform draws under the same bank
    assert table.loc[("ahm_alexnet", "AHM"), "mean"] > table.loc[("ahm_alexnet", "RSS"), "mean"]

    batches = bd_batches(bd_report.run_config(cfg, "ahm_alexnet"), ckpts["ahm_alexnet"], seqs, seed=0,
                         device="cpu", progress=False)
    browse = bd_report.browse_batches(cfg, ckpts["ahm_alexnet"], seqs, n=2, seed=0, device="cpu")
    assert len(browse) == 2 and np.array_equal(browse[0]["ahm"], batches["ahm"]["crops"])
    assert browse[1]["rss"].shape == (4, 95, 95, 3)
    record = bd_report.results_record(cfg, curves, hardness, batches)
    s = record["summary"]
    assert s["candidates"] == 3 * 4 * 2 and s["batch_size"] == 4 and s["hardness_batches"] == 6
    assert s["hardness_gap"] == pytest.approx(s["hardness_ahm"] - s["hardness_rss"])
    assert "hardness_ahm_rss_bank" in s and s["final_loss_ahm_alexnet"] == pytest.approx(
        bd_report.final_loss(curves["ahm_alexnet"]))
    assert not any("path" in c for c in record["batches"]["ahm"]["candidates"])   # no machine paths in results
    json.dumps(record)                                                           # JSON-ready as it is

    json_path = bd_report.write_results(cfg, record, batches)
    npz_path = artifacts.results_path(cfg.profile, "01", "npz")
    assert json_path.name == "01_background_discrimination.json" and npz_path.name == "01_background_discrimination.npz"
    first = npz_path.read_bytes()
    bd_report.write_results(cfg, record, batches)
    assert npz_path.read_bytes() == first                                        # byte-reproducible
    back = figs_bd.load_batches(cfg.profile)
    for name in ("ahm", "rss"):
        assert np.array_equal(back[name]["crops"], batches[name]["crops"])
        assert back[name]["cand_ids"] == batches[name]["cand_ids"].tolist()
    saved = load_results(cfg.profile, "01_background_discrimination")
    assert saved["summary"] == pytest.approx(s)
    assert saved["provenance"]["profile"] == cfg.profile


def test_read_log_and_final_loss(tmp_path):
    ck = tmp_path / "bd.pt"
    with pytest.raises(FileNotFoundError, match="01_background_discrimination"):
        bd_report.read_log(ck)
    log_path(ck).write_text(json.dumps({"step": 2, "loss": 3.0, "hardness": 0.5}) + "\n"
                            + json.dumps({"step": 1, "loss": 4.0, "hardness": 0.4}) + "\n")
    assert bd_report.read_log(ck)["step"].tolist() == [1, 2]
    log_path(ck).write_text('{"step": 1, "loss": 4.0, "hardness": 0.4}\n{"step": 2, "lo\n')
    with pytest.raises(ValueError, match=r"bd.jsonl, line 2"):
        bd_report.read_log(ck)
    log_path(ck).write_text('{"step": 1, "hardness": 0.4}\n')
    with pytest.raises(ValueError, match="loss"):
        bd_report.read_log(ck)
    curve = pd.DataFrame({"step": np.arange(1, 101), "loss": np.r_[np.full(90, 5.0), np.full(10, 1.0)]})
    assert bd_report.final_loss(curve) == pytest.approx(1.0)                    # the last 10 % of steps
    assert bd_report.final_loss(curve.iloc[:1]) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="empty"):
        bd_report.final_loss(curve.iloc[:0])


def test_missing_or_inconsistent_results_name_notebook_01(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path))
    with pytest.raises(MissingResultsError, match="01_background_discrimination") as e:
        figs_bd.load_batches("smoke")
    assert e.value.notebook == "01_background_discrimination"
    record = {"batches": {"ahm": {"cand_ids": [0, 1]}, "rss": {"cand_ids": [2, 3]}}}
    save_results("smoke", "01_background_discrimination", record)
    with pytest.raises(MissingResultsError, match="--only 01") as e:           # the JSON without its npz
        figs_bd.load_batches("smoke")
    assert e.value.path.name == "01_background_discrimination.npz"
    crops = {"ahm": {"crops": np.zeros((2, 5, 5, 3), np.uint8)}, "rss": {"crops": np.zeros((3, 5, 5, 3), np.uint8)}}
    with pytest.raises(ValueError, match="rss crops"):
        bd_report.write_results(load_config("smoke"), record, crops)
    artifacts.results_path("smoke", "01", "npz").write_bytes(npz_bytes({"ahm": np.zeros((2, 5, 5, 3), np.uint8),
                                                                     "rss": np.zeros((3, 5, 5, 3), np.uint8)}))
    with pytest.raises(ValueError, match="different runs"):
        figs_bd.load_batches("smoke")
    artifacts.results_path("smoke", "01", "npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="01_background_discrimination.npz: not a readable"):
        figs_bd.load_batches("smoke")
