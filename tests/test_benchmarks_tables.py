"""Notebook 07's tables: assembly from constructed results, missing trackers, acceptance numbers,
the ablation table, reference trackers, and a tiny real run of every benchmark."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pulkit.core import artifacts
from pulkit.core.config import load_config
from pulkit.core.io import to_json
from pulkit.core.results import MissingResultsError
from pulkit.data.sequences import read_got10k, read_vot
from pulkit.experiments import benchmarks as bt


# --------------------------------------------------------------------------- constructed results
def otb(name, per_seq: dict[str, float]) -> dict:
    """An ``evaluate_otb``-shaped result with the given per-sequence success AUCs."""
    seqs = {s: {"success_auc": a, "precision": a / 2, "success_rate": a, "frames": 10} for s, a in per_seq.items()}
    return {"benchmark": "otb", "tracker": name, "success_auc": float(np.mean(list(per_seq.values()))),
            "precision": float(np.mean(list(per_seq.values()))) / 2, "frames": 10 * len(seqs), "sequences": seqs}


GROUPS = {"synthetic": ["synth_a", "synth_b"], "real": ["otb/Deer"]}


def results_for(alex=(0.6, 0.5, 0.4), static=(0.2, 0.2, 0.2), reference=(0.3, 0.35, 0.35)) -> dict:
    names = ["synth_a", "synth_b", "otb/Deer"]
    return {"AlexPUL": otb("AlexPUL", dict(zip(names, alex))),
            bt.STATIC: otb(bt.STATIC, dict(zip(names, static))),
            bt.RANDOM_BN: otb(bt.RANDOM_BN, dict(zip(names, reference)))}


MISSING = {"ResPUL": {"checkpoint": "tc_nr_ciresnet22/round2.pt", "notebook": "03_training"}}


def test_benchmark_table_columns_and_missing_rows():
    df = bt.benchmark_table("otb", results_for(), MISSING)
    assert list(df.columns) == ["success_auc", "precision", "frames", "status"] and df.index.name == "tracker"
    assert list(df.index) == ["AlexPUL", bt.STATIC, bt.RANDOM_BN, "ResPUL"]
    assert df.loc["AlexPUL", "success_auc"] == pytest.approx(0.5) and df.loc["AlexPUL", "status"] == "ok"
    assert df.loc[bt.STATIC, "status"] == "reference"
    assert math.isnan(df.loc["ResPUL", "success_auc"])
    assert df.loc["ResPUL", "status"] == "missing: run notebooks/03_training.ipynb (tc_nr_ciresnet22/round2.pt)"
    got = {"benchmark": "got10k", "ao": 0.4, "sr50": 0.3, "sr75": 0.1, "frames": 20}
    vot = {"benchmark": "vot", "accuracy": 0.5, "robustness": 0.1, "eao": float("nan"), "frames": 20}
    assert list(bt.benchmark_table("got10k", {"x": got}).columns) == ["ao", "sr50", "sr75", "frames", "status"]
    assert list(bt.benchmark_table("vot", {"x": vot}).columns) == ["accuracy", "robustness", "eao", "frames", "status"]
    with pytest.raises(ValueError, match="'vot' result in the 'otb' table"):
        bt.benchmark_table("otb", {"x": vot})
    with pytest.raises(ValueError, match="unknown benchmark"):
        bt.benchmark_table("lasot", {})


def test_acceptance_numbers():
    acc = bt.acceptance(results_for(), GROUPS)
    assert acc["available"] and acc["targets"] == {"ratio_vs_static": 1.5, "diff_vs_random_bn": 0.10}
    a = acc["sets"]["all"]
    assert a["auc"] == pytest.approx(0.5) and a["static_auc"] == pytest.approx(0.2)
    assert a["ratio_vs_static"] == pytest.approx(2.5) and a["diff_vs_random_bn"] == pytest.approx(0.5 - 1.0 / 3)
    assert a["ratio_met"] and a["diff_met"]
    s, r = acc["sets"]["synthetic"], acc["sets"]["real"]
    assert s["auc"] == pytest.approx(0.55) and s["ratio_vs_static"] == pytest.approx(2.75)
    assert r["diff_vs_random_bn"] == pytest.approx(0.05) and not r["diff_met"] and r["ratio_met"]
    assert acc["summary"]["ratio_vs_static"] == pytest.approx(2.5) and acc["summary"]["diff_target_met"] is True
    table = bt.acceptance_table(acc)
    assert list(table.index) == ["all", "synthetic", "real"] and table.loc["real", "n_sequences"] == 1


def test_acceptance_targets_can_fail_and_be_unavailable():
    acc = bt.acceptance(results_for(alex=(0.25, 0.25, 0.25)), GROUPS)
    assert acc["sets"]["all"]["ratio_vs_static"] == pytest.approx(1.25) and not acc["summary"]["ratio_target_met"]
    acc = bt.acceptance(results_for(static=(0.0, 0.0, 0.0)), GROUPS)
    assert acc["sets"]["all"]["ratio_vs_static"] is None and not acc["sets"]["all"]["ratio_met"]
    res = results_for()
    del res["AlexPUL"]
    acc = bt.acceptance(res, GROUPS)
    assert not acc["available"] and "AlexPUL" in acc["reason"] and acc["summary"] == {"acceptance_available": False}
    with pytest.raises(KeyError, match="otb/Crossing"):
        bt.subset_auc(results_for()["AlexPUL"], ["otb/Crossing"])


def test_ablation_table():
    res = {"BD only (AHM)": otb("BD only (AHM)", {"s": 0.30}), "BD only (RSS)": otb("BD only (RSS)", {"s": 0.25}),
           "TC-NR round 1": otb("TC-NR round 1", {"s": 0.40}), "TC-BCE round 1": otb("TC-BCE round 1", {"s": 0.35}),
           "TC-NR round 2": otb("TC-NR round 2", {"s": 0.45}), "AlexPUL": otb("AlexPUL", {"s": 0.45})}
    res["TC-NR round 2"]["same_checkpoint_as"] = "AlexPUL"
    missing = {"TC-BCE round 2": {"checkpoint": "tc_bce_alexnet/round2.pt", "notebook": "03_training"},
               "SiamFC (supervised)": {"checkpoint": "sup_bce_alexnet.pt", "notebook": "03_training"}}
    df = bt.ablation_table(res, rounds=2, missing=missing)
    assert list(df.index) == ["BD only (AHM)", "BD only (RSS)", "TC-NR round 1", "TC-BCE round 1", "TC-NR round 2",
                              "TC-BCE round 2", "AlexPUL", "SiamFC (supervised)"]
    assert {"component", "success_auc", "precision", "reference", "delta_auc", "previous", "gain_vs_previous",
            "status"} <= set(df.columns)
    assert df.loc["BD only (AHM)", "delta_auc"] == pytest.approx(0.05)
    assert df.loc["TC-NR round 1", "delta_auc"] == pytest.approx(0.05)
    assert df.loc["TC-NR round 1", "gain_vs_previous"] == pytest.approx(0.10)    # round 1 starts from BD (AHM)
    assert df.loc["TC-NR round 2", "gain_vs_previous"] == pytest.approx(0.05)
    assert math.isnan(df.loc["TC-NR round 2", "delta_auc"])                      # its BCE twin is missing
    assert df.loc["TC-NR round 2", "status"] == "same checkpoint as AlexPUL"
    assert df.loc["TC-BCE round 2", "status"].startswith("missing: run notebooks/03_training.ipynb")
    assert math.isnan(df.loc["AlexPUL", "delta_auc"])


def test_sequence_table():
    df = bt.sequence_table(results_for(), GROUPS)
    assert list(df.columns) == ["tracker", "sequence", "group", "success_auc", "precision", "frames"]
    assert len(df) == 9 and set(df.loc[df.sequence == "otb/Deer", "group"]) == {"real"}


# --------------------------------------------------------------------------- checkpoints and trackers
@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path / "results"))
    return tmp_path


def fabricate(profile, name, rounds=2):
    import torch

    from pulkit.models.net import build_net, save_checkpoint

    cfg = small_cfg(profile)
    torch.manual_seed(1)
    return save_checkpoint(artifacts.tracker_checkpoints(profile, rounds)[name], build_net(cfg.model), cfg)


def small_cfg(profile="smoke"):
    return load_config(profile, {"model": {"backbone": "alexnet", "exemplar_sz": 87, "instance_sz": 127},
                                 "tracker": {"response_up": 4, "device": "cpu"}}, seed=3)


def test_no_trained_tracker_is_a_loud_error(roots):
    with pytest.raises(MissingResultsError, match="no trained tracker") as e:
        bt.find_checkpoints("smoke", rounds=2)
    for nb in ("01_background_discrimination", "02_temporal_correspondence", "03_training"):
        assert f"notebooks/{nb}.ipynb" in str(e.value)


def test_tracker_set_lists_missing_and_evaluates_shared_checkpoints_once(roots):
    fabricate("smoke", "AlexPUL")
    ts = bt.tracker_set("smoke", small_cfg(), device="cpu")
    assert set(ts.trackers) == {"AlexPUL", *bt.REFERENCES} - {bt.RANDOM_BN_RES}   # no ResPUL: no paired reference
    assert ts.aliases == {"TC-NR round 2": "AlexPUL"}          # smoke: 2 rounds; round 2 is AlexPUL
    assert ts.missing["ResPUL"] == {"checkpoint": "tc_nr_ciresnet22/tc_round2.pt", "notebook": "03_training"}
    assert ts.missing["BD only (AHM)"]["notebook"] == "01_background_discrimination"
    assert ts.names == ["AlexPUL", "TC-NR round 2", bt.STATIC, bt.RANDOM_BN, bt.RAW_INIT]
    assert ts.trackers["AlexPUL"].name == "AlexPUL"


def test_reference_trackers():
    import torch

    from pulkit.evaluation.outputs import tracker_key

    st = bt.StaticTracker()
    with pytest.raises(RuntimeError, match="before init"):
        st.update(None)
    st.init(None, [1, 2, 3, 4])
    np.testing.assert_array_equal(st.update(None), [1, 2, 3, 4])
    before = torch.random.get_rng_state()
    cfg = load_config("smoke", {"tracker": {"response_up": 4, "device": "cpu"}}, seed=3)
    a, b = bt.reference_trackers(cfg, "cpu"), bt.reference_trackers(cfg, "cpu")
    assert torch.equal(before, torch.random.get_rng_state())  # the global RNG is left alone
    assert list(a) == list(bt.REFERENCES)
    for name in (bt.RANDOM_BN, bt.RANDOM_BN_RES, bt.RAW_INIT):
        assert tracker_key(a[name]) == tracker_key(b[name]) and a[name].name == name
    assert tracker_key(a[bt.RANDOM_BN]) != tracker_key(a[bt.RAW_INIT])   # estimated BN statistics differ
    assert "diagnostic" in bt.RAW_INIT
    assert bt.PAIRED_REFERENCE == {"AlexPUL": bt.RANDOM_BN, "ResPUL": bt.RANDOM_BN_RES}
    other = bt.reference_trackers(load_config("smoke", {"model": {"exemplar_sz": 87, "instance_sz": 127},
                                                        "tracker": {"response_up": 4}}, seed=4), "cpu", resnet=False)
    assert tracker_key(other[bt.RANDOM_BN]) != tracker_key(a[bt.RANDOM_BN])


# --------------------------------------------------------------------------- a tiny real run
def test_run_benchmarks_end_to_end(roots, synthetic_split, make_vot):
    fabricate("smoke", "AlexPUL")
    cfg = small_cfg().override({"eval": {"vot_burnin": 2}})   # 4 frames: leave 2 for VOT accuracy
    ts = bt.tracker_set("smoke", cfg, device="cpu")
    for name in (bt.RANDOM_BN, bt.RAW_INIT):           # keep the test short: AlexPUL + static
        del ts.trackers[name]
    seqs = read_got10k(synthetic_split, subset="val")
    make_vot(roots / "vot", "still", [[10, 10, 20, 15]] * 6)
    sets = bt.BenchmarkSets(otb=seqs, got10k=synthetic_split, got10k_label="synthetic val",
                            vot=read_vot(roots / "vot"), groups={"synthetic": [s.name for s in seqs], "real": []},
                            max_frames=4)
    results, speeds = bt.run_benchmarks(ts, sets, cfg, "smoke", progress=False)
    assert set(results) == {"otb", "got10k", "vot"} and set(speeds["otb"]) == {"AlexPUL", bt.STATIC}
    assert list(results["otb"]) == ["AlexPUL", "TC-NR round 2", bt.STATIC]
    assert results["otb"]["TC-NR round 2"]["same_checkpoint_as"] == "AlexPUL"
    assert "speed_fps" not in str(results)            # timings stay out of results
    assert results["otb"][bt.STATIC]["sequences"][seqs[0].name]["frames"] == 4
    assert results["vot"][bt.STATIC]["accuracy"] == pytest.approx(1.0)   # a still target: static is perfect
    for bench in ("otb", "got10k", "vot"):
        df = bt.benchmark_table(bench, results[bench], ts.missing)
        assert df.loc[bt.STATIC, "status"] == "reference" and "ResPUL" in df.index
    assert (artifacts.tracking_dir("smoke") / results["otb"]["AlexPUL"]["result_key"] / "OTB").is_dir()
    record = bt.tracker_record(ts, "smoke", results)
    assert record["TC-NR round 2"] == {"kind": "trained", "checkpoint": "tc_nr_alexnet/tc_round2.pt",
                                       "same_checkpoint_as": "AlexPUL",
                                       "result_key": results["otb"]["AlexPUL"]["result_key"]}
    assert record[bt.STATIC]["kind"] == "reference" and record[bt.STATIC]["checkpoint"] is None
    again, _ = bt.run_benchmarks(ts, sets, cfg, "smoke", progress=False)
    assert to_json(again) == to_json(results)          # stored runs re-used: identical numbers (NaN EAO too)
    path = bt.save_table(bt.benchmark_table("otb", results["otb"], ts.missing), "smoke", "otb")
    assert path.name == "otb.csv" and path.parent.name == "07_benchmarks"
    back = bt.load_table("smoke", "otb")
    assert back.loc["AlexPUL", "success_auc"] == pytest.approx(results["otb"]["AlexPUL"]["success_auc"])
    with pytest.raises(MissingResultsError, match="07_benchmarks"):
        bt.load_table("smoke", "vot")


def test_benchmark_sets_of_the_smoke_profile(shared_root, tmp_path, monkeypatch):
    from pulkit.data.inventory import profile_sequences

    monkeypatch.setenv("PULKIT_DATA", str(tmp_path))  # the synthetic splits are generated here
    cfg = load_config("smoke")
    sets = bt.benchmark_sets(cfg, sequences=profile_sequences(cfg))
    assert [s.name for s in sets.vot] == ["vot/bag"]
    assert set(sets.groups["real"]) == {"otb/Crossing", "otb/Deer", "vot/bag"}
    assert len(sets.groups["synthetic"]) == cfg.data.synthetic_val_videos
    assert sets.got10k_label == "synthetic val" and (sets.got10k / "list.txt").is_file()
    assert all(len(s) <= cfg.data.max_frames for s in sets.otb)


# --------------------------------------------------------------------------- claims
def test_collect_and_write_claims(roots):
    from pulkit.core.io import read_json
    from pulkit.core.results import save_results
    from pulkit.evaluation.powered import claim_record

    cfg = load_config("smoke")
    ahm = claim_record("ahm_small_batch", "localisation accuracy", "fraction", "AHM B=16", "RSS B=16",
                       {"diff": 0.04, "se": 0.01, "n": 64}, [0, 1])
    pul = claim_record("pul_vs_random_bn", "success AUC", "AUC", "AlexPUL", bt.RANDOM_BN,
                       {"diff": -0.05, "se": 0.01, "n": 4}, [0])
    save_results("smoke", "01_background_discrimination", {"claims": [ahm]}, cfg=cfg)
    claims = bt.collect_claims(cfg, [pul])
    assert [r["claim"] for r in claims["claims"]] == ["ahm_small_batch", "pul_vs_random_bn"]
    assert claims["missing"] == ["02_temporal_correspondence", "04_noise_robustness"]
    assert [r["verdict"] for r in claims["claims"]] == ["holds", "does not hold"]
    path = bt.write_claims(cfg, claims)
    assert path == artifacts.claims_path("smoke")
    saved = read_json(path)
    assert saved["claims"] == claims["claims"] and saved["provenance"]["profile"] == "smoke"
    assert saved["cpu_model"]
    table = bt.claims_table(claims)
    assert list(table["verdict"]) == ["holds", "does not hold"] and table.loc[1, "control"] == bt.RANDOM_BN
