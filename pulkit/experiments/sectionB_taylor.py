"""Supplementary Section B, numerically: the NR loss's Taylor form against what it approximates.

Computes notebook ``05_sectionB_taylor``'s numbers on seeded synthetic response maps and writes
``results/<profile>/05_sectionB_taylor.json`` for the figure ``pulkit.figures.sectionB_taylor``.
Definitions, the comparisons (a)-(e) and the maps: docs/modules.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pulkit.core.results import save_results
from pulkit.losses import (
    balanced_bce,
    label_moments,
    label_moments_from_samples,
    mask_distribution,
    nr_loss,
    nr_loss_from_masks,
    nr_loss_from_moments,
    positive_mask,
    positive_masks,
)
from pulkit.models.backbones import build_backbone

LOG2 = float(np.log(2.0))


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SectionBSettings:
    """How much of each check to compute; every value is recorded in the results file."""
    sigmas_sweep: tuple[float, ...] = tuple(i / 8 for i in range(17))  # (b) sigma grid 0..2, cells
    levels: tuple[float, ...] = (0.1, 0.3, 0.5, 0.8, 1.2)      # (b) exact NR loss levels held at every sigma
    agree_levels: tuple[float, ...] = (0.05, 0.3, 1.0, 3.0)    # (a) maps at these b (balanced BCE, sigma 0)
    b_grid: tuple[float, float, int] = (0.01, 6.0, 40)         # (c), (d): b from, to, points (log spaced)
    loss_sigmas: tuple[float, ...] = (0.0, 1.0, 2.0)           # (c), (d) sigmas in cells (cfg's sigma added)
    agree_sigmas: tuple[float, ...] = (0.5, 1.0, 2.0)          # (a) sigmas of the explicit-sample check
    n_eps: int = 4000                                          # (a) eps draws per sample
    moment_sigmas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)    # (e) sigmas of the mbar / V images
    offset: tuple[float, float] = (0.375, -0.25)               # (e) fractional label offset (dx, dy), cells
    grid_per_sigma: int = 32                                   # (e) eps grid nodes per sigma for the accuracy check
    width: float = 1.0                                         # pattern edge width (cells)
    noise: float = 0.2                                         # pattern noise (relative to its +-1 levels)
    n_population: int = 400                                    # (d) plausible responses for the give-up fraction
    p_wrong: float = 0.2                                       # population: share of pairs whose peak is anywhere
    jitter: float = 1.0                                        # population: peak offset std of the other pairs, cells


def settings_for(profile: str) -> SectionBSettings:
    """The defaults, lighter for ``smoke`` (a CI run proves the code paths, not the numbers)."""
    s = SectionBSettings()
    if profile == "smoke":
        s = replace(s, sigmas_sweep=(0.0, 0.125, 0.5, 1.0, 1.5, 2.0), levels=(0.1, 0.5, 1.2),
                    b_grid=(0.01, 6.0, 16), n_eps=800, n_population=64)
    return s


def geometry(cfg) -> dict[str, Any]:
    """Map size R (from the backbone's own arithmetic at cfg.model's crop sizes), radius and sigma in cells."""
    net = build_backbone(cfg.model.backbone)
    size = net.output_size(cfg.model.instance_sz) - net.output_size(cfg.model.exemplar_sz) + 1
    stride = int(net.stride)
    return {"size": int(size), "stride": stride, "radius": float(cfg.nr.r_pos) / stride,
            "sigma": float(cfg.nr.sigma_px) / stride, "norm": cfg.nr.norm, "backbone": cfg.model.backbone,
            "exemplar_sz": int(cfg.model.exemplar_sz), "instance_sz": int(cfg.model.instance_sz)}


# --------------------------------------------------------------------------- synthetic response maps
def _offsets(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Column and row offsets (cells) of every cell from the map centre, each size x size."""
    o = np.arange(size) - (size - 1) / 2
    oy, ox = np.meshgrid(o, o, indexing="ij")
    return ox, oy


def _distance(size: int, center, norm: str) -> np.ndarray:
    ox, oy = _offsets(size)
    du, dv = ox - float(center[0]), oy - float(center[1])
    if norm == "l1":
        return np.abs(du) + np.abs(dv)
    if norm == "l2":
        return np.hypot(du, dv)
    raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")


def label_mask(size: int, radius: float, center=(0.0, 0.0), norm: str = "l1") -> np.ndarray:
    """The hard 0/1 label (size x size float64), the same cells as ``pulkit.losses.positive_mask``."""
    return positive_mask(size, radius, center, norm).numpy().astype(np.float64)


