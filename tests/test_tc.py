"""TC learning: one round with the NR loss and the BCE ablation, AHM over exemplars, progressive rounds."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from pulkit.core.config import load_config
from pulkit.data.sequences import Sequence
from pulkit.method import tc
from pulkit.method.pairs import PAIR_COLUMNS, MinedPairs
from pulkit.models.net import build_net, load_checkpoint, load_net, save_checkpoint

N_FRAMES = 6


def _cfg(backbone="alexnet", instance_sz=167, **tc_over):
    return load_config("smoke", {
        "model": dict(backbone=backbone, exemplar_sz=103, instance_sz=instance_sz),
        "mining": dict(spans=(1, 2), candidates_per_video=2, start_stride=2, scale_num=1, response_up=4,
                       confidence="cosine", min_response=-1.0, fb_iou=0.0),   # random nets: keep every track
        "tc": {**dict(rounds=2, steps_per_round=2, batch_size=3, checkpoint_every=1, log_every=1), **tc_over},
        "bd": dict(bank_batch=8, exclude_frames=2, separation_frames=2, bank_refresh=10),
    })


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Crop caches (``pulkit.core.paths.cache_dir()``) go to the test's folder, not the project's."""
    monkeypatch.setenv("PULKIT_DATA", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three short panning videos of smooth texture (unlabeled: no boxes)."""
    root = tmp_path_factory.mktemp("tc_videos")
    rng = np.random.default_rng(0)
    seqs = []
    for v in range(3):
        big = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (5, 5), 0)
        d = root / f"v{v}"
        d.mkdir()
        frames = []
        for i in range(N_FRAMES):
            p = d / f"{i:04d}.png"
            cv2.imwrite(str(p), big[i * 2:i * 2 + 72, i * 3:i * 3 + 96][:, :, ::-1])
            frames.append(p)
        seqs.append(Sequence(f"v{v}", frames))
    return seqs


def _table():
    """Pairs of 6 exemplars (2 per video, each with k = 1, 2): the motion of the pan."""
    rows = []
    for v in range(3):
        for t, (x, y) in ((0, (20.0, 14.0)), (2, (40.0, 24.0))):
            for k in (1, 2):
                rows.append((f"v{v}", t, t + k, x, y, 30.0, 26.0, x - 3 * k, y - 2 * k, 30.0, 26.0, k, 0.9, 1))
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


@pytest.fixture(scope="module")
def init_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = _cfg()
    return save_checkpoint(tmp_path_factory.mktemp("init") / "bd.pt", build_net(cfg.model), cfg, stage="bd/ahm")


def _log(ckpt):
    return [json.loads(line) for line in tc.log_path(ckpt).read_text().splitlines()]


def _ahm_hardness_per_anchor(raw):
    """AHM batch hardness for each possible anchor of ``_table()``'s 6 exemplars (exemplar i: video i // 2,
    frame 2 (i % 2)), by hand: ``bd.exclude_frames = 2`` drops the anchor's own video and the separation
    (2 frames) allows one member per other video, so the batch of 3 is the anchor and its most similar
    exemplar in each of the two other videos; hardness = the mean of those two cosines."""
    e = raw.double() / raw.double().norm(dim=1, keepdim=True)
    assert e.shape[0] == 6, "the bank should hold the 6 exemplars"
    cos = e @ e.T
    out = []
    for a in range(6):
        best = [max(float(cos[a, j]) for j in (2 * v, 2 * v + 1)) for v in range(3) if v != a // 2]
        out.append(sum(best) / 2)
    return out


@pytest.mark.parametrize("loss", ["nr", "bce"])
def test_tc_round_trains_logs_and_saves_a_loadable_checkpoint(loss, videos, init_ckpt, tmp_path):
    cfg = _cfg(loss=loss, steps_per_round=2 if loss == "nr" else 1)
    out = tc.train_tc_round(cfg, init_ckpt, _table(), videos, 1, tmp_path / "tc_round1.pt", device="cpu",
                            progress=False)
    log = _log(out)
    assert [r["step"] for r in log] == list(range(1, cfg.tc.steps_per_round + 1))
    ckpt = load_checkpoint(out)
    expected_hardness = _ahm_hardness_per_anchor(ckpt["extra"]["bank"]["embeddings"])
    for r in log:
        assert np.isfinite(r["loss"]) and np.isfinite(r[f"{loss}_loss"]) and np.isfinite(r["infonce"])
        # a fraction of the batch's 3 samples; round 1's calibrated head (logit std 0.5, mean 0) starts with
        # b ~ log 2 < 1, E[g] ~ -log 2 > -1: nobody gives up at step 1
        assert r["giveup_frac"] * cfg.tc.batch_size == pytest.approx(round(r["giveup_frac"] * cfg.tc.batch_size))
        assert r["loss"] == pytest.approx(r[f"{loss}_loss"] + cfg.tc.lam * r["infonce"], rel=1e-5)
        # the batch's hardness is the one computed by hand for the anchor drawn (the bank never refreshed)
        assert any(r["hardness"] == pytest.approx(h, abs=1e-6) for h in expected_hardness), (r["hardness"],
                                                                                                expected_hardness)
    assert log[0]["giveup_frac"] == 0.0
    if loss == "nr":
        assert all(r["nr_loss"] <= np.log(2) + 1e-6 for r in log)      # the Taylor NR loss is bounded
    before, after = load_net(init_ckpt, "cpu"), load_net(out, "cpu")
    changed = [n for (n, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items())
               if a.is_floating_point() and not torch.equal(a, b)]
    assert any(n.startswith("backbone.") for n in changed)
    assert ckpt["stage"] == "tc/round1" and ckpt["complete"] and "projection" in ckpt["extra"]
    assert ckpt["config"]["tc"]["loss"] == loss
    # resume=True on a complete checkpoint returns without training again
    mtime = out.stat().st_mtime_ns
    assert tc.train_tc_round(cfg, init_ckpt, _table(), videos, 1, out, device="cpu", progress=False) == out
    assert out.stat().st_mtime_ns == mtime


def _same(a, b) -> bool:
    """Checkpoint contents equal bit for bit (tensors with ``torch.equal``, containers recursively)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b))


