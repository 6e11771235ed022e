"""Pair datasets: label offsets where the target really is, annotation noise, label-free mined
pairs, the table schema, and the crop cache."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from pulkit.core.config import ConfigError, DataConfig, ModelConfig, load_config
from pulkit.data import crops
from pulkit.data.sequences import DataError, LabelAccessError, Sequence, unlabeled
from pulkit.method.pairs import (
    PAIR_COLUMNS,
    CropCache,
    CropStore,
    GroundTruthPairs,
    MinedPairs,
    gather_windows,
    hold_decision,
    noisy_boxes,
    validate_pairs,
)

BG, FG = 40, 220
SIZE = (288, 224)                              # frame width, height: crops stay inside it
MODEL = ModelConfig(exemplar_sz=127, instance_sz=255)


def make_sequence(root: Path, name: str, boxes) -> Sequence:
    """A flat background with one bright box per frame (lossless PNG), and those boxes as labels."""
    folder = root / name
    folder.mkdir(parents=True)
    frames = []
    for i, (x, y, w, h) in enumerate(np.asarray(boxes, np.float64)):
        img = np.full((SIZE[1], SIZE[0], 3), BG, np.uint8)
        if np.isfinite([x, y, w, h]).all():
            img[int(y):int(y + h), int(x):int(x + w)] = FG
        frames.append(folder / f"{i:08d}.png")
        cv2.imwrite(str(frames[-1]), img)
    return Sequence(name, frames, np.asarray(boxes, np.float64))


def centroid(crop: torch.Tensor) -> np.ndarray:
    """(cx, cy) of the bright target in a 3 x H x W crop (intensity-weighted above the background)."""
    m = (crop[0].numpy().astype(np.float64) - BG).clip(min=0)
    ys, xs = np.indices(m.shape)
    return np.array([(m * xs).sum() / m.sum(), (m * ys).sum() / m.sum()])


BOXES = [[110, 90, 30, 20], [116, 94, 30, 20], [122, 98, 30, 20], [128, 102, 30, 20]]


@pytest.fixture
def seq(tmp_path):
    return make_sequence(tmp_path / "frames", "toy", BOXES)


def test_label_offset_is_where_the_target_is(seq, tmp_path):
    ds = GroundTruthPairs([seq], MODEL, max_gap=2, shift_px=8, cache=CropCache(tmp_path / "cache"))
    b = ds.sample_batch(12, torch.Generator().manual_seed(0))
    assert b["z"].shape == (12, 3, 127, 127) and b["x"].shape == (12, 3, 255, 255)
    assert b["z"].dtype == b["x"].dtype == b["centers"].dtype == torch.float32
    assert b["shift"].abs().max() <= 8 and (b["shift"] != 0).any()
    torch.testing.assert_close(b["centers"], -b["shift"].float() / 8)
    c_x, c_z = (255 - 1) / 2, (127 - 1) / 2
    for i in range(12):
        expected = c_x + 8 * b["centers"][i].numpy()
        np.testing.assert_allclose(centroid(b["x"][i]), expected, atol=0.25)
        np.testing.assert_allclose(centroid(b["z"][i]), [c_z, c_z], atol=0.25)
        fa, fb = b["frames"][i].tolist()
        assert 1 <= abs(fb - fa) <= 2
        # the cached sub-crop is the crops module's own search / exemplar crop
        img = cv2.imread(str(seq.frames[fb]))[:, :, ::-1]
        sx, sy = b["shift"][i].tolist()
        scale = 255 / crops.crop_sizes(*seq.boxes[fb, 2:], 127, 255, 0.5)[1]
        x_ref, _ = crops.search_crop(img, seq.boxes[fb], 127, 255, 0.5, shift=(sx / scale, sy / scale))
        assert np.abs(b["x"][i].permute(1, 2, 0).numpy() - x_ref).max() <= 2
        z_ref = crops.exemplar_crop(cv2.imread(str(seq.frames[fa]))[:, :, ::-1], seq.boxes[fa], 127, 0.5)
        assert np.abs(b["z"][i].permute(1, 2, 0).numpy() - z_ref).max() <= 2


def test_batches_are_a_function_of_the_generator(seq, tmp_path):
    ds = GroundTruthPairs([seq], MODEL, max_gap=3, shift_px=4, cache=CropCache(tmp_path / "cache"))
    a = ds.sample_batch(5, torch.Generator().manual_seed(3))
    b = ds.sample_batch(5, torch.Generator().manual_seed(3))
    c = ds.sample_batch(5, torch.Generator().manual_seed(4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (torch.equal(a["frames"], c["frames"]) and torch.equal(a["shift"], c["shift"]))


def test_noisy_annotations_are_drawn_once_from_the_seed(tmp_path):
    boxes = np.array(BOXES + [[np.nan] * 4] + BOXES, np.float64)
    seq = make_sequence(tmp_path / "frames", "noisy", boxes)
    cache = CropCache(tmp_path / "cache")
    ds = GroundTruthPairs([seq], MODEL, max_gap=8, shift_px=0, noise_px=10, seed=0, cache=cache)
    same = GroundTruthPairs([seq], MODEL, max_gap=8, shift_px=0, noise_px=10, seed=0, cache=cache)
    other = GroundTruthPairs([seq], MODEL, max_gap=8, shift_px=0, noise_px=10, seed=1, cache=cache)
    clean = GroundTruthPairs([seq], MODEL, max_gap=8, shift_px=0, noise_px=0, cache=cache)
    nb = ds.noisy_boxes[0]
    np.testing.assert_array_equal(nb, same.noisy_boxes[0])
    assert not np.allclose(nb[[0, 1, 2, 3]], other.noisy_boxes[0][[0, 1, 2, 3]])
    np.testing.assert_array_equal(clean.noisy_boxes[0], boxes)
    ok = np.isfinite(boxes).all(axis=1)
    shift = nb[ok, :2] - boxes[ok, :2]
    assert np.abs(shift).max() <= 10 and np.abs(shift).min() > 0
    np.testing.assert_array_equal(nb[ok, 2:], boxes[ok, 2:])
    assert np.isnan(nb[~ok]).all()
    np.testing.assert_array_equal(nb, noisy_boxes(boxes, 10, 0, "noisy"))
    # two "epochs": every exemplar of a frame is the same crop, centred on the *noisy* box
    seen: dict[int, torch.Tensor] = {}
    for epoch in range(2):
        b = ds.sample_batch(16, torch.Generator().manual_seed(epoch))
        for i in range(16):
            fa = int(b["frames"][i, 0])
            assert fa != 4, "a frame without a usable box was sampled"
            if fa in seen:
                assert torch.equal(seen[fa], b["z"][i])
            seen[fa] = b["z"][i]
            true_c, noisy_c = crops.box_center(boxes[fa]), crops.box_center(nb[fa])
            scale = 127 / crops.context_size(*boxes[fa, 2:])
            np.testing.assert_allclose(centroid(b["z"][i]), 63 + (true_c - noisy_c) * scale, atol=0.3)
    assert len(seen) >= 5


def pairs_table(boxes, pairs, video="toy", rnd=1) -> pd.DataFrame:
    rows = []
    for a, b in pairs:
        rows.append({"video": video, "frame_a": a, "frame_b": b,
                     **dict(zip(["xa", "ya", "wa", "ha"], boxes[a])), **dict(zip(["xb", "yb", "wb", "hb"], boxes[b])),
                     "k": b - a, "confidence": 0.9, "round": rnd})
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def test_mined_pairs_never_read_labels(seq, tmp_path):
    hidden = unlabeled(seq)
    with pytest.raises(LabelAccessError):
        hidden.boxes                                 # the guard is live
    table = pairs_table(BOXES, [(0, 1), (1, 3), (3, 2)])
    ds = MinedPairs(table, {"toy": hidden}, MODEL, shift_px=8, cache=CropCache(tmp_path / "cache"))
    assert len(ds) == 3
    b = ds.batch([0, 1, 2, 1], torch.Generator().manual_seed(0))
    assert b["index"].tolist() == [0, 1, 2, 1] and b["frames"].tolist() == [[0, 1], [1, 3], [3, 2], [1, 3]]
    assert b["confidence"].dtype == torch.float32 and b["confidence"].shape == (4,)
    for i in range(4):
        np.testing.assert_allclose(centroid(b["x"][i]), 127 + 8 * b["centers"][i].numpy(), atol=0.25)
    ds.sample_batch(4, torch.Generator().manual_seed(1))
    assert ds.precache(progress=False) == 6


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.drop(columns=["confidence"]), "missing columns"),
    (lambda t: t.assign(xa=[np.nan, 1.0, 2.0]), "'xa' has non-finite"),
    (lambda t: t.assign(wb=[3.0, 0.0, 2.0]), "'wb' has non-positive"),
    (lambda t: t.assign(k=[1, 1, 1]), "k != frame_b - frame_a in row 1"),
    (lambda t: t.assign(frame_a=[0.5, 1, 3], k=[0.5, 2, -1]), "'frame_a' must hold integers"),
    (lambda t: t.assign(video=["toy", "", "toy"]), "non-empty strings"),
    (lambda t: t.assign(round=["1", "1", "1"]), "'round' must be numeric"),
])
def test_malformed_tables_are_refused(edit, message):
    table = pairs_table(BOXES, [(0, 1), (1, 3), (3, 2)])
    validate_pairs(table)
    with pytest.raises(DataError, match=message):
        validate_pairs(edit(table), "mined.csv")
    with pytest.raises(DataError, match="mined.csv: expected a pandas DataFrame"):
        validate_pairs([1, 2], "mined.csv")


def test_mined_pairs_refuse_unknown_videos_and_frames(seq, tmp_path):
    cache = CropCache(None)
    with pytest.raises(DataError, match=r"videos \['ghost'\]"):
        MinedPairs(pairs_table(BOXES, [(0, 1)], video="ghost"), {"toy": seq}, MODEL, 8, cache=cache)
    boxes = BOXES + [BOXES[0]] * 6
    with pytest.raises(DataError, match="row 0 refers to a frame beyond video 'toy'"):
        MinedPairs(pairs_table(boxes, [(0, 9)]), {"toy": seq}, MODEL, 8, cache=cache)


def test_cache_hits_return_identical_arrays(seq, tmp_path):
    cache = CropCache(tmp_path / "cache")
    ds = GroundTruthPairs([seq], MODEL, max_gap=3, shift_px=8, cache=cache)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    cold = ds.sample_batch(6, g())
    assert cache.stats["miss"] > 0 and cache.stats["disk"] == 0
    misses = cache.stats["miss"]
    warm = ds.sample_batch(6, g())
    assert cache.stats["miss"] == misses and cache.stats["memory"] >= 12
    disk_cache = CropCache(tmp_path / "cache")
    from_disk = GroundTruthPairs([seq], MODEL, max_gap=3, shift_px=8, cache=disk_cache).sample_batch(6, g())
    assert disk_cache.stats["miss"] == 0 and disk_cache.stats["disk"] > 0
    memory_only = GroundTruthPairs([seq], MODEL, max_gap=3, shift_px=8, cache=CropCache(None)).sample_batch(6, g())
    for other in (warm, from_disk, memory_only):
        assert all(torch.equal(cold[k], other[k]) for k in cold)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == misses
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    tiny = CropCache(None, memory_mb=0.5)            # room for two entries of 271^2 x 3 bytes
    GroundTruthPairs([seq], MODEL, max_gap=3, shift_px=8, cache=tiny).precache(progress=False)
    assert 0 < tiny._bytes <= tiny.max_bytes and len(tiny._lru) == 2


def test_disk_cache_stops_growing_at_its_budget(seq, tmp_path):
    """Once the folder holds ``disk_mb``, new crops stay in memory (a warning once), batches unchanged;
    a later cache measures what earlier runs left and writes nothing either."""
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    reference = GroundTruthPairs([seq], MODEL, max_gap=3, shift_px=8, cache=CropCache(None)).sample_batch(6, g())
    entry_mb = 271 * 271 * 3 / 2**20                # an instance entry; exemplar entries are smaller
    cache = CropCache(tmp_path / "cache", disk_mb=2.5 * entry_mb)
    with pytest.warns(UserWarning, match="crop cache reached its"):
        batch = GroundTruthPairs([seq], MODEL, max_gap=3, shift_px=8, cache=cache).sample_batch(6, g())
    assert all(torch.equal(reference[k], batch[k]) for k in reference)
    on_disk = sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*.npy"))
    assert 0 < on_disk <= 2.5 * entry_mb * 2**20 and cache.stats["not_written"] > 0
    assert cache.stats["not_written"] + len(list((tmp_path / "cache").rglob("*.npy"))) == cache.stats["miss"]
    later = CropCache(tmp_path / "cache", disk_mb=2.5 * entry_mb)
    with pytest.warns(UserWarning, match="crop cache reached"):
        GroundTruthPairs([seq], MODEL, max_gap=3, shift_px=12, cache=later).sample_batch(6, g())
    assert sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*.npy")) == on_disk
    unlimited = CropCache(tmp_path / "free", disk_mb=None)
    GroundTruthPairs([seq], MODEL, max_gap=3, shift_px=8, cache=unlimited).sample_batch(6, g())
    assert unlimited.stats["not_written"] == 0 and len(list((tmp_path / "free").rglob("*.npy"))) == unlimited.stats["miss"]


def test_bad_inputs(seq, tmp_path):
    with pytest.raises(DataError, match="needs labelled sequences"):
        GroundTruthPairs([Sequence("bare", seq.frames)], MODEL, 2, 8, cache=CropCache(None))
    with pytest.raises(DataError, match="no sequence has a usable box"):
        GroundTruthPairs([Sequence("empty", seq.frames, np.full((4, 4), np.nan))], MODEL, 2, 8, cache=CropCache(None))
    with pytest.raises(Exception, match="127 \\+ 8k"):
        GroundTruthPairs([seq], ModelConfig(exemplar_sz=128), 2, 8, cache=CropCache(None))
    ds = GroundTruthPairs([seq], MODEL, 2, 8, cache=CropCache(None))
    with pytest.raises(IndexError, match="out of range"):
        ds.batch([1], torch.Generator())
    gone = Sequence("gone", [tmp_path / "missing.png"] * 2, np.array([BOXES[0]] * 2, np.float64))
    with pytest.raises(DataError, match="missing.png"):
        GroundTruthPairs([gone], MODEL, 2, 8, cache=CropCache(None)).sample_batch(1, torch.Generator())


# --------------------------------------------------------------------------- the uint8 crop store
def test_crop_store_round_trips_and_gathers_windows():
    g = np.random.default_rng(0)
    host = g.integers(0, 256, (5, 21, 21, 3), dtype=np.uint8)
    store = CropStore(host)
    assert store.data.shape == (5, 3, 21, 21) and store.data.dtype == torch.uint8
    assert store.device == torch.device("cpu") and store.side == 21 and store.nbytes == host.nbytes and len(store) == 5
    assert np.array_equal(store.data.permute(0, 2, 3, 1).numpy(), host)            # uint8 in, the same uint8 out
    assert torch.equal(store.batch([4, 0]), torch.from_numpy(host[[4, 0]]).permute(0, 3, 1, 2).float())
    rows, top, left = np.array([3, 0, 3]), np.array([0, 4, 2]), np.array([4, 0, 1])
    want = np.stack([host[r, t:t + 17, l_:l_ + 17] for r, t, l_ in zip(rows, top, left)]).transpose(0, 3, 1, 2)
    assert np.array_equal(store.window(rows, top, left, 17).numpy(), want)
    # the accelerator's one-op gather, run on CPU tensors: the same windows
    got = gather_windows(store.data, *(torch.from_numpy(v) for v in (rows, top, left)), 17)
    assert np.array_equal(got.numpy(), want)
    with pytest.raises(ValueError, match="must lie inside"):
        store.window(rows, top + 1, left, 17)
    with pytest.raises(IndexError, match="row out of range"):
        store.window([5], [0], [0], 17)
    with pytest.raises(ValueError, match="N x S x S x 3 uint8"):
        CropStore(host.astype(np.float32))
    with pytest.raises(ValueError, match="N x S x S x 3 uint8"):
        CropStore(host[:, :, :20])


def test_held_datasets_give_the_cache_batches(seq, tmp_path):
    """``hold`` moves every crop into one uint8 store; batches from it are the crop cache's, bit for bit."""
    small = ModelConfig(exemplar_sz=103, instance_sz=135)
    gt = [GroundTruthPairs([seq], small, max_gap=2, shift_px=6, noise_px=n, cache=CropCache(None)) for n in (1.5, 1.5)]
    table = pairs_table(BOXES, [(0, 1), (1, 3), (3, 2), (0, 2)])
    mined = [MinedPairs(table, {"toy": unlabeled(seq)}, small, shift_px=4, cache=CropCache(None)) for _ in range(2)]
    for cached, held in (gt, mined):
        store = held.hold("cpu", progress=False)
        assert held.store is store and store.side == held.geometry.side and store.data.dtype == torch.uint8
        assert len(store) == len(BOXES)                 # one entry per (frame, box), however often asked for
        for s in range(3):
            a = cached.sample_batch(5, torch.Generator().manual_seed(s))
            b = held.sample_batch(5, torch.Generator().manual_seed(s))
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
            assert b["z"].dtype == b["x"].dtype == torch.float32 and b["x"].shape == (5, 3, 135, 135)
    # a dataset asked for an entry it did not hold says so
    held = mined[1]
    held._rows.clear()
    with pytest.raises(DataError, match="not in the crop store"):
        held.batch([0], torch.Generator())