def bump_logits(size: int, peak=(0.0, 0.0), width: float = 1.5, lo: float = -1.0, hi: float = 1.0,
                noise: float = 0.0, seed: int = 0, norm: str = "l2") -> np.ndarray:
    """``lo + (hi - lo) exp(-d^2 / (2 width^2)) + noise * z`` (size x size float64 logits).

    ``d``: distance (cells, ``norm``) from ``peak`` (dx, dy); ``z`` ~ N(0, 1) per cell from ``seed``.
    """
    if not width > 0:
        raise ValueError(f"bump width must be > 0 cells, got {width}")
    if not noise >= 0:
        raise ValueError(f"bump noise must be >= 0, got {noise}")
    d = _distance(size, peak, norm)
    z = np.random.default_rng(seed).standard_normal((size, size))
    return lo + (hi - lo) * np.exp(-0.5 * (d / width) ** 2) + noise * z


def pattern(size: int, radius: float, center=(0.0, 0.0), width: float = 1.0, noise: float = 0.2,
            seed: int = 0, norm: str = "l1") -> np.ndarray:
    """A soft label: ``tanh((edge - d) / width) + noise * z`` (size x size float64), +1 inside, -1 outside.

    ``d``: distance (cells, the label's own norm) from the label centre; ``edge``: halfway between the
    farthest positive cell and the nearest negative one, so ``s * pattern`` classifies every cell right
    for large s > 0 unless the ``noise`` (z ~ N(0, 1) per cell, seeded) flips a cell; ``width``
    (cells): how sharply the response falls at the edge.
    """
    if not width > 0:
        raise ValueError(f"pattern width must be > 0 cells, got {width}")
    if not noise >= 0:
        raise ValueError(f"pattern noise must be >= 0, got {noise}")
    mask = label_mask(size, radius, center, norm) > 0
    d = _distance(size, center, norm)
    if not mask.any() or mask.all():
        raise ValueError(f"label with radius {radius} at {tuple(center)} covers {int(mask.sum())} of {size * size} "
                         f"cells; a pattern needs both classes")
    edge = 0.5 * (d[mask].max() + d[~mask].min())
    z = np.random.default_rng(seed).standard_normal((size, size))
    return np.tanh((edge - d) / width) + noise * z


def balanced_bce_np(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Balanced BCE b per map (``pulkit.losses.balanced_bce`` in float64 numpy): ... x H x W -> ...

    Positives weigh 1/(2|P|), negatives 1/(2(N - |P|)); ``mask`` is the 0/1 label (H x W).
    """
    m = np.asarray(mask, dtype=np.float64)
    x = np.asarray(logits, dtype=np.float64)
    n_pos = max(m.sum(), 1.0)
    n_neg = max(m.size - m.sum(), 1.0)
    w = m / (2 * n_pos) + (1 - m) / (2 * n_neg)
    per = np.logaddexp(0.0, x) - m * x                         # softplus(x) - y x: BCE with logits
    return (w * per).sum(axis=(-2, -1))


class Unreachable(ValueError):
    """A loss level that scaling a pattern cannot reach (below its minimum)."""


def scale_for_loss(f, target: float, what: str = "loss", tol: float = 1e-12) -> float:
    """The signed scale s with ``f(s) = target`` along a family ``logits = s * pattern``.

    Assumes what holds for the pattern families here: from s = 0, f falls as s grows to a minimum
    (possibly at infinity) and rises without bound as s goes negative.  Searches s >= 0 up to the
    minimum for a target below f(0), s < 0 otherwise; a target below the minimum is a ``ValueError``.
    """
    if not (np.isfinite(target) and target > 0):
        raise ValueError(f"{what} level must be a finite number > 0, got {target!r}")
    f0 = f(0.0)
    if target > f0:                                            # contradicting maps: s < 0
        prev, s = 0.0, -0.5
        while f(s) < target:
            if s < -1e6:
                raise Unreachable(f"{what} level {target:g} not reached by scaling the pattern down to s = -1e6")
            prev, s = s, 2 * s
        return _bisect(f, target, s, prev, tol)
    prev, fprev, s = 0.0, f0, 0.5
    while True:
        fs = f(s)
        if fs <= target:
            return _bisect(f, target, prev, s, tol)
        if fs > fprev:                                         # passed the minimum above the target
            lo, hi = prev / 2, s
            for _ in range(200):                               # golden-section search for the minimum
                m1, m2 = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
                if f(m1) < f(m2):
                    hi = m2
                else:
                    lo = m1
                if hi - lo < tol * max(1.0, hi):
                    break
            s_min = 0.5 * (lo + hi)
            if f(s_min) > target:
                raise Unreachable(f"{what} level {target:g} is below what this pattern reaches "
                                 f"(minimum {f(s_min):.4g}); ask for a larger level or lower the pattern's noise")
            return _bisect(f, target, 0.0, s_min, tol)
        if s > 1e6:
            raise Unreachable(f"{what} level {target:g} not reached by scaling the pattern up to s = 1e6 ({fs:.4g})")
        prev, fprev, s = s, fs, 2 * s


def _bisect(f, target: float, a: float, b: float, tol: float) -> float:
    """s in [a, b] with f(s) = target, f decreasing on [a, b] and f(a) >= target >= f(b)."""
    for _ in range(200):
        mid = 0.5 * (a + b)
        if f(mid) > target:
            a = mid
        else:
            b = mid
        if b - a < tol * max(1.0, abs(a), abs(b)):
            break
    return 0.5 * (a + b)


def logits_at_loss(b: float, size: int, radius: float, center=(0.0, 0.0), width: float = 1.0,
                   noise: float = 0.2, seed: int = 0, norm: str = "l1") -> np.ndarray:
    """``s * pattern(...)`` with the signed scale s for which the balanced BCE equals ``b`` (sigma 0).

    b(s) is convex with b(0) = log 2: s > 0 lowers it toward the pattern's floor (0 unless the noise
    flips a cell), s < 0 raises it without bound.  A ``b`` below the floor is a ``ValueError``.
    """
    p = pattern(size, radius, center, width, noise, seed, norm)
    mask = label_mask(size, radius, center, norm)
    return scale_for_loss(lambda s: float(balanced_bce_np(s * p, mask)), b, "loss (balanced BCE)") * p


def logits_batch(levels: Sequence[float], geom: dict, settings: SectionBSettings, seed: int,
                 center=(0.0, 0.0)) -> np.ndarray:
    """One ``logits_at_loss`` map per loss level (same pattern, same noise field): L x R x R."""
    return np.stack([logits_at_loss(float(b), geom["size"], geom["radius"], center, settings.width,
                                    settings.noise, seed, geom["norm"]) for b in levels])


# --------------------------------------------------------------------------- (a) the routes on one sample
def _weighted_logs(logits: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(u_1, u_0) = (w_1 log f, w_0 log(1 - f))`` flattened per map: B x N each (float64)."""
    x = np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)
    m = np.asarray(mask, dtype=np.float64).ravel()
    n_pos = m.sum()
    w1, w0 = 1.0 / (2 * n_pos), 1.0 / (2 * (m.size - n_pos))
    return -w1 * np.logaddexp(0.0, -x), -w0 * np.logaddexp(0.0, x)


