"""Losses: balanced BCE (SiamFC), InfoNCE, and the noise-robust (NR) loss."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F


def balanced_bce(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """SiamFC's balanced logistic loss on response maps.

    ``logits`` and ``labels`` are B x 1 x H x W (labels in {0, 1}).  Per sample, positives
    weigh ``1 / (2 |P|)`` and negatives ``1 / (2 (N - |P|))``, so both classes count half:
    ``b = -sum_x [w_1 m(x) log f(x) + w_0 (1 - m(x)) log(1 - f(x))]`` with ``f = sigmoid``.
    ``reduction``: ``mean`` over the batch (default), ``sum`` or ``none`` (a B-vector).
    """
    if logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ in shape")
    labels = labels.to(logits.dtype)
    dims = tuple(range(1, logits.dim()))
    n = labels[0].numel()
    n_pos = labels.sum(dim=dims, keepdim=True).clamp(min=1.0)
    n_neg = (n - labels.sum(dim=dims, keepdim=True)).clamp(min=1.0)
    w = labels / (2 * n_pos) + (1 - labels) / (2 * n_neg)
    per_elem = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    per_sample = (w * per_elem).sum(dim=dims)
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")


# --------------------------------------------------------------------------- InfoNCE
def infonce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR) over the 2B views of a mini-batch, mean over the 2B anchors.

    ``z1``, ``z2``: B x D embeddings of two views of the same B patches (normalised here).
    Row ``i`` of ``z1`` and row ``i`` of ``z2`` are positives; every other of the 2B - 2
    views is a negative.  ``temperature`` (tau) divides the cosine similarities.
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"infonce expects two B x D tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if not temperature > 0:
        raise ValueError(f"infonce temperature must be > 0, got {temperature}")
    b = z1.shape[0]
    if b < 2:
        raise ValueError(f"infonce needs at least 2 patches per batch (negatives), got {b}")
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


# --------------------------------------------------------------------------- label masks
# Map geometry (docs/ARCHITECTURE.md): cell (row i, col j) lies (j - (W-1)/2, i - (H-1)/2) cells
# from the map centre; a label centre is an offset (dx, dy) = (column, row) in cells from there.
OFFSET_QUANTUM = 0.125    # cells: label offsets are rounded to 1/8 cell for the moments cache (METHOD.md)
_EDGE_TOL = 1e-9                            # a cell at distance == radius is positive (SiamFC)
_NORMS = ("l1", "l2")


def _hw(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        try:
            h, w = (int(s) for s in size)
        except (TypeError, ValueError):
            raise ValueError(f"map size must be an int or (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"map size must be positive, got {(h, w)}")
    return h, w


def _check_norm(norm: str) -> str:
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    return norm


def _cell_offsets(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Flattened (HW,) column and row offsets of every cell from the map centre, in cells."""
    oy, ox = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    return ox.ravel().astype(np.float64), oy.ravel().astype(np.float64)


def _inside(du, dv, radius: float, norm: str):
    """Cells at offset (du, dv) from the region centre that lie in the region (numpy or torch)."""
    if norm == "l1":
        return abs(du) + abs(dv) <= radius + _EDGE_TOL
    return du * du + dv * dv <= radius * radius + _EDGE_TOL


@lru_cache(maxsize=4096)
def _mask_np(h: int, w: int, radius: float, cx: float, cy: float, norm: str) -> np.ndarray:
    ox, oy = _cell_offsets(h, w)
    m = _inside(ox - cx, oy - cy, radius, norm).reshape(h, w)
    m.flags.writeable = False
    return m


def _center_pair(center) -> tuple[float, float]:
    c = np.asarray(center, dtype=np.float64).ravel()
    if c.shape != (2,) or not np.isfinite(c).all():
        raise ValueError(f"center must be a finite offset (dx, dy) in cells, got {center!r}")
    return float(c[0]), float(c[1])


def _check_radius(radius) -> float:
    r = float(radius)
    if not (np.isfinite(r) and r >= 0):
        raise ValueError(f"radius must be a finite number of cells >= 0, got {radius!r}")
    return r


