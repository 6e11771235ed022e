"""Supervised SiamFC / SiamDW on ground-truth pairs: both losses, both backbones, resume, data guards."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import pulkit.method.supervised as sup_mod
from pulkit.core.config import load_config
from pulkit.data.sequences import DataError, read_got10k, unlabeled
from pulkit.data.synthetic import generate_split, video_name
from pulkit.method.loop import is_complete
from pulkit.method.supervised import (
    build_initial_net,
    check_training_sequences,
    log_path,
    matches,
    response_loss,
    run_config,
    train_supervised,
)
from pulkit.models.net import load_checkpoint, load_net

# exemplar 95 / search 127: AlexNet 2x2 and 6x6 features, CIResNet-22 1x1 and 5x5: 5x5 responses
TINY = {"model": dict(exemplar_sz=95, instance_sz=127),
        "supervised": dict(steps=2, batch_size=2, checkpoint_every=1, log_every=1, max_gap=3)}


@pytest.fixture(scope="module")
def train_seqs(tmp_path_factory):
    root = generate_split(tmp_path_factory.mktemp("sup") / "train", n_videos=2, n_frames=6, width=96, height=72,
                          seed=7, n_distractors=0)
    return read_got10k(root, subset="train")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PULKIT_DATA", str(tmp_path_factory.mktemp("data")))      # crop cache in a tmp folder
        yield load_config("smoke", TINY, device="cpu")


@pytest.fixture(scope="module")
def trained(cfg, train_seqs, tmp_path_factory):
    """One straight 2-step run per loss (noise 10 px, seed 3), shared by the tests below (read-only)."""
    out = tmp_path_factory.mktemp("runs")
    return {loss: train_supervised(cfg, train_seqs, out / f"{loss}.pt", loss=loss, noise_px=10, seed=3,
                                   progress=False) for loss in ("bce", "nr")}


def _log(path):
    return [json.loads(line) for line in log_path(path).read_text().splitlines()]


@pytest.mark.parametrize("loss", ["bce", "nr"])
def test_trains_both_losses(cfg, trained, loss):
    ckpt = trained[loss]
    assert is_complete(ckpt)
    ck = load_checkpoint(ckpt)
    assert ck["stage"] == f"supervised/{loss}" and ck["step"] == 2
    assert ck["config"]["supervised"]["loss"] == loss and ck["config"]["supervised"]["noise_px"] == 10
    assert ck["config"]["seed"] == 3 and ck["config"]["nr"] == cfg.to_dict()["nr"]   # sigma never from the noise
    net = load_net(ckpt, device="cpu")
    assert net.arch["backbone"] == "alexnet" and net.arch["exemplar_sz"] == 95
    log = _log(ckpt)
    assert [r["step"] for r in log] == [1, 2]
    assert all(f"{loss}_loss" in r and 0 <= r["giveup_frac"] <= 1 and np.isfinite(r["loss"]) for r in log)
    assert log[0]["lr"] == pytest.approx(cfg.supervised.lr) and log[1]["lr"] == pytest.approx(cfg.supervised.lr_end)


def test_ciresnet22_code_path(cfg, train_seqs, tmp_path):
    c = cfg.override({"supervised": {"steps": 1}})
    ckpt = train_supervised(c, train_seqs, tmp_path / "dw.pt", loss="nr", backbone="ciresnet22", progress=False)
    net = load_net(ckpt, device="cpu", expect_backbone="ciresnet22")
    assert net(torch.zeros(1, 3, 95, 95), torch.zeros(1, 3, 127, 127)).shape == (1, 1, 5, 5)


def test_head_calibration_keeps_a_fresh_siamdw_out_of_the_give_up_regime(cfg, train_seqs, tmp_path):
    """SiamDW's 0.1 head on a fresh CIResNet-22 gives logits ~ +-100 (NR gives up on every sample, BCE
    saturates); the calibrated head starts near std 0.5, so the first step's NR loss is sane."""
    c = cfg.override({"supervised": {"steps": 1}})
    runs = {}
    for cal in (None, 0.5):
        cc = c.override({"supervised": {"head_calibration": cal}})
        ckpt = train_supervised(cc, train_seqs, tmp_path / f"dw_{cal}.pt", loss="nr", backbone="ciresnet22",
                                progress=False)
        runs[cal] = (_log(ckpt)[0], load_checkpoint(ckpt)["arch"]["head_scale"])
    assert runs[None][1] == pytest.approx(0.1) and runs[None][0]["giveup_frac"] == 1.0
    assert runs[0.5][1] < 0.01 and runs[0.5][0]["giveup_frac"] < 1.0
    assert 0 < runs[0.5][0]["nr_loss"] <= np.log(2) + 1e-6


def test_resume_continues_bitwise(cfg, train_seqs, trained, tmp_path, monkeypatch):
    real, calls = sup_mod.response_loss, []

    def dies_at_second_step(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    kw = dict(loss="nr", noise_px=10, seed=3, progress=False)
    monkeypatch.setattr(sup_mod, "response_loss", dies_at_second_step)
    with pytest.raises(KeyboardInterrupt):
        train_supervised(cfg, train_seqs, tmp_path / "b.pt", **kw)
    assert not is_complete(tmp_path / "b.pt") and load_checkpoint(tmp_path / "b.pt")["step"] == 1
    monkeypatch.setattr(sup_mod, "response_loss", real)
    resumed = train_supervised(cfg, train_seqs, tmp_path / "b.pt", **kw)
    a, b = load_checkpoint(trained["nr"])["model"], load_checkpoint(resumed)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in _log(resumed)] == [1, 2]