def test_held_crops_train_the_same_round_as_the_crop_cache(videos, init_ckpt, tmp_path, monkeypatch):
    """``data.hold_crops = always`` (a uint8 store, on the CPU here) and ``never`` (the crop cache): the same
    weights, projection head and AHM bank, bit for bit."""
    real, held = MinedPairs.hold, []

    def spy(self, device="cpu", progress=True):
        held.append(torch.device(device).type)
        return real(self, device, progress)

    monkeypatch.setattr(MinedPairs, "hold", spy)
    out = {}
    for mode in ("never", "always"):
        cfg = _cfg(steps_per_round=1).override({"data": {"hold_crops": mode}})
        ckpt = tc.train_tc_round(cfg, init_ckpt, _table(), videos, 1, tmp_path / f"{mode}.pt", device="cpu",
                                 progress=False)
        out[mode] = load_checkpoint(ckpt)
    assert held == ["cpu"]
    a, b = out["never"], out["always"]
    assert _same(a["model"], b["model"]) and _same(a["extra"]["projection"], b["extra"]["projection"])
    assert _same(a["extra"]["bank"], b["extra"]["bank"]) and _same(a["extra"]["calibration"], b["extra"]["calibration"])


def test_round1_calibrates_an_uncalibrated_head_out_of_the_give_up_regime(videos, tmp_path):
    """A head scale 100x SiamFC's (like BD's untrained head) saturates every sigmoid: all samples give up."""
    hot = _cfg(steps_per_round=1).override({"model": {"head_scale": 0.1}})
    torch.manual_seed(0)
    init = save_checkpoint(tmp_path / "hot.pt", build_net(hot.model), hot)
    off = tc.train_tc_round(hot.override({"tc": {"head_calibration": None}}), init, _table(), videos, 1,
                            tmp_path / "off.pt", device="cpu", progress=False)
    assert _log(off)[0]["giveup_frac"] == 1.0
    on = tc.train_tc_round(hot, init, _table(), videos, 1, tmp_path / "on.pt", device="cpu", progress=False)
    assert _log(on)[0]["giveup_frac"] == 0.0
    ckpt = load_checkpoint(on)
    rec = ckpt["extra"]["calibration"]
    assert rec["head_scale_before"] == 0.1 and rec["logit_std_before"] > 5
    assert ckpt["arch"]["head_scale"] == pytest.approx(rec["head_scale"]) and rec["head_scale"] < 0.01
    assert load_net(on, "cpu").head.scale == pytest.approx(rec["head_scale"])     # the tracker sees it too
    # later rounds inherit the scale and do not calibrate again
    r2 = tc.train_tc_round(hot, on, _table(), videos, 2, tmp_path / "r2.pt", device="cpu", progress=False)
    c2 = load_checkpoint(r2)
    assert c2["arch"]["head_scale"] == pytest.approx(rec["head_scale"]) and c2["extra"]["calibration"] == {}