def positive_mask(size, radius, center=(0, 0), norm="l1") -> torch.Tensor:
    """The 0/1 label mask m (H x W float32 tensor, a fresh copy) of a region in map cells.

    ``size``: int or (H, W); ``radius`` in cells (``r_pos / stride``); ``center``: the label's
    offset (dx, dy) = (column, row) in cells from the map centre.  A cell is positive when its
    L1 (diamond, SiamFC) or L2 (disc, ``norm="l2"``) distance to the centre is <= ``radius``.
    Cached by its arguments.
    """
    h, w = _hw(size)
    cx, cy = _center_pair(center)
    return torch.from_numpy(_mask_np(h, w, _check_radius(radius), cx, cy, _check_norm(norm)).astype(np.float32))


def positive_masks(size, radius, centers, norm="l1") -> torch.Tensor:
    """Batched ``positive_mask``: ``centers`` B x 2 offsets (dx, dy) in cells -> B x 1 x H x W float32.

    The result lives on ``centers``' device when it is a tensor.
    """
    h, w = _hw(size)
    r = _check_radius(radius)
    _check_norm(norm)
    device = centers.device if isinstance(centers, torch.Tensor) else torch.device("cpu")
    c = torch.as_tensor(centers.detach().cpu() if isinstance(centers, torch.Tensor) else np.asarray(centers),
                        dtype=torch.float64)
    if c.dim() != 2 or c.shape[1] != 2 or not torch.isfinite(c).all():
        raise ValueError(f"centers must be a finite B x 2 array of (dx, dy) offsets in cells, got shape {tuple(c.shape)}")
    ox, oy = (torch.from_numpy(o) for o in _cell_offsets(h, w))
    m = _inside(ox[None] - c[:, :1], oy[None] - c[:, 1:], r, norm)
    return m.reshape(-1, 1, h, w).to(device=device, dtype=torch.float32)


# --------------------------------------------------------------------------- label noise: masks and moments
# The true centre is c + eps, eps ~ N(0, sigma^2 I) (cells).  Given eps_x = t, a cell at offset
# (u, v) from c is inside iff eps_y lies in one interval [v - s, v + s] (s = r - |u - t| for L1,
# sqrt(r^2 - (u - t)^2) for L2), so along eps_y the mask is piecewise constant between the sorted
# interval ends and each piece has an exact Gaussian probability.  Along eps_x the probabilities
# are continuous, integrated by the trapezoid rule on a fine grid.  The result is an explicit
# discrete distribution over masks (distinct masks M_k, weights W_k); mbar = W M and
# V = M^T diag(W) M follow exactly from it, and so does the exact form E[exp g] = sum_k W_k exp g_k.
_T_SPAN = 6.0           # eps_x integrated over +-6 sigma (tail mass 2e-9)
_T_PER_SIGMA = 32       # trapezoid nodes per sigma along eps_x
_PRUNE = 1e-13          # drop mask pieces with conditional probability below this


def _quantise(x: float, quantum: float = OFFSET_QUANTUM) -> float:
    return float(np.round(x / quantum) * quantum) + 0.0   # + 0.0 turns -0.0 into 0.0 for the cache key


def _check_sigma(sigma) -> float:
    s = float(sigma)
    if not (np.isfinite(s) and s >= 0):
        raise ValueError(f"sigma must be a finite number of cells >= 0, got {sigma!r}")
    return round(s, 12)