def test_held_crops_train_the_same_weights_as_the_crop_cache(cfg, train_seqs, trained, tmp_path, monkeypatch):
    """``data.hold_crops``: ``always`` holds the run's crops in a uint8 store (on the CPU here), ``never`` and
    ``auto`` on the CPU cut them through the cache; the weights are the same bit for bit."""
    real, held = sup_mod.GroundTruthPairs.hold, []

    def spy(self, device="cpu", progress=True):
        held.append(torch.device(device).type)
        return real(self, device, progress)

    monkeypatch.setattr(sup_mod.GroundTruthPairs, "hold", spy)
    weights = {"auto": load_checkpoint(trained["nr"])["model"]}              # the default: auto
    for mode in ("always", "never"):
        ckpt = train_supervised(cfg.override({"data": {"hold_crops": mode}}), train_seqs, tmp_path / f"{mode}.pt",
                                loss="nr", noise_px=10, seed=3, progress=False)
        weights[mode] = load_checkpoint(ckpt)["model"]
    assert held == ["cpu"]
    a = weights["auto"]
    assert all(torch.equal(a[k], weights[m][k]) for m in ("always", "never") for k in a)


def test_complete_checkpoint_is_reused_without_training(cfg, train_seqs, trained, monkeypatch):
    ckpt = trained["bce"]
    before = ckpt.read_bytes()

    def no_training(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(sup_mod, "train", no_training)
    monkeypatch.setattr(sup_mod, "GroundTruthPairs", no_training)
    # a tracker setting is no training setting: still reused
    again = train_supervised(cfg.override({"tracker": {"scale_num": 1}}), train_seqs, ckpt, loss="bce",
                             noise_px=10, seed=3, progress=False)
    assert again == ckpt and ckpt.read_bytes() == before
    assert matches(ckpt, run_config(cfg, "bce", 10, 3)) and not matches(ckpt, run_config(cfg, "nr", 10, 3))
    assert not matches(ckpt, run_config(cfg, "bce", 5, 3)) and not matches(ckpt, run_config(cfg, "bce", 10, 4))


def test_a_checkpoint_of_another_run_is_retrained_with_a_warning_naming_the_change(cfg, train_seqs, trained,
                                                                                   tmp_path):
    ckpt = tmp_path / "d.pt"
    ckpt.write_bytes(trained["bce"].read_bytes())
    with pytest.warns(UserWarning, match="supervised.noise_px"):
        train_supervised(cfg, train_seqs, ckpt, loss="bce", noise_px=7, seed=3, progress=False)
    assert load_checkpoint(ckpt)["config"]["supervised"]["noise_px"] == 7 and is_complete(ckpt)
    # a change outside the training keys (the tracker) neither retrains nor blocks a resume
    other = cfg.override({"tracker": {"response_up": 8}})
    assert train_supervised(other, train_seqs, ckpt, loss="bce", noise_px=7, seed=3, progress=False) == ckpt


def test_same_seed_same_initial_weights_whatever_the_loss():
    c = load_config("smoke", TINY)
    a, b, other = build_initial_net(c.model, 5), build_initial_net(c.model, 5), build_initial_net(c.model, 6)
    sa, sb, so = a.state_dict(), b.state_dict(), other.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], so[k]) for k in sa)


def test_training_data_guards(cfg, train_seqs):
    seq = train_seqs[0]
    for name in ("otb/Deer", video_name(cfg.data.synthetic_val_seed, 0)):
        bad = type(seq)(name, seq.frames, seq.boxes)
        with pytest.raises(DataError, match="evaluation-only"):
            check_training_sequences(cfg, [seq, bad])
    with pytest.raises(DataError, match="labelled Sequence"):
        check_training_sequences(cfg, [unlabeled(seq)])
    with pytest.raises(DataError, match="no ground truth"):
        check_training_sequences(cfg, [type(seq)("x", seq.frames, None)])
    with pytest.raises(DataError, match="none"):
        check_training_sequences(cfg, [])
    with pytest.raises(ValueError, match="loss"):
        run_config(cfg, "l2")
    with pytest.raises(ValueError, match="backbone"):
        run_config(cfg, "bce", backbone="vgg")
    with pytest.raises(ValueError, match="noise_px"):
        run_config(cfg, "bce", noise_px=-1)


def test_response_loss_matches_the_losses_module():
    from pulkit.losses import balanced_bce, nr_loss, positive_masks

    nr_cfg = load_config("smoke").nr
    g = torch.Generator().manual_seed(0)
    logits, centers = torch.randn(3, 1, 9, 9, generator=g), torch.tensor([[0.0, 0.0], [1.0, -0.5], [-2.0, 1.0]])
    value, m = response_loss(logits, centers, "bce", nr_cfg, 8)
    labels = positive_masks((9, 9), nr_cfg.r_pos / 8, centers, norm=nr_cfg.norm)
    assert torch.allclose(value, balanced_bce(logits, labels))
    assert m["giveup_frac"] == pytest.approx(float((balanced_bce(logits, labels, reduction="none") > 1).float().mean()))
    value, m = response_loss(logits, centers, "nr", nr_cfg, 8)
    assert torch.allclose(value, nr_loss(logits, nr_cfg.sigma_px / 8, nr_cfg.r_pos / 8, center=centers))
    assert "mean_Eg" in m
    with pytest.raises(ValueError, match="loss"):
        response_loss(logits, centers, "mse", nr_cfg, 8)
