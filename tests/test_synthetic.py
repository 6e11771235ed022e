"""Synthetic videos: determinism, exact boxes, GOT-10k layout, disjoint splits, cached generation."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pulkit.core.config import load_config
from pulkit.data import synthetic
from pulkit.data.sequences import DataError, read_got10k
from pulkit.data.synthetic import (
    ensure_synthetic,
    generate_split,
    read_objects,
    render_video,
    synthetic_params,
    video_name,
)

W, H, T = 96, 72, 10


def _tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tmp_path):
    a = generate_split(tmp_path / "a", 2, 5, W, H, seed=3)
    b = generate_split(tmp_path / "b", 2, 5, W, H, seed=3)
    c = generate_split(tmp_path / "c", 2, 5, W, H, seed=4)
    ta, tb = _tree_bytes(a), _tree_bytes(b)
    assert ta == tb and any(k.endswith(".jpg") for k in ta)
    assert ta["synthetic_s3_0000/00000001.jpg"] != _tree_bytes(c)["synthetic_s4_0000/00000001.jpg"]


@pytest.mark.parametrize("index", range(4))
def test_boxes_match_the_rendered_target(index):
    v = render_video(11, index, T, W, H, n_distractors=2)
    hidden = render_video(11, index, T, W, H, n_distractors=2, hide_target=True)
    assert v.frames.shape == (T, H, W, 3) and v.frames.dtype == np.uint8
    assert v.roles == ["target", "distractor", "distractor"]
    b = v.boxes
    assert (b[..., :2] >= 0).all() and (b[..., 2:] >= 4).all()
    assert (b[..., 0] + b[..., 2] <= W).all() and (b[..., 1] + b[..., 3] <= H).all()
    sharp_checked = []
    for f in range(T):
        diff = np.abs(v.frames[f].astype(int) - hidden.frames[f].astype(int)).max(axis=2) > 0
        x, y, w, h = b[0, f]
        inside = np.zeros((H, W), bool)
        inside[max(y - 4, 0):y + h + 4, max(x - 4, 0):x + w + 4] = True   # motion blur spreads <= 4 px
        assert not (diff & ~inside).any(), f"frame {f}: pixels outside the target box changed"
        if v.visible[0, f] == 1.0:
            ys, xs = np.nonzero(diff)   # the target fills its box: changes reach all four sides
            tol = v.blur[f] // 2        # exact on sharp frames
            assert abs(xs.min() - x) <= tol and abs(xs.max() - (x + w - 1)) <= tol
            assert abs(ys.min() - y) <= tol and abs(ys.max() - (y + h - 1)) <= tol
            sharp_checked.append(tol == 0)
        if v.visible[0, f] > 0.5:       # the target differs from what lies behind it
            assert diff[y:y + h, x:x + w].mean() > 0.3
    assert any(sharp_checked)


def test_occlusion_and_visibility_occur():
    vis = np.concatenate([render_video(5, i, 30, 128, 96).visible[0] for i in range(6)])
    assert (vis == 1.0).mean() > 0.3 and (vis < 0.95).any() and (vis >= 0).all()


def test_split_layout_reads_through_got10k(synthetic_split):
    seqs = read_got10k(synthetic_split)
    objects = read_objects(synthetic_split)
    assert [s.name for s in seqs] == [video_name(7, i) for i in range(3)]
    for s in seqs:
        assert len(s) == 8 and s.attributes["resolution"] == (96, 72)
        assert s.image(0).shape == (72, 96, 3)
        target = objects[(objects.video == s.name) & (objects.role == "target")].sort_values("frame")
        np.testing.assert_array_equal(s.boxes, target[["x", "y", "w", "h"]].to_numpy(float))
        vis = target.visible.to_numpy()
        assert (s.attributes["cover"][vis >= 1] == 8).all() and (s.attributes["cover"][vis < 1] < 8).all()
    assert set(objects.role) == {"target", "distractor"} and len(objects) == 3 * 8 * 2


def test_read_objects_errors(tmp_path):
    with pytest.raises(DataError, match="objects.csv"):
        read_objects(tmp_path)
    (tmp_path / "objects.csv").write_text("video,frame\nv,0\n")
    with pytest.raises(DataError, match="missing columns"):
        read_objects(tmp_path)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="32 x 32"):
        generate_split("unused", 1, 1, 16, 16, seed=0)


def _tiny_cfg(**kw):
    fields = dict(synthetic_train_videos=2, synthetic_val_videos=1, synthetic_frames=4,
                  synthetic_width=64, synthetic_height=48, synthetic_distractors=1)
    return load_config("smoke", {"data": {**fields, **kw}}).data


def test_ensure_synthetic_generates_once_and_splits_are_disjoint(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_DATA", str(tmp_path))
    cfg = _tiny_cfg()
    splits = ensure_synthetic(cfg)
    assert set(splits) == {"train", "val"} and splits["train"].parent.parent == tmp_path / "synthetic"
    train = {s.name for s in read_got10k(splits["train"].parent, "train")}
    val = {s.name for s in read_got10k(splits["val"].parent, "val")}
    assert len(train) == 2 and len(val) == 1 and not train & val
    manifest = json.loads((splits["train"].parent / "manifest.json").read_text())
    assert manifest["params"] == synthetic_params(cfg)

    stamp = (splits["train"] / "list.txt").stat().st_mtime_ns
    assert ensure_synthetic(cfg) == splits                                # reused, not regenerated
    assert (splits["train"] / "list.txt").stat().st_mtime_ns == stamp

    victim = next(splits["val"].rglob("*.jpg"))
    victim.write_bytes(victim.read_bytes()[:100])                         # a damaged file: regenerate
    ensure_synthetic(cfg)
    assert victim.stat().st_size > 100
    assert not [p for p in (tmp_path / "synthetic").iterdir() if p.name.startswith(".")]  # no temp left

    other = ensure_synthetic(_tiny_cfg(synthetic_frames=5))               # other parameters, other folder
    assert other["train"].parent != splits["train"].parent


def test_ensure_synthetic_killed_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_DATA", str(tmp_path))
    cfg = _tiny_cfg()
    real = synthetic.generate_split

    def dies_on_val(root, *a, **k):
        if root.name == "val":
            raise KeyboardInterrupt
        return real(root, *a, **k)

    monkeypatch.setattr(synthetic, "generate_split", dies_on_val)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(cfg)
    assert not [p for p in (tmp_path / "synthetic").iterdir() if not p.name.startswith(".")]
    key = synthetic.config_hash(synthetic_params(cfg))
    dead = tmp_path / "synthetic" / f".{key}.tmp-999999999-x"    # as a SIGKILLed run leaves it (no such pid)
    (dead / "train").mkdir(parents=True)
    monkeypatch.setattr(synthetic, "generate_split", real)
    splits = ensure_synthetic(cfg)
    assert (splits["val"] / "list.txt").is_file() and not dead.exists()


def test_equal_seeds_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="differ"):
        ensure_synthetic(_tiny_cfg(synthetic_val_seed=1000, synthetic_train_seed=1000))


def test_frames_decode_close_to_render(synthetic_split):
    v = render_video(7, 0, 8, 96, 72, n_distractors=1)
    jpg = cv2.imread(str(synthetic_split / video_name(7, 0) / "00000001.jpg"))[:, :, ::-1]
    assert np.abs(jpg.astype(int) - v.frames[0].astype(int)).mean() < 6
