"""Stage 1 (BD): projection head, AHM/RSS batch selection, train_bd end to end, resume, checkpoints."""
from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

import pulkit.method.bd as bd_mod
from pulkit.core.config import load_config
from pulkit.core.provenance import seed_everything
from pulkit.data.sequences import LabelAccessError, Sequence, unlabeled
from pulkit.method.bd import (
    bd_batches,
    bd_candidates,
    build_embedder,
    embed_crops,
    hardness_stats,
    load_embedder,
    load_projection,
    log_path,
    make_bank,
    select_batch,
    train_bd,
)
from pulkit.method.loop import NonFiniteLossError
from pulkit.method.reference import estimate_bn_on
from pulkit.method.sampling import BankState
from pulkit.models.backbones import build_backbone
from pulkit.models.net import build_net, load_checkpoint, load_net
from pulkit.models.projection import Embedder, ProjectionHead


# --------------------------------------------------------------------------- fixtures
class LabelTrap(Sequence):
    """A labelled sequence whose labels raise on any read (proof that BD never reads one)."""

    @property
    def boxes(self):
        raise AssertionError(f"{self.name}: BD read a label")

    @boxes.setter
    def boxes(self, value):
        pass

    @property
    def polygons(self):
        raise AssertionError(f"{self.name}: BD read a polygon")

    @polygons.setter
    def polygons(self, value):
        pass


@pytest.fixture
def env(tmp_path, monkeypatch, textured_videos):
    """Crop caches and banks under tmp_path; a tiny config (crop 95: AlexNet 2x2, CIResNet 1x1 features)."""
    monkeypatch.setenv("PULKIT_DATA", str(tmp_path / "data"))
    cfg = load_config("cpu", {
        "bd": dict(steps=2, batch_size=4, bank_refresh=2, checkpoint_every=1, log_every=1, crop_sz=95,
                   candidates_per_frame=2, texture_prior=False, max_candidates=100, exclude_frames=1, separation_frames=1,
                   bank_batch=16),
        "model": dict(exemplar_sz=127, instance_sz=255),
    }, device="cpu")
    videos = textured_videos(tmp_path / "frames")
    return cfg, [LabelTrap(f"vid{v}", frames, np.zeros((len(frames), 4))) for v, frames in enumerate(videos)]


def _weights(path):
    ck = load_checkpoint(path)
    return ck["model"], ck["extra"]["projection"]


# --------------------------------------------------------------------------- projection
def test_projection_head_shape_and_norm():
    torch.manual_seed(0)
    head = ProjectionHead(256, 32, 16)
    kinds = [type(m).__name__ for m in head.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    z = head(torch.randn(5, 256))
    assert z.shape == (5, 16)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(5))


@pytest.mark.parametrize("backbone", ["alexnet", "ciresnet22"])
def test_embedder_pools_backbone_features(backbone):
    torch.manual_seed(0)
    bb = build_backbone(backbone)
    emb = Embedder(bb, ProjectionHead(bb.out_channels, 32, 8)).eval()
    x = torch.rand(2, 3, 95, 95) * 255
    with torch.no_grad():
        z = emb(x)
        torch.testing.assert_close(emb.pool(x), bb(x).mean(dim=(2, 3)))
    assert z.shape == (2, 8)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2))


# --------------------------------------------------------------------------- batch selection
def _toy_bank():
    """8 candidates: video a frames 0..3, video b frames 0..3; anchor row 0 (a, frame 0)."""
    table = pd.DataFrame({"video": ["a"] * 4 + ["b"] * 4, "frame": [0, 1, 2, 3] * 2})
    sims = np.array([1.0, 0.99, 0.98, 0.2, 0.9, 0.1, 0.8, 0.7])   # cosine to the anchor direction
    e = np.stack([sims, np.sqrt(np.clip(1 - sims ** 2, 0, None))], axis=1)
    return table, make_bank(torch.tensor(e, dtype=torch.float32), table)


def _seed_drawing(n, anchor):
    """A generator seed whose first uniform draw over ``n`` rows is ``anchor`` (select_batch's draw)."""
    return next(s for s in range(1000)
                if int(torch.randint(n, (1,), generator=torch.Generator().manual_seed(s))) == anchor)


def test_ahm_picks_nearest_neighbours_outside_exclusion():
    table, bank = _toy_bank()
    seed = _seed_drawing(len(bank), 0)
    g = torch.Generator().manual_seed(seed)
    idx = select_batch(bank, "ahm", 4, exclude_frames=1, generator=g).tolist()
    # rows 1 (a, frame 1) is within +-1 frame of the anchor: excluded although the most similar;
    # row 2 (a, frame 2) is outside the window and kept
    assert idx == [0, 2, 4, 6]
    g.manual_seed(seed)
    idx2 = select_batch(bank, "ahm", 4, exclude_frames=3, generator=g).tolist()
    assert idx2 == [0, 4, 6, 7]                 # the whole of video a is excluded
    for s in range(20):                         # any anchor: never its own video within +-T
        ids = select_batch(bank, "ahm", 3, 1, torch.Generator().manual_seed(s)).tolist()
        a = table.iloc[ids[0]]
        for j in ids[1:]:
            r = table.iloc[j]
            assert not (r.video == a.video and abs(r.frame - a.frame) <= 1)
        sims = (bank.embeddings @ bank.embeddings[ids[0]]).tolist()
        assert sims[ids[1]] >= sims[ids[2]]