def direct_route(logits: np.ndarray, masks: np.ndarray, mask0: np.ndarray,
                 weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """g summed literally over cells and classes for each mask of an explicit sample.

    ``logits`` B x H x W; ``masks`` S x H x W (m at c + eps_k); ``weights`` their probabilities
    (None: equally likely; e.g. ``pulkit.losses.mask_distribution``); ``mask0`` the label at c
    (fixes |P|).  Returns per-map ``Eg``, ``Eg2``, ``taylor`` = -log(1 + Eg + Eg2/2) and ``exact`` =
    -log E[exp g] (log-sum-exp).
    """
    u1, u0 = _weighted_logs(logits, mask0)
    m1 = np.asarray(masks, dtype=np.float64).reshape(len(masks), -1)
    p = np.full(len(m1), 1.0 / len(m1)) if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    g = m1 @ u1.T + (1.0 - m1) @ u0.T                          # S x B: sum_x sum_b w_b m_b(x) h_b(x)
    eg, eg2 = p @ g, p @ (g * g)
    gmax = g.max(0)
    exact = -(gmax + np.log(p @ np.exp(g - gmax)))
    return {"Eg": eg, "Eg2": eg2, "taylor": -np.log(1.0 + eg + 0.5 * eg2), "exact": exact}


def v_route(logits: np.ndarray, mbar: np.ndarray, V: np.ndarray, mask0: np.ndarray) -> dict[str, np.ndarray]:
    """Eqs. 3-5 with all four blocks: E[g] = sum_b mbar_b . u_b, E[g^2] = sum_{b,b'} u_b^T V_{bb'} u_b'.

    ``mbar`` H x W and ``V`` N x N are E[m] and E[m m^T]; the other blocks follow from m_0 = 1 - m:
    V_10(x, x') = mbar(x) - V(x, x'), V_01 = V_10^T, V_00 = 1 - mbar(x) - mbar(x') + V(x, x').
    """
    u1, u0 = _weighted_logs(logits, mask0)
    m1 = np.asarray(mbar, dtype=np.float64).ravel()
    v11 = np.asarray(V, dtype=np.float64)
    v10 = m1[:, None] - v11
    v00 = 1.0 - m1[:, None] - m1[None, :] + v11
    eg = u1 @ m1 + u0 @ (1.0 - m1)
    eg2 = (np.einsum("bi,ij,bj->b", u1, v11, u1) + 2 * np.einsum("bi,ij,bj->b", u1, v10, u0)
           + np.einsum("bi,ij,bj->b", u0, v00, u0))
    return {"Eg": eg, "Eg2": eg2, "taylor": -np.log(1.0 + eg + 0.5 * eg2)}


def eps_sample(n: int, sigma: float, seed: int) -> np.ndarray:
    """``n`` x 2 draws of eps ~ N(0, sigma^2 I) in cells (seeded)."""
    if n < 1:
        raise ValueError(f"need at least one eps draw, got n={n}")
    return sigma * np.random.default_rng(seed).standard_normal((n, 2))


def route_agreement(logits: np.ndarray, geom: dict, sigma: float, n_eps: int, seed: int,
                    center=(0.0, 0.0)) -> dict[str, Any]:
    """(a) Taylor via the direct route and via the V route on the same eps sample (float64).

    Also pulkit's own routes on that sample (``nr_loss_from_masks`` direct, ``nr_loss_from_moments``
    with ``label_moments_from_samples``) and the exact form both ways.  Per-map values and the
    largest absolute differences.
    """
    import torch

    size, radius, norm = geom["size"], geom["radius"], geom["norm"]
    eps = eps_sample(n_eps, sigma, seed)
    mask0 = label_mask(size, radius, center, norm)
    masks = positive_masks(size, radius, np.asarray(center, dtype=np.float64)[None] + eps, norm)[:, 0].numpy()
    mbar, V = label_moments_from_samples(size, radius, eps, center, norm)
    direct = direct_route(logits, masks, mask0)
    vform = v_route(logits, mbar, V, mask0)
    x = torch.from_numpy(np.asarray(logits, dtype=np.float64)[:, None])
    labels = torch.from_numpy(mask0[None, None]).expand_as(x)
    pk_masks = nr_loss_from_masks(x, labels, torch.from_numpy(masks.astype(np.float64)), reduction="none").numpy()
    pk_moments = nr_loss_from_moments(x, labels, mbar, V, reduction="none").numpy()
    pk_exact = nr_loss_from_masks(x, labels, torch.from_numpy(masks.astype(np.float64)), form="exact",
                                  reduction="none").numpy()
    return {
        "sigma": float(sigma), "n_eps": int(n_eps),
        "taylor_direct": direct["taylor"], "taylor_V": vform["taylor"],
        "taylor_pulkit_masks": pk_masks, "taylor_pulkit_moments": pk_moments,
        "exact_direct": direct["exact"], "exact_pulkit_masks": pk_exact,
        "Eg_direct": direct["Eg"], "Eg_V": vform["Eg"], "Eg2_direct": direct["Eg2"], "Eg2_V": vform["Eg2"],
        "max_abs_direct_vs_V": float(np.abs(direct["taylor"] - vform["taylor"]).max()),
        "max_abs_Eg2_direct_vs_V": float(np.abs(direct["Eg2"] - vform["Eg2"]).max()),
        "max_abs_pulkit_vs_direct": float(max(np.abs(pk_masks - direct["taylor"]).max(),
                                              np.abs(pk_moments - direct["taylor"]).max())),
        "max_abs_exact_pulkit_vs_direct": float(np.abs(pk_exact - direct["exact"]).max()),
    }


# --------------------------------------------------------------------------- (b), (c) Taylor vs exact
def nr_losses(logits: np.ndarray, sigma: float, geom: dict, center=(0.0, 0.0)) -> dict[str, np.ndarray]:
    """Taylor and exact NR loss per map through ``pulkit.losses.nr_loss`` (semi-analytic moments)."""
    import torch

    x = torch.from_numpy(np.asarray(logits, dtype=np.float64)[:, None])
    centers = np.tile(np.asarray(center, dtype=np.float64), (len(x), 1))
    out = {}
    for form in ("taylor", "exact"):
        per = [float(nr_loss(x[i:i + 1], sigma, geom["radius"], centers[i:i + 1], form=form, norm=geom["norm"]))
               for i in range(len(x))]
        out[form] = np.array(per)
    _, stats = nr_loss(x, sigma, geom["radius"], centers, norm=geom["norm"], return_stats=True)
    out["Eg"] = stats["Eg"].numpy()
    return out


def error_vs_sigma(geom: dict, settings: SectionBSettings, seed: int) -> dict[str, Any]:
    """(b) Taylor - exact against sigma at fixed **exact** NR loss levels (rows: levels, columns: sigmas).

    For each sigma the pattern's scale is solved so that the exact loss -log E[exp g] at that sigma
    equals the level, then both forms are evaluated by ``pulkit.losses.nr_loss``.  Label noise puts a
    floor under the exact loss (about 0.27 at sigma = 1 cell on a 17 x 17 map): levels below it are
    unreachable and recorded as None.  ``b``: each map's balanced BCE at sigma 0.
    """
    size, radius, norm = geom["size"], geom["radius"], geom["norm"]
    p = pattern(size, radius, (0, 0), settings.width, settings.noise, seed, norm)
    mask0 = label_mask(size, radius, (0, 0), norm)
    shape = (len(settings.levels), len(settings.sigmas_sweep))
    taylor, exact, b = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for j, sigma in enumerate(settings.sigmas_sweep):
        masks, weights = mask_distribution(size, radius, sigma, (0, 0), norm)
        f = _exact_along(p, masks, weights, mask0)
        rows, maps = [], []
        for i, level in enumerate(settings.levels):
            try:
                maps.append(scale_for_loss(f, level, "exact NR loss") * p)
                rows.append(i)
            except Unreachable:
                continue
        if maps:
            r = nr_losses(np.stack(maps), sigma, geom)
            taylor[rows, j], exact[rows, j] = r["taylor"], r["exact"]
            b[rows, j] = balanced_bce_np(np.stack(maps), mask0)
    return {"levels": list(settings.levels), "sigmas": list(settings.sigmas_sweep), "taylor": _nan_none(taylor),
            "exact": _nan_none(exact), "error": _nan_none(taylor - exact), "b": _nan_none(b)}


def _exact_along(p: np.ndarray, masks: np.ndarray, weights: np.ndarray, mask0: np.ndarray):
    """s -> exact NR loss of ``s * p`` over a mask distribution (numpy, for root finding)."""
    def f(s: float) -> float:
        return float(direct_route((s * p)[None], masks, mask0, weights)["exact"][0])
    return f


def _nan_none(a: np.ndarray) -> list:
    """A float array as nested lists with NaN -> None (JSON null)."""
    return [_nan_none(x) for x in a] if np.ndim(a) > 1 else [None if np.isnan(v) else float(v) for v in a]


def b_values(settings: SectionBSettings) -> np.ndarray:
    lo, hi, n = settings.b_grid
    return np.geomspace(lo, hi, int(n))


def loss_sigmas(geom: dict, settings: SectionBSettings) -> list[float]:
    return sorted({float(s) for s in settings.loss_sigmas} | {round(float(geom["sigma"]), 6)})


def error_vs_loss(geom: dict, settings: SectionBSettings, seed: int) -> dict[str, Any]:
    """(c) Taylor, exact and their difference against the loss level b (balanced BCE at sigma 0).

    Rows: sigmas; columns: b.  ``closed_form_sigma0`` = -log(1 - b + b^2/2), the Taylor form at sigma 0.
    """
    b = b_values(settings)
    logits = logits_batch(b, geom, settings, seed)
    sig = loss_sigmas(geom, settings)
    rows = [nr_losses(logits, s, geom) for s in sig]
    taylor = np.array([r["taylor"] for r in rows])
    exact = np.array([r["exact"] for r in rows])
    return {"b": b, "sigmas": sig, "taylor": taylor, "exact": exact, "error": taylor - exact,
            "Eg": np.array([r["Eg"] for r in rows]), "closed_form_sigma0": -np.log(1 - b + 0.5 * b * b),
            "b_measured": balanced_bce_np(logits, label_mask(geom["size"], geom["radius"], (0, 0), geom["norm"]))}


# --------------------------------------------------------------------------- (d) the give-up regime
def _family_gradients(p: np.ndarray, scales, sigma: float, geom: dict) -> dict[str, np.ndarray]:
    """Along logits = s * p: L_NR (Taylor) per map, b, E[g] and dL/db = L'(s) / b'(s) by autograd."""
    import torch

    mask0 = torch.from_numpy(label_mask(geom["size"], geom["radius"], (0, 0), geom["norm"]))
    s = torch.tensor(np.atleast_1d(np.asarray(scales, dtype=np.float64)), requires_grad=True)
    x = s[:, None, None, None] * torch.from_numpy(p)[None, None]
    loss, stats = nr_loss(x, sigma, geom["radius"], norm=geom["norm"], return_stats=True)
    (dl_ds,) = torch.autograd.grad(loss * len(s), s, retain_graph=True)   # samples are independent
    bce = balanced_bce(x, mask0.expand_as(x), reduction="none")
    (db_ds,) = torch.autograd.grad(bce.sum(), s)
    per = [float(loss.detach())] if len(s) == 1 else \
        [float(nr_loss(x[i:i + 1].detach(), sigma, geom["radius"], norm=geom["norm"])) for i in range(len(s))]
    return {"loss": np.array(per), "b": bce.detach().numpy(), "dL_db": (dl_ds / db_ds).numpy(),
            "Eg": stats["Eg"].numpy()}


def sign_changes(p: np.ndarray, scales: np.ndarray, dldb: np.ndarray, sigma: float, geom: dict,
                 tol: float = 1e-11) -> list[dict[str, float]]:
    """Every b where dL/db changes sign along the family, refined on the scale (Illinois regula falsi).

    ``scales`` ordered by increasing b (decreasing s); each entry: ``b``, ``Eg`` there, ``kind``:
    ``"giveup"`` when dL/db turns negative as b grows (beyond it, a worse map lowers the loss),
    ``"min"`` when it turns positive (a local minimum of L_NR along the family).
    """
    out = []
    for i in range(len(dldb) - 1):
        if np.sign(dldb[i]) == np.sign(dldb[i + 1]) or dldb[i] == 0:
            continue
        sign_lo = np.sign(dldb[i])
        lo, hi, f_lo, f_hi = scales[i], scales[i + 1], dldb[i], dldb[i + 1]
        side = 0
        for _ in range(100):
            mid = hi - f_hi * (hi - lo) / (f_hi - f_lo)
            f_mid = _family_gradients(p, mid, sigma, geom)["dL_db"][0]
            if np.sign(f_mid) == sign_lo:
                lo, f_lo = mid, f_mid
                f_hi = f_hi / 2 if side == -1 else f_hi            # Illinois: halve the stale end
                side = -1
            else:
                hi, f_hi = mid, f_mid
                f_lo = f_lo / 2 if side == 1 else f_lo
                side = 1
            if abs(hi - lo) < tol * max(1.0, abs(mid)) or f_mid == 0:
                break
        r = _family_gradients(p, mid, sigma, geom)
        out.append({"b": float(r["b"][0]), "Eg": float(r["Eg"][0]), "kind": "giveup" if sign_lo > 0 else "min"})
    return out


def giveup_curve(geom: dict, settings: SectionBSettings, seed: int) -> dict[str, Any]:
    """(d) L_NR and dL/db against b along the pattern family, at each sigma of ``loss_sigmas``.

    At sigma 0, L = -log(1 - b + b^2/2) and dL/db = (1 - b) / (1 - b + b^2/2): negative beyond b = 1
    (E[g] = -b < -1), where training pushes the map further from its label.  ``sign_changes`` per
    sigma (see ``sign_changes``); ``b_giveup``: the largest b where dL/db turns negative (None if it
    never does within the grid).  At sigma > 0 a second give-up appears at small b: an over-confident
    map (sharper than the label noise allows) has E[g] < -1 too, and sharpening it further lowers L.
    """
    b = b_values(settings)
    p = pattern(geom["size"], geom["radius"], (0, 0), settings.width, settings.noise, seed, geom["norm"])
    logits = logits_batch(b, geom, settings, seed)
    scales = np.array([float((lg * p).sum() / (p * p).sum()) for lg in logits])   # logits = s * p exactly
    sig = loss_sigmas(geom, settings)
    rows = [_family_gradients(p, scales, s, geom) for s in sig]
    dldb = np.array([r["dL_db"] for r in rows])
    changes = [sign_changes(p, scales, d, s, geom) for d, s in zip(dldb, sig)]
    return {"b": b, "sigmas": sig, "scales": scales, "loss": np.array([r["loss"] for r in rows]),
            "dL_db": dldb, "Eg": np.array([r["Eg"] for r in rows]),
            "analytic_loss_sigma0": -np.log(1 - b + 0.5 * b * b),
            "analytic_dL_db_sigma0": (1 - b) / (1 - b + 0.5 * b * b),
            "sign_changes": changes,
            "b_giveup": [max((c["b"] for c in cs if c["kind"] == "giveup"), default=None) for cs in changes]}


def population(geom: dict, settings: SectionBSettings, seed: int) -> dict[str, Any]:
    """Plausible SiamFC-like responses and where they fall: b, E[g] at the run's sigma, the give-up share.

    Each map is a Gaussian bump (width U(1, 3) cells, peak logit U(1, 8), floor U(-10, -3), logit noise
    U(0.2, 1.5)) whose peak sits N(0, jitter^2) cells from the label, or for a ``p_wrong`` share of
    maps anywhere on the map (a wrong mined pair, a distractor).  An assumption, not a measurement:
    it shows what shares the regime can have, and the notebook says so.
    """
    rng = np.random.default_rng(seed)
    size, half = geom["size"], (geom["size"] - 1) / 2
    n = settings.n_population
    wrong = rng.random(n) < settings.p_wrong
    peaks = np.where(wrong[:, None], rng.uniform(-half, half, (n, 2)), rng.normal(0, settings.jitter, (n, 2)))
    width, hi = rng.uniform(1, 3, n), rng.uniform(1, 8, n)
    lo, noise = rng.uniform(-10, -3, n), rng.uniform(0.2, 1.5, n)
    seeds = rng.integers(0, 2**31, n)
    logits = np.stack([bump_logits(size, peaks[i], width[i], lo[i], hi[i], noise[i], int(seeds[i]), "l2")
                       for i in range(n)])
    b = balanced_bce_np(logits, label_mask(size, geom["radius"], (0, 0), geom["norm"]))
    r = nr_losses(logits, geom["sigma"], geom)
    err = r["taylor"] - r["exact"]
    return {"n": n, "sigma": geom["sigma"], "b": b, "Eg": r["Eg"], "taylor": r["taylor"], "exact": r["exact"],
            "wrong_pair": wrong, "giveup_frac": float((r["Eg"] < -1).mean()), "frac_b_above_1": float((b > 1).mean()),
            "giveup_frac_wrong": float((r["Eg"][wrong] < -1).mean()) if wrong.any() else None,
            "giveup_frac_right": float((r["Eg"][~wrong] < -1).mean()) if (~wrong).any() else None,
            "median_abs_error": float(np.median(np.abs(err))),
            "median_abs_error_normal": float(np.median(np.abs(err[r["Eg"] >= -1]))) if (r["Eg"] >= -1).any() else None}


# --------------------------------------------------------------------------- (e) mbar and V
def grid_moments(geom: dict, sigma: float, center, per_sigma: int) -> tuple[np.ndarray, np.ndarray]:
    """mbar, V over a uniform eps grid (spacing sigma/per_sigma, +-6 sigma, Gaussian weights): a reference."""
    t = np.arange(-6 * per_sigma, 6 * per_sigma + 1) * (sigma / per_sigma)
    ex, ey = np.meshgrid(t, t, indexing="ij")
    eps = np.stack([ex.ravel(), ey.ravel()], 1)
    w = np.exp(-0.5 * (eps ** 2).sum(1) / sigma ** 2)
    return label_moments_from_samples(geom["size"], geom["radius"], eps, center, geom["norm"], weights=w)


def moments(geom: dict, settings: SectionBSettings) -> dict[str, Any]:
    """(e) mbar and V at ``settings.offset`` for each of ``moment_sigmas``, with their checks.

    ``V_slice``: the row of V at the cell nearest the label centre (x0), as an image, i.e. E[m(x0) m(x)];
    ``V``: the full N x N matrices (for the npz); ``mbar_sum`` (the expected region size: the region's
    area 2r^2 (L1) for sigma > 0 away from the border), ``centroid`` of mbar (dx, dy) cells,
    ``max_abs_diag`` = max |diag V - mbar| (m^2 = m), ``min_cov_eig`` = smallest eigenvalue of
    V - mbar mbar^T (a covariance: >= 0), ``grid_max_abs_mbar`` / ``grid_max_abs_V`` against
    ``grid_moments``.
    """
    size, radius, norm = geom["size"], geom["radius"], geom["norm"]
    ox, oy = _offsets(size)
    cx, cy = settings.offset
    x0 = (int(np.argmin(np.abs(oy[:, 0] - cy))), int(np.argmin(np.abs(ox[0] - cx))))   # (row, col)
    out: dict[str, Any] = {"offset": list(settings.offset), "sigmas": list(settings.moment_sigmas),
                           "slice_cell": list(x0), "mbar": [], "V_slice": [], "V": [], "mbar_sum": [],
                           "centroid": [], "max_abs_diag": [], "min_cov_eig": [], "max_asym": [],
                           "grid_max_abs_mbar": [], "grid_max_abs_V": []}
    for s in settings.moment_sigmas:
        mbar, V = (np.array(a) for a in label_moments(size, radius, s, settings.offset, norm))
        flat = mbar.ravel()
        out["mbar"].append(mbar)
        out["V"].append(V)
        out["V_slice"].append(V[x0[0] * size + x0[1]].reshape(size, size))
        out["mbar_sum"].append(float(flat.sum()))
        out["centroid"].append([float((ox * mbar).sum() / mbar.sum()), float((oy * mbar).sum() / mbar.sum())])
        out["max_abs_diag"].append(float(np.abs(np.diag(V) - flat).max()))
        out["min_cov_eig"].append(float(np.linalg.eigvalsh(V - np.outer(flat, flat)).min()))
        out["max_asym"].append(float(np.abs(V - V.T).max()))
        if s > 0:
            gm, gv = grid_moments(geom, s, settings.offset, settings.grid_per_sigma)
            out["grid_max_abs_mbar"].append(float(np.abs(gm - mbar).max()))
            out["grid_max_abs_V"].append(float(np.abs(gv - V).max()))
        else:
            out["grid_max_abs_mbar"].append(None)
            out["grid_max_abs_V"].append(None)
    out["hard_mask"] = label_mask(size, radius, settings.offset, norm)
    out["area"] = 2 * radius ** 2 if norm == "l1" else float(np.pi * radius ** 2)
    return out


# --------------------------------------------------------------------------- everything, and the files
def sectionB(cfg, settings: SectionBSettings | None = None, progress: bool = True) -> dict[str, Any]:
    """All checks (a)-(e) for ``cfg`` (its model geometry, NR radius/sigma/norm, seed) plus a ``summary``.

    Arrays stay numpy here; ``write_results`` writes the JSON (lists) and the full V matrices (npz).
    """
    from tqdm.auto import tqdm

    settings = settings or settings_for(cfg.profile)
    geom = geometry(cfg)
    seed = int(cfg.seed)
    steps = {"agreement": agreement, "error_vs_sigma": error_vs_sigma, "error_vs_loss": error_vs_loss,
             "giveup": giveup_curve, "population": population}
    data: dict[str, Any] = {"geometry": geom, "settings": settings_dict(settings)}
    bar = tqdm([*steps, "moments"], desc="Section B", disable=not progress)
    for step in bar:
        bar.set_postfix_str(step)
        data[step] = moments(geom, settings) if step == "moments" else steps[step](geom, settings, seed)
    data["summary"] = summarize(data)
    return data


def agreement(geom: dict, settings: SectionBSettings, seed: int) -> dict[str, Any]:
    """(a) ``route_agreement`` for maps at ``agree_levels`` (b at sigma 0), one eps sample per sigma."""
    logits = logits_batch(settings.agree_levels, geom, settings, seed)
    return {"b": list(settings.agree_levels),
            "runs": [route_agreement(logits, geom, s, settings.n_eps, seed + i)
                     for i, s in enumerate(settings.agree_sigmas)]}


def summarize(data: dict[str, Any]) -> dict[str, float | None]:
    """The key numbers: route agreement, Taylor error at small loss, the sign changes, the give-up share."""
    runs = data["agreement"]["runs"]
    el, gu, pop, mo = data["error_vs_loss"], data["giveup"], data["population"], data["moments"]
    run_sigma = round(float(data["geometry"]["sigma"]), 6)
    sig = list(el["sigmas"])
    exact, err = np.asarray(el["exact"]), np.abs(np.asarray(el["error"]))
    ev_exact = np.array(el_none(data["error_vs_sigma"]["exact"]), dtype=float)
    ev_err = np.abs(np.array(el_none(data["error_vs_sigma"]["error"]), dtype=float))
    small = np.concatenate([err[exact < 0.1], ev_err[ev_exact < 0.1]])
    i_run = sig.index(run_sigma)
    best = int(np.argmin(exact[i_run]))
    grid_m = [v for v in mo["grid_max_abs_mbar"] if v is not None]
    b_giveup = dict(zip(gu["sigmas"], gu["b_giveup"]))
    return {
        "max_abs_direct_vs_V": max(r["max_abs_direct_vs_V"] for r in runs),
        "max_abs_pulkit_vs_direct": max(r["max_abs_pulkit_vs_direct"] for r in runs),
        "max_taylor_error_small_loss": float(small.max()) if small.size else None,
        "taylor_error_at_best_map_run_sigma": float(err[i_run, best]),
        "exact_loss_floor_run_sigma": float(exact[i_run, best]),
        "taylor_max": float(np.asarray(el["taylor"]).max()),
        "b_giveup_sigma0": b_giveup.get(0.0),
        "b_giveup_run_sigma": b_giveup.get(run_sigma),
        "giveup_frac_population": pop["giveup_frac"],
        "frac_b_above_1_population": pop["frac_b_above_1"],
        "max_abs_mbar_vs_grid": max(grid_m) if grid_m else None,
        "sigma_cells": float(data["geometry"]["sigma"]),
        "map_size": int(data["geometry"]["size"]),
    }


def el_none(a) -> list:
    """Nested lists with None -> NaN (the inverse of ``_nan_none``)."""
    return [el_none(x) if isinstance(x, (list, tuple, np.ndarray)) else (np.nan if x is None else x) for x in a]


def settings_dict(settings: SectionBSettings) -> dict[str, Any]:
    """The settings as a JSON-ready dict (recorded with the results)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()}


NOTEBOOK = "05_sectionB_taylor"


def to_plain(obj: Any) -> Any:
    """Numpy arrays and scalars -> lists and Python numbers, recursively (for JSON)."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def record(geom: dict, settings: SectionBSettings, agreement: dict, error_vs_sigma: dict, error_vs_loss: dict,
           giveup: dict, population: dict, moments: dict) -> dict[str, Any]:
    """Notebook 05's results: every check's output, the geometry and settings, and the summary."""
    data = {"geometry": geom, "settings": settings_dict(settings), "agreement": agreement,
            "error_vs_sigma": error_vs_sigma, "error_vs_loss": error_vs_loss, "giveup": giveup,
            "population": population, "moments": moments}
    data["summary"] = summarize(data)
    return data


def write_results(cfg, data: dict[str, Any]) -> Path:
    """``05_sectionB_taylor.json`` (everything but the full V matrices) and its ``.npz`` (V as float32)."""
    mo = data["moments"]
    plain = to_plain({k: v for k, v in data.items() if k != "moments"})
    plain["moments"] = to_plain({k: v for k, v in mo.items() if k != "V"})
    arrays = {"V": np.asarray(mo["V"], dtype=np.float32), "sigmas": np.asarray(mo["sigmas"])}
    return save_results(cfg.profile, NOTEBOOK, plain, cfg=cfg, arrays=arrays)
