"""Two-view augmentation: shapes, dtypes, determinism from the generator, views that differ, and the
batch-wise operations equal to torchvision's per-image functions crop by crop."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from pulkit.core.config import AugmentConfig, load_config
from pulkit.data import augment as aug
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
    with pytest.raises(ValueError, match="hue"):
        TwoViews(AugmentConfig(hue=0.7))
    with pytest.raises(ValueError, match="stretch"):
        TwoViews(AugmentConfig(stretch=1.0))
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        TwoViews()(torch.zeros(3, 8, 8), torch.Generator())
    assert blur_kernel_size(127, 0.1) == 13 and blur_kernel_size(10, 0.1) == 3


# --------------------------------------------------------------------------- batch ops == torchvision per crop
def images(n: int = 5, side: int = 23, seed: int = 0) -> torch.Tensor:
    """Float [0, 1] crops with saturated, grey and repeated-channel pixels (the HSV corner cases)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, side, side, generator=g)
    x[:, :, :3] = x[:, :1, :3]                  # grey rows: max == min
    x[:, 1, 3:5] = x[:, 0, 3:5]                 # r == g ties
    x[:, :, 5, :4] = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1)
    return x


@pytest.mark.parametrize("name,tv,lo,hi", [
    ("adjust_brightness", TF.adjust_brightness, 0.6, 1.4), ("adjust_contrast", TF.adjust_contrast, 0.6, 1.4),
    ("adjust_saturation", TF.adjust_saturation, 0.6, 1.4), ("adjust_hue", TF.adjust_hue, -0.5, 0.5)])
def test_colour_ops_equal_torchvision_per_crop(name, tv, lo, hi):
    x = images()
    f = torch.linspace(lo, hi, len(x))
    out = getattr(aug, name)(x, f)
    assert out.shape == x.shape
    for i in range(len(x)):
        torch.testing.assert_close(out[i], tv(x[i], float(f[i])), atol=2e-6, rtol=0)


def test_grayscale_and_blur_equal_torchvision_per_crop():
    x = images(side=29)
    torch.testing.assert_close(aug.grayscale(x), TF.rgb_to_grayscale(x), atol=1e-6, rtol=0)
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.7, 2.0])
    k = blur_kernel_size(29, 0.3)
    out = aug.gaussian_blur(x, sigma, k)
    for i in range(len(x)):
        ref = TF.gaussian_blur(x[i], [k, k], [float(sigma[i])] * 2)
        torch.testing.assert_close(out[i], ref, atol=2e-6, rtol=0)
    with pytest.raises(ValueError, match="blur kernel"):
        aug.gaussian_blur(x[:, :, :5, :5], sigma, 11)


def test_color_jitter_applies_each_crops_own_order():
    x = images(n=4)
    factors = torch.tensor([[1.3, 0.7, 1.2, 0.08], [0.8, 1.3, 0.6, -0.1], [1.1, 1.1, 0.7, 0.05], [0.7, 0.9, 1.4, -0.03]])
    order = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]])
    tv = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    out = aug.color_jitter(x, factors, order)
    for i in range(len(x)):
        ref = x[i]
        for j in order[i].tolist():
            ref = tv[j](ref, float(factors[i, j]))
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)
    # the order matters: brightness before or after contrast differ once clamping bites
    swapped = aug.color_jitter(x, factors, order[[1, 0, 2, 3]])
    assert not torch.allclose(swapped[0], out[0], atol=1e-3)


def test_stretch_flip_geometry():
    """Pixel j samples the input at c + (j - c) / s (c the centre); a linear ramp stays exact."""
    side = 21
    c = (side - 1) / 2
    ramp = torch.arange(side, dtype=torch.float32).expand(1, 3, side, side)
    same = aug.stretch_flip(ramp, torch.ones(1, 2))
    torch.testing.assert_close(same, ramp, atol=1e-4, rtol=0)
    s = 1.25                                      # enlarge along x: every sample stays inside the crop
    out = aug.stretch_flip(ramp, torch.tensor([[1.0, s]]))
    j = torch.arange(side, dtype=torch.float32)
    torch.testing.assert_close(out[0, 0, 0], c + (j - c) / s, atol=1e-4, rtol=0)
    flipped = aug.stretch_flip(ramp, torch.tensor([[1.0, s]]), torch.tensor([True]))
    torch.testing.assert_close(flipped, out.flip(-1), atol=1e-4, rtol=0)
    # shrinking uncovers a border in the crop's mean colour (per channel), never black
    img = images(n=2, side=side)
    small = aug.stretch_flip(img, torch.full((2, 2), 0.5))
    torch.testing.assert_close(small[:, :, 0, 0], img.mean(dim=(-2, -1)), atol=1e-5, rtol=0)


def test_draw_params_ranges_and_fixed_consumption():
    cfg = AugmentConfig()
    g = torch.Generator().manual_seed(0)
    p = aug.draw_params(cfg, 4000, g)
    assert ((p["scale"] - 1).abs() <= cfg.stretch).all()
    assert abs(p["flip"].float().mean() - cfg.flip_p) < 0.03 and abs(p["gray"].float().mean() - cfg.grayscale_p) < 0.03
    assert abs(p["jitter"].float().mean() - cfg.jitter_p) < 0.03 and abs(p["blur"].float().mean() - cfg.blur_p) < 0.03
    assert ((p["factors"][:, :3] - 1).abs() <= 0.4).all() and (p["factors"][:, 3].abs() <= cfg.hue).all()
    assert (p["sigma"] >= 0.1).all() and (p["sigma"] <= 2.0).all()
    assert torch.equal(p["order"].sort(dim=1).values, torch.arange(4).expand(4000, 4))
    # the generator advances by the same amount whatever the probabilities: a run's later draws do not
    # depend on which augmentations were switched on
    a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    aug.draw_params(cfg, 8, a)
    aug.draw_params(dataclasses.replace(cfg, flip_p=0.0, blur_p=1.0), 8, b)
    assert torch.equal(a.get_state(), b.get_state())


