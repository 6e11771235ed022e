"""Notebook 01's claim "AHM helps small batches": the plan (equal cost, checkpoints, reuse of the main runs),
the claim records' keys and sign, the figure from constructed data and from files, and a micro run end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from pulkit.core import artifacts, paths
from pulkit.core.config import load_config
from pulkit.core.results import MissingResultsError, load_results, save_results
from pulkit.data.sequences import Sequence
from pulkit.evaluation import powered
from pulkit.experiments import background_discrimination as bd_report
from pulkit.figures import background_discrimination as figs_bd
from pulkit.figures.registry import FIGURES, export_figures
from pulkit.method.bd import log_path

RECORD_KEYS = {"claim", "metric", "unit", "treatment", "control", "diff", "se", "n", "seeds", "verdict",
               "role", "batch_size", "mde_80", "per_seed"}


# --------------------------------------------------------------------------- plan: equal cost, checkpoints
@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_plan_pairs_differ_in_the_sampler_only(profile):
    cfg = load_config(profile)
    plan = bd_report.claim_plan(cfg)
    assert list(plan["batch_size"].unique()) == list(cfg.bd.claim_batches)
    for (b, s), pair in plan.groupby(["batch_size", "seed"]):
        assert list(pair["sampler"]) == ["ahm", "rss"]
        assert pair["steps"].nunique() == pair["lr"].nunique() == pair["warmup"].nunique() == 1
        assert int(pair["steps"].iloc[0]) == cfg.bd.steps                      # the main runs' steps and schedule
        assert bd_report.pair_difference(cfg, b, s) == ["bd.sampler"]
        ahm, rss = (bd_report.claim_run_config(cfg, x, b, s) for x in ("ahm", "rss"))
        assert (ahm.seed, ahm.bd.batch_size, ahm.model.backbone) == (s, b, "alexnet")
        assert (ahm.bd.sampler, rss.bd.sampler) == ("ahm", "rss")
    small = min(cfg.bd.claim_batches)
    assert sorted(plan[plan.batch_size == small]["seed"].unique()) == sorted(cfg.bd.claim_seeds)
    assert len(cfg.bd.claim_seeds) >= 2


def test_profiles_claim_settings():
    cpu, smoke = load_config("cpu"), load_config("smoke")
    assert (cpu.bd.claim_batches, cpu.bd.claim_seeds) == ((16, 64), (0, 1, 2))
    assert (smoke.bd.claim_batches, smoke.bd.claim_seeds) == ((4, 8), (0, 1))
    # issue 13: three seeds at both B in cpu; at the main B the main runs are the seed-SEED pair
    assert bd_report.claim_seeds(cpu, 64) == (0, 1, 2) and bd_report.claim_seeds(cpu, 16) == (0, 1, 2)
    plan = bd_report.claim_plan(cpu)
    assert plan[plan["reused"]][["batch_size", "seed"]].drop_duplicates().values.tolist() == [[64, 0]]
    # by default (None) the main B has the main runs' seed alone: no extra training there
    plain = cpu.override({"bd": {"claim_seeds_main": None}})
    assert bd_report.claim_seeds(plain, 64) == (0,) and bd_report.claim_seeds(plain.override(seed=2), 64) == (2,)
    assert bd_report.claim_seeds(smoke, 8) == (0, 1)       # smoke: notebook 02's rounds claim needs seed 1's BD
    assert bd_report.claim_seeds(cpu.override({"bd": {"claim_seeds_main": [0, 1]}}), 64) == (0, 1)


def test_a_pair_that_differs_in_more_than_the_sampler_is_refused(monkeypatch):
    cfg = load_config("smoke")
    real = bd_report.claim_run_config

    def unequal(c, sampler, b, s):       # e.g. RSS given fewer steps: no longer equal cost
        out = real(c, sampler, b, s)
        return out.override({"bd": {"steps": out.bd.steps - 1}}) if sampler == "rss" else out

    monkeypatch.setattr(bd_report, "claim_run_config", unequal)
    with pytest.raises(RuntimeError, match=r"differ in \['bd.sampler', 'bd.steps'\]"):
        bd_report.claim_plan(cfg)


def test_bad_claim_settings_are_refused():
    for bad in ((), (8, 8), (1, 8)):
        with pytest.raises(ValueError, match="claim_batches"):
            bd_report.claim_plan(load_config("smoke", {"bd": {"claim_batches": bad}}))
    with pytest.raises(ValueError, match="distinct seeds"):
        bd_report.claim_plan(load_config("smoke", {"bd": {"claim_seeds": (1, 1)}}))


def test_claim_checkpoints_paths_producer_and_reuse(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_CHECKPOINTS", str(tmp_path))
    path = artifacts.bd_claim_checkpoint("cpu", "rss", 16, 2)
    assert path == tmp_path / "cpu" / "bd_claim" / "bd_rss_b16_s2.pt"
    assert artifacts.producer(path, "cpu") == "01_background_discrimination"
    assert artifacts.producer(tmp_path / "cpu" / "bd_claim" / "other.txt", "cpu") is None
    with pytest.raises(ValueError, match="sampler"):
        artifacts.bd_claim_checkpoint("cpu", "random", 16, 0)
    cfg = load_config("cpu")
    assert bd_report.claim_checkpoint(cfg, "ahm", 64, 0) == artifacts.bd_checkpoint("cpu", "ahm")   # the main run
    assert bd_report.claim_checkpoint(cfg, "ahm", 64, 1) == artifacts.bd_claim_checkpoint("cpu", "ahm", 64, 1)
    assert bd_report.claim_checkpoint(cfg, "rss", 16, 0) == artifacts.bd_claim_checkpoint("cpu", "rss", 16, 0)
    seed1 = cfg.override(seed=1)       # notebook SEED = 1: its main runs are the seed-1 pair at B = 64
    assert bd_report.claim_checkpoint(seed1, "rss", 64, 1) == artifacts.bd_checkpoint("cpu", "rss")
    assert bd_report.claim_checkpoint(seed1, "rss", 64, 0) == artifacts.bd_claim_checkpoint("cpu", "rss", 64, 0)
    plan = bd_report.claim_plan(cfg)
    assert plan[plan.reused]["batch_size"].unique().tolist() == [64]


def test_claim_settings_do_not_make_the_main_runs_stale():
    cfg = load_config("smoke")
    other = cfg.override({"bd": {"claim_seeds": (5, 6, 7), "claim_batches": (2, 8)}})
    for name in bd_report.RUNS:
        assert bd_report.run_config(cfg, name).to_dict() == bd_report.run_config(other, name).to_dict()


# --------------------------------------------------------------------------- records: keys and sign
def _hits(n=400, gain=0.15, seeds=(0, 1, 2), batches=(4, 8), seed=0):
    """AHM localises ``gain`` more of the pairs than RSS at the smallest B, the same at the others."""
    rng = np.random.default_rng(seed)
    hits, ref = {}, {}
    for s in seeds:
        ref[s] = rng.random(n) < 0.1
        for b in batches:
            base = rng.random(n)
            hits[("rss", b, s)] = base < 0.4
            hits[("ahm", b, s)] = base < 0.4 + (gain if b == min(batches) else 0.0)
    return hits, ref


def test_records_keys_order_and_sign():
    cfg = load_config("smoke", {"bd": {"claim_seeds_main": (0, 1)}})
    hits, ref = _hits(seeds=(0, 1))
    recs = bd_report.claim_records(cfg, hits, ref, n_pairs=400)
    assert [r["role"] for r in recs] == ["claim", "claim"] + ["reference"] * 4
    assert all(set(r) == RECORD_KEYS for r in recs)
    small, large = recs[0], recs[1]
    assert (small["treatment"], small["control"], small["batch_size"]) == ("AHM B=4", "RSS B=4", 4)
    assert small["claim"] == "ahm_small_batch" and small["unit"] == "fraction"
    assert small["metric"] == "localisation accuracy (400 held-out pairs)"
    # positive = the treatment (AHM) localises more pairs: exactly the planted gain, per seed and combined
    assert small["diff"] == pytest.approx(np.mean([hits[("ahm", 4, s)].mean() - hits[("rss", 4, s)].mean()
                                                              for s in (0, 1)]))
    assert small["diff"] > 0 and small["verdict"] == "holds"
    assert [p["seed"] for p in small["per_seed"]] == [0, 1] and small["seeds"] == [0, 1]
    assert small["n"] == 800 and small["mde_80"] == pytest.approx(bd_report.POWER_Z * small["se"])
    assert large["diff"] == 0 and large["verdict"] == "not resolved"
    want = powered.combine_seeds([powered.paired_diff(hits[("ahm", 4, s)], hits[("rss", 4, s)]) for s in (0, 1)])
    assert (small["diff"], small["se"]) == pytest.approx((want["diff"], want["se"]))
    assert [(r["treatment"], r["control"]) for r in recs[2:4]] == [("BD (AHM, B=4)", "random_bn"),
                                                                   ("BD (RSS, B=4)", "random_bn")]
    assert all(r["diff"] > 0.2 for r in recs[2:])                       # every BD run beats the untrained net
    # swapping the arms flips the sign and the verdict
    swapped = {(("rss" if k[0] == "ahm" else "ahm"),) + k[1:]: v for k, v in hits.items()}
    flipped = bd_report.claim_records(cfg, swapped, ref, n_pairs=400)[0]
    assert flipped["diff"] == pytest.approx(-small["diff"]) and flipped["verdict"] == "does not hold"


def _claim_data(verdict_gain=0.15):
    """What ahm_small_batch_claim returns, from constructed hits (no training)."""
    cfg = load_config("smoke", {"bd": {"claim_seeds_main": None}})      # B = 8: the main runs' seed only
    hits, ref = _hits(gain=verdict_gain, seeds=(0, 1))
    hits = {k: v for k, v in hits.items() if k[1] == 4 or k[2] == 0}       # B = 8: the main runs' seed only
    runs = [{"batch_size": b, "seed": s, "sampler": x, "steps": 6, "reused": b == 8, "checkpoint": "c.pt",
             **{k: float(v) for k, v in powered.localisation_summary({"hit": h, "error_px": 1.0 - h}).items()
                if k != "n"}, "train_hardness": 0.5}
            for (x, b, s), h in hits.items()]
    refs = [{"seed": s, "accuracy": float(h.mean()), "accuracy_se": 0.01, "error_px": 3.0, "error_px_se": 0.1}
            for s, h in ref.items()]
    return {"pairs": 400, "batches": [4, 8], "seeds": {"4": [0, 1], "8": [0]}, "runs": runs, "random_bn": refs,
            "claims": bd_report.claim_records(cfg, hits, ref, 400)}


def test_summary_table_and_verdict_text():
    claim = _claim_data()
    s = bd_report.claim_summary(claim)
    assert s["ahm_gain_b4"] == claim["claims"][0]["diff"] and s["ahm_gain_b8_se"] == claim["claims"][1]["se"]
    assert s["ahm_gain_small_minus_large"] == pytest.approx(s["ahm_gain_b4"] - s["ahm_gain_b8"])
    assert s["accuracy_random_bn"] == pytest.approx(np.mean([r["accuracy"] for r in claim["random_bn"]]))
    assert s["heldout_pairs"] == 400 and all(isinstance(v, (int, float)) for v in s.values())
    table = bd_report.claim_table(claim)
    assert len(table) == 6 and (table["ci_low"] <= table["diff"]).all() and table["ci_low"].iloc[0] < table["diff"].iloc[0]
    text = bd_report.claim_verdicts(claim)
    assert "**B = 4**" in text and "**holds**" in text and "**B = 8**" in text and "random_bn" in text


# --------------------------------------------------------------------------- figure
def test_claim_figure_from_constructed_data():
    claim = _claim_data()
    fig = figs_bd.ahm_claim(claim)
    ax, bx = fig.axes[:2]
    # (a) one errorbar group per (B, sampler) with one point per seed; the random_bn level as a dashed line
    pts = [len(c.lines[0].get_ydata()) for c in ax.containers]
    assert pts == [2, 2, 1, 1]
    ahm4 = [r["accuracy"] for r in claim["runs"] if r["batch_size"] == 4 and r["sampler"] == "ahm"]
    assert np.allclose(ax.containers[0].lines[0].get_ydata(), ahm4)
    level = np.mean([r["accuracy"] for r in claim["random_bn"]])
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and np.allclose(dashed[0].get_ydata(), level)
    # (b) the combined AHM - RSS difference per B with its verdict
    combined = [c.lines[0].get_ydata()[0] for c in bx.containers]
    assert combined == pytest.approx([r["diff"] for r in claim["claims"][:2]])
    assert [t.get_text() for t in bx.texts] == [r["verdict"] for r in claim["claims"][:2]]
    with pytest.raises(ValueError, match="no AHM vs RSS claim record for B = \\[8\\]"):
        figs_bd.ahm_claim({**claim, "claims": claim["claims"][:1]})
    with pytest.raises(ValueError, match="expected ahm_small_batch_claim"):
        figs_bd.ahm_claim({"runs": []})


def test_claim_figure_is_registered_and_rebuilds_from_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PULKIT_FIGURES", str(tmp_path / "figures"))
    assert FIGURES["ahm_claim"] is figs_bd.ahm_claim_from_results
    with pytest.raises(MissingResultsError, match="01_background_discrimination"):
        FIGURES["ahm_claim"]("smoke")
    save_results("smoke", "01_background_discrimination", {"summary": {"x": 1.0}})      # an older run: no claim
    with pytest.raises(MissingResultsError, match="claim.*--only 01"):
        FIGURES["ahm_claim"]("smoke")
    claim = _claim_data()
    save_results("smoke", "01_background_discrimination",
                 {"ahm_claim": {k: v for k, v in claim.items() if k != "claims"}, "claims": claim["claims"]})
    fig = FIGURES["ahm_claim"]("smoke")
    assert isinstance(fig, Figure) and len(fig.axes[0].containers) == 4
    made, missing = export_figures("smoke", ["ahm_claim"], seed=0)
    assert not missing and all(p.is_file() for p in made["ahm_claim"])


# --------------------------------------------------------------------------- micro run end to end
@pytest.fixture
def env(tmp_path, monkeypatch, textured_videos):
    """Data, results and checkpoints under tmp_path; a micro config: 2 BD steps, claim at B = 2 and 4."""
    for var, sub in (("PULKIT_DATA", "data"), ("PULKIT_RESULTS", "results"), ("PULKIT_CHECKPOINTS", "ckpt")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    cfg = load_config("smoke", {
        "bd": dict(steps=2, batch_size=4, bank_refresh=2, checkpoint_every=1, log_every=1, crop_sz=95,
                   candidates_per_frame=2, texture_prior=False, max_candidates=100, exclude_frames=1,
                   separation_frames=1, bank_batch=16, claim_batches=(2, 4), claim_seeds=(0, 1),
                   claim_seeds_main=None),
        "eval": dict(heldout_videos=2, heldout_frames=8, heldout_pairs=24),
    }, device="cpu")
    videos = textured_videos(tmp_path / "frames")
    return cfg, [Sequence(f"vid{v}", frames, None) for v, frames in enumerate(videos)]


def test_claim_micro_run_end_to_end(env, monkeypatch):
    cfg, seqs = env
    ckpts = bd_report.train_claim_runs(cfg, seqs, device="cpu", progress=False)
    assert set(ckpts) == {("ahm", 2, 0), ("rss", 2, 0), ("ahm", 2, 1), ("rss", 2, 1), ("ahm", 4, 0), ("rss", 4, 0)}
    assert ckpts[("ahm", 4, 0)] == artifacts.bd_checkpoint(cfg.profile, "ahm")          # the main run, trained once
    assert ckpts[("rss", 2, 1)].name == "bd_rss_b2_s1.pt" and ckpts[("rss", 2, 1)].parent.name == "bd_claim"
    stamp = ckpts[("ahm", 2, 1)].stat().st_mtime_ns
    assert bd_report.train_claim_runs(cfg, seqs, device="cpu", progress=False) == ckpts    # complete: reused
    assert ckpts[("ahm", 2, 1)].stat().st_mtime_ns == stamp
    # equal cost, as trained: the same steps and learning rate at every step in both arms of a pair
    for b, s in ((2, 0), (2, 1)):
        ahm, rss = (bd_report.read_log(ckpts[(x, b, s)]) for x in ("ahm", "rss"))
        assert ahm["step"].tolist() == rss["step"].tolist() == [1, 2]
        assert ahm["lr"].tolist() == rss["lr"].tolist()
        assert log_path(ckpts[("ahm", b, s)]).is_file()

    claim = bd_report.ahm_small_batch_claim(cfg, ckpts, seqs, device="cpu")
    assert claim["pairs"] == 24 and claim["seeds"] == {"2": [0, 1], "4": [0]}
    assert len(claim["runs"]) == 6 and [r["seed"] for r in claim["random_bn"]] == [0, 1]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in claim["runs"] + claim["random_bn"])
    assert [r["role"] for r in claim["claims"]] == ["claim", "claim"] + ["reference"] * 4
    assert claim["claims"][0]["n"] == 48 and claim["claims"][1]["seeds"] == [0]
    json.dumps(claim)
    cached = sorted((paths.cache_dir() / "bd_claim_localisation").glob("loc_*.npz"))
    assert len(cached) == 6 + 2                                  # 6 BD backbones and 2 random_bn, once each

    def no_rescoring(*a, **k):
        raise AssertionError("a re-run with unchanged checkpoints must not localise again")

    with monkeypatch.context() as m:
        m.setattr(bd_report, "localisation", no_rescoring)
        assert bd_report.ahm_small_batch_claim(cfg, ckpts, seqs, device="cpu") == claim
    with pytest.raises(ValueError, match="no checkpoint for runs"):
        bd_report.ahm_small_batch_claim(cfg, {k: v for k, v in ckpts.items() if k[2] == 0}, seqs, device="cpu")

    record = {"summary": bd_report.claim_summary(claim), "ahm_claim": {k: v for k, v in claim.items() if k != "claims"},
              "claims": claim["claims"]}
    save_results(cfg.profile, "01_background_discrimination", record, cfg=cfg)
    back = load_results(cfg.profile, "01_background_discrimination")
    assert back["claims"] == claim["claims"]
    assert isinstance(FIGURES["ahm_claim"](cfg.profile), Figure)