def test_tc_round_runs_with_ciresnet22_and_rss(videos, tmp_path, monkeypatch):
    cfg = _cfg("ciresnet22", instance_sz=135, sampler="rss", steps_per_round=1)
    torch.manual_seed(0)
    init = save_checkpoint(tmp_path / "init.pt", build_net(cfg.model), cfg)
    calls = {"rss": [], "ahm": 0}
    real_rss = tc.rss_batch

    def rss_spy(n, batch_size, generator=None, exclude=None):
        calls["rss"].append((n, batch_size))
        return real_rss(n, batch_size, generator=generator, exclude=exclude)

    def ahm_spy(*args, **kwargs):
        calls["ahm"] += 1
        raise AssertionError("AHM used with tc.sampler = 'rss'")

    monkeypatch.setattr(tc, "rss_batch", rss_spy)
    monkeypatch.setattr(tc, "ahm_batch", ahm_spy)
    out = tc.train_tc_round(cfg, init, _table(), videos, 1, tmp_path / "tc.pt", device="cpu", progress=False)
    assert load_net(out, "cpu").arch["backbone"] == "ciresnet22"
    assert np.isfinite(_log(out)[-1]["loss"])
    # RSS really drew the batches: one uniform draw of batch_size of the 6 exemplars per step, no AHM
    assert calls == {"rss": [(6, cfg.tc.batch_size)] * cfg.tc.steps_per_round, "ahm": 0}
    ckpt = load_checkpoint(out)
    assert ckpt["config"]["tc"]["sampler"] == "rss"
    assert ckpt["extra"]["bank"]["step"] == -1 and ckpt["extra"]["bank"]["embeddings"].numel() == 0   # never built
    assert all(np.isnan(r["hardness"]) and r["ahm_narrowed"] == 0 for r in _log(out))   # no anchor, no bank
    with pytest.raises(ValueError, match="alexnet"):
        tc.train_tc_round(_cfg(), init, _table(), videos, 1, tmp_path / "x.pt", device="cpu", progress=False)


def test_exemplars_group_pairs_and_ahm_keeps_one_pair_per_track(videos):
    cfg = _cfg()
    pairs = MinedPairs(_table(), {s.name: s for s in videos}, cfg.model, 8.0)
    ex = tc.Exemplars(pairs)
    assert len(ex) == 6 and all(len(r) == 2 for r in ex.rows)
    for rows in ex.rows:                                    # a group shares video, frame_a and box_a
        assert len(pairs.table.iloc[rows][["video", "frame_a", "xa", "ya", "wa", "ha"]].drop_duplicates()) == 1
    z = ex.batch([0, 3])
    assert z.shape == (2, 3, 103, 103) and z.dtype == torch.float32
    torch.testing.assert_close(z[1], pairs.batch([ex.rows[3][0]], torch.Generator().manual_seed(5))["z"][0])

    from pulkit.method.sampling import EmbeddingBank
    bank = EmbeddingBank(torch.randn(len(ex), 16, generator=torch.Generator().manual_seed(0)),
                         video=ex.video, frame=ex.frame)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        idx, narrowed = tc.select_exemplars(bank, len(ex), "ahm", 3, 2, g)
        assert not narrowed and len(set(idx.tolist())) == 3
        a = int(idx[0])                                     # the anchor's own video within +-2 frames is left out
        assert not any(ex.video[i] == ex.video[a] and abs(ex.frame[i] - ex.frame[a]) <= 2 for i in idx[1:].tolist())
        rows = ex.pick_pairs(idx, g)
        assert all(r in ex.rows[i] for r, i in zip(rows, idx.tolist()))
    idx, narrowed = tc.select_exemplars(bank, len(ex), "ahm", 6, 2, g)   # too few: only the anchor's frame out
    assert narrowed and len(set(idx.tolist())) == 6


