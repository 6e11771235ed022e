"""Candidate patches: geometry, texture prior, seeded determinism, crop cache."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pulkit.core.config import BDConfig
from pulkit.data.crops import exemplar_crop
from pulkit.data.images import read_rgb
from pulkit.data.sequences import Sequence
from pulkit.method.candidates import CandidateCrops, gradient_magnitude, sample_candidates


def _write_video(folder, name, n=4, width=96, height=64, flat_left=False, seed=0):
    """PNG frames of noise texture; with ``flat_left`` the left half is one flat grey."""
    rng = np.random.default_rng(seed)
    d = folder / name
    d.mkdir(parents=True)
    frames = []
    for i in range(n):
        img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        img = cv2.GaussianBlur(img, (3, 3), 0)
        if flat_left:
            img[:, : width // 2] = 128
        p = d / f"{i:04d}.png"
        cv2.imwrite(str(p), img[:, :, ::-1])
        frames.append(p)
    return Sequence(name=name, frames=frames)


class NoLabels:
    """A sequence whose labels raise on access (the unsupervised stages must never read them)."""

    def __init__(self, seq):
        self.name, self.frames = seq.name, seq.frames

    def __len__(self):
        return len(self.frames)

    @property
    def boxes(self):
        raise AssertionError("a label was read")


def test_geometry_constraints(tmp_path):
    seqs = [_write_video(tmp_path, "a", width=96, height=64), _write_video(tmp_path, "b", width=64, height=80, seed=1)]
    cfg = BDConfig(candidates_per_frame=20, texture_prior=False)
    t = sample_candidates([NoLabels(s) for s in seqs], cfg, seed=3, progress=False)
    assert len(t) == 2 * 4 * 20
    assert list(t["cand_id"]) == list(range(len(t)))
    size = {"a": (96, 64), "b": (64, 80)}
    W = t["video"].map(lambda v: size[v][0])
    H = t["video"].map(lambda v: size[v][1])
    assert (t.x >= 0).all() and (t.y >= 0).all()
    assert (t.x + t.w <= W).all() and (t.y + t.h <= H).all()
    short = np.minimum(W, H)
    side = np.sqrt(t.w * t.h) / short
    slack = 1.5 / short  # integer rounding of w and h
    assert (side >= cfg.min_side - slack).all() and (side <= cfg.max_side + slack).all()
    aspect = t.w / t.h
    assert (aspect >= 0.5 * (1 - 0.3)).all() and (aspect <= 2.0 * (1 + 0.3)).all()  # small boxes round
    big = t[t.w * t.h > 400]
    assert ((big.w / big.h) >= 0.5 - 0.1).all() and ((big.w / big.h) <= 2.0 + 0.1).all()
    assert (t.frame < 4).all() and set(t.video) == {"a", "b"}


def test_seeded_and_stride_and_cap(tmp_path):
    seqs = [_write_video(tmp_path, "a", n=6)]
    cfg = BDConfig(candidates_per_frame=3, texture_prior=False)
    t1 = sample_candidates(seqs, cfg, seed=0, progress=False)
    t2 = sample_candidates(seqs, cfg, seed=0, progress=False)
    t3 = sample_candidates(seqs, cfg, seed=1, progress=False)
    assert t1.equals(t2) and not t1.equals(t3)
    ts = sample_candidates(seqs, cfg, seed=0, frame_stride=2, progress=False)
    assert sorted(set(ts.frame)) == [0, 2, 4]
    tc = sample_candidates(seqs, BDConfig(candidates_per_frame=3, texture_prior=False, max_candidates=5),
                           seed=0, progress=False)
    assert len(tc) == 5 and list(tc.cand_id) == list(range(5))
    # the capped table is a subset of the full one, in the same order
    full = t1[["frame", "x", "y", "w", "h"]].apply(tuple, axis=1).tolist()
    sub = tc[["frame", "x", "y", "w", "h"]].apply(tuple, axis=1).tolist()
    pos = [full.index(r) for r in sub]
    assert pos == sorted(pos)


def test_texture_prior_rejects_flat_region(tmp_path):
    seq = _write_video(tmp_path, "half", n=3, width=120, height=60, flat_left=True)
    off = sample_candidates([seq], BDConfig(candidates_per_frame=30, texture_prior=False), 0, progress=False)
    on = sample_candidates([seq], BDConfig(candidates_per_frame=30, texture_prior=True, texture_min=2.0), 0,
                           progress=False)
    in_flat = lambda t: (t.x + t.w <= 60)  # noqa: E731  entirely inside the flat left half
    assert in_flat(off).sum() > 5
    assert in_flat(on).sum() == 0 and len(on) > 0
    img = read_rgb(seq.frames[0])
    g = gradient_magnitude(img)
    for r in on.itertuples():
        x, y, w, h = int(r.x), int(r.y), int(r.w), int(r.h)
        assert g[y:y + h, x:x + w].mean() >= 2.0 - 1e-9


def test_duplicate_names_and_bad_cfg(tmp_path):
    s = _write_video(tmp_path, "a", n=1)
    with pytest.raises(ValueError, match="unique"):
        sample_candidates([s, s], BDConfig(), 0, progress=False)
    with pytest.raises(ValueError, match="min_side"):
        sample_candidates([s], BDConfig(min_side=0.6, max_side=0.5), 0, progress=False)


def test_crops_match_exemplar_crop_and_cache_reused(tmp_path):
    seqs = [_write_video(tmp_path, "a", n=3), _write_video(tmp_path, "b", n=2, seed=4)]
    t = sample_candidates(seqs, BDConfig(candidates_per_frame=2, texture_prior=False), 0, progress=False)
    cache = tmp_path / "cache"
    c1 = CandidateCrops(t, crop_sz=31, context=0.5, cache_dir=cache, progress=False)
    assert not c1.from_cache and c1.path.is_file() and c1.path.parent == cache
    assert c1.crops.shape == (len(t), 31, 31, 3) and c1.crops.dtype == np.uint8
    r = t.iloc[3]
    ref = exemplar_crop(read_rgb(r.path), [r.x, r.y, r.w, r.h], 31, 0.5)
    np.testing.assert_array_equal(c1[3], ref)
    b = c1.batch([3, 0])
    assert b.shape == (2, 3, 31, 31) and b.dtype.is_floating_point and float(b.max()) <= 255
    np.testing.assert_array_equal(b[0].permute(1, 2, 0).numpy().astype(np.uint8), ref)

    stamp = c1.path.stat().st_mtime_ns
    c2 = CandidateCrops(t, crop_sz=31, context=0.5, cache_dir=cache, progress=False)
    assert c2.from_cache and c2.path == c1.path and c2.path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(np.asarray(c2.crops), np.asarray(c1.crops))
    # another size or another table is another cache entry
    c3 = CandidateCrops(t, crop_sz=39, context=0.5, cache_dir=cache, progress=False)
    c4 = CandidateCrops(t.iloc[:4].reset_index(drop=True), crop_sz=31, context=0.5, cache_dir=cache, progress=False)
    assert len({c1.path, c3.path, c4.path}) == 3 and not c3.from_cache and not c4.from_cache
    assert not list(cache.glob("*.tmp"))


def test_crops_bad_table(tmp_path):
    seqs = [_write_video(tmp_path, "a", n=1)]
    t = sample_candidates(seqs, BDConfig(candidates_per_frame=2, texture_prior=False), 0, progress=False)
    with pytest.raises(ValueError, match="columns"):
        CandidateCrops(t.drop(columns=["path"]), 31, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="cand_id"):
        CandidateCrops(t.iloc[::-1], 31, cache_dir=tmp_path)
