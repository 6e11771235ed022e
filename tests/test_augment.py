"""Two-view augmentation: shapes, dtypes, determinism from the generator, views that differ."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from pulkit.config import AugmentConfig, load_config
from pulkit.data.augment import RandomStretch, TwoViews, blur_kernel_size


def crops(b: int = 4, side: int = 31, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, side, side), generator=g, dtype=torch.uint8)


def test_shapes_dtypes_and_range():
    batch = crops()
    v1, v2 = TwoViews()(batch, torch.Generator().manual_seed(0))
    for v in (v1, v2):
        assert v.shape == batch.shape and v.dtype == torch.float32
        assert v.min() >= 0 and v.max() <= 255
    # float input with raw 0..255 pixels gives the same views as its uint8 twin
    f1, f2 = TwoViews()(batch.float(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(f1, v1)
    torch.testing.assert_close(f2, v2)


def test_same_generator_state_same_views_and_global_rng_untouched():
    batch = crops()
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    torch.manual_seed(11)
    a1, a2 = TwoViews()(batch, g)
    after_global = torch.rand(3)
    g.set_state(state)
    torch.manual_seed(999)                      # a different global RNG must not matter
    b1, b2 = TwoViews()(batch, g)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    torch.manual_seed(11)
    assert torch.equal(after_global, torch.rand(3)), "TwoViews consumed the global torch RNG"
    c1, _ = TwoViews()(batch, g)                # the generator advanced: new views
    assert not torch.equal(a1, c1)


def test_views_differ_from_each_other_and_from_the_input():
    batch = crops(b=6, side=127)     # exemplar size: the stretch almost always resizes
    v1, v2 = TwoViews()(batch, torch.Generator().manual_seed(1))
    for i in range(len(batch)):
        assert not torch.equal(v1[i], v2[i])
        assert not torch.equal(v1[i], batch[i].float())
    # crops of one call get independent draws
    assert len({round(float(v1[i].mean()), 3) for i in range(len(batch))}) > 1


def test_every_transform_is_switched_by_its_config_field():
    batch = crops(b=2, side=27)
    off = AugmentConfig(stretch=0.0, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)
    v1, v2 = TwoViews(off)(batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(v1, batch.float(), atol=1e-3, rtol=0)
    torch.testing.assert_close(v2, batch.float(), atol=1e-3, rtol=0)
    flip, _ = TwoViews(dataclasses.replace(off, flip_p=1.0))(batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(flip, batch.float().flip(-1), atol=1e-3, rtol=0)
    gray, _ = TwoViews(dataclasses.replace(off, grayscale_p=1.0))(batch, torch.Generator().manual_seed(0))
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    blur, _ = TwoViews(dataclasses.replace(off, blur_p=1.0))(batch, torch.Generator().manual_seed(0))
    assert blur.std() < batch.float().std()
    jit, _ = TwoViews(dataclasses.replace(off, jitter_p=1.0))(batch, torch.Generator().manual_seed(0))
    assert not torch.allclose(jit, batch.float(), atol=1.0)


def test_random_stretch_keeps_size_and_pads_with_mean():
    img = torch.full((3, 40, 40), 0.5)
    img[:, 10:30, 10:30] = 1.0
    torch.manual_seed(0)
    st = RandomStretch(0.2)
    for _ in range(5):
        out = st(img)
        assert out.shape == img.shape
        assert out.min() >= 0.5 - 1e-6 and out.max() <= 1.0 + 1e-6   # mean-colour padding, no black border
    with pytest.raises(ValueError, match="stretch"):
        RandomStretch(1.5)


def test_config_is_a_stage_and_is_validated():
    cfg = load_config("smoke", {"augment": {"flip_p": 0.0}})
    assert cfg.augment.flip_p == 0.0 and cfg.augment.jitter_p == 0.8
    with pytest.raises(ValueError, match="grayscale_p"):
        TwoViews(AugmentConfig(grayscale_p=1.5))
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        TwoViews()(torch.zeros(3, 8, 8), torch.Generator())
    assert blur_kernel_size(127, 0.1) == 13 and blur_kernel_size(10, 0.1) == 3
