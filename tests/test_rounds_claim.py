"""The rounds claim of notebook 02: the precision of mined pairs, the controls' paths and schedules."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import use_output_dirs

from pulkit.core import artifacts
from pulkit.core.config import load_config
from pulkit.experiments import temporal_correspondence as tc
from pulkit.method.loop import lr_schedule


class _Seq:
    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, dtype=np.float64)


def _table(rows):
    return pd.DataFrame(rows, columns=["video", "frame_b", "xb", "yb", "wb", "hb"])


def test_pair_precision_scores_mined_boxes_against_ground_truth_only_on_labelled_videos():
    labelled = {"a": _Seq([[10, 10, 20, 20]] * 5)}
    table = _table([("a", 1, 10, 10, 20, 20),      # exact: IoU 1
                    ("a", 2, 12, 10, 20, 20),      # IoU 18*20 / (2*400 - 360) = 0.82
                    ("a", 3, 30, 30, 20, 20),      # disjoint
                    ("unlabelled", 1, 0, 0, 5, 5)])  # not scored
    p = tc.pair_precision(table, labelled)
    assert p["n"] == 3 and p["precision"] == pytest.approx(2 / 3)
    assert p["se"] == pytest.approx(np.std([1, 1, 0], ddof=1) / np.sqrt(3))
    assert tc.pair_precision(table, labelled, iou_min=0.9)["precision"] == pytest.approx(1 / 3)
    assert tc.pair_precision(table.iloc[3:], labelled) == {"precision": None, "n": 0}


def test_no_remine_control_has_the_treatments_steps_and_schedule():
    """One round of rounds x steps under ``restart=False`` follows exactly the schedule the rounds share."""
    import torch

    cfg = load_config("cpu")
    steps = cfg.tc.rounds * cfg.tc.steps_per_round
    once = cfg.override({"tc": {"rounds": 1, "steps_per_round": steps}})

    def lrs(c, r):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        s = lr_schedule(opt, c.tc.schedule, c.tc.lr, c.tc.steps_per_round, c.tc.lr_end, c.tc.warmup,
                        (r - 1) * c.tc.steps_per_round, c.tc.rounds * c.tc.steps_per_round)
        out = []
        for _ in range(c.tc.steps_per_round):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step()
        return out

    treatment = sum((lrs(cfg, r) for r in range(1, cfg.tc.rounds + 1)), [])
    assert lrs(once, 1) == pytest.approx(treatment)


def test_controls_live_in_one_declared_folder_written_by_02():
    d = artifacts.rounds_controls_dir("smoke")
    assert d.name == "tc_controls"
    for f in ("no_remine.pt", "random_bn_init.pt", "from_random_bn_round1.pt"):
        assert artifacts.producer(d / f, "smoke") == "02_temporal_correspondence"


# --------------------------------------------------------------------------- the claim over TC seeds
def test_claim_seeds_are_configured_validated_and_no_part_of_a_run():
    from pulkit.core.config import ConfigError

    assert load_config("cpu").tc.claim_seeds == (0, 1, 2) and load_config("gpu").tc.claim_seeds is None   # gpu: cost
    assert load_config("smoke").tc.claim_seeds == (0, 1) and load_config("paper").tc.claim_seeds is None
    assert tc.claim_seeds(load_config("paper", seed=4)) == (4,)        # None: the main run's seed alone
    assert tc.claim_seeds(load_config("cpu", seed=4)) == (0, 1, 2)     # the main seed need not be among them
    assert load_config("smoke", {"tc": {"claim_seeds": [3, 1]}}).tc.claim_seeds == (3, 1)   # JSON lists
    for bad, match in (((1, 1), "distinct"), ((), "non-empty"), (("a",), "integer"), ((True,), "integer")):
        with pytest.raises(ConfigError, match=f"tc.claim_seeds.*{match}|{match}.*tc.claim_seeds"):
            load_config("smoke", {"tc": {"claim_seeds": bad}})
    cfg = load_config("cpu")                                           # which runs are compared, not how one trains
    assert tc.tc_run_config(cfg, "nr", "alexnet").to_dict() == \
        tc.tc_run_config(cfg.override({"tc": {"claim_seeds": (5,)}}), "nr", "alexnet").to_dict()
    assert tc.tc_run_config(cfg, "nr", "alexnet").tc.claim_seeds is None


def test_seed_runs_live_under_the_controls_folder_written_by_02():
    d = artifacts.rounds_seed_dir("smoke", 2)
    assert d == artifacts.rounds_controls_dir("smoke") / "seed2"
    for f in ("tc_round1.pt", "pairs_round1.csv", "no_remine.pt"):
        assert artifacts.producer(d / f, "smoke") == "02_temporal_correspondence"


PROFILE = "smoke"


def _micro_cfg():
    """Two 8-frame synthetic training videos, random-net-friendly mining, 1-step rounds, claim seeds 0 and 1."""
    return load_config(PROFILE, {
        "data": dict(train_sources=("synthetic",), eval_sources=("synthetic",), synthetic_train_videos=2,
                     synthetic_val_videos=1, synthetic_frames=8, synthetic_width=96, synthetic_height=72,
                     synthetic_distractors=1, max_frames=None),
        "model": dict(exemplar_sz=103, instance_sz=167),
        "mining": dict(spans=(1, 2), candidates_per_video=2, start_stride=2, scale_num=1, response_up=4,
                       confidence="cosine", min_response=-1.0, fb_iou=0.0, eval_k=(1, 2), quality_videos=1),
        "tc": dict(rounds=2, steps_per_round=1, batch_size=3, checkpoint_every=1, log_every=1, claim_seeds=(0, 1)),
        "bd": dict(bank_batch=8, exclude_frames=2, separation_frames=2, bank_refresh=10, claim_seeds_main=(0, 1)),
        "eval": dict(heldout_videos=2, heldout_frames=8, heldout_pairs=24),
    }, device="cpu")


def _save_bd(cfg, torch_seed, seed=None):
    """A stand-in for notebook 01's BD AHM AlexNet of ``seed`` (None: the main run's)."""
    import torch

    from pulkit.models.net import build_net, save_checkpoint

    torch.manual_seed(torch_seed)
    path = (artifacts.bd_checkpoint(PROFILE, "ahm", "alexnet") if seed is None
            else artifacts.bd_claim_checkpoint(PROFILE, "ahm", cfg.bd.batch_size, seed))
    return save_checkpoint(path, build_net(cfg.model), cfg.override(seed=seed or cfg.seed), stage="bd/ahm", step=1,
                           complete=True)


def _mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    """AlexPUL's two micro rounds and the claim's controls (seed 1 its own runs), trained once."""
    root = tmp_path_factory.mktemp("rounds_claim")
    with pytest.MonkeyPatch.context() as mp:
        use_output_dirs(mp, root)
        cfg = _micro_cfg()
        _save_bd(cfg, 0)
        _save_bd(cfg, 5, seed=1)
        tc.run_alexpul(cfg, device="cpu", progress=False)
        controls = tc.train_rounds_controls(cfg, device="cpu", progress=False)
        yield root, cfg, controls


@pytest.fixture
def env(micro, monkeypatch):
    root, cfg, controls = micro
    use_output_dirs(monkeypatch, root)
    return cfg, controls


def test_other_seeds_train_their_own_rounds_and_control_from_their_bd_and_are_reused(env, capsys):
    from pulkit.method.loop import load_training_checkpoint
    from pulkit.method.mining import pairs_suffix
    from pulkit.method.tc import file_digest

    cfg, controls = env
    d = artifacts.rounds_seed_dir(PROFILE, 1)
    assert set(controls["seeds"]) == {1}                         # seed 0 is the main run: its checkpoints
    assert controls["seeds"][1]["rounds"] == [d / "tc_round1.pt", d / "tc_round2.pt"]
    assert controls["seeds"][1]["no_remine"] == d / "no_remine.pt"
    assert not (artifacts.rounds_seed_dir(PROFILE, 0)).exists()
    bd = artifacts.bd_claim_checkpoint(PROFILE, "ahm", cfg.bd.batch_size, 1)      # seed 1's own BD model
    assert tc.seed_bd(cfg, 1) == bd and tc.seed_bd(cfg, 0) == artifacts.bd_checkpoint(PROFILE)
    assert file_digest(bd) != file_digest(artifacts.bd_checkpoint(PROFILE))
    for r in (1, 2):
        ck = load_training_checkpoint(d / f"tc_round{r}.pt")
        assert ck["complete"] and ck["config"]["seed"] == 1 and ck["config"]["tc"]["claim_seeds"] is None
    assert tc.first_stale_round(d, bd, cfg.tc.rounds) is None
    from pulkit.core.io import read_json
    assert read_json(d / "pairs_round1.json")["init_digest"] == file_digest(bd)
    once = load_training_checkpoint(d / "no_remine.pt")
    assert once["config"]["seed"] == 1 and once["step"] == cfg.tc.rounds * cfg.tc.steps_per_round
    assert read_json(tc.control_inputs_path(d / "no_remine.pt")) == {
        "init_digest": file_digest(bd), "pairs_digest": file_digest(d / f"pairs_round1{pairs_suffix()}")}
    main = load_training_checkpoint(controls["no_remine"])       # the main seed's control, as before
    assert main["config"]["seed"] == cfg.seed and controls["no_remine"].parent == artifacts.rounds_controls_dir(PROFILE)

    before = _mtimes(artifacts.rounds_controls_dir(PROFILE))
    again = tc.train_rounds_controls(cfg, device="cpu", progress=False)
    assert again == controls and _mtimes(artifacts.rounds_controls_dir(PROFILE)) == before   # nothing retrained
    assert "rounds claim, seed 1" in capsys.readouterr().out


def test_records_combine_a_paired_difference_per_seed(env, monkeypatch):
    from pulkit.evaluation.powered import combine_seeds, verdict
    from pulkit.figures import temporal_correspondence as figs

    cfg, controls = env
    seen = []
    real = tc.localisation

    def spy(*a, **k):
        seen.append(k.get("precision"))
        return real(*a, **k)
    monkeypatch.setattr(tc, "localisation", spy)
    claim = tc.rounds_claim(cfg, controls, device="cpu", progress=False, k=1)
    assert seen and set(seen) == {"fp32"}                        # smoke trains and tracks in fp32
    assert claim["seeds"] == [0, 1] and claim["arms"]["1"] == {"treatment": "round 2 (seed 1)",
                                                               "control": "no re-mining (seed 1)"}
    loc, mine, rbn, ref = claim["claims"]
    for rec in (loc, mine):
        assert rec["seeds"] == [0, 1] and [p["seed"] for p in rec["per_seed"]] == [0, 1]
        combined = combine_seeds(rec["per_seed"])
        assert rec["diff"] == pytest.approx(combined["diff"]) and rec["se"] == pytest.approx(combined["se"])
        assert rec["n"] == sum(p["n"] for p in rec["per_seed"]) and rec["verdict"] == verdict(rec["diff"], rec["se"])
    m = claim["measures"]
    assert loc["per_seed"][1]["diff"] == pytest.approx(m["round 2 (seed 1)"]["accuracy"]
                                                       - m["no re-mining (seed 1)"]["accuracy"])
    assert loc["per_seed"][0]["diff"] == pytest.approx(m["round 2"]["accuracy"] - m["no re-mining"]["accuracy"])
    assert rbn["seeds"] == [0] and ref["seeds"] == [0] and "per_seed" not in rbn
    for name in ("round 2", "no re-mining", "round 2 (seed 1)", "no re-mining (seed 1)"):
        assert "mining_error_k1" in m[name]
    table = tc.claim_table(claim)
    assert {"round 2 (seed 1)", "no re-mining (seed 1)"} <= set(table.index)
    assert table.loc["round 2 (seed 1)", "pairs_scored"] >= 0
    fig = figs.rounds_claim(claim)
    assert len(fig.axes[0].patches) == len(m)

    records = tc.round_records(cfg)
    path = tc.write_results(cfg, records, tc.mining_report(cfg, device="cpu", progress=False),
                            tc.gallery_examples(cfg, per_round=1), claim)
    import json
    saved = json.loads(path.read_text())
    assert saved["claims"][0]["per_seed"] == json.loads(json.dumps(loc["per_seed"]))
    assert saved["rounds_claim"]["seeds"] == [0, 1] and "round 2 (seed 1)" in saved["rounds_claim"]["measures"]
    figs.rounds_claim_from_results(PROFILE)


def test_claim_without_the_seeds_runs_names_the_step_to_run(env):
    cfg, controls = env
    with pytest.raises(ValueError, match="claim seed 1.*train_rounds_controls"):
        tc.claim_arms(cfg, {k: v for k, v in controls.items() if k != "seeds"})
    arms = tc.claim_arms(cfg.override({"tc": {"claim_seeds": (1,)}}), controls)   # main seed not among them
    assert list(arms) == [1] and arms[1][0] == "round 2 (seed 1)"


def test_a_changed_bd_checkpoint_retrains_the_seeds_rounds_and_control(tmp_path, monkeypatch):
    from pulkit.core.io import read_json
    from pulkit.method.tc import file_digest

    use_output_dirs(monkeypatch, tmp_path)
    cfg = _micro_cfg().override({"tc": {"rounds": 1}})
    _save_bd(cfg, 0)
    _save_bd(cfg, 5, seed=1)
    tc.run_alexpul(cfg, device="cpu", progress=False)
    tc.train_rounds_controls(cfg, device="cpu", progress=False)
    d = artifacts.rounds_seed_dir(PROFILE, 1)
    first = {f: (d / f).read_bytes() for f in ("tc_round1.pt", "no_remine.pt")}
    bd = _save_bd(cfg, 1, seed=1)                                # notebook 01 re-ran: another BD model of seed 1
    assert tc.first_stale_round(d, bd, 1) == 1
    tc.train_rounds_controls(cfg, device="cpu", progress=False)
    assert tc.first_stale_round(d, bd, 1) is None
    assert read_json(d / "pairs_round1.json")["init_digest"] == file_digest(bd)
    assert read_json(tc.control_inputs_path(d / "no_remine.pt"))["init_digest"] == file_digest(bd)
    for f, old in first.items():
        assert (d / f).read_bytes() != old, f"{f} was not retrained from the new BD checkpoint"


def test_a_seed_without_its_bd_model_is_refused_before_anything_trains(env):
    cfg, _ = env
    with pytest.raises(ValueError, match="seed 2.*bd.claim_seeds_main.*add 2"):
        tc.seed_bd(cfg.override({"tc": {"claim_seeds": (0, 2)}}), 2)
    with pytest.raises(ValueError, match="seed 2.*bd.claim_seeds_main"):
        tc.train_rounds_controls(cfg.override({"tc": {"claim_seeds": (0, 1, 2)}}), device="cpu", progress=False)
    missing = cfg.override({"tc": {"claim_seeds": (0, 3)}, "bd": {"claim_seeds_main": (0, 3)}})
    with pytest.raises(Exception, match="bd_ahm_b.*_s3"):          # in the plan but not trained: names the file
        tc.seed_bd(missing, 3)
