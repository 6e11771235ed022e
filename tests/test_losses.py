"""Losses: InfoNCE, label masks, label-noise moments and the NR loss (METHOD.md, supplementary B)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pulkit.losses import (
    balanced_bce,
    infonce,
    label_moments,
    label_moments_from_samples,
    mask_distribution,
    nr_loss,
    nr_loss_from_masks,
    nr_loss_from_moments,
    positive_mask,
    positive_masks,
)

R = 2.0        # r_pos = 16 px at stride 8


# --------------------------------------------------------------------------- InfoNCE
def _infonce_reference(z1, z2, tau):
    z = torch.cat([z1, z2]) / torch.cat([z1, z2]).norm(dim=1, keepdim=True)
    n, b = len(z), len(z1)
    total = 0.0
    for i in range(n):
        j = (i + b) % n
        num = math.exp(float(z[i] @ z[j]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n) if k != i)
        total += -math.log(num / den)
    return total / n


def test_infonce_matches_reference():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    assert infonce(z1, z2, 0.5).item() == pytest.approx(_infonce_reference(z1, z2, 0.5), rel=1e-5)


def test_infonce_low_for_identical_views_and_permutation_equivariant():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    same, random = infonce(z1, z1.clone(), 0.1).item(), infonce(z1, z2, 0.1).item()
    assert same < 0.5 < random
    perm = torch.randperm(8, generator=g)
    assert infonce(z1[perm], z2[perm], 0.1).item() == pytest.approx(infonce(z1, z2, 0.1).item(), rel=1e-6)
    assert infonce(z1 * 3.0, z2, 0.1).item() == pytest.approx(random, rel=1e-6)   # normalised inside
    with pytest.raises(ValueError):
        infonce(z1, z2[:4], 0.1)


# --------------------------------------------------------------------------- masks
def test_positive_mask_diamond_disc_and_offset():
    m = positive_mask(17, R)
    assert m.shape == (17, 17) and m.dtype == torch.float32
    assert m.sum() == 13 and m[8, 8] == 1 and m[8, 10] == 1 and m[9, 9] == 1 and m[9, 10] == 0
    assert positive_mask(17, R, norm="l2").sum() == 13   # radius 2 disc: 13 lattice points too
    assert positive_mask(17, 2.5, norm="l2").sum() == 21 and positive_mask(17, 2.5).sum() == 13
    shifted = positive_mask((15, 17), R, center=(3, -2))   # (dx, dy) = (column, row)
    rows, cols = np.nonzero(shifted.numpy())
    assert cols.mean() == pytest.approx(8 + 3) and rows.mean() == pytest.approx(7 - 2)
    m[0, 0] = 5                                            # a copy: the cache is untouched
    assert positive_mask(17, R)[0, 0] == 0


def test_positive_masks_batch_matches_single():
    centers = torch.tensor([[0.0, 0.0], [0.5, -1.25], [-3.0, 2.0]])
    batch = positive_masks(17, R, centers)
    assert batch.shape == (3, 1, 17, 17)
    for i, c in enumerate(centers.tolist()):
        assert torch.equal(batch[i, 0], positive_mask(17, R, c))


# --------------------------------------------------------------------------- moments
def test_moments_sigma_zero_is_the_hard_mask():
    mbar, v = label_moments(17, R, 0.0, center=(0.3, -0.7))
    m = positive_mask(17, R, (0.3, -0.7)).numpy().astype(np.float64)
    assert np.array_equal(mbar, m) and np.array_equal(v, np.outer(m.ravel(), m.ravel()))
    assert mbar.dtype == np.float64 and not v.flags.writeable


@pytest.mark.parametrize("sigma,center,norm", [(1.0, (0.375, -0.25), "l1"), (0.5, (-0.125, 0.5), "l2")])
def test_moments_match_fine_monte_carlo(sigma, center, norm):
    eps = np.random.default_rng(0).normal(scale=sigma, size=(300_000, 2))
    mc_mbar, mc_v = label_moments_from_samples(17, R, eps, center, norm)
    mbar, v = label_moments(17, R, sigma, center, norm)
    assert np.abs(mbar - mc_mbar).max() < 0.01 and np.abs(v - mc_v).max() < 0.01
    assert np.allclose(np.diag(v), mbar.ravel())          # m^2 = m
    # E[#positives] = region area inside the map: 2 r^2 (diamond) or pi r^2 (disc)
    assert mbar.sum() == pytest.approx(2 * R * R if norm == "l1" else math.pi * R * R, abs=0.01)


def test_moments_follow_the_label_offset():
    mbar0, _ = label_moments(17, R, 1.0)
    mbar, _ = label_moments(17, R, 1.0, center=(1.5, -0.75))
    rows, cols = np.mgrid[0:17, 0:17]
    c0 = np.array([(mbar0 * cols).sum(), (mbar0 * rows).sum()]) / mbar0.sum()
    c1 = np.array([(mbar * cols).sum(), (mbar * rows).sum()]) / mbar.sum()
    assert c0 == pytest.approx([8, 8], abs=1e-6) and c1 - c0 == pytest.approx([1.5, -0.75], abs=1e-3)


def test_moments_cached_and_offsets_rounded_to_an_eighth():
    a = label_moments(17, R, 1.0, center=(0.26, 0.0))
    b = label_moments(17, R, 1.0, center=(0.25, 0.0))
    assert a[0] is b[0] and a[1] is b[1]


# --------------------------------------------------------------------------- NR loss
def _logits(b, seed, scale=3.0, size=17):
    return torch.randn(b, 1, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def test_sigma_zero_exact_is_bce_and_taylor_is_its_expansion():
    x = _logits(4, 0)
    centers = torch.tensor([[0.0, 0.0], [0.3, -0.9], [1.0, 1.0], [-0.6, 0.2]], dtype=torch.float64)
    b = balanced_bce(x, positive_masks(17, R, centers).double(), reduction="none")
    assert nr_loss(x, 0.0, R, centers, form="exact").item() == pytest.approx(b.mean().item(), abs=1e-6)
    assert nr_loss(x, 0.0, R, centers).item() == pytest.approx((-torch.log(1 - b + b * b / 2)).mean().item(), abs=1e-9)


def test_taylor_never_exceeds_log2():
    labels = positive_masks(17, R, torch.zeros(4, 2)).double()
    for seed, scale in [(0, 1.0), (1, 10.0), (2, 100.0)]:
        for sigma in (0.0, 0.5, 1.0):
            mbar, v = label_moments(17, R, sigma)
            per = nr_loss_from_moments(_logits(4, seed, scale), labels, mbar, v, reduction="none")
            assert per.max().item() <= math.log(2) + 1e-12
    # constant logits sweep b through 1 (E[g] = -1 is where 1 + g + g^2/2 is smallest)
    x = torch.linspace(-5, 5, 41, dtype=torch.float64).reshape(41, 1, 1, 1) * torch.ones(41, 1, 17, 17)
    mbar, v = label_moments(17, R, 0.7)
    per = nr_loss_from_moments(x, positive_masks(17, R, torch.zeros(41, 2)).double(), mbar, v, reduction="none")
    assert per.max().item() <= math.log(2) + 1e-12 and per.max().item() > math.log(2) - 0.05


def test_gradient_gives_up_beyond_b_one():
    def bce_of_constant(c):
        return 0.5 * (F.softplus(-c) + F.softplus(c))       # b for constant logits c
    lo, hi = 0.0, 10.0                                      # constant logits with b = 1.5
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if bce_of_constant(torch.tensor(mid, dtype=torch.float64)) < 1.5 else (lo, mid)
    c = torch.tensor(lo, dtype=torch.float64, requires_grad=True)
    x = c * torch.ones(1, 1, 17, 17, dtype=torch.float64)
    b = balanced_bce(x, positive_mask(17, R).reshape(1, 1, 17, 17).double())
    loss = nr_loss(x, 0.0, R)
    db, = torch.autograd.grad(b, c, retain_graph=True)
    dl, = torch.autograd.grad(loss, c)
    assert b.item() == pytest.approx(1.5, abs=1e-9)
    assert (dl / db).item() == pytest.approx((1 - 1.5) / (1 - 1.5 + 1.5 ** 2 / 2), rel=1e-9) and (dl / db) < 0


@pytest.mark.parametrize("form", ["taylor", "exact"])
def test_gradcheck(form):
    x = _logits(2, 3, scale=1.0, size=5).requires_grad_(True)
    centers = torch.tensor([[0.25, -0.5], [0.0, 0.125]], dtype=torch.float64)
    sigma = torch.tensor([0.6, 1.1], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: nr_loss(t, sigma, R, centers, form=form), (x,))


def test_moments_route_equals_direct_route_on_one_sample():
    eps = np.random.default_rng(1).normal(scale=0.8, size=(2000, 2))
    center = (0.4, -0.3)
    x = _logits(3, 4)
    labels = positive_masks(17, R, torch.tensor([center] * 3)).double()
    masks = positive_masks(17, R, torch.from_numpy(eps + np.array(center))).double()[:, 0]   # S x H x W
    direct = nr_loss_from_masks(x, labels, masks, reduction="none")
    mbar, v = label_moments_from_samples(17, R, eps, center)
    via_moments = nr_loss_from_moments(x, labels, mbar, v, reduction="none")
    assert torch.allclose(direct, via_moments, rtol=0, atol=1e-10)


def test_nr_loss_uses_the_cached_distribution_for_both_forms():
    x = _logits(2, 5)
    centers = torch.tensor([[0.5, 0.0], [-0.25, 0.75]], dtype=torch.float64)
    labels = positive_masks(17, R, centers).double()
    for i in range(2):
        masks, weights = mask_distribution(17, R, 0.9, centers[i].tolist())
        for form in ("taylor", "exact"):
            direct = nr_loss_from_masks(x[i:i + 1], labels[i:i + 1], masks, weights, form=form)
            assert nr_loss(x[i:i + 1], 0.9, R, centers[i:i + 1], form=form).item() == pytest.approx(direct.item(), abs=1e-10)


def test_exact_and_taylor_agree_when_the_loss_is_small():
    good = (positive_mask(17, 2.5).double().reshape(1, 1, 17, 17) * 2 - 1) * 4   # confident, covers the noise
    exact, taylor = nr_loss(good, 0.1, R, form="exact").item(), nr_loss(good, 0.1, R).item()
    assert exact < 0.1 and abs(exact - taylor) < 1e-3
    bad = -good                                                                 # far from the label
    assert abs(nr_loss(bad, 0.1, R, form="exact").item() - nr_loss(bad, 0.1, R).item()) > 1.0


def test_return_stats_giveup_fraction():
    consts = torch.tensor([0.0, 5.0, -6.0, 0.5], dtype=torch.float64)   # b: 0.69, 2.5, 3.0, 0.72
    x = consts.reshape(4, 1, 1, 1) * torch.ones(4, 1, 17, 17, dtype=torch.float64)
    b = balanced_bce(x, positive_masks(17, R, torch.zeros(4, 2)).double(), reduction="none")
    for form in ("taylor", "exact"):
        loss, stats = nr_loss(x, 0.0, R, form=form, return_stats=True)
        assert stats["giveup_frac"] == 0.5
        assert stats["mean_Eg"] == pytest.approx(-b.mean().item(), abs=1e-9)
        assert torch.allclose(stats["Eg"], -b)


def test_bad_inputs_raise():
    x = _logits(2, 0)
    with pytest.raises(ValueError):
        nr_loss(x[:, 0], 1.0, R)
    with pytest.raises(ValueError):
        nr_loss(x, -1.0, R)
    with pytest.raises(ValueError):
        nr_loss(x, [1.0, 1.0, 1.0], R)
    with pytest.raises(ValueError):
        nr_loss(x, 1.0, R, form="second")
    with pytest.raises(ValueError):
        nr_loss(x, 1.0, R, center=torch.zeros(3, 2))
    with pytest.raises(ValueError):
        positive_mask(17, R, norm="linf")


# --------------------------------------------------------------------------- give-up at training's sigma = 1 cell
SIGMA_TRAIN = 1.0      # NRConfig: sigma_px 8 / stride 8
PATTERN = (2 * positive_mask(17, R).double() - 1).reshape(1, 1, 17, 17)   # +1 on the label, -1 elsewhere


def _eg_reference(x):
    """E[g] per sample, summed literally over the explicit noise masks (differentiable; independent of nr_loss)."""
    masks, weights = mask_distribution(17, R, SIGMA_TRAIN)
    m = torch.from_numpy(masks.reshape(len(masks), -1).astype(np.float64))
    hard = positive_mask(17, R).double().flatten()
    w1, w0 = 1 / (2 * hard.sum()), 1 / (2 * (hard.numel() - hard.sum()))
    logf, log1mf = F.logsigmoid(x.flatten(1)), F.logsigmoid(-x.flatten(1))
    g = w1 * logf @ m.T + w0 * log1mf @ (1 - m).T            # B x K
    return g @ torch.from_numpy(np.array(weights))


def _directions(scales):
    """For logits ``s * PATTERN``: (toward, dL/ds, E[g], giveup_frac).  ``toward`` = -<dL/dx, dE[g]/dx>:
    positive when a descent step raises E[g] (pulls towards the label), negative when it gives up."""
    s = torch.as_tensor(scales, dtype=torch.float64).reshape(-1, 1, 1, 1)
    x = (s * PATTERN).requires_grad_(True)
    loss, stats = nr_loss(x, SIGMA_TRAIN, R, return_stats=True)
    dl, = torch.autograd.grad(loss * len(s), x)              # mean over the batch: per-sample gradients
    deg, = torch.autograd.grad(_eg_reference(x).sum(), x)
    toward = -(dl * deg).flatten(1).sum(1)
    return toward, (dl * PATTERN).flatten(1).sum(1), stats["Eg"], stats["giveup_frac"]


def test_gradient_gives_up_at_sigma_one_and_giveup_frac_follows_it():
    # the reference E[g] is the one nr_loss reports
    x = torch.linspace(-4, 3, 8, dtype=torch.float64).reshape(-1, 1, 1, 1) * PATTERN
    assert torch.allclose(nr_loss(x, SIGMA_TRAIN, R, return_stats=True)[1]["Eg"], _eg_reference(x), atol=1e-9)

    # the give-up point along s * PATTERN, by bisection on the gradient's direction
    lo, hi = -3.0, 0.0
    assert _directions([lo])[0].item() < 0 < _directions([hi])[0].item()
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _directions([mid])[0].item() < 0 else (lo, mid)
    s_star = (lo + hi) / 2
    toward, dl_ds, eg, _ = _directions([s_star - 0.1, s_star + 0.1])
    assert toward[0] < 0 < toward[1]                    # below: pushes away from the label; above: towards it
    assert dl_ds[0] > 0 > dl_ds[1]                      # ... i.e. descent lowers s below s*, raises it above
    for s, sign in [(s_star - 0.1, 1), (s_star + 0.1, -1)]:   # autograd's sign matches a finite difference
        h = 1e-4
        fd = nr_loss((s + h) * PATTERN, SIGMA_TRAIN, R) - nr_loss((s - h) * PATTERN, SIGMA_TRAIN, R)
        assert sign * fd.item() > 0
    # at sigma = 1 the flip is near, but not at, E[g] = -1 (at sigma = 0 it is exactly there)
    eg_star = _directions([s_star])[2].item()
    assert -1.0 < eg_star < -0.97 and abs(eg_star + 1) > 1e-3

    # giveup_frac (E[g] < -1) counts exactly the samples whose gradient gives up, outside the thin band
    # between E[g] = -1 and the flip
    scales = [-4.0, -3.0, -2.0, -1.5, -1.25, s_star + 0.1, -0.5, 0.0, 1.0, 2.0]
    toward, _, eg, frac = _directions(scales)
    assert ((eg < -1) == (toward < 0)).all()
    assert frac == pytest.approx(float((toward < 0).double().mean())) and frac == pytest.approx(5 / 10)
