"""Notebook 07's claim ``pul_vs_random_bn`` over claim seeds: AlexPUL and ``random_bn`` of every seed, one paired
difference per seed combined by ``combine_seeds``, seeded tracker names, and the error for a missing seed run."""
from __future__ import annotations

import pytest
import torch

from pulkit import evaluation as ev
from pulkit.core import artifacts
from pulkit.core.config import load_config
from pulkit.core.results import MissingResultsError
from pulkit.evaluation.outputs import tracker_key
from pulkit.evaluation.powered import combine_seeds, paired_diff, verdict
from pulkit.experiments import benchmarks as bt
from pulkit.models.net import build_net, save_checkpoint
from pulkit.tracking.siamfc import load_tracker

PROFILE = "smoke"
ROUNDS = 2


def _cfg():
    """Two synthetic training videos, two evaluation videos and two held-out ones cut to 4 frames, small crops,
    claim seeds 0 and 1."""
    return load_config(PROFILE, {
        "data": dict(train_sources=("synthetic",), eval_sources=("synthetic",), synthetic_train_videos=2,
                     synthetic_val_videos=2, synthetic_frames=8, synthetic_width=96, synthetic_height=72,
                     synthetic_distractors=1, max_frames=4),
        "model": dict(backbone="alexnet", exemplar_sz=87, instance_sz=127),
        "tracker": dict(response_up=4, device="cpu"),
        "bd": dict(exclude_frames=2, separation_frames=2),
        "tc": dict(rounds=ROUNDS, claim_seeds=(0, 1)),
        "eval": dict(heldout_videos=2, heldout_frames=4, heldout_pairs=24),
    }, seed=0, device="cpu")


def _save(path, cfg, torch_seed, complete=True):
    torch.manual_seed(torch_seed)
    return save_checkpoint(path, build_net(cfg.model), cfg, stage="tc", step=1, complete=complete)