def test_progressive_rounds_produce_loadable_checkpoints_and_resume_skips(videos, init_ckpt, tmp_path, monkeypatch):
    cfg = _cfg(steps_per_round=1)
    out = tc.run_progressive(cfg, init_ckpt, videos, tmp_path / "prog", device="cpu", progress=False)
    assert [p.name for p in out] == ["tc_round1.pt", "tc_round2.pt"]
    for r, p in enumerate(out, 1):
        assert load_net(p, "cpu").arch["backbone"] == "alexnet"
        s = json.loads((tmp_path / "prog" / f"tc_round{r}.json").read_text())
        assert s["round"] == r and s["span"] == cfg.mining.spans[r - 1] and s["pairs"] > 0
        # fb_iou = 0 passes every track with a step (IoU >= 0); the final numbers are the round log's last record
        assert s["fb_pass_rate"] == 1.0 and s["tracks"] == cfg.mining.candidates_per_video * len(videos)
        last = _log(tmp_path / "prog" / f"tc_round{r}.pt")[-1]
        assert np.isfinite(s["final_loss"]) and s["final_loss"] == last["loss"] and last["step"] == 1
        assert s["final_giveup_frac"] == last["giveup_frac"] and s["final_nr_loss"] == last["nr_loss"]
        assert s["provenance"]["config"]["tc"]["rounds"] == 2
    ck2 = load_checkpoint(out[1])
    assert ck2["stage"] == "tc/round2"
    pairs2 = pd.read_csv(tmp_path / "prog" / "pairs_round2.csv")
    assert (pairs2["round"] == 2).all() and pairs2["k"].max() <= 2
    assert json.loads((tmp_path / "prog" / "pairs_round2.json").read_text())["init_ckpt"].endswith("tc_round1.pt")

    def boom(*a, **k):
        raise AssertionError("a finished round was redone")
    monkeypatch.setattr(tc, "mine_pairs", boom)
    monkeypatch.setattr(tc, "train_tc_round", boom)
    assert tc.run_progressive(cfg, init_ckpt, videos, tmp_path / "prog", device="cpu", progress=False) == out
    with pytest.raises(ValueError, match="another run"):
        tc.run_progressive(cfg, init_ckpt, videos, tmp_path / "prog", loss="bce", device="cpu", progress=False)

    class Retrained(Exception):
        pass

    def retrain(*a, **k):
        raise Retrained
    monkeypatch.setattr(tc, "mine_round", retrain)            # an edited config retrains, with a warning
    with pytest.warns(UserWarning, match=r"changed: tc\.lam"), pytest.raises(Retrained):
        tc.run_progressive(cfg.override({"tc": {"lam": 0.3}}), init_ckpt, videos, tmp_path / "prog",
                           device="cpu", progress=False)


def test_tc_round_killed_mid_round_resumes_bitwise(videos, init_ckpt, tmp_path, monkeypatch):
    """A round interrupted after 3 of its 4 steps resumes from its checkpoint: the mined pairs are reused (not
    mined again), the projection head, the AHM bank (refreshed at step 2, not again at step 3) and the head
    calibration come back, and the round ends bitwise where an uninterrupted one ends."""
    cfg = _cfg(rounds=1, steps_per_round=4).override({"bd": {"bank_refresh": 2}})
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    embeds = []
    real_embed = tc.embed_exemplars
    monkeypatch.setattr(tc, "embed_exemplars", lambda *a, **k: embeds.append(1) or real_embed(*a, **k))
    (ref,) = tc.run_progressive(cfg, init_ckpt, videos, ref_dir, device="cpu", progress=False)
    assert len(embeds) == 2                                   # the bank is built at step 0, refreshed at step 2

    real_nce, calls = tc.infonce, []

    def killed_at_step_3(*a, **k):                            # infonce runs once per step: the 4th call is step 3
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt("killed mid-round")
        return real_nce(*a, **k)

    monkeypatch.setattr(tc, "infonce", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        tc.run_progressive(cfg, init_ckpt, videos, run_dir, device="cpu", progress=False)
    ckpt = run_dir / "tc_round1.pt"
    part = load_checkpoint(ckpt)
    assert part["step"] == 3 and not part["complete"] and not (run_dir / "tc_round1.json").exists()
    assert part["extra"]["bank"]["step"] == 2 and part["extra"]["calibration"]["head_scale"] > 0
    pairs_file = run_dir / f"pairs_round1{tc.pairs_suffix()}"
    pairs_bytes = pairs_file.read_bytes()

    def mined_again(*a, **k):
        raise AssertionError("the round's pairs were mined again instead of reused")

    monkeypatch.setattr(tc, "infonce", real_nce)
    monkeypatch.setattr(tc, "mine_pairs", mined_again)
    embeds.clear()
    (out,) = tc.run_progressive(cfg, init_ckpt, videos, run_dir, device="cpu", progress=False)
    assert embeds == [], "the AHM bank was re-embedded on resume instead of restored"
    assert pairs_file.read_bytes() == pairs_bytes == (ref_dir / pairs_file.name).read_bytes()

    a, b = load_checkpoint(ref), load_checkpoint(out)
    assert b["complete"] and b["step"] == a["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["extra"]["projection"]:
        assert torch.equal(a["extra"]["projection"][k], b["extra"]["projection"][k]), k
    assert a["extra"]["bank"]["step"] == b["extra"]["bank"]["step"] == 2
    assert torch.equal(a["extra"]["bank"]["embeddings"], b["extra"]["bank"]["embeddings"])
    assert a["extra"]["calibration"] == b["extra"]["calibration"] and a["arch"] == b["arch"]
    keys = ("step", "loss", "nr_loss", "infonce", "giveup_frac", "hardness", "lr")
    assert [[r[k] for k in keys] for r in _log(out)] == [[r[k] for k in keys] for r in _log(ref)]
    assert [r["step"] for r in _log(out)] == [1, 2, 3, 4]
