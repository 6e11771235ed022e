"""The noise experiment's orchestration: runs, same data for BCE and NR, resume, aggregation, examples."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import pulkit.method.supervised as sup_mod
from pulkit.core.config import ConfigError, load_config
from pulkit.data.sequences import read_got10k
from pulkit.data.synthetic import generate_split
from pulkit.experiments import noise_robustness as noise
from pulkit.method.pairs import GroundTruthPairs, noisy_boxes

MICRO = {
    "data": dict(synthetic_train_videos=2, synthetic_val_videos=1, synthetic_frames=8, synthetic_width=96,
                 synthetic_height=72, synthetic_distractors=0, max_frames=8),
    "model": dict(exemplar_sz=95, instance_sz=127),
    "supervised": dict(batch_size=2, checkpoint_every=1, log_every=1, max_gap=3),
    "noise": dict(levels=(0, 20), seeds=(0,), display_levels=(0, 20), fig4_level=20, steps=1, eval_max_frames=3,
                  display_frame=2, display_sequences=("nowhere",)),
    "tracker": dict(response_up=4),
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("noise")
        mp.setenv("PULKIT_DATA", str(root / "data"))
        mp.setenv("PULKIT_RESULTS", str(root / "results"))
        cfg = load_config("smoke", MICRO, device="cpu")
        train = read_got10k(generate_split(root / "train", 2, 6, 96, 72, seed=7, n_distractors=0), subset="train")
        evals = [s.sub(0, 3) for s in read_got10k(generate_split(root / "val", 1, 6, 96, 72, seed=8), subset="val")]
        yield cfg, {"train": train, "eval": evals}, root


class Recorder(GroundTruthPairs):
    """GroundTruthPairs that logs every dataset it builds and every batch it gives."""
    log: list = []

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.entry = {"noise": self.noise_px, "seed": self.seed, "boxes": [b.copy() for b in self.noisy_boxes],
                      "batches": []}
        Recorder.log.append(self.entry)

    def sample_batch(self, batch_size, generator):
        b = super().sample_batch(batch_size, generator)
        self.entry["batches"].append({k: b[k].clone() for k in ("z", "x", "centers", "frames", "index")})
        return b


@pytest.fixture(scope="module")
def experiment(env):
    cfg, seqs, root = env
    Recorder.log = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sup_mod, "GroundTruthPairs", Recorder)
        table = noise.run_noise_experiment(cfg, out=root / "runs", device="cpu", sequences=seqs, progress=False)
    return table, list(Recorder.log)


def test_table_has_one_row_per_run(env, experiment):
    cfg, seqs, root = env
    table, _ = experiment
    assert list(table.columns) == list(noise.RUN_COLUMNS)
    assert sorted(zip(table["loss"], table["noise"], table["seed"])) == \
        [("bce", 0, 0), ("bce", 20, 0), ("nr", 0, 0), ("nr", 20, 0)]
    assert table["auc"].between(0, 1).all() and table["precision"].between(0, 1).all()
    assert (table["frames"] == 3).all() and table["giveup_frac"].between(0, 1).all()
    for r in table.itertuples():
        assert r.checkpoint.endswith(f"{r.loss}_n{r.noise}_s{r.seed}.pt")
        assert (root / "runs" / f"{r.loss}_n{r.noise}_s{r.seed}.pt").is_file()
    per_seq = noise.per_sequence_table(table)
    assert len(per_seq) == 4 * len(seqs["eval"])
    # the run's AUC is the mean of its sequences' (the OTB protocol averages per-sequence curves)
    means = per_seq.groupby(["loss", "noise", "seed"])["auc"].mean()
    for r in table.itertuples():
        assert means[(r.loss, r.noise, r.seed)] == pytest.approx(r.auc)


def test_bce_and_nr_see_the_same_data(experiment):
    _, log = experiment
    assert len(log) == 4
    by = {}
    for e in log:
        by.setdefault((e["noise"], e["seed"]), []).append(e)
    for (n, seed), (a, b) in by.items():
        assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a["boxes"], b["boxes"]))
        # 1 training batch (1 step) + the head calibration's 4 probe batches, identical for both losses
        assert len(a["batches"]) == len(b["batches"]) == 1 + 4
        for ba, bb in zip(a["batches"], b["batches"]):
            assert all(torch.equal(ba[k], bb[k]) for k in ba)
    clean, noisy = by[(0, 0)][0], by[(20, 0)][0]
    shifts = np.concatenate([nb[:, :2] - cb[:, :2] for nb, cb in zip(noisy["boxes"], clean["boxes"])])
    assert np.abs(shifts).max() <= 20 and np.abs(shifts).max() > 5          # U[-20, 20] per axis, drawn once
    assert all(np.array_equal(nb[:, 2:], cb[:, 2:]) for nb, cb in zip(noisy["boxes"], clean["boxes"]))


def test_second_call_trains_and_tracks_nothing(env, experiment, monkeypatch):
    cfg, seqs, root = env
    table, _ = experiment

    def forbidden(*a, **k):
        raise AssertionError("work was redone")

    monkeypatch.setattr(sup_mod, "train", forbidden)
    monkeypatch.setattr("pulkit.tracking.siamfc.SiamFCTracker.update", forbidden)
    again = noise.run_noise_experiment(cfg, out=root / "runs", device="cpu", sequences=seqs, progress=False)
    pd.testing.assert_frame_equal(again, table)


def test_response_examples_and_results_files(env, experiment):
    cfg, seqs, root = env
    table, _ = experiment
    ex = noise.response_examples(cfg, table, device="cpu", sequences=seqs["eval"])
    assert ex["levels"] == [0, 20] and ex["display_levels"] == [0, 20] and ex["fig4_level"] == 20
    assert [(p["sequence"], p["frame"]) for p in ex["picks"]] == [(seqs["eval"][0].name, 2)]
    pick = ex["picks"][0]
    assert pick["image"].dtype == np.uint8 and pick["image"].ndim == 3
    seq = seqs["eval"][0]
    for p in ex["panels"]:
        assert p["noisy_box"] == pytest.approx(noisy_boxes(seq.boxes, p["level"], 0, seq.name)[2].tolist())
        assert p["true_box"] == pytest.approx(seq.boxes[2].tolist())
        for loss in ("bce", "nr"):
            assert np.asarray(p["responses"][loss]).shape == (5, 5) and len(p["boxes"][loss]) == 4
    assert ex["panels"][0]["noisy_box"] == ex["panels"][0]["true_box"]            # n = 0: no noise
    with pytest.raises(ValueError, match="no evaluation sequence"):
        noise.response_examples(cfg, table, picks=[("nope", 1)], device="cpu", sequences=seqs["eval"])
    with pytest.raises(ValueError, match="no checkpoint"):
        noise.response_examples(cfg, table, levels=[30], device="cpu", sequences=seqs["eval"])

    path = noise.write_results(cfg, table, ex)
    from pulkit.core.results import load_results
    from pulkit.figures.noise_robustness import load_examples

    rec = load_results(cfg.profile, "04_noise_robustness")
    assert path.name == "04_noise_robustness.json" and rec["summary"]["runs"] == 4 and "provenance" in rec
    assert all(r["checkpoint"].startswith("noise/") for r in rec["runs"])             # no machine paths
    back = load_examples(cfg.profile)
    assert np.array_equal(back["picks"][0]["image"], pick["image"])


def test_summaries_on_a_known_table():
    rows = [("bce", 0, 0, 0.50), ("nr", 0, 0, 0.49), ("bce", 0, 1, 0.52), ("nr", 0, 1, 0.54),
            ("bce", 50, 0, 0.40), ("nr", 50, 0, 0.44), ("bce", 50, 1, 0.42), ("nr", 50, 1, 0.45)]
    t = pd.DataFrame(rows, columns=["loss", "noise", "seed", "auc"])
    s = noise.summarize(t).set_index(["loss", "noise"])
    assert s.loc[("bce", 50), "auc_mean"] == pytest.approx(0.41)
    assert s.loc[("bce", 50), "auc_std"] == pytest.approx(0.01)
    assert s.loc[("nr", 0), "auc_min"] == pytest.approx(0.49) and s.loc[("nr", 0), "seeds"] == 2
    g = noise.relative_gain(t).set_index("noise")
    assert g.loc[50, "gain"] == pytest.approx((0.445 - 0.41) / 0.41)
    assert g.loc[50, "nr_wins"] == 2 and g.loc[0, "nr_wins"] == 1 and g.loc[50, "separated"]
    assert not g.loc[0, "separated"]
    summ = noise.summary_numbers(t)
    assert summ["gain_pct_n50"] == pytest.approx(100 * (0.445 - 0.41) / 0.41, abs=0.01)
    assert summ["levels_nr_better"] == 2 and summ["seeds"] == 2
    text = noise.describe_trend(t)
    assert "n =  50 px" in text and "2 of 2 noise levels" in text
    with pytest.raises(ValueError, match="more than one row"):
        noise.summarize(pd.concat([t, t]))
    with pytest.raises(ValueError, match="unknown loss"):
        noise.summarize(t.assign(loss="mse"))


def test_config_checks():
    base = load_config("smoke")
    noise.check_noise_config(base)
    for bad in (dict(levels=(0, -5)), dict(display_levels=(0, 30)), dict(fig4_level=40), dict(seeds=()),
                dict(steps=0), dict(eval_max_frames=1)):
        with pytest.raises(ConfigError):
            noise.check_noise_config(base.override({"noise": bad}))
    for profile in ("smoke", "cpu", "paper"):
        noise.check_noise_config(load_config(profile))
    c = noise.noise_run_config(base, "nr", 50, 1)
    assert c.supervised.steps == base.noise.steps and c.supervised.noise_px == 50 and c.seed == 1
    assert c.nr == base.nr


def test_experiment_sequences_keep_training_and_evaluation_apart(env):
    cfg, _, _ = env
    seqs = noise.experiment_sequences(cfg)
    train, evals = {s.name for s in seqs["train"]}, {s.name for s in seqs["eval"]}
    assert not train & evals
    assert {"otb/Crossing", "otb/Deer", "vot/bag"} <= evals and not train & {"otb/Skating1", "vot/ball1"}
    assert all(s.attributes["source"] == "synthetic" for s in seqs["train"]) and len(train) == 2
    assert all(len(s) <= 3 for s in seqs["eval"])


def test_with_levels_keeps_the_config_runnable():
    base = load_config("cpu")
    c = noise.with_levels(base, [0, 10, 25], seeds=[3])
    assert c.noise.levels == (0, 10, 25) and c.noise.seeds == (3,)
    assert c.noise.display_levels == (0, 25) and c.noise.fig4_level == 25
    assert noise.with_levels(base) is base
    with pytest.raises(ConfigError):
        noise.with_levels(base, [0, 0])
