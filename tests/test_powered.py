"""Measures with power (pulkit.evaluation.powered): held-out splits, clean pairs, localisation,
per-sequence scores and the paired statistics."""
from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pulkit.core.config import load_config
from pulkit.data.sequences import load_shared
from pulkit.data.synthetic import render_video, video_name
from pulkit.evaluation import powered as pw
from pulkit.evaluation.otb import evaluate_otb
from pulkit.models.net import build_net
from pulkit.tracking.static import StaticTracker

CFG = load_config("smoke")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """PULKIT_DATA in a temporary folder for the whole module (nothing is written into the repo)."""
    root = tmp_path_factory.mktemp("powered_data")
    mp = pytest.MonkeyPatch()
    mp.setenv("PULKIT_DATA", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def heldout(data_root):
    return {split: pw.heldout_videos(CFG, split, n=2) for split in ("eval", "tune")}


@pytest.fixture(scope="module")
def pairs(heldout):
    return pw.clean_pairs(CFG, heldout["eval"], n=40, seed=0, max_gap=5)


# --------------------------------------------------------------------------- held-out videos
def test_heldout_splits_are_disjoint_labelled_and_cached(heldout, data_root):
    ev, tu = heldout["eval"], heldout["tune"]
    assert (pw.EVAL_SEED, pw.TUNE_SEED) == (5000, 4000)
    assert [s.name for s in ev] == [video_name(5000, i) for i in range(2)]
    assert [s.name for s in tu] == [video_name(4000, i) for i in range(2)]
    d = CFG.data
    used = {video_name(seed, i) for seed in (d.synthetic_train_seed, d.synthetic_val_seed) for i in range(50)}
    assert not used & {s.name for s in ev + tu}
    for s in ev + tu:
        assert len(s) == d.synthetic_frames and s.boxes.shape == (d.synthetic_frames, 4)
        assert np.isfinite(s.boxes[0]).all() and s.image(0).shape == (d.synthetic_height, d.synthetic_width, 3)
    # different pixels, not only different names: eval vs tune vs the training split's first video
    train0 = render_video(d.synthetic_train_seed, 0, 2, d.synthetic_width, d.synthetic_height,
                          d.synthetic_distractors).frames[0].astype(int)
    e0, t0 = ev[0].image(0).astype(int), tu[0].image(0).astype(int)
    assert np.abs(e0 - t0).mean() > 10 and np.abs(e0 - train0).mean() > 10
    assert pw.heldout_params(CFG, "eval", 2)["seed"] != d.synthetic_train_seed
    # cached: a second call re-reads the same files without writing them again
    mtime = ev[0].frames[3].stat().st_mtime_ns
    again = pw.heldout_videos(CFG, "eval", n=2)
    assert [s.frames for s in again] == [s.frames for s in ev]
    assert again[0].frames[3].stat().st_mtime_ns == mtime
    assert all(str(p).startswith(str(data_root / "synthetic")) for p in ev[0].frames)
    with pytest.raises(ValueError, match="held-out split"):
        pw.heldout_videos(CFG, "train", n=1)
    with pytest.raises(ValueError, match="collides"):
        pw.heldout_videos(load_config("smoke", {"data.synthetic_train_seed": 5000}), "eval", n=1)


def test_heldout_generation_is_deterministic(tmp_path, monkeypatch):
    def files(root):
        monkeypatch.setenv("PULKIT_DATA", str(root))
        s = pw.heldout_videos(CFG, "tune", n=1, frames=3)[0]
        return s.boxes, [p.read_bytes() for p in s.frames]
    (b1, f1), (b2, f2) = files(tmp_path / "a"), files(tmp_path / "b")
    np.testing.assert_array_equal(b1, b2)
    assert f1 == f2


# --------------------------------------------------------------------------- clean pairs
def test_clean_pairs_shapes_bounds_and_determinism(heldout, pairs):
    ez, ix = CFG.model.exemplar_sz, CFG.model.instance_sz
    assert len(pairs) == 40
    assert pairs.z.shape == (40, 3, ez, ez) and pairs.z.dtype == torch.uint8
    assert pairs.x.shape == (40, 3, ix, ix) and pairs.x.dtype == torch.uint8
    assert pairs.offset.shape == (40, 2) and pairs.offset.dtype == torch.float32
    assert pairs.video.dtype == torch.int64 and np.bincount(pairs.video.numpy()).tolist() == [20, 20]
    reach = pw.response_reach(ez, ix)
    assert reach == ((ix - ez) // 8) / 2 * 8
    assert pairs.offset.abs().max() <= 0.75 * reach and pairs.offset.abs().max() > 0.3 * reach
    a, b = pairs.frames[:, 0], pairs.frames[:, 1]
    assert ((b > a) & (b - a <= 5)).all()
    same = pw.clean_pairs(CFG, heldout["eval"], n=40, seed=0, max_gap=5)
    assert torch.equal(same.x, pairs.x) and torch.equal(same.offset, pairs.offset)
    other = pw.clean_pairs(CFG, heldout["eval"], n=40, seed=1, max_gap=5)
    assert not torch.equal(other.offset, pairs.offset)
    still = pw.clean_pairs(CFG, heldout["eval"], n=4, seed=0, max_gap=5, shift=0.0)
    assert (still.offset == 0).all()


def test_clean_pairs_skip_invalid_boxes(heldout):
    seq = heldout["eval"][0].sub(0, 6)
    seq.boxes = seq.boxes.copy()
    seq.boxes[1::2] = np.nan                 # odd frames unusable
    seq.boxes[2, 2] = 0                      # zero width: unusable too
    p = pw.clean_pairs(CFG, [seq], n=12, max_gap=4, shift=0.0)
    assert p.frames.tolist() == [[0, 4]] * 12
    with pytest.raises(ValueError, match="max_gap=3"):
        pw.clean_pairs(CFG, [seq], n=2, max_gap=3)


class PixelNCC(nn.Module):
    """A 'net' without weights: normalised cross-correlation of the exemplar's centre with the search
    crop, sampled on the stride-8 grid the response convention assumes (checks the crop geometry)."""

    def forward(self, z, x):
        half, r = 24, (x.shape[-1] - z.shape[-1]) // 8 + 1
        c, pad = z.shape[-1] // 2, (z.shape[-1] - 49) // 2
        t = z[:, :, c - half:c + half + 1, c - half:c + half + 1]
        t = t - t.mean(dim=(1, 2, 3), keepdim=True)
        xx = x - x.mean(dim=(1, 2, 3), keepdim=True)
        n = len(z)
        num = F.conv2d(xx.reshape(1, -1, *x.shape[-2:]), t, groups=n).reshape(n, 1, *[x.shape[-1] - 48] * 2)
        energy = F.conv2d((xx * xx).sum(1, keepdim=True), torch.ones(1, 1, 49, 49))
        resp = num / energy.clamp(min=1e-6).sqrt()
        return resp[..., pad::8, pad::8][..., :r, :r]


def test_clean_pairs_put_the_target_at_its_offset(pairs):
    """Template matching in pixels finds the target where ``offset`` says: a sign or scale error in
    the crops (or in localisation's cell-to-pixel map) would put it elsewhere."""
    loc = pw.localisation(PixelNCC(), pairs, device="cpu")
    assert np.median(loc["error_px"]) < 2.0          # measured 1.1 px (about 60 px with the offset's sign flipped)
    assert loc["hit"].mean() >= 0.75                 # distractors and occluders take the rest


# --------------------------------------------------------------------------- localisation
class OffsetNet(nn.Module):
    """Logits ``exp(-|cell displacement - target|^2 / (2 * 10^2))`` per pair (targets taken in order): a
    bump peaking at ``targets`` (at the centre when None).  Bicubic upsampling keeps a 10 px bump's
    peak within 0.9 px of its true place (a broad quadratic bump drifts by up to 2 px)."""
    seen_training: ClassVar[list[bool]] = []  # class attribute: shared with localisation's copy

    def __init__(self, targets=None, r: int = 14):
        super().__init__()
        self.targets, self.r, self.done = targets, r, 0
        self.bn = nn.BatchNorm2d(1)          # something with a mode

    def forward(self, z, x):
        OffsetNet.seen_training.append(self.training)
        n = len(z)
        tgt = torch.zeros(n, 2) if self.targets is None else self.targets[self.done:self.done + n]
        self.done += n
        d = (torch.arange(self.r, dtype=torch.float32) - (self.r - 1) / 2) * 8
        dx = d[None, None, :] - tgt[:, 0, None, None]
        dy = d[None, :, None] - tgt[:, 1, None, None]
        return torch.exp(-(dx ** 2 + dy ** 2) / 200)[:, None]


def test_localisation_oracle_and_centre_nets(pairs):
    r = (CFG.model.instance_sz - CFG.model.exemplar_sz) // 8 + 1
    oracle = OffsetNet(pairs.offset, r).train()
    OffsetNet.seen_training.clear()
    loc = pw.localisation(oracle, pairs, batch_size=16, device="cpu")
    assert oracle.training and not any(OffsetNet.seen_training) and len(OffsetNet.seen_training) == 3
    assert loc["hit"].dtype == bool and loc["hit"].all()
    assert loc["error_px"].max() <= 1.0
    centre = OffsetNet(None, r).eval()
    loc = pw.localisation(centre, pairs, r_pos=20.0, device="cpu")
    assert not centre.training
    norm = np.linalg.norm(pairs.offset.numpy(), axis=1)
    np.testing.assert_allclose(loc["error_px"], norm, atol=1e-4)
    np.testing.assert_array_equal(loc["hit"], norm <= 20.0)
    s = pw.localisation_summary(loc)
    assert s["n"] == 40 and math.isclose(s["error_px"], norm.mean(), rel_tol=1e-6)
    assert math.isclose(s["error_px_se"], norm.std(ddof=1) / math.sqrt(40), rel_tol=1e-6)
    assert math.isclose(s["accuracy"], (norm <= 20).mean())
    with pytest.raises(ValueError, match="does not fit"):
        pw.localisation(OffsetNet(None, r + 1), pairs, device="cpu")


def test_localisation_uses_eval_mode(pairs):
    net = build_net(CFG.model).train()
    sub = pw.PairSet(pairs.z[:6], pairs.x[:6], pairs.offset[:6], pairs.video[:6])
    in_train = pw.localisation(net, sub, device="cpu")
    assert net.training
    in_eval = pw.localisation(net.eval(), sub, device="cpu")
    np.testing.assert_allclose(in_train["error_px"], in_eval["error_px"], atol=1.5)


def test_localisation_of_a_bf16_tracker_net(pairs):
    """A bf16 tracker's ``net`` (conv weights in bf16, as ``SiamFCTracker`` builds it) is scored as the
    tracker runs it (phi in bf16, xcorr in fp32) rather than failing on a float input: the 07 claims
    cell failed this way in CI on a CPU where ``auto`` resolved to bf16."""
    from pulkit.models.net import fuse_bn
    from pulkit.models.precision import bf16_weights
    torch.manual_seed(0)
    net = build_net(CFG.model).eval()
    sub = pw.PairSet(pairs.z[:8], pairs.x[:8], pairs.offset[:8], pairs.video[:8])
    tracker_net = fuse_bn(net)
    bf16_weights(tracker_net.backbone)
    low = pw.localisation(tracker_net, sub, device="cpu")
    full = pw.localisation(net, sub, device="cpu")
    assert any(p.dtype == torch.bfloat16 for p in tracker_net.parameters())
    assert np.isfinite(low["error_px"]).all()
    assert np.median(np.abs(low["error_px"] - full["error_px"])) <= 8.0    # same peak give or take a cell


def test_localisation_runs_in_the_precision_asked(pairs):
    """``precision="bf16"`` scores an fp32 net exactly as its bf16 tracker copy is scored (the function the
    model trains and tracks with under bf16); fp32 is the plain forward; the caller's net is left as it was;
    ``auto`` is refused (the caller resolves it)."""
    from pulkit.models.net import fuse_bn
    from pulkit.models.precision import PrecisionError, bf16_weights
    torch.manual_seed(1)
    net = build_net(CFG.model).train()
    sub = pw.PairSet(pairs.z[:8], pairs.x[:8], pairs.offset[:8], pairs.video[:8])
    tracker_net = fuse_bn(net)
    bf16_weights(tracker_net.backbone)
    asked = pw.localisation(net, sub, device="cpu", precision="bf16")
    tracked = pw.localisation(tracker_net, sub, device="cpu")
    plain = pw.localisation(net, sub, device="cpu", precision="fp32")
    assert np.array_equal(asked["pred_px"], tracked["pred_px"])
    assert np.array_equal(pw.localisation(net, sub, device="cpu")["pred_px"], plain["pred_px"])   # default fp32
    assert net.training and all(p.dtype == torch.float32 for p in net.parameters())
    with pytest.raises(PrecisionError, match="resolved precision"):
        pw.localisation(net, sub, device="cpu", precision="auto")


# --------------------------------------------------------------------------- statistics
def test_paired_diff_by_hand():
    t, c = [1.0, 2.0, 4.0, 3.0], [0.0, 2.5, 1.0, 3.0]        # d = 1, -0.5, 3, 0
    d = pw.paired_diff(t, c)
    assert d["n"] == 4 and math.isclose(d["diff"], 0.875)
    var = ((1 - .875) ** 2 + (-.5 - .875) ** 2 + (3 - .875) ** 2 + (0 - .875) ** 2) / 3
    assert math.isclose(d["se"], math.sqrt(var / 4))
    b = pw.paired_diff(np.array([True, True, False]), np.array([False, True, False]))
    assert math.isclose(b["diff"], 1 / 3) and math.isclose(b["se"], math.sqrt(1 / 3) / math.sqrt(3))
    nan = pw.paired_diff([1.0, np.nan, 3.0, 5.0], [0.0, 1.0, 1.0, np.nan])
    assert nan["n"] == 2 and math.isclose(nan["diff"], 1.5)
    with pytest.raises(ValueError, match="3 items but control has 2"):
        pw.paired_diff([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        pw.paired_diff([1.0], [0.0])


def test_combine_seeds():
    spread = pw.combine_seeds([{"diff": 0.1, "se": 0.01, "n": 10}, {"diff": 0.3, "se": 0.01, "n": 10}])
    assert math.isclose(spread["diff"], 0.2) and spread["n"] == 20 and spread["seeds"] == 2
    assert math.isclose(spread["se"], np.std([0.1, 0.3], ddof=1) / math.sqrt(2))          # across seeds
    within = pw.combine_seeds([{"diff": 0.2, "se": 0.05, "n": 5}, {"diff": 0.21, "se": 0.05, "n": 5}])
    assert math.isclose(within["se"], math.sqrt(2 * 0.05 ** 2) / 2)                        # within seeds
    one = pw.combine_seeds([{"diff": 0.4, "se": 0.1, "n": 7}])
    assert (one["diff"], one["se"], one["seeds"]) == (0.4, 0.1, 1)
    with pytest.raises(ValueError):
        pw.combine_seeds([])


def test_verdict():
    assert pw.verdict(0.05, 0.02) == "holds"
    assert pw.verdict(-0.05, 0.02) == "does not hold"
    assert pw.verdict(0.01, 0.02) == "not resolved"
    assert pw.verdict(0.001, 0.002, margin=0.01) == "does not hold"       # inside (-margin, margin)
    assert pw.verdict(0.001, 0.006, margin=0.01) == "not resolved"        # interval pokes out of it
    assert pw.verdict(float("nan"), 0.1) == "not resolved"


# --------------------------------------------------------------------------- per-sequence scores
def test_sequence_auc_matches_evaluate_otb(shared_root):
    seqs = [s.sub(0, 25) for s in load_shared(["otb/Crossing", "otb/Deer"])]
    auc = pw.sequence_auc(StaticTracker(), seqs)
    ref = evaluate_otb(StaticTracker(), seqs, progress=False)["sequences"]
    assert auc.shape == (2,)
    np.testing.assert_allclose(auc, [ref[s.name]["success_auc"] for s in seqs], rtol=0, atol=1e-12)
    assert len(set(auc.tolist())) == 2 and (auc > 0).all()


def test_mining_error_random_net(heldout):
    torch.manual_seed(0)
    net = build_net(CFG.model)
    seqs = heldout["eval"]
    cfg = CFG.override({"mining.scale_num": 1})    # one scale: 3x cheaper, same code path
    err = pw.mining_error(net, cfg, [seqs[0], seqs[1], seqs[1].sub(0, 8)], k=10, device="cpu")
    assert err.shape == (3,)
    assert np.isfinite(err[:2]).all() and (err[:2] >= 0).all()
    assert np.isnan(err[2])                  # no seed reaches frame t + 10 of an 8-frame video