def _use_dirs(mp, root):
    for var, sub in (("PULKIT_DATA", "data"), ("PULKIT_RESULTS", "results"), ("PULKIT_CHECKPOINTS", "checkpoints"),
                     ("PULKIT_FIGURES", "figures")):
        mp.setenv(var, str(root / sub))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Stand-ins for AlexPUL (main seed 0) and notebook 02's AlexPUL of seed 1; the main trackers' OTB results on
    the two evaluation videos, used as the 'real' sequences; ``pul_claims`` over seeds 0 and 1."""
    root = tmp_path_factory.mktemp("pul_claims")
    with pytest.MonkeyPatch.context() as mp:
        _use_dirs(mp, root)
        cfg = _cfg()
        _save(artifacts.tc_checkpoint(PROFILE, ROUNDS, "nr", "alexnet"), cfg, 1)
        _save(artifacts.rounds_seed_dir(PROFILE, 1) / f"tc_round{ROUNDS}.pt", cfg.override(seed=1), 2)
        ts = bt.tracker_set(PROFILE, cfg, device="cpu")
        sets = bt.benchmark_sets(cfg)
        groups = {"real": sets.groups["synthetic"]}        # two evaluation videos play the real sequences
        otb = {n: ev.evaluate_otb(ts.trackers[n], sets.otb, profile=PROFILE, max_frames=cfg.data.max_frames,
                                  progress=False) for n in ("AlexPUL", bt.STATIC, bt.RANDOM_BN)}
        pul = bt.pul_claims(ts, cfg, otb, groups, PROFILE, device="cpu", progress=False)
        yield root, cfg, ts, otb, groups, pul


@pytest.fixture
def env(run, monkeypatch):
    _use_dirs(monkeypatch, run[0])
    return run


def _alexpul(records):
    return [r for r in records if r["treatment"] == "AlexPUL"]


def test_alexpul_records_combine_one_paired_difference_per_claim_seed(env):
    _, cfg, _, _, _, pul = env
    records = _alexpul(pul["claims"])
    assert [(r["control"], r["unit"]) for r in records] == [
        (bt.RANDOM_BN, "fraction"), (bt.RANDOM_BN, "AUC"), (bt.RANDOM_BN, "AUC"), (bt.STATIC, "AUC"), (bt.STATIC, "AUC")]
    assert [r["metric"] for r in records[1:3]] == ["success AUC (2 held-out synthetic videos)",
                                                   "success AUC (2 real sequences)"]
    assert pul["seeds"] == [0, 1]
    for rec in records:
        assert rec["seeds"] == [0, 1] and [p["seed"] for p in rec["per_seed"]] == [0, 1]
        combined = combine_seeds(rec["per_seed"])
        assert rec["diff"] == pytest.approx(combined["diff"]) and rec["se"] == pytest.approx(combined["se"])
        assert rec["n"] == sum(p["n"] for p in rec["per_seed"]) and rec["verdict"] == verdict(rec["diff"], rec["se"])
    m = pul["measures"]
    loc, held, real, held_static, real_static = records
    for seed, alex, ref in ((0, "AlexPUL", bt.RANDOM_BN), (1, "AlexPUL (seed 1)", "random_bn AlexNet (seed 1)")):
        assert loc["per_seed"][seed]["diff"] == pytest.approx(m[alex]["localisation_accuracy"]
                                                              - m[ref]["localisation_accuracy"])
        assert held["per_seed"][seed]["diff"] == pytest.approx(m[alex]["heldout_auc"] - m[ref]["heldout_auc"])
        assert real["per_seed"][seed]["diff"] == pytest.approx(m[alex]["real_auc"] - m[ref]["real_auc"])
        assert held_static["per_seed"][seed]["diff"] == pytest.approx(m[alex]["heldout_auc"] - m[bt.STATIC]["heldout_auc"])
        assert real_static["per_seed"][seed]["diff"] == pytest.approx(m[alex]["real_auc"] - m[bt.STATIC]["real_auc"])
    assert loc["per_seed"][0]["n"] == cfg.eval.heldout_pairs and real["per_seed"][1]["n"] == 2
    diagnostic = [r for r in pul["claims"] if r.get("role") == "diagnostic"]
    assert len(diagnostic) == 1 and diagnostic[0]["seeds"] == [0] and "per_seed" not in diagnostic[0]
    assert not any(r["treatment"] == "ResPUL" for r in pul["claims"])   # no ResPUL checkpoint here


def test_other_seeds_trackers_are_their_own_and_stored_under_seeded_names(env):
    _, cfg, ts, _, _, pul = env
    assert {"AlexPUL (seed 1)", "random_bn AlexNet (seed 1)"} <= set(pul["measures"])
    assert bt.seed_name(bt.RANDOM_BN, 1) == "random_bn AlexNet (seed 1)"
    seeded = bt.alexpul_seed_trackers(cfg, 1, device="cpu")
    assert list(seeded) == ["AlexPUL (seed 1)", "random_bn AlexNet (seed 1)"]
    assert all(t.name == n for n, t in seeded.items())
    path = artifacts.rounds_seed_dir(PROFILE, 1) / f"tc_round{ROUNDS}.pt"
    weights = tracker_key(seeded["AlexPUL (seed 1)"]).split("-w")[1]        # notebook 02's run of seed 1
    assert weights == tracker_key(load_tracker("x", path, "cpu", precision=cfg.precision)).split("-w")[1]
    assert weights != tracker_key(ts.trackers["AlexPUL"]).split("-w")[1]
    ref0 = ts.trackers[bt.RANDOM_BN].net.state_dict()
    ref1 = seeded["random_bn AlexNet (seed 1)"].net.state_dict()
    assert any(not torch.equal(ref0[k], ref1[k]) for k in ref0)          # another seed: another random network
    again = bt.random_bn_tracker(cfg.override(seed=1), bt.training_video(cfg), "alexnet", "x", "cpu").net.state_dict()
    assert all(torch.equal(ref1[k], again[k]) for k in ref1)             # ... built as random_bn builds it
    stored = {p.name.split("-w")[0] for p in artifacts.tracking_dir(PROFILE).iterdir()}
    assert {"AlexPUL", "AlexPUL_seed_1", "random_bn_AlexNet", "random_bn_AlexNet_seed_1"} <= stored


def test_one_claim_seed_gives_the_main_seeds_paired_differences(env):
    _, cfg, ts, otb, groups, pul = env
    one = bt.pul_claims(ts, cfg.override({"tc": {"claim_seeds": None}}), otb, groups, PROFILE, device="cpu",
                        progress=False)
    assert one["seeds"] == [0] and "AlexPUL (seed 1)" not in one["measures"]
    for single, both in zip(_alexpul(one["claims"]), _alexpul(pul["claims"]), strict=True):
        assert single["seeds"] == [0] and len(single["per_seed"]) == 1
        first = {k: v for k, v in both["per_seed"][0].items() if k != "seed"}
        assert (single["diff"], single["se"], single["n"]) == (first["diff"], first["se"], first["n"])
    m = one["measures"]
    static = otb[bt.STATIC]["sequences"]
    real = paired_diff([otb["AlexPUL"]["sequences"][n]["success_auc"] for n in groups["real"]],
                       [static[n]["success_auc"] for n in groups["real"]])
    assert _alexpul(one["claims"])[-1]["diff"] == real["diff"] and m["AlexPUL"]["real_auc"] is not None
    only1 = bt.pul_claims(ts, cfg.override({"tc": {"claim_seeds": (1,)}}), otb, groups, PROFILE, device="cpu",
                          progress=False)                                # the main seed need not be among them
    for rec, both in zip(_alexpul(only1["claims"]), _alexpul(pul["claims"]), strict=True):
        assert rec["seeds"] == [1] and rec["per_seed"][0]["diff"] == pytest.approx(both["per_seed"][1]["diff"])


def test_a_missing_or_interrupted_seed_run_names_the_file_and_notebook_02(env):
    _, cfg, ts, otb, groups, _ = env
    with pytest.raises(MissingResultsError, match=r"tc_controls/seed2/tc_round2\.pt.*missing.*02_temporal") as e:
        bt.pul_claims(ts, cfg.override({"tc": {"claim_seeds": (0, 2)}}), otb, groups, PROFILE, device="cpu",
                      progress=False)
    assert e.value.notebook == "02_temporal_correspondence"
    scfg = cfg.override(seed=3)
    _save(artifacts.rounds_seed_dir(PROFILE, 3) / f"tc_round{ROUNDS}.pt", scfg, 3, complete=False)
    with pytest.raises(MissingResultsError, match="seed3/tc_round2.pt.*incomplete"):
        bt.alexpul_seed_trackers(cfg, 3, device="cpu")


def test_the_records_render_in_the_forest_plot_and_the_readme(env):
    from pulkit.figures import benchmarks as figs
    from pulkit.tools.readme import claims_markdown

    *_, pul = env
    claims = {"claims": pul["claims"], "missing": [], "cpu_model": "test"}
    fig = figs.claims_forest(claims)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == len(pul["claims"]) and labels[0].startswith("pul_vs_random_bn: AlexPUL vs random_bn")
    md = claims_markdown(claims, PROFILE)
    assert md.count("| 0, 1 |") == len(_alexpul(pul["claims"]))