def test_ahm_separation_keeps_batch_members_apart():
    _, bank = _toy_bank()
    seed = _seed_drawing(len(bank), 0)
    # anchor (a, 0); plain AHM with T = 1 takes (a, 2), (b, 0), (b, 2): two of video b, 2 frames apart
    assert select_batch(bank, "ahm", 4, 1, torch.Generator().manual_seed(seed)).tolist() == [0, 2, 4, 6]
    # separation 2: (a, 2) is within 2 frames of the anchor and (b, 2) of (b, 0): skipped for (b, 3), (a, 3)
    got = select_batch(bank, "ahm", 4, 1, torch.Generator().manual_seed(seed), separation=2).tolist()
    assert got == [0, 4, 7, 3]
    with pytest.raises(ValueError, match="separation 2"):
        select_batch(bank, "ahm", 5, 1, torch.Generator().manual_seed(seed), separation=2)


def test_rss_uniform_distinct_and_seeded():
    _, bank = _toy_bank()
    a = select_batch(bank, "rss", 5, 1, torch.Generator().manual_seed(3))
    b = select_batch(bank, "rss", 5, 1, torch.Generator().manual_seed(3))
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 5
    with pytest.raises(ValueError, match="sampler"):
        select_batch(bank, "hard", 5, 1, torch.Generator())


def test_bank_state_refresh_schedule_and_roundtrip():
    table, _ = _toy_bank()
    calls = []

    def embed():
        calls.append(1)
        return torch.randn(8, 4, generator=torch.Generator().manual_seed(len(calls)))

    st = BankState(lambda e, step: make_bank(e, table, step), embed, every=3)
    for step in range(7):
        st.at(step)
    assert len(calls) == 3 and st.step == 6               # refreshed at steps 0, 3, 6
    st2 = BankState(lambda e, step: make_bank(e, table, step), embed, every=3)
    st2.load_state_dict(st.state_dict())
    assert st2.step == 6 and torch.equal(st2.at(7).embeddings, st.bank.embeddings)
    assert len(calls) == 3                                 # restored, not recomputed