# --------------------------------------------------------------------------- the two executions of augment
@pytest.mark.parametrize("n, side, seed", [(16, 103, 0), (9, 127, 1), (7, 31, 2), (3, 55, 3)])
def test_per_crop_execution_is_the_whole_batch_bitwise(n, side, seed):
    """The CPU's crop-by-crop execution gives the whole-batch operations' exact bits (every transform on,
    the default strengths): a run's numbers do not depend on which one ran."""
    cfg = AugmentConfig()
    x = crops(b=n, side=side, seed=seed).float() / 255
    p = aug.draw_params(cfg, n, torch.Generator().manual_seed(seed + 10))
    assert p["jitter"].any() and p["blur"].any() and (p["order"][:, 0] == 1).any()   # the draws cover the cases
    ref = aug.augment_batch(x, cfg, p)
    out = aug.augment_per_crop(x, cfg, p)
    assert torch.equal(out, ref), f"per-crop differs from the batch by up to {float((out - ref).abs().max()):.3g}"
    assert torch.equal(aug.augment(x, cfg, p), ref)
    off = dataclasses.replace(cfg, stretch=0.0, flip_p=0.0)
    p = aug.draw_params(off, n, torch.Generator().manual_seed(seed))
    assert torch.equal(aug.augment_per_crop(x, off, p), aug.augment_batch(x, off, p))


def test_per_crop_execution_keeps_the_thread_count_and_the_input():
    threads = torch.get_num_threads()
    x = crops(b=3, side=31).float() / 255
    before = x.clone()
    aug.augment_per_crop(x, AugmentConfig(), aug.draw_params(AugmentConfig(), 3, torch.Generator().manual_seed(0)))
    assert torch.get_num_threads() == threads and torch.equal(x, before)
    empty = aug.augment_per_crop(x[:0], AugmentConfig(), aug.draw_params(AugmentConfig(), 0, torch.Generator()))
    assert empty.shape == (0, 3, 31, 31)


def test_blur_taps_and_given_mean_equal_the_batch_ops():
    x = images(n=4, side=29)
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0])
    k = blur_kernel_size(29, 0.3)
    ref = aug.gaussian_blur(x, sigma, k)
    kern = aug.gaussian_kernels(sigma, k)
    for i in range(len(x)):
        assert torch.equal(aug.gaussian_blur_taps(x[i:i + 1], kern[i], k), ref[i:i + 1])
    with pytest.raises(ValueError, match="blur kernel"):
        aug.gaussian_blur_taps(x[:, :, :5, :5], kern[0], 11)
    f = torch.tensor([0.6, 0.9, 1.1, 1.4])
    torch.testing.assert_close(aug.adjust_contrast(x, f, aug.mean_luma(x)), aug.adjust_contrast(x, f), atol=0, rtol=0)


def test_two_views_per_seed_whichever_execution():
    batch = crops(b=4, side=31)
    for per_crop in (None, False, True):
        views = TwoViews(per_crop=per_crop)
        a = views(batch, torch.Generator().manual_seed(7))
        b = views(batch, torch.Generator().manual_seed(7))
        c = views(batch, torch.Generator().manual_seed(8))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
        assert a[0].dtype == torch.float32 and a[0].device == batch.device and a[0].shape == batch.shape
    ref = TwoViews(per_crop=False)(batch, torch.Generator().manual_seed(7))
    assert all(torch.equal(u, v) for u, v in zip(TwoViews()(batch, torch.Generator().manual_seed(7)), ref))


def test_draws_follow_the_configured_distributions():
    """Every parameter is uniform on its configured range (quantiles within 0.02 of the range), and each
    crop's ColorJitter order is uniform over the 24 permutations: the distribution of today's views."""
    cfg = dataclasses.replace(AugmentConfig(), stretch=0.1, hue=0.05, blur_sigma=(0.5, 1.5))
    p = aug.draw_params(cfg, 20000, torch.Generator().manual_seed(3))
    q = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])

    def uniform(v, lo, hi):
        got = torch.quantile(v.flatten().double(), q.double())
        assert (got - (lo + (hi - lo) * q.double())).abs().max() <= 0.02 * (hi - lo), (got, lo, hi)

    uniform(p["scale"], 0.9, 1.1)
    for j, s in enumerate((cfg.brightness, cfg.contrast, cfg.saturation)):
        uniform(p["factors"][:, j], 1 - s, 1 + s)
    uniform(p["factors"][:, 3], -cfg.hue, cfg.hue)
    uniform(p["sigma"], 0.5, 1.5)
    assert torch.corrcoef(p["scale"].T)[0, 1].abs() < 0.03                 # the two axes stretch independently
    codes = (p["order"] * torch.tensor([64, 16, 4, 1])).sum(dim=1)
    counts = torch.unique(codes, return_counts=True)[1]
    assert len(counts) == 24 and (counts - 20000 / 24).abs().max() < 150
