"""TC mining: batched SiamFC tracking, forward-backward filtering, the pairs table, labels never read."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from pulkit.core.config import MiningConfig, ModelConfig
from pulkit.data.crops import xywh_to_cxcywh
from pulkit.data.sequences import LabelAccessError, Sequence, unlabeled
from pulkit.method import mining
from pulkit.models.net import build_net

MODEL = ModelConfig(exemplar_sz=103, instance_sz=167)       # AlexNet: 4 x 4 template, 9 x 9 response
FAST = MiningConfig(scale_num=1, response_up=4, confidence="cosine", min_response=0.5, start_stride=2,
                    candidates_per_video=3, fb_iou=0.5)
SEEDS = pd.DataFrame(dict(frame=[0, 0, 2], x=[30.0, 64.0, 12.0], y=[20.0, 40.0, 50.0],
                          w=[30.0, 22.0, 40.0], h=[30.0, 36.0, 26.0]))


def _texture(rng, h=96, w=128):
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 0)


def _write(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        p = folder / f"{i:04d}.png"
        cv2.imwrite(str(p), img[:, :, ::-1])
        paths.append(p)
    return paths


class UnitFeatures(torch.nn.Module):
    """A stride-8 test backbone whose feature vectors have unit norm at every position.

    Every window of its maps then has the same energy, so the raw cross-correlation peaks exactly
    where the content matches (Cauchy-Schwarz): a matcher that tracks static content like a trained
    one, unlike a random AlexNet.  Kernel 7 / stride 8 keeps the grid centred on 103 and 167 crops.
    """

    name = "unit-test"
    stride = 8
    out_channels = 16

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, self.out_channels, 7, stride=8)

    def forward(self, x):
        return torch.nn.functional.normalize(self.conv(x - 128.0), dim=1)


@pytest.fixture(scope="module")
def net():
    from pulkit.models.heads import XCorr
    from pulkit.models.net import Net

    torch.manual_seed(0)
    return Net(UnitFeatures(), XCorr(scale=0.05, bias=True), MODEL.exemplar_sz, MODEL.instance_sz)


def test_a_real_backbone_runs_through_the_miner(static_seq):
    torch.manual_seed(0)
    inf, geo, dev = _geometry(build_net(MODEL))
    ch = mining.track_chains(inf, mining._Frames(unlabeled(static_seq), 64), SEEDS.iloc[:2], 1, FAST, geo, dev)
    assert ch.boxes.shape == (2, 2, 4) and np.isfinite(ch.boxes[:, 0]).all() and ch.steps >= 2


@pytest.fixture(scope="module")
def static_seq(tmp_path_factory):
    """A static textured video: every frame identical, so tracking is trivially consistent."""
    img = _texture(np.random.default_rng(0))
    frames = _write(tmp_path_factory.mktemp("static"), [img] * 6)
    boxes = np.tile([40.0, 30.0, 30.0, 24.0], (6, 1))
    return Sequence("static", frames, boxes=boxes)


def _geometry(net, cfg=FAST):
    return mining._prepare(net, cfg, MODEL, "cpu")


def test_static_video_tracks_stay_put_and_pass_fb(net, static_seq):
    inf, geo, dev = _geometry(net)
    ch = mining.track_chains(inf, mining._Frames(unlabeled(static_seq), 64), SEEDS, 3, FAST, geo, dev)
    assert ch.last.tolist() == [3, 3, 3]
    assert ch.passed.all() and np.allclose(ch.fb_iou, 1.0)
    for k in range(4):
        np.testing.assert_allclose(ch.boxes[:, k], SEEDS[["x", "y", "w", "h"]].to_numpy(), atol=1e-6)
    assert (ch.scores[:, 1:] > 0.99).all()            # cosine of identical windows
    assert ch.steps == 2 * 3 * 3                       # forward + backward, 3 tracks x 3 steps


def test_batched_tracking_equals_one_track_at_a_time(net, tmp_path):
    rng = np.random.default_rng(1)
    big = _texture(rng, 140, 180)
    frames = _write(tmp_path / "pan", [big[i * 3:i * 3 + 96, i * 4:i * 4 + 128] for i in range(4)])
    seq = unlabeled(Sequence("pan", frames))
    cfg = dataclasses.replace(FAST, scale_num=3, min_response=-1.0)
    inf, geo, dev = _geometry(net, cfg)
    seeds = SEEDS.iloc[[0, 1]]                                 # two tracks sharing every frame
    together = mining.track_chains(inf, mining._Frames(seq, 64), seeds, 1, cfg, geo, dev)
    for i in range(len(seeds)):
        alone = mining.track_chains(inf, mining._Frames(seq, 64), seeds.iloc[[i]], 1, cfg, geo, dev)
        np.testing.assert_allclose(alone.boxes[0], together.boxes[i], rtol=0, atol=1e-3)
        np.testing.assert_allclose(alone.back[0], together.back[i], rtol=0, atol=1e-3)


def _fake_step(dx_per_step, scores=None):
    """A matcher that moves every box ``dx`` px right per update (forward and backward alike: drift)."""
    calls = {"n": 0}

    def step(net, img, centers, sizes, zf, geo, device, size_bounds=None):
        calls["n"] += 1
        peak = np.full(len(centers), 0.9) if scores is None else np.full(len(centers), scores(calls["n"]))
        return centers + np.array([dx_per_step, 0.0]), sizes.copy(), peak
    return step


def test_forward_backward_rejects_a_drifting_track(net, static_seq, monkeypatch):
    inf, geo, dev = _geometry(net)
    frames = mining._Frames(unlabeled(static_seq), 64)
    seeds = SEEDS.iloc[:1]                                   # a 30 px wide box at frame 0
    monkeypatch.setattr(mining, "track_step", _fake_step(4.0))
    ch = mining.track_chains(inf, frames, seeds, 3, FAST, geo, dev)
    # forward ends 12 px right; tracking back drifts 12 px further: 24 px off a 30 px box
    assert ch.last[0] == 3 and not ch.passed[0]
    assert ch.back[0, 0] == pytest.approx(30.0 + 24.0)
    assert ch.fb_iou[0] == pytest.approx(6 / 54)
    monkeypatch.setattr(mining, "track_step", _fake_step(1.0))   # 6 px off: IoU 24/36 >= 0.5
    ch = mining.track_chains(inf, frames, seeds, 3, FAST, geo, dev)
    assert ch.passed[0] and ch.fb_iou[0] == pytest.approx(24 / 36)


def test_low_response_stops_the_track(net, static_seq, monkeypatch):
    inf, geo, dev = _geometry(net)
    frames = mining._Frames(unlabeled(static_seq), 64)
    # forward scores 0.9, 0.8, 0.3 (< min_response 0.5): two steps kept; the backward pass ignores scores
    monkeypatch.setattr(mining, "track_step", _fake_step(0.0, scores=lambda n: [0.9, 0.8, 0.3][n - 1]
                                                          if n <= 3 else 0.0))
    ch = mining.track_chains(inf, frames, SEEDS.iloc[:1], 5, FAST, geo, dev)
    assert ch.last[0] == 2 and ch.passed[0]
    np.testing.assert_allclose(ch.scores[0, 1:3], [0.9, 0.8])
    assert np.isnan(ch.scores[0, 3:]).all() and np.isnan(ch.boxes[0, 3:]).all()
    assert ch.steps == 3 + 2                                  # the stop is detected at step 3


def test_geometry_rejects_bad_configs():
    with pytest.raises(ValueError, match="confidence"):
        mining.MinerGeometry.from_configs(dataclasses.replace(FAST, confidence="peak"), MODEL)
    with pytest.raises(ValueError, match="127 \\+ 8k"):
        mining.MinerGeometry.from_configs(dataclasses.replace(FAST, search_sz=160), MODEL)
    geo = mining.MinerGeometry.from_configs(dataclasses.replace(FAST, scale_num=3), MODEL)
    np.testing.assert_allclose(geo.scale_factors, [1 / 1.0375, 1.0, 1.0375])


# --------------------------------------------------------------------------- the pairs table
def test_mine_pairs_on_unlabeled_video_gives_a_valid_table(net, static_seq, tmp_path):
    from pulkit.method.pairs import PAIR_COLUMNS, validate_pairs

    seq = unlabeled(static_seq)
    with pytest.raises(LabelAccessError):
        seq.boxes                                               # the wrapper really hides the labels
    table = mining.mine_pairs(net, [seq], FAST, MODEL, round_idx=2, span=2, seed=0, device="cpu",
                              candidates=SEEDS.assign(video="static"), progress=False)
    assert list(table.columns) == list(PAIR_COLUMNS)
    validate_pairs(table)
    # 3 tracks pass FB; each emits k = 1, 2
    assert len(table) == 6 and sorted(table["k"].tolist()) == [1, 1, 1, 2, 2, 2]
    assert (table["frame_b"] - table["frame_a"] == table["k"]).all() and (table["round"] == 2).all()
    np.testing.assert_allclose(table[["xb", "yb", "wb", "hb"]].to_numpy(), table[["xa", "ya", "wa", "ha"]].to_numpy(),
                               atol=1e-6)                       # static video: the target stays put
    stats = table.attrs["mining"]
    assert stats["fb_pass_rate"] == 1.0 and stats["tracks"] == 3 and stats["track_updates"] == 12

    # emit_every thins the chain but keeps its last step; max_pairs caps the table
    thin = mining.mine_pairs(net, [seq], dataclasses.replace(FAST, emit_every=2, max_pairs=2), MODEL, 1, 3, 0,
                             device="cpu", candidates=SEEDS.assign(video="static"), progress=False)
    assert len(thin) == 2 and set(thin["k"]) <= {2, 3}

    path = mining.save_pairs(table, tmp_path / "pairs.csv")
    back = mining.load_pairs(path)
    pd.testing.assert_frame_equal(back, table.reset_index(drop=True), check_exact=True)


def test_mine_pairs_samples_candidates_itself_without_labels(net, static_seq):
    table = mining.mine_pairs(net, [unlabeled(static_seq)], FAST, MODEL, 1, 1, seed=3, device="cpu",
                              progress=False)
    stats = table.attrs["mining"]
    assert stats["tracks"] == FAST.candidates_per_video
    assert set(table["frame_a"]) <= {0, 2, 4} and (table["k"] == 1).all()


def test_pairs_files_reject_bad_input(tmp_path):
    from pulkit.data.sequences import DataError

    with pytest.raises(FileNotFoundError, match="nope.csv"):
        mining.load_pairs(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("video,frame_a\nv,0\n")
    with pytest.raises(DataError, match="bad.csv"):
        mining.load_pairs(bad)
    with pytest.raises(ValueError, match="csv or .parquet"):
        mining.save_pairs(pd.DataFrame(), tmp_path / "pairs.txt")
    with pytest.raises(ValueError, match="candidates name videos"):
        mining.mine_pairs(None, [], FAST, MODEL, 1, 1, 0, candidates=SEEDS.assign(video="ghost"), progress=False)


# --------------------------------------------------------------------------- quality on labelled data
def test_mining_quality_seeded_at_ground_truth_on_a_static_target(net, static_seq):
    q = mining.mining_quality(net, [static_seq], FAST, MODEL, ks=(1, 2), device="cpu", progress=False)
    assert set(q["sequence"]) == {"static", "mean"} and set(q["k"]) == {1, 2}
    row = q[(q["sequence"] == "static") & (q["k"] == 2)].iloc[0]
    assert row["n"] == 2                                        # seeds at frames 0 and 2 reach t + 2 <= 5
    assert row["center_error"] < 1e-6 and row["iou"] > 1 - 1e-6
    assert row["kept_frac"] == 1.0 and row["iou_kept"] > 1 - 1e-6
    assert q.attrs["span"] == 2


def test_leaving_the_frame_stops_mining_but_the_scored_raw_track_is_clipped(net, static_seq, monkeypatch):
    inf, geo, dev = _geometry(net)
    frames = mining._Frames(unlabeled(static_seq), 64)
    monkeypatch.setattr(mining, "track_step", _fake_step(40.0))   # centre 44.5 -> 84.5 -> 124.5 -> 164.5 (> 127)
    mined = mining.track_chains(inf, frames, SEEDS.iloc[:1], 3, FAST, geo, dev)
    raw = mining.track_chains(inf, frames, SEEDS.iloc[:1], 3, FAST, geo, dev, stop_early=False)
    assert mined.last[0] == raw.last[0] == 2
    assert np.isnan(mined.boxes[0, 3]).all()
    assert xywh_to_cxcywh(raw.boxes[0, 3])[0, 0] == pytest.approx(127.0) and np.isnan(raw.scores[0, 3])
    assert mined.passed[0] == raw.passed[0]


def test_min_tracks_keeps_the_best_failed_tracks_and_says_so(net, static_seq, monkeypatch):
    monkeypatch.setattr(mining, "track_step", _fake_step(4.0))   # every track fails FB (24 px off after 3 steps)
    cands = SEEDS.assign(video="static")
    strict = mining.mine_pairs(net, [unlabeled(static_seq)], FAST, MODEL, 1, 3, 0, device="cpu",
                               candidates=cands, progress=False)
    assert len(strict) == 0 and strict.attrs["mining"]["fb_passed"] == 0
    relaxed = mining.mine_pairs(net, [unlabeled(static_seq)], dataclasses.replace(FAST, min_tracks=2), MODEL, 1, 3,
                                0, device="cpu", candidates=cands, progress=False)
    stats = relaxed.attrs["mining"]
    assert stats["fb_relaxed_tracks"] == 2 and stats["fb_passed"] == 0 and stats["fb_pass_rate"] == 0
    # FB IoU (w - 24) / (w + 24): the 40 px and 30 px wide seeds beat the 22 px one
    assert sorted(set(relaxed["wa"])) == [30.0, 40.0] and len(relaxed) == 6


# --------------------------------------------------------------------------- a moving target: step k is frame t + k
V_PX = 4.0          # the target moves this many pixels right per frame
SIDE = 25.75        # context_size = 2 * SIDE = 51.5 = exemplar_sz / 2: one frame px = 2 crop px, V_PX = one feature cell
N_MOVING = 7


@pytest.fixture(scope="module")
def moving_seq(tmp_path_factory):
    """A textured scene panning ``V_PX`` px right per frame; labels follow it (x = 30 + V_PX * i)."""
    big = _texture(np.random.default_rng(2), 96, 128 + int(V_PX) * N_MOVING)
    shift = int(V_PX)
    imgs = [big[:, shift * (N_MOVING - 1 - i):shift * (N_MOVING - 1 - i) + 128] for i in range(N_MOVING)]
    for i in range(1, N_MOVING):      # the content really moves: frame i is frame i - 1 shifted V_PX right
        np.testing.assert_array_equal(imgs[i][:, shift:], imgs[i - 1][:, :-shift])
    frames = _write(tmp_path_factory.mktemp("moving"), imgs)
    boxes = np.array([[30.0 + V_PX * i, 30.0, SIDE, SIDE] for i in range(N_MOVING)])
    return Sequence("moving", frames, boxes=boxes)


def test_moving_target_pairs_are_k_frames_and_4k_pixels_apart(net, moving_seq):
    starts = [0, 1, 2]
    seeds = pd.DataFrame(dict(video="moving", frame=starts, x=[30.0 + V_PX * t for t in starts], y=30.0,
                              w=SIDE, h=SIDE))
    span = 4
    table = mining.mine_pairs(net, [unlabeled(moving_seq)], FAST, MODEL, round_idx=1, span=span, seed=0,
                              device="cpu", candidates=seeds, progress=False)
    assert table.attrs["mining"]["fb_pass_rate"] == 1.0
    expected = sorted((t, t + k, k) for t in starts for k in range(1, span + 1))
    assert sorted(zip(table["frame_a"], table["frame_b"], table["k"])) == expected
    # box b is where the target is in frame t + k: x_b - x_a = 4 k (an off-by-one in k would be 4 px off)
    np.testing.assert_allclose(table["xb"] - table["xa"], V_PX * table["k"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(table["xa"], 30.0 + V_PX * table["frame_a"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(table["xb"], 30.0 + V_PX * table["frame_b"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(table[["yb", "wb", "hb"]].to_numpy(), np.tile([30.0, SIDE, SIDE], (len(table), 1)),
                               atol=1e-6)


def _expected_n(k, stride=FAST.start_stride, n_frames=N_MOVING):
    return sum(1 for t in range(0, n_frames - 1, stride) if t + k < n_frames)


def test_mining_quality_scores_step_k_against_ground_truth_at_t_plus_k(net, moving_seq):
    ks = (1, 2, 3)
    q = mining.mining_quality(net, [moving_seq], FAST, MODEL, ks=ks, device="cpu", progress=False)
    rows = q[q["sequence"] == "moving"].set_index("k")
    assert [rows.loc[k, "n"] for k in ks] == [_expected_n(k) for k in ks] == [3, 3, 2]
    # labels right: the miner follows the target, zero error at every k (gt[t + k - 1] would give 4 px)
    np.testing.assert_allclose(rows["center_error"], 0.0, atol=1e-6)
    np.testing.assert_allclose(rows["iou"], 1.0, atol=1e-6)
    assert (rows["kept_frac"] == 1.0).all()

    # labels that claim twice the speed (x = 30 + 8 i): seeded at gt[t], the track moves 4 k while gt[t + k]
    # moved 8 k, so the error is exactly 4 k px and the IoU (SIDE - 4k) / (SIDE + 4k) (same height, same y)
    fast = Sequence("fast-labels", moving_seq.frames,
                    boxes=np.array([[30.0 + 2 * V_PX * i, 30.0, SIDE, SIDE] for i in range(N_MOVING)]))
    q = mining.mining_quality(net, [fast], FAST, MODEL, ks=ks, device="cpu", progress=False)
    rows = q[q["sequence"] == "fast-labels"].set_index("k")
    np.testing.assert_allclose(rows.loc[list(ks), "center_error"], [V_PX * k for k in ks], rtol=0, atol=1e-6)
    np.testing.assert_allclose(rows.loc[list(ks), "iou"], [(SIDE - V_PX * k) / (SIDE + V_PX * k) for k in ks],
                               rtol=0, atol=1e-9)
    mean = q[q["sequence"] == "mean"].set_index("k")
    np.testing.assert_allclose(mean.loc[list(ks), "center_error"], [V_PX * k for k in ks], atol=1e-6)