def test_embed_crops_is_the_eval_embedder(env):
    """A trained model's bank (``bn_batches=None``) is its eval-mode function; the training bank
    (default) is the eval-mode function of a copy whose BN statistics were estimated on the crops."""
    cfg, seqs = env
    table, crops = bd_candidates(cfg, seqs, progress=False)
    seed_everything(0)
    emb = build_embedder(cfg, build_net(cfg.model).backbone).train()
    with torch.no_grad():
        for _ in range(3):                       # non-trivial BatchNorm running statistics
            emb(crops.batch(np.arange(8)))
    before = {k: v.clone() for k, v in emb.state_dict().items()}
    e = embed_crops(emb, crops, batch_size=5, device="cpu", progress=False, bn_batches=None)
    bank = embed_crops(emb, crops, batch_size=5, device="cpu", progress=False, bn_batches=2, seed=3)
    assert emb.training and all(torch.equal(v, before[k]) for k, v in emb.state_dict().items())
    with torch.no_grad():
        ref = emb.eval()(crops.batch(np.arange(len(crops))))
        est = copy.deepcopy(emb)
        estimate_bn_on(est, crops.batch, len(crops), 5, 2, seed=3)
        ref_bank = est.eval()(crops.batch(np.arange(len(crops))))
    assert e.shape == bank.shape == (len(table), cfg.bd.proj_out)
    torch.testing.assert_close(e, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bank, ref_bank, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(bank, e, atol=1e-3)           # the estimate changed the function


# --------------------------------------------------------------------------- train_bd
def test_train_bd_never_reads_labels_and_learns(env, tmp_path):
    cfg, seqs = env
    with pytest.raises(AssertionError, match="label"):
        seqs[0].boxes                                     # the trap is armed
    ck = train_bd(cfg, seqs, tmp_path / "bd.pt", sampler="rss", device="cpu", progress=False)
    also = train_bd(cfg, [unlabeled(s) for s in seqs], tmp_path / "bd_u.pt", sampler="rss", device="cpu",
                    progress=False)
    with pytest.raises(LabelAccessError):
        unlabeled(seqs[0]).boxes
    records = [json.loads(line) for line in log_path(ck).read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(np.isfinite(r["loss"]) and -1 <= r["hardness"] <= 1 and r["ahm"] == 0 for r in records)
    state = load_checkpoint(ck)
    assert state["complete"] and state["stage"] == "bd/rss" and state["config"]["bd"]["sampler"] == "rss"
    # the weights moved away from the seeded initialisation
    seed_everything(cfg.seed)
    fresh = build_net(cfg.model).state_dict()
    model, proj = _weights(ck)
    moved = [k for k in fresh if fresh[k].is_floating_point() and not torch.equal(fresh[k], model[k])]
    assert any(k.startswith("backbone.conv1") for k in moved)
    # the same run with plain unlabeled() wrappers gives the same weights (a pure function of cfg + frames)
    for k, v in _weights(also)[0].items():
        assert torch.equal(v, model[k]), k


def test_train_bd_ahm_resume_is_bitwise(env, tmp_path, monkeypatch):
    cfg, seqs = env
    cfg = cfg.override({"bd": dict(steps=4)})
    full = train_bd(cfg, seqs, tmp_path / "full.pt", device="cpu", progress=False)
    ref_model, ref_proj = _weights(full)
    logs = [json.loads(line) for line in log_path(full).read_text().splitlines()]
    assert all(r["ahm"] == 1 for r in logs)

    real, calls = bd_mod.infonce, []

    def flaky(z1, z2, t):                  # step 3 (0-based) fails: checkpoint at step 3, bank from step 2
        calls.append(1)
        out = real(z1, z2, t)
        return out * float("nan") if len(calls) == 4 else out

    monkeypatch.setattr(bd_mod, "infonce", flaky)
    part = tmp_path / "part.pt"
    with pytest.raises(NonFiniteLossError):
        train_bd(cfg, seqs, part, device="cpu", progress=False)
    state = load_checkpoint(part)
    assert state["step"] == 3 and not state["complete"] and state["extra"]["bank"]["step"] == 2
    monkeypatch.setattr(bd_mod, "infonce", real)
    train_bd(cfg, seqs, part, device="cpu", progress=False)
    model, proj = _weights(part)
    for k in ref_model:
        assert torch.equal(model[k], ref_model[k]), k
    for k in ref_proj:
        assert torch.equal(proj[k], ref_proj[k]), k
    # same losses and same bank (the logged hardness is computed from it) at every step
    keys = ("step", "loss", "hardness", "lr")
    resumed = [json.loads(line) for line in log_path(part).read_text().splitlines()]
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in logs]


@pytest.mark.parametrize("backbone", ["alexnet", "ciresnet22"])
def test_checkpoint_is_a_siamfc_net(env, tmp_path, backbone):
    cfg, seqs = env
    cfg = cfg.override({"model": dict(backbone=backbone), "bd": dict(steps=1)})
    ck = train_bd(cfg, seqs, tmp_path / f"bd_{backbone}.pt", device="cpu", progress=False)
    net = load_net(ck, device="cpu", expect_backbone=backbone)
    with torch.no_grad():
        r = net(torch.rand(1, 3, 127, 127) * 255, torch.rand(1, 3, 255, 255) * 255)
    assert r.shape == (1, 1, 17, 17) and torch.isfinite(r).all()
    head = load_projection(ck, device="cpu")
    assert head.in_dim == net.backbone.out_channels and head.out == cfg.bd.proj_out
    emb = load_embedder(ck, device="cpu")
    with torch.no_grad():
        assert emb(torch.rand(2, 3, 95, 95) * 255).shape == (2, cfg.bd.proj_out)
    # an already complete checkpoint returns at once; a config change is refused
    stamp = ck.stat().st_mtime_ns
    assert train_bd(cfg, seqs, ck, device="cpu", progress=False) == ck and ck.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="config"):
        train_bd(cfg.override({"bd": dict(temperature=0.5)}), seqs, ck, device="cpu", progress=False)


def test_bd_batches_and_hardness(env, tmp_path):
    cfg, seqs = env
    ck = train_bd(cfg.override({"bd": dict(steps=1)}), seqs, tmp_path / "bd.pt", device="cpu", progress=False)
    out = bd_batches(cfg, ck, seqs, batch_size=6, seed=1, device="cpu", progress=False)
    assert out["n_candidates"] == 3 * 4 * 2 and out["batch_size"] == 6
    for name in ("ahm", "rss"):
        rec = out[name]
        assert rec["cand_ids"].shape == (6,) and len(set(rec["cand_ids"].tolist())) == 6
        assert rec["crops"].shape == (6, 95, 95, 3) and rec["crops"].dtype == np.uint8
        assert list(rec["candidates"].cand_id) == rec["cand_ids"].tolist()
    a = out["ahm"]["candidates"]
    anchor = a.iloc[0]
    assert not ((a.video[1:] == anchor.video) & ((a.frame[1:] - anchor.frame).abs() <= 1)).any()
    stats = hardness_stats(cfg, ck, seqs, batch_size=6, seed=0, n_batches=20, device="cpu", progress=False)
    assert len(stats["ahm"]["values"]) == 20 and stats["ahm"]["mean"] > stats["rss"]["mean"]
    assert list((tmp_path / "data" / "cache" / "bd_banks").glob("*.npy"))   # one bank pass, shared
