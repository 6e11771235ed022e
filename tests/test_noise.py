"""The noise experiment: size-relative noise, the fixed noisy set, matched sigma, steps, claims, end to end."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from pulkit.core.config import ConfigError, load_config
from pulkit.data import crops
from pulkit.data.sequences import read_got10k
from pulkit.data.synthetic import generate_split
from pulkit.evaluation import powered
from pulkit.experiments import noise_robustness as noise
from pulkit.method.pairs import noisy_boxes

MICRO = {
    "data": dict(synthetic_train_videos=2, synthetic_val_videos=1, synthetic_frames=8, synthetic_width=96,
                 synthetic_height=72, synthetic_distractors=0, max_frames=8),
    "model": dict(exemplar_sz=95, instance_sz=127),
    "supervised": dict(batch_size=2, checkpoint_every=2, log_every=1, max_gap=3),
    "noise": dict(unit="size", levels=(0, 1.0), seeds=(0,), nr_levels=(1.0,), nr_fixed_levels=(1.0,),
                  display_levels=(0, 1.0), fig4_level=1.0, train_pairs=6, epochs=2, eval_max_frames=3,
                  display_frame=2, display_sequences=("nowhere",)),
    "tracker": dict(response_up=4),
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("noise")
        mp.setenv("PULKIT_DATA", str(root / "data"))
        mp.setenv("PULKIT_RESULTS", str(root / "results"))
        mp.setenv("PULKIT_FIGURES", str(root / "figures"))
        cfg = load_config("smoke", MICRO, device="cpu")
        train = read_got10k(generate_split(root / "train", 2, 6, 96, 72, seed=7, n_distractors=0), subset="train")
        val = read_got10k(generate_split(root / "val", 2, 6, 96, 72, seed=8), subset="val")
        pairs = powered.clean_pairs(cfg, val, n=12, seed=0)
        yield cfg, {"train": train, "eval": [s.sub(0, 3) for s in val]}, pairs, root


# --------------------------------------------------------------------------- the noise model
def test_size_relative_noise_is_a_fraction_of_each_box():
    rng = np.random.default_rng(0)
    boxes = np.column_stack([rng.uniform(0, 50, (400, 2)), rng.uniform(10, 80, (400, 2))])
    boxes[5] = np.nan
    n = noise.noise_halfwidth(boxes, 0.5, "size")
    assert n[0] == pytest.approx(0.5 * math.sqrt(boxes[0, 2] * boxes[0, 3])) and np.isnan(n[5])
    shifted = noise.noisy_annotations(boxes, 0.5, "size", seed=3, name="v")
    d = shifted[:, :2] - boxes[:, :2]
    ok = ~np.isnan(d).any(axis=1)
    assert (np.abs(d[ok]) <= n[ok, None] + 1e-9).all()                       # U[-n, n] per axis ...
    assert (np.abs(d[ok]) / n[ok, None]).max() > 0.97                        # ... and it reaches the bound
    assert abs(np.mean(d[ok] / n[ok, None])) < 0.06                          # zero mean
    assert np.array_equal(shifted[:, 2:], boxes[:, 2:], equal_nan=True) and np.isnan(shifted[5]).all()
    # one stream per (seed, name): the same directions at every level, scaled by the level
    double = noise.noisy_annotations(boxes, 1.0, "size", seed=3, name="v")
    assert np.allclose(double[ok, :2] - boxes[ok, :2], 2 * d[ok])
    assert np.array_equal(noise.noisy_annotations(boxes, 0, "size", 3, "v"), boxes, equal_nan=True)
    assert not np.allclose(noise.noisy_annotations(boxes, 0.5, "size", 4, "v")[ok], shifted[ok])
    # unit px is the old noise model, unchanged
    assert np.array_equal(noise.noisy_annotations(boxes, 20, "px", 3, "v"), noisy_boxes(boxes, 20, 3, "v"), equal_nan=True)
    assert np.all(noise.noise_halfwidth(boxes[:3], 20, "px") == 20)
    with pytest.raises(ValueError):
        noise.noise_halfwidth(boxes, 1, "inches")


def test_matched_sigma_arithmetic():
    # n = 30 frame px at 2 search-crop px per frame px: std of U[-60, 60] = 60 / sqrt(3)
    assert noise.matched_sigma_px(30, 2.0, 1.0) == pytest.approx(60 / math.sqrt(3))
    assert noise.matched_sigma_px(0, 2.0, 1.0) == 1.0                        # the floor makes n = 0 work
    assert np.allclose(noise.matched_sigma_px([0.1, 9], [1, 1], 0.5), [0.5, 9 / math.sqrt(3)])
    u = np.random.default_rng(0).uniform(-60, 60, 200000)
    assert u.std() == pytest.approx(60 / math.sqrt(3), rel=0.01)


# --------------------------------------------------------------------------- the fixed noisy set
def test_fixed_set_labels_geometry_and_sigma(env):
    cfg, seqs, _, _ = env
    train = seqs["train"]
    draw = noise.draw_pairs(cfg, train, 0)
    assert len(draw["video"]) == 6 and sorted(set(draw["video"])) == [0, 1]              # spread over videos
    gaps = np.abs(draw["frames"][:, 1] - draw["frames"][:, 0])
    assert (gaps >= 1).all() and (gaps <= cfg.supervised.max_gap).all()
    s = noise.shift_range(cfg)
    assert s == pytest.approx(powered.SHIFT_OF_REACH * powered.response_reach(95, 127))
    assert (np.abs(draw["shift"]) <= s).all()
    clean = noise.fixed_training_set(cfg, train, 0.0, 0, draw)
    noisy = noise.fixed_training_set(cfg, train, 1.0, 0, draw)
    assert clean.z.dtype == torch.uint8 and clean.x.shape == (6, 3, 127, 127) and clean.z.shape == (6, 3, 95, 95)
    assert torch.equal(clean.label, -torch.from_numpy(draw["shift"]).float())             # the label sits at -shift
    assert torch.allclose(clean.true, clean.label, atol=1e-4)                             # n = 0: label = truth
    assert torch.equal(clean.z, noisy.z)                                                   # exemplars are clean
    assert torch.equal(noisy.label, clean.label) and not torch.allclose(noisy.true, clean.true)
    for k in range(6):
        i, (a, b) = int(draw["video"][k]), draw["frames"][k]
        w, h = train[i].boxes[b, 2:]
        _, x_sz = crops.crop_sizes(w, h, 95, 127, cfg.model.context)
        scale, n = 127 / x_sz, math.sqrt(w * h)                                           # f = 1: n = sqrt(wh)
        err = (noisy.label[k] - noisy.true[k]).numpy()                                     # the label's error, crop px
        assert (np.abs(err) <= n * scale + 1e-3).all()
        want = noise.noisy_annotations(train[i].boxes, 1.0, "size", 0, train[i].name)[b, :2] - train[i].boxes[b, :2]
        assert np.allclose(err, want * scale, atol=1e-3)
        assert float(noisy.sigma_px[k]) == pytest.approx(max(cfg.noise.sigma_floor_px, n * scale / math.sqrt(3)), rel=1e-5)
        assert float(clean.sigma_px[k]) == pytest.approx(cfg.noise.sigma_floor_px)


def test_fixed_set_is_deterministic_per_seed_and_the_same_every_epoch(env):
    cfg, seqs, _, _ = env
    a = noise.fixed_training_set(cfg, seqs["train"], 1.0, 0)
    b = noise.fixed_training_set(cfg, seqs["train"], 1.0, 0)
    for f in ("z", "x", "label", "true", "sigma_px", "frames"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    c = noise.fixed_training_set(cfg, seqs["train"], 1.0, 1)
    assert not (torch.equal(a.frames, c.frames) and torch.equal(a.label, c.label))
    order = noise.epoch_order(len(a), epochs=3, batch_size=4, seed=0)
    assert order.shape == (math.ceil(6 * 3 / 4), 4)
    flat = order.ravel()
    for e in range(3):                                       # every epoch is a permutation of the set
        assert sorted(flat[6 * e:6 * e + 6]) == list(range(6))
    assert np.array_equal(order, noise.epoch_order(6, 3, 4, seed=0)) and not np.array_equal(order, noise.epoch_order(6, 3, 4, 1))
    seen: dict[int, tuple] = {}
    for row in order:                                        # a pair's crop and label never change
        batch = a.batch(row)
        for j, i in enumerate(batch["index"].tolist()):
            item = (batch["x"][j].clone(), batch["centers"][j].clone(), batch["sigma"][j].clone())
            if i in seen:
                assert all(torch.equal(p, q) for p, q in zip(seen[i], item))
            seen[i] = item
    assert torch.allclose(a.batch([0])["centers"], a.label[:1] / 8)


def test_the_noise_runs_have_their_own_rate():
    """``noise.lr`` sets the runs' rate (unset: ``supervised.lr``): tuning the clean supervised rate must not
    change whether BCE can memorise the fixed noisy set (at 3e-3 it did not, and the experiment lost its point)."""
    cfg = load_config("smoke", {"supervised": dict(lr=3e-3)})
    assert cfg.noise.lr is None and noise.noise_run_config(cfg, "bce", 1.0, 0).supervised.lr == 3e-3
    own = cfg.override({"noise": {"lr": 0.02}})
    rc = noise.noise_run_config(own, "bce", 1.0, 0)
    assert rc.supervised.lr == 0.02 and rc.noise.lr == 0.02
    cpu = load_config("cpu")
    assert cpu.noise.lr == 1e-2 and cpu.supervised.lr == 3e-3


def test_steps_follow_from_epochs():
    cfg = load_config("smoke", {"noise": dict(train_pairs=10, epochs=3), "supervised": dict(batch_size=4)})
    assert noise.train_steps(cfg) == 8                                        # ceil(10 * 3 / 4)
    rc = noise.noise_run_config(cfg, "nr_fixed", 1.0, 2)
    assert rc.supervised.steps == 8 and rc.supervised.loss == "nr" and rc.seed == 2 and rc.noise.levels == (1.0,)
    fresh = load_config("smoke", {"noise": dict(train_pairs=None, epochs=None, steps=5)})
    assert noise.train_steps(fresh) == 5 and not noise.fixed_set(fresh)
    assert noise.train_steps(load_config("paper")) == load_config("paper").supervised.steps
    cpu = load_config("cpu")
    assert noise.train_steps(cpu) == math.ceil(cpu.noise.train_pairs * cpu.noise.epochs / cpu.supervised.batch_size)
    assert cpu.noise.train_pairs <= 500 and cpu.noise.epochs >= 15 and cpu.noise.unit == "size"
    assert tuple(cpu.noise.levels) == (0, 0.25, 0.5, 1.0) and len(cpu.noise.seeds) >= 3
    smoke = load_config("smoke")
    assert smoke.noise.unit == "size" and tuple(smoke.noise.levels) == (0, 1.0) and len(smoke.noise.seeds) == 2


def test_config_checks_and_grid():
    base = load_config("smoke")
    noise.check_noise_config(base)
    for bad in (dict(levels=(0, -1.0)), dict(unit="cm"), dict(display_levels=(0, 0.3)), dict(fig4_level=0.7),
                dict(seeds=()), dict(train_pairs=None), dict(epochs=0), dict(sigma_floor_px=0.0),
                dict(nr_levels=(0.5,)), dict(unit="px", levels=(0, 2.5), display_levels=(0,), fig4_level=0),
                dict(eval_pairs=1)):
        with pytest.raises(ConfigError):
            noise.check_noise_config(base.override({"noise": bad}))
    for profile in ("smoke", "cpu", "paper"):
        noise.check_noise_config(load_config(profile))
    g = noise.grid(base.override({"noise": dict(nr_levels=(1.0,), nr_fixed_levels=(1.0,))}))
    assert g == [("bce", 0.0), ("bce", 1.0), ("nr", 1.0), ("nr_fixed", 1.0)]
    full = noise.grid(load_config("paper"))
    assert len(full) == 3 * 6 and ("nr_fixed", 50.0) in full
    c = noise.with_levels(load_config("cpu"), [0, 0.5], seeds=[3])
    assert c.noise.levels == (0.0, 0.5) and c.noise.seeds == (3,) and c.noise.fig4_level == 0.5
    assert noise.with_levels(base) is base
    with pytest.raises(ConfigError):
        noise.with_levels(base, [0, 0])


def test_evaluation_pairs_are_an_even_subset_of_the_shared_ones(env):
    cfg, _, _, _ = env
    full = powered.eval_pairs(cfg)
    assert noise.evaluation_pairs(cfg.override({"noise": dict(eval_pairs=None)})) is full   # None: all of them
    sub = noise.evaluation_pairs(cfg.override({"noise": dict(eval_pairs=16)}))
    idx = np.arange(16) * len(full) // 16
    assert len(sub) == 16 and torch.equal(sub.x, full.x[idx]) and torch.equal(sub.offset, full.offset[idx])
    assert set(sub.video.tolist()) == set(full.video.tolist())               # every held-out video keeps a share


# --------------------------------------------------------------------------- claims
def _known_runs(top=1.0):
    n = 40
    rng = np.random.default_rng(0)
    hits, keys, rows = {}, {}, []
    for seed in (0, 1, 2):
        base = rng.random(n)
        cells = {("bce", 0.0): base < 0.8, ("bce", top): base < 0.4, ("nr", top): base < 0.6,
                 ("nr_fixed", top): base < 0.3}
        for (loss, lvl), h in cells.items():
            key = f"{loss}_f{lvl:g}_s{seed}"
            hits[key], keys[(loss, lvl, seed)] = h, key
            rows.append({"loss": loss, "level": lvl, "seed": seed, "accuracy": h.mean(), "accuracy_se": 0.05,
                         "error_px": 10.0, "fit_noisy": 0.9 if loss == "bce" else 0.5,
                         "fit_clean": 0.2 if loss == "bce" else 0.4, "sigma_px": np.nan, "steps": 5,
                         "final_loss": 0.1, "giveup_frac": 0.0, "checkpoint": f"/x/{key}.pt"})
    res = noise.NoiseRuns(pd.DataFrame(rows), hits, unit="size", eval_pairs=n, keys=keys,
                          reference={"name": "random_bn", "hit": rng.random(n) < 0.3, "error_px": np.ones(n)})
    return res


def test_claim_records_keys_and_sign():
    res = _known_runs()
    cfg = load_config("smoke")
    recs = noise.claims(cfg, res)
    assert [r["treatment"] for r in recs] == ["NR (sigma matched to the noise)", f"NR (sigma {cfg.nr.sigma_px:g} px)"]
    for r in recs:
        for k in ("claim", "metric", "unit", "treatment", "control", "diff", "se", "n", "seeds", "verdict",
                  "bce_drop", "bce_fit", "level"):
            assert k in r, k
        assert r["claim"] == "nr_noise" and r["unit"] == "fraction" and r["control"] == "BCE" and r["seeds"] == [0, 1, 2]
        assert set(r["bce_drop"]) == {"diff", "se"} and r["bce_fit"] == {"noisy": pytest.approx(0.9), "clean": pytest.approx(0.2)}
        assert r["n"] == 3 * 40 and r["level"] == 1.0 and r["target_met"] is True
    # positive = treatment (NR) better: NR hits base < 0.6 vs BCE base < 0.4; NR fixed (< 0.3) is worse
    expect = np.mean([np.mean((h < 0.6).astype(float) - (h < 0.4)) for h in _bases()])
    assert recs[0]["diff"] == pytest.approx(expect) and recs[0]["diff"] > 0
    assert recs[1]["diff"] < 0 and recs[1]["verdict"] in ("does not hold", "not resolved")
    drop = noise.bce_drop(res)
    assert drop["diff"] == pytest.approx(np.mean([np.mean((h < 0.8).astype(float) - (h < 0.4)) for h in _bases()]))
    assert recs[0]["bce_drop"]["diff"] == pytest.approx(drop["diff"]) and drop["diff"] > 0     # positive: BCE got worse
    comp = noise.comparisons(res)
    assert set(comp["treatment"]) == {"nr@1", "nr_fixed@1", "bce@0"} and set(comp["control"]) == {"bce@1"}
    s = noise.summary_numbers(res)
    assert s["bce_drop"] == pytest.approx(drop["diff"], abs=1e-4) and s["bce_drop_target_met"] is True
    assert s["nr_minus_bce_top"] > 0 and s["fit_noisy_bce_top"] == pytest.approx(0.9)
    assert "target >= 0.10: met" in noise.describe_trend(res)


def _bases():
    rng = np.random.default_rng(0)
    return [rng.random(40) for _ in range(3)]


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def experiment(env):
    cfg, seqs, pairs, root = env
    res = noise.run_noise_experiment(cfg, out=root / "runs", device="cpu", sequences=seqs, pairs=pairs,
                                     reference_sequences=seqs["train"], progress=False)
    return res


def test_experiment_end_to_end(env, experiment):
    cfg, seqs, pairs, root = env
    res = experiment
    df = res.runs
    assert list(df.columns) == list(noise.RUN_COLUMNS)
    assert sorted(zip(df["loss"], df["level"])) == sorted(noise.grid(cfg)) == \
        [("bce", 0.0), ("bce", 1.0), ("nr", 1.0), ("nr_fixed", 1.0)]
    assert (df["steps"] == 6).all()                                           # ceil(6 pairs * 2 epochs / 2)
    assert df["accuracy"].between(0, 1).all() and df["fit_noisy"].between(0, 1).all()
    assert all(len(h) == len(pairs) for h in res.hits.values()) and len(res.reference["hit"]) == len(pairs)
    nr = df[df["loss"] == "nr"].iloc[0]
    assert nr["sigma_px"] > cfg.noise.sigma_floor_px and df[df["loss"] == "nr_fixed"]["sigma_px"].iloc[0] == cfg.nr.sigma_px
    from pulkit.core.io import read_jsonl
    from pulkit.method.loop import load_training_checkpoint
    for r in df.itertuples():
        ck = load_training_checkpoint(r.checkpoint)
        assert ck["step"] == 6 and ck["stage"] == f"noise/{r.loss}" and ck["complete"]
        log = read_jsonl(r.checkpoint[:-3] + ".jsonl")
        assert [rec["step"] for rec in log] == list(range(1, 7))
    assert "sigma_px" in read_jsonl(str(root / "runs" / "nr_f1_s0.jsonl"))[-1]
    recs = noise.claims(cfg, res)
    assert len(recs) == 2 and all(r["claim"] == "nr_noise" for r in recs)

    ex = noise.response_examples(cfg, res, device="cpu", sequences=seqs["eval"])
    assert ex["levels"] == [0.0, 1.0] and ex["fig4_level"] == 1.0 and ex["unit"] == "size"
    by_level = {p["level"]: p for p in ex["panels"]}
    assert set(by_level[0.0]["boxes"]) == {"bce"} and set(by_level[1.0]["boxes"]) == {"bce", "nr"}   # NR not at 0
    assert by_level[0.0]["noisy_box"] == by_level[0.0]["true_box"]
    with pytest.raises(ValueError, match="no BCE checkpoint"):
        noise.response_examples(cfg, res, levels=[0.5], device="cpu", sequences=seqs["eval"])

    path = noise.write_results(cfg, res, ex)
    from pulkit.core.results import load_arrays, load_results
    from pulkit.figures.registry import FIGURES

    rec = load_results(cfg.profile, "04_noise_robustness")
    assert path.name == "04_noise_robustness.json" and rec["summary"]["runs"] == 4 and "provenance" in rec
    assert [c["claim"] for c in rec["claims"]] == ["nr_noise", "nr_noise"]
    assert all(r["checkpoint"].startswith("noise/") for r in rec["runs"])
    assert rec["reference"]["name"] == "random_bn" and rec["setup"]["steps"] == 6
    arrays = load_arrays(cfg.profile, "04_noise_robustness")
    assert np.array_equal(arrays["hit_bce_f1_s0"], res.hits["bce_f1_s0"]) and "hit_random_bn" in arrays
    for name in ("fig3_noise_response_maps", "fig4_noise50", "fig6_accuracy_vs_noise", "noise_label_fit"):
        assert FIGURES[name](cfg.profile) is not None


def test_second_call_trains_nothing(env, experiment, monkeypatch):
    cfg, seqs, pairs, root = env

    def forbidden(*a, **k):
        raise AssertionError("a run was retrained")

    monkeypatch.setattr(noise, "train", forbidden)
    again = noise.run_noise_experiment(cfg, out=root / "runs", device="cpu", sequences=seqs, pairs=pairs,
                                       reference=False, progress=False)
    pd.testing.assert_frame_equal(again.runs, experiment.runs)
    assert again.reference is None


def test_a_changed_set_retrains(env, experiment, tmp_path):
    import shutil

    cfg, seqs, pairs, root = env
    ckpt = noise.checkpoint_path(cfg, "bce", 0.0, 0, tmp_path)
    shutil.copy(noise.checkpoint_path(cfg, "bce", 0.0, 0, root / "runs"), ckpt)
    data = noise.training_data(cfg, seqs["train"], 0.0, 0)
    assert noise.run_complete(ckpt, noise.noise_run_config(cfg, "bce", 0.0, 0), "bce")
    other = cfg.override({"noise": dict(train_pairs=4)})                     # another fixed set: retrain
    assert not noise.run_complete(ckpt, noise.noise_run_config(other, "bce", 0.0, 0), "bce")
    assert not noise.run_complete(ckpt, noise.noise_run_config(cfg, "nr", 0.0, 0), "nr")
    with pytest.warns(UserWarning, match="another run"):
        noise.train_noise_run(other, "bce", 0.0, 0, noise.training_data(other, seqs["train"], 0.0, 0), ckpt,
                              device="cpu", progress=False)
    assert noise.run_complete(ckpt, noise.noise_run_config(other, "bce", 0.0, 0), "bce")
    # what Figs. 3 / 4 display never retrains a run
    shown = cfg.override({"noise": dict(display_frame=1, display_sequences=("x",), eval_max_frames=2)})
    assert noise.run_complete(noise.checkpoint_path(cfg, "nr", 1.0, 0, root / "runs"),
                              noise.noise_run_config(shown, "nr", 1.0, 0), "nr")
    assert len(data) == 6


def test_px_unit_with_fresh_pairs_runs(env):
    cfg, seqs, pairs, root = env
    px = cfg.override({"noise": dict(unit="px", levels=(0, 20), display_levels=(0, 20), fig4_level=20,
                                     nr_levels=(20,), nr_fixed_levels=(20,), train_pairs=None, epochs=None, steps=2)})
    data = noise.training_data(px, seqs["train"], 20, 0)
    assert isinstance(data, noise.FreshPairs) and data.noise_px == 20
    assert all(np.array_equal(b, noisy_boxes(s.boxes, 20, 0, s.name), equal_nan=True)
               for b, s in zip(data.noisy_boxes, data.sequences))
    b = data.sample_batch(3, torch.Generator().manual_seed(0))
    i, fb = int(b["index"][0]), int(b["frames"][0, 1])
    _, x_sz = crops.crop_sizes(*data.noisy_boxes[i][fb, 2:], 95, 127, px.model.context)
    assert float(b["sigma"][0]) * 8 == pytest.approx(20 * 127 / x_sz / math.sqrt(3), rel=1e-5)
    res = noise.run_noise_experiment(px, out=root / "px", device="cpu", sequences=seqs, pairs=pairs,
                                     reference=False, progress=False)
    assert set(res.runs["loss"]) == {"bce", "nr", "nr_fixed"} and (res.runs["steps"] == 2).all()
    assert res.runs["fit_noisy"].isna().all()                                 # fresh pairs: no fixed labels to fit
    assert (root / "px" / "nr_n20_s0.pt").is_file()


def test_experiment_sequences_keep_training_and_evaluation_apart(env):
    cfg, _, _, _ = env
    seqs = noise.experiment_sequences(cfg)
    train, evals = {s.name for s in seqs["train"]}, {s.name for s in seqs["eval"]}
    assert not train & evals
    assert {"otb/Crossing", "otb/Deer", "vot/bag"} <= evals and not train & {"otb/Skating1", "vot/ball1"}
    assert all(s.attributes["source"] == "synthetic" for s in seqs["train"]) and len(train) == 2
    assert all(len(s) <= 3 for s in seqs["eval"])