def test_hold_decision_rules_and_the_size_estimate(seq, tmp_path):
    """``auto`` holds on a CUDA device when the store fits ``hold_crops_mb``, never on the CPU; ``always`` /
    ``never`` as said.  The size is counted before cutting anything (CUDA devices here are decision inputs only)."""
    small = ModelConfig(exemplar_sz=103, instance_sz=135)
    table = pairs_table(BOXES, [(0, 1), (1, 3), (3, 2), (0, 2), (0, 1)])
    pairs = MinedPairs(table, {"toy": unlabeled(seq)}, small, shift_px=4, cache=CropCache(None))
    mb = pairs.store_mb()
    assert pairs.cache.stats["miss"] == 0 and pairs.store is None                # nothing cut
    assert mb == pytest.approx(len(BOXES) * 143 ** 2 * 3 / 2**20)               # 4 distinct (frame, box), S = 143
    assert pairs.hold("cpu", progress=False).nbytes == round(mb * 2**20)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    fits, over = DataConfig(hold_crops_mb=1), DataConfig(hold_crops_mb=0)         # the store is 0.23 MB
    assert hold_decision(fits, cuda, pairs) and hold_decision(fits, "cuda:0", pairs)
    assert not hold_decision(over, cuda, pairs)
    assert not hold_decision(fits, cpu, pairs) and not hold_decision(DataConfig(hold_crops_mb=10**6), "cpu", pairs)
    assert hold_decision(DataConfig(hold_crops="always", hold_crops_mb=0), cpu, pairs)
    assert not hold_decision(DataConfig(hold_crops="never"), cuda, pairs)
    assert DataConfig().hold_crops == "auto"
    for name in ("smoke", "cpu", "gpu", "paper"):
        assert load_config(name).data.hold_crops == "auto"
    with pytest.raises(ConfigError, match="data.hold_crops must be one of auto, always, never, got 'yes'"):
        load_config("smoke", {"data": {"hold_crops": "yes"}})
    with pytest.raises(ConfigError, match="data.hold_crops_mb must be an integer >= 0"):
        load_config("smoke", {"data.hold_crops_mb": -1})