def _unique_masks(masks: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge identical rows of a K x HW boolean mask array, summing their weights."""
    packed = np.ascontiguousarray(np.packbits(masks, axis=1))
    rows = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()   # one byte string per mask
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    return masks[first], np.bincount(inverse.ravel(), weights=weights, minlength=len(first))


@lru_cache(maxsize=1024)
def _distribution(h: int, w: int, radius: float, sigma: float, cx: float, cy: float, norm: str):
    ox, oy = _cell_offsets(h, w)
    if sigma == 0:
        masks, weights = _mask_np(h, w, radius, cx, cy, norm).reshape(1, -1).copy(), np.ones(1)
    else:
        u, v = ox - cx, oy - cy
        n_t = 2 * int(np.ceil(_T_SPAN * _T_PER_SIGMA)) + 1
        t = np.linspace(-_T_SPAN * sigma, _T_SPAN * sigma, n_t)
        w_t = np.exp(-0.5 * (t / sigma) ** 2)
        w_t[[0, -1]] *= 0.5                                    # trapezoid rule
        w_t /= w_t.sum()
        du = u[None, :] - t[:, None]                           # n_t x HW
        if norm == "l1":
            s = radius - np.abs(du)
        else:
            s = np.sqrt(np.clip(radius * radius - du * du, 0.0, None))
            s[radius * radius - du * du < 0] = -1.0
        active = s >= 0
        lo = np.where(active, v[None, :] - s, np.inf)          # cell inside iff lo <= eps_y <= hi
        hi = np.where(active, v[None, :] + s, np.inf)
        inf = np.full((n_t, 1), np.inf)
        edges = np.concatenate([-inf, np.sort(np.concatenate([lo, hi], axis=1), axis=1), inf], axis=1)
        cdf = torch.special.ndtr(torch.from_numpy(edges / sigma)).numpy()
        prob = np.diff(cdf, axis=1)                            # n_t x (2HW + 1) pieces
        ti, ki = np.nonzero(prob > _PRUNE)
        a, b = edges[ti, ki], edges[ti, ki + 1]
        with np.errstate(invalid="ignore"):                     # inf - inf in discarded branches
            mid = np.where(np.isfinite(a) & np.isfinite(b), 0.5 * (a + b),
                           np.where(np.isfinite(a), a + 1.0, np.where(np.isfinite(b), b - 1.0, 0.0)))
        masks = (lo[ti] <= mid[:, None]) & (mid[:, None] <= hi[ti])
        masks, weights = _unique_masks(masks, w_t[ti] * prob[ti, ki])
        weights = weights / weights.sum()
    masks.flags.writeable = False
    weights.flags.writeable = False
    return masks, weights


def mask_distribution(size, radius, sigma, center=(0, 0), norm="l1") -> tuple[np.ndarray, np.ndarray]:
    """The label-noise distribution as explicit masks: ``(masks K x H x W bool, weights K float64)``.

    The K distinct positive masks that c + eps produces, eps ~ N(0, sigma^2 I) (cells), and their
    probabilities (sum 1): exact along eps_y, trapezoid on a grid of sigma/32 along eps_x.  This is
    the "fine explicit noise sample" of the exact NR form.  Offsets are rounded to ``OFFSET_QUANTUM``
    when sigma > 0; cached; read-only numpy arrays.
    """
    h, w = _hw(size)
    r, s = _check_radius(radius), _check_sigma(sigma)
    cx, cy = _center_pair(center)
    if s > 0:
        cx, cy = _quantise(cx), _quantise(cy)
    masks, weights = _distribution(h, w, r, s, cx, cy, _check_norm(norm))
    return masks.reshape(-1, h, w), weights


def _moments_of(masks: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = masks.astype(np.float64)
    mbar = weights @ m
    v = (m.T * weights) @ m
    return mbar, 0.5 * (v + v.T)


@lru_cache(maxsize=512)
def _moments(h: int, w: int, radius: float, sigma: float, cx: float, cy: float, norm: str):
    """``(mbar, V)`` as read-only numpy views and as CPU float64 tensors sharing their memory."""
    mbar, v = _moments_of(*_distribution(h, w, radius, sigma, cx, cy, norm))
    tensors = torch.from_numpy(mbar), torch.from_numpy(v)
    mbar_ro, v_ro = mbar.reshape(h, w).view(), v.view()
    mbar_ro.flags.writeable = False
    v_ro.flags.writeable = False
    return mbar_ro, v_ro, tensors


@lru_cache(maxsize=512)
def _moments_on(key: tuple, device: torch.device):
    return tuple(t.to(device) for t in _moments(*key)[2])


@lru_cache(maxsize=1024)
def _sparse_masks(key: tuple):
    """The distribution's masks as (cell index, mask index) pairs of their positive cells + log-weights."""
    masks, weights = _distribution(*key)
    k_idx, x_idx = np.nonzero(masks)
    return torch.from_numpy(x_idx.astype(np.int64)), torch.from_numpy(k_idx.astype(np.int64)), \
        torch.from_numpy(np.log(weights))


def label_moments(size, radius, sigma, center=(0, 0), norm="l1") -> tuple[np.ndarray, np.ndarray]:
    """First and second moments of the noisy positive mask: ``(mbar H x W, V HW x HW)``.

    ``mbar(x) = E[m(x)]`` (the soft label) and ``V(x, x') = E[m(x) m(x')]`` over the true centre
    c + eps, eps ~ N(0, sigma^2 I); everything in map cells; ``center`` is c's offset (dx, dy) from
    the map centre; cells flattened row-major in V.  Computed from ``mask_distribution``
    (semi-analytic: exact along eps_y, fine trapezoid along eps_x; error below 1e-4, far inside
    the required 0.01).  sigma = 0 gives the hard mask and V = m m^T exactly.  When sigma > 0 the
    offset is rounded to ``OFFSET_QUANTUM`` (1/8 cell).  Cached by (size, radius, sigma, rounded
    offset, norm); returns **read-only float64 numpy arrays**.
    """
    h, w = _hw(size)
    r, s = _check_radius(radius), _check_sigma(sigma)
    cx, cy = _center_pair(center)
    if s > 0:
        cx, cy = _quantise(cx), _quantise(cy)
    return _moments(h, w, r, s, cx, cy, _check_norm(norm))[:2]


def label_moments_from_samples(size, radius, eps, center=(0, 0), norm="l1", weights=None):
    """``(mbar H x W, V HW x HW)`` (float64 numpy) over an explicit noise sample.

    ``eps``: S x 2 shifts (dx, dy) in cells of the true centre (c + eps); ``weights``: optional S
    non-negative weights (normalised here; uniform by default).  No rounding, no cache: the
    reference the semi-analytic ``label_moments`` is checked against, and the sample-based twin
    of the direct route ``nr_loss_from_masks``.
    """
    h, w = _hw(size)
    r = _check_radius(radius)
    _check_norm(norm)
    cx, cy = _center_pair(center)
    e = np.asarray(eps, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] != 2 or len(e) == 0 or not np.isfinite(e).all():
        raise ValueError(f"eps must be a finite S x 2 array of (dx, dy) shifts in cells, got shape {e.shape}")
    p = np.ones(len(e)) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if p.shape != (len(e),) or (p < 0).any() or not p.sum() > 0:
        raise ValueError(f"weights must be {len(e)} non-negative numbers with a positive sum")
    p = p / p.sum()
    ox, oy = _cell_offsets(h, w)
    masks, probs = [], []
    for i in range(0, len(e), 16384):                          # chunks keep memory small
        ec = e[i:i + 16384]
        mk = _inside(ox[None] - cx - ec[:, :1], oy[None] - cy - ec[:, 1:], r, norm)
        mk, pk = _unique_masks(mk, p[i:i + 16384])
        masks.append(mk)
        probs.append(pk)
    masks, probs = _unique_masks(np.concatenate(masks), np.concatenate(probs))
    mbar, v = _moments_of(masks, probs)
    return mbar.reshape(h, w), v


# --------------------------------------------------------------------------- the NR loss
# g(eps) = sum_x [w_1 m(x) h_1(x) + w_0 (1 - m(x)) h_0(x)] = a + m . d with h_1 = log f,
# h_0 = log(1 - f), d = w_1 h_1 - w_0 h_0, a = sum_x w_0 h_0; w_1 = 1/(2|P|), w_0 = 1/(2(N - |P|))
# from the label's own (unshifted) region, so g(0) = -b (balanced BCE) and g <= 0.
_FORMS = ("taylor", "exact")


def _weighted_h(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w_1 h_1, w_0 h_0)``, each B x HW; ``labels`` (B x 1 x H x W, 0/1) fix |P|."""
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"NR loss expects B x 1 x H x W logits, got {tuple(logits.shape)}")
    if labels.shape != logits.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and logits {tuple(logits.shape)} differ in shape")
    x = logits.flatten(1)
    n = x.shape[1]
    n_pos = labels.flatten(1).to(x.dtype).sum(1).clamp(min=1.0)
    w1 = 1.0 / (2.0 * n_pos)
    w0 = 1.0 / (2.0 * (n - n_pos).clamp(min=1.0))
    h1, h0 = -F.softplus(-x), -F.softplus(x)                 # log f, log(1 - f), stable for any logit
    return w1[:, None] * h1, w0[:, None] * h0


def _g_terms(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a B, d B x HW)`` of g = a + m . d."""
    wh1, wh0 = _weighted_h(logits, labels)
    return wh0.sum(1), wh1 - wh0


def _taylor(eg: torch.Tensor, eg2: torch.Tensor) -> torch.Tensor:
    # 1 + E[g] + E[g^2]/2 >= ((1 + E[g])^2 + 1)/2 >= 1/2; the clamp only absorbs rounding.
    return -torch.log((1.0 + eg + 0.5 * eg2).clamp(min=0.5))


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")


def _tensor(x, dtype, device) -> torch.Tensor:
    """A tensor from a tensor or array; numpy input is copied (cached arrays are read-only)."""
    if not isinstance(x, torch.Tensor):
        x = torch.from_numpy(np.array(x) if not x.flags.writeable else x) if isinstance(x, np.ndarray) \
            else torch.as_tensor(x)
    return x.to(device=device, dtype=dtype)


def _moment_terms(logits, labels, mbar, v):
    a, d = _g_terms(logits, labels)
    b, n = d.shape
    mbar, v = _tensor(mbar, d.dtype, d.device), _tensor(v, d.dtype, d.device)
    if mbar.numel() not in (n, b * n) or v.numel() not in (n * n, b * n * n):
        raise ValueError(f"mbar {tuple(mbar.shape)} / V {tuple(v.shape)} do not match {b} maps of {n} cells")
    mbar = mbar.reshape(-1, n).expand(b, n)
    v = v.reshape(-1, n, n).expand(b, n, n)
    md = (mbar * d).sum(1)
    dvd = ((d[:, None, :] @ v).squeeze(1) * d).sum(1)       # d^T V d per sample
    return a + md, a * a + 2.0 * a * md + dvd


def nr_loss_from_moments(logits, labels, mbar, V, reduction="mean") -> torch.Tensor:
    """Taylor-form NR loss through given moments (the formula ``nr_loss`` evaluates with cached ones).

    ``labels``: B x 1 x H x W hard masks at the labelled centre (they fix |P|); ``mbar``: H x W
    or B x H x W; ``V``: HW x HW or B x HW x HW (``label_moments``).
    ``E[g] = a + mbar . d``, ``E[g^2] = a^2 + 2a (mbar . d) + d^T V d``, ``L = -log(1 + E[g] + E[g^2]/2)``.
    """
    eg, eg2 = _moment_terms(logits, labels, mbar, V)
    return _reduce(_taylor(eg, eg2), reduction)


def _mask_terms(logits, labels, masks, weights):
    """Per-sample g over explicit masks, summed literally over cells and classes: ``(g B x K, log-weights B x K)``."""
    wh1, wh0 = _weighted_h(logits, labels)
    b, n = wh1.shape
    dt, dev = wh1.dtype, wh1.device
    m = _tensor(masks, dt, dev)
    if m.dim() not in (3, 4) or m.shape[-2] * m.shape[-1] != n or (m.dim() == 4 and m.shape[0] not in (1, b)):
        raise ValueError(f"masks must be K x H x W or {b} x K x H x W matching the logits, got {tuple(m.shape)}")
    m = m.reshape(-1, m.shape[-3], n).expand(b, -1, n)
    k = m.shape[1]
    if weights is None:
        p = torch.full((b, k), 1.0 / k, dtype=dt, device=dev)
    else:
        p = _tensor(weights, dt, dev).reshape(-1, k).expand(b, k)
        if (p < 0).any():
            raise ValueError("mask weights must be non-negative")
        p = p / p.sum(1, keepdim=True)
    g = (m * wh1[:, None, :]).sum(2) + ((1.0 - m) * wh0[:, None, :]).sum(2)   # sum_x sum_b w_b m_b h_b
    return g, torch.log(p)


def nr_loss_from_masks(logits, labels, masks, weights=None, form="taylor", reduction="mean") -> torch.Tensor:
    """The direct route: NR loss over an explicit noise sample of masks.

    ``masks``: K x H x W (shared) or B x K x H x W, the positive masks at c + eps_k; ``weights``: K
    or B x K probabilities (uniform when None).  g_k = sum_x sum_b w_b m_b,k(x) h_b(x) per mask;
    Taylor: ``-log(1 + E[g] + E[g^2]/2)`` with the expectations over the sample; exact:
    ``-log E[exp g]`` by log-sum-exp.
    """
    if form not in _FORMS:
        raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
    g, logp = _mask_terms(logits, labels, masks, weights)
    if form == "exact":
        return _reduce(-torch.logsumexp(logp + g, dim=1), reduction)
    p = logp.exp()
    return _reduce(_taylor((p * g).sum(1), (p * g * g).sum(1)), reduction)


def _per_sample(value, b: int, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(b, float(arr))
    if arr.shape != (b,):
        raise ValueError(f"{what} must be a number or a {b}-vector, got shape {arr.shape}")
    return arr


def nr_loss(logits, sigma, radius, center=None, form="taylor", norm="l1", return_stats=False):
    """The noise-robust loss of PUL (supplementary B), mean over the batch.

    ``logits``: B x 1 x H x W response logits (f = sigmoid); ``sigma``: label-noise std in map
    cells (``nr_sigma_px / stride``), a number or a B-vector; ``radius``: positive radius in cells
    (``r_pos / stride``); ``center``: None (map centre) or B x 2 label offsets (dx, dy) in cells.
    ``form="taylor"``: ``L = -log(1 + E[g] + E[g^2]/2)`` through cached (mbar, V) (always <= log 2);
    ``form="exact"``: ``L = -log E[exp g]`` over ``mask_distribution``.  At sigma = 0 the exact
    form equals ``balanced_bce`` and the Taylor form ``-log(1 - b + b^2/2)``.
    With ``return_stats=True`` returns ``(loss, stats)``: ``giveup_frac`` (fraction of samples
    with E[g] < -1, where the gradient pushes away from the label), ``mean_Eg``, ``mean_Eg2`` and
    the per-sample ``Eg`` (detached tensor).  See docs/nr_loss.md.
    """
    if form not in _FORMS:
        raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
    _check_norm(norm)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"nr_loss expects B x 1 x H x W logits, got {tuple(getattr(logits, 'shape', ()))}")
    b, _, h, w = logits.shape
    r = _check_radius(radius)
    sig = np.array([_check_sigma(s) for s in _per_sample(sigma, b, "sigma")])
    centers = np.zeros((b, 2)) if center is None else (
        center.detach().cpu().numpy() if isinstance(center, torch.Tensor) else np.asarray(center, dtype=np.float64))
    centers = np.asarray(centers, dtype=np.float64)
    if centers.shape != (b, 2) or not np.isfinite(centers).all():
        raise ValueError(f"center must be None or a finite {b} x 2 array of (dx, dy) offsets, got shape {centers.shape}")
    hard = np.stack([_mask_np(h, w, r, cx, cy, norm).ravel() for cx, cy in centers])   # eps = 0
    labels = _tensor(hard.reshape(b, 1, h, w), logits.dtype, logits.device)
    a, d = _g_terms(logits.double(), labels.double())          # float64 from here: tiny, and exact
    dev = logits.device
    eg, eg2, per = [], [], []
    for i in range(b):
        key = (h, w, r, float(sig[i]), _quantise(centers[i, 0]), _quantise(centers[i, 1]), norm)
        if form == "taylor":
            if sig[i] == 0:                                    # the hard label at the exact centre
                md = d[i, torch.from_numpy(np.nonzero(hard[i])[0]).to(dev)].sum()
                eg.append(a[i] + md)
                eg2.append(eg[-1] * eg[-1])
            else:
                mbar, v = _moments(*key)[2] if dev.type == "cpu" else _moments_on(key, dev)
                md = mbar @ d[i]
                eg.append(a[i] + md)
                eg2.append(a[i] * a[i] + 2.0 * a[i] * md + d[i] @ (v @ d[i]))
            per.append(_taylor(eg[-1], eg2[-1]))
        else:                                                  # g_k = a + sum of d over mask k's cells
            if sig[i] == 0:
                x_idx = torch.from_numpy(np.nonzero(hard[i])[0])
                k_idx, logp = torch.zeros_like(x_idx), torch.zeros(1, dtype=torch.float64)
            else:
                x_idx, k_idx, logp = _sparse_masks(key)
            x_idx, k_idx, logp = x_idx.to(dev), k_idx.to(dev), logp.to(dev)
            g = a[i] + torch.zeros(len(logp), dtype=d.dtype, device=dev).index_add(0, k_idx, d[i, x_idx])
            p = logp.exp()
            eg.append((p * g).sum())
            eg2.append((p * g * g).sum())
            per.append(-torch.logsumexp(logp + g, dim=0))
    eg, eg2 = torch.stack(eg), torch.stack(eg2)
    per_sample = torch.stack(per).to(logits.dtype)
    loss = per_sample.mean()
    if not return_stats:
        return loss
    eg_d = eg.detach()
    stats = {"giveup_frac": float((eg_d < -1).double().mean()), "mean_Eg": float(eg_d.mean()),
             "mean_Eg2": float(eg2.detach().mean()), "Eg": eg_d}
    return loss, stats
