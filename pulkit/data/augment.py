"""Two augmented views of a batch of crops (PUL supplementary F), batch-wise on one tensor.

``TwoViews`` feeds InfoNCE in BD and TC: two float32 views of raw 0..255 pixels, a pure function
of the batch and the generator.  Transforms, their order and an example: docs/modules.md.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn.functional as tnf
import torchvision.transforms.v2 as v2

from pulkit.core.config import AugmentConfig

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)   # torchvision's rgb_to_grayscale (ITU-R 601-2 luma)


# --------------------------------------------------------------------------- geometry
def stretch_flip(x: torch.Tensor, scale: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Scale each crop of ``x`` (n x C x H x W float) about its centre, optionally mirrored.

    ``scale``: n x 2 factors ``(sy, sx)`` (> 1 enlarges the content, so its border leaves the crop;
    < 1 shrinks it and the uncovered border takes the crop's mean colour, the border convention of
    ``pulkit.data.crops``).  ``flip``: n bools, mirror left-right.  One bilinear ``grid_sample``.
    """
    n, _, h, w = x.shape
    sy, sx = scale[:, 0].to(x), scale[:, 1].to(x)
    sign = 1.0 - 2.0 * flip.to(x) if flip is not None else torch.ones_like(sx)
    # affine_grid's sampling grid for the diagonal map (output -> input, normalised pixel centres),
    # built by broadcasting: affine_grid itself spends a batched matmul on it
    gx = ((torch.arange(w, dtype=x.dtype, device=x.device) * 2 + 1) / w - 1) * (sign / sx).view(n, 1, 1)
    gy = ((torch.arange(h, dtype=x.dtype, device=x.device) * 2 + 1) / h - 1) * (1.0 / sy).view(n, 1, 1)
    grid = torch.stack((gx.expand(n, h, w), gy.view(n, h, 1).expand(n, h, w)), dim=-1)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    # zeros outside the crop after subtracting the mean: the mean colour once it is added back
    return tnf.grid_sample(x - mean, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + mean


class RandomStretch(v2.Transform):
    """SiamFC's random stretch as a torchvision transform for one image (C x H x W float): each axis
    scaled by ``1 + u``, ``u ~ U[-stretch, stretch]`` independently, about the centre, the uncovered
    border in the image's mean colour.  Draws from the global torch RNG like every torchvision random
    transform; ``TwoViews`` does the same warp batch-wise with its own generator (``stretch_flip``)."""

    def __init__(self, stretch: float = 0.05):
        super().__init__()
        if not 0 <= stretch < 1:
            raise ValueError(f"stretch must be in [0, 1), got {stretch}")
        self.stretch = float(stretch)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"scale": 1 + (2 * torch.rand(1, 2) - 1) * self.stretch}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return stretch_flip(inpt[None].float(), params["scale"])[0]


# --------------------------------------------------------------------------- colour (torchvision's formulas, per crop)
def _per_crop(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return f.to(x).view(-1, 1, 1, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma of n x 3 x H x W float images as n x 1 x H x W (torchvision ``rgb_to_grayscale``)."""
    r, g, b = x.unbind(dim=-3)
    return (r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]).unsqueeze(-3)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``x * f`` clamped to [0, 1]; one factor per crop (torchvision ``adjust_brightness``)."""
    return (x * _per_crop(f, x)).clamp_(0, 1)


def mean_luma(x: torch.Tensor) -> torch.Tensor:
    """The mean luma of each crop of n x 3 x H x W float images: n values (torchvision's contrast mean)."""
    return x.mean(dim=(-2, -1)) @ x.new_tensor(GRAY_WEIGHTS)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
    """Blend with the crop's mean luma (torchvision ``adjust_contrast``); one factor per crop.

    ``mean``: the crops' ``mean_luma`` when already computed (n values), else computed here."""
    f = _per_crop(f, x)
    mean = (mean_luma(x) if mean is None else mean).to(x).view(-1, 1, 1, 1)
    return (x * f).add_((1 - f) * mean).clamp_(0, 1)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blend with the per-pixel luma (torchvision ``adjust_saturation``); one factor per crop."""
    f = _per_crop(f, x)
    return (x * f).add_((1 - f) * grayscale(x)).clamp_(0, 1)


def adjust_hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``f`` turns, ``f`` in [-0.5, 0.5] per crop: torchvision's ``adjust_hue`` (HSV
    hue shift; value and saturation kept), computed without the full HSV round trip.

    With ``m``, ``v`` the smallest and largest channel and ``H`` the hue in sextants [0, 6), every
    output channel is ``m + (v - m) * ramp(H')``, the piecewise-linear hue ramps of HSV -> RGB.
    """
    r, g, b = x.unbind(dim=-3)
    m, v = torch.minimum(torch.minimum(r, g), b), torch.maximum(torch.maximum(r, g), b)
    c = v - m
    h6 = torch.where(v == r, g - b, torch.where(v == g, (b - r).add_(c, alpha=2), (r - g).add_(c, alpha=4)))
    h6 = h6.div_(torch.where(c == 0, 1.0, c))                     # grey pixels: c = 0, any hue gives m
    h6 = h6.add_(6 * _per_crop(f, x)[:, 0]).remainder_(6)
    ramps = (((h6 - 3).abs_() - 1).clamp_(0, 1),                  # red
             (2 - (h6 - 2).abs_()).clamp_(0, 1),                  # green
             (2 - (h6 - 4).abs_()).clamp_(0, 1))                  # blue
    return torch.stack(ramps, dim=-3).mul_(c.unsqueeze(-3)).add_(m.unsqueeze(-3))


COLOR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)   # ColorJitter's fn_idx order


def color_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """ColorJitter per crop: crop ``i`` gets ``COLOR_OPS[order[i, k]]`` with ``factors[i, order[i, k]]``
    for k = 0..3 (``factors``: n x 4 brightness, contrast, saturation, hue; ``order``: n x 4 permutations)."""
    x = x.clone()
    for k in range(len(COLOR_OPS)):
        for j, op in enumerate(COLOR_OPS):
            sel = (order[:, k].cpu() == j).nonzero().flatten()
            if len(sel):
                on = sel.to(x.device)
                x[on] = op(x[on], factors[sel, j])
    return x


# --------------------------------------------------------------------------- blur
def blur_kernel_size(side: int, fraction: float) -> int:
    """An odd Gaussian kernel size of about ``fraction * side`` pixels, at least 3."""
    k = max(3, int(round(fraction * side)))
    return k if k % 2 else k + 1


def gaussian_kernels(sigma: torch.Tensor, ksize: int) -> torch.Tensor:
    """n x ksize normalised 1-D Gaussians of ``sigma[i]`` pixels (torchvision's ``gaussian_blur`` kernel)."""
    half = (ksize - 1) * 0.5
    taps = torch.linspace(-half, half, ksize, dtype=torch.float32)
    kern = torch.exp(-0.5 * (taps / sigma.float().view(-1, 1)) ** 2)
    return kern / kern.sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, ksize: int) -> torch.Tensor:
    """Blur each crop of ``x`` (n x C x H x W float) with its own ``sigma`` (pixels): reflect padding and
    a separable ``ksize``-tap kernel, as torchvision's ``gaussian_blur``; one grouped conv per axis."""
    n, c, h, w = x.shape
    if ksize // 2 >= min(h, w):
        raise ValueError(f"a blur kernel of {ksize} taps needs crops larger than {ksize // 2} px, got {h} x {w}")
    kern = gaussian_kernels(sigma, ksize).to(x).repeat_interleave(c, dim=0)    # (n * c) x ksize
    y = tnf.pad(x.reshape(1, n * c, h, w), (ksize // 2,) * 4, mode="reflect")
    y = tnf.conv2d(y, kern.view(n * c, 1, 1, ksize), groups=n * c)
    y = tnf.conv2d(y, kern.view(n * c, 1, ksize, 1), groups=n * c)
    return y.view(n, c, h, w)


def gaussian_blur_taps(x: torch.Tensor, kern: torch.Tensor, ksize: int) -> torch.Tensor:
    """``gaussian_blur`` of crops sharing one 1-D kernel ``kern`` (``ksize`` taps), as a fused multiply-add
    per tap in tap order, horizontal then vertical (on the CPU the same sums as the grouped convolution)."""
    h, w = x.shape[-2:]
    if ksize // 2 >= min(h, w):
        raise ValueError(f"a blur kernel of {ksize} taps needs crops larger than {ksize // 2} px, got {h} x {w}")
    y = tnf.pad(x, (ksize // 2,) * 4, mode="reflect")
    rows = y[..., 0:w] * kern[0]
    for t in range(1, ksize):
        rows = torch.addcmul(rows, y[..., t:t + w], kern[t])
    out = rows[..., 0:h, :] * kern[0]
    for t in range(1, ksize):
        out = torch.addcmul(out, rows[..., t:t + h, :], kern[t])
    return out


# --------------------------------------------------------------------------- the two views
def _check(cfg: AugmentConfig) -> None:
    for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
        p = getattr(cfg, name)
        if not 0 <= p <= 1:
            raise ValueError(f"AugmentConfig.{name} is a probability, got {p}")
    if not 0 <= cfg.stretch < 1:
        raise ValueError(f"AugmentConfig.stretch must be in [0, 1), got {cfg.stretch}")
    for name in ("brightness", "contrast", "saturation"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {getattr(cfg, name)}")
    if not 0 <= cfg.hue <= 0.5:
        raise ValueError(f"AugmentConfig.hue must be in [0, 0.5], got {cfg.hue}")
    lo, hi = cfg.blur_sigma
    if not 0 < lo <= hi:
        raise ValueError(f"AugmentConfig.blur_sigma must be 0 < min <= max, got {cfg.blur_sigma}")
    if not 0 < cfg.blur_kernel <= 1:
        raise ValueError(f"AugmentConfig.blur_kernel is a fraction of the crop side in (0, 1], got {cfg.blur_kernel}")


def draw_params(cfg: AugmentConfig, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Every random choice for ``n`` crops, drawn on the CPU in a fixed order (the same amount per call).

    ``scale`` n x 2 (sy, sx); ``flip``, ``jitter``, ``gray``, ``blur`` n bools; ``factors`` n x 4
    (brightness, contrast, saturation, hue); ``order`` n x 4 (ColorJitter's per-crop op order);
    ``sigma`` n blur sigmas in pixels.
    """
    def u(*shape):
        return torch.rand(*shape, generator=generator)

    scale = 1 + (2 * u(n, 2) - 1) * cfg.stretch
    flip = u(n) < cfg.flip_p
    jitter = u(n) < cfg.jitter_p
    s = torch.tensor([cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue])
    factors = (2 * u(n, 4) - 1) * s + torch.tensor([1.0, 1.0, 1.0, 0.0])
    order = u(n, 4).argsort(dim=1)
    gray = u(n) < cfg.grayscale_p
    blur = u(n) < cfg.blur_p
    lo, hi = cfg.blur_sigma
    sigma = lo + (hi - lo) * u(n)
    return {"scale": scale, "flip": flip, "jitter": jitter, "factors": factors, "order": order,
            "gray": gray, "blur": blur, "sigma": sigma}


def augment(x: torch.Tensor, cfg: AugmentConfig, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply ``draw_params``'s choices to ``x`` (n x 3 x H x W float in [0, 1]); returns a new tensor.

    On the CPU crop by crop on one thread (``augment_per_crop``), elsewhere as whole-batch operations
    (``augment_batch``): the same function; on the CPU the same bits (tests/test_augment.py).
    """
    if x.device.type == "cpu":
        return augment_per_crop(x, cfg, params)
    return augment_batch(x, cfg, params)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """``augment`` as whole-batch operations: each transform on the sub-batch it applies to (the device path)."""
    if cfg.stretch > 0 or bool(params["flip"].any()):
        x = stretch_flip(x, params["scale"], params["flip"])
    else:
        x = x.clone()
    ksize = blur_kernel_size(min(x.shape[-2:]), cfg.blur_kernel)
    _where(x, params["jitter"], lambda sel, xs: color_jitter(xs, params["factors"][sel], params["order"][sel]))
    _where(x, params["gray"], lambda sel, xs: grayscale(xs).expand(-1, 3, -1, -1))
    _where(x, params["blur"], lambda sel, xs: gaussian_blur(xs, params["sigma"][sel], ksize))
    return x.clamp_(0, 1)


def augment_per_crop(x: torch.Tensor, cfg: AugmentConfig, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """``augment`` crop by crop on one CPU thread: every operation on one crop stays in the cache, and no
    thread pool wakes for a small tensor.  Bitwise ``augment_batch``: the element-wise formulas are the
    same, the mean luma of ColorJitter's contrast step is one product over the same sub-batch as there,
    and the blur is ``gaussian_blur_taps`` with the same kernels."""
    with single_thread():
        return _per_crop_pipeline(x, cfg, params)


@contextlib.contextmanager
def single_thread(active: bool = True) -> Iterator[None]:
    """torch's CPU operations on one thread while active (the thread count is restored afterwards)."""
    threads = torch.get_num_threads()
    if active:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if active:
            torch.set_num_threads(threads)


def _per_crop_pipeline(x: torch.Tensor, cfg: AugmentConfig, params: dict[str, torch.Tensor]) -> torch.Tensor:
    n = x.shape[0]
    if n == 0:
        return x.clone()
    scale, flip, factors = params["scale"], params["flip"], params["factors"]
    if cfg.stretch > 0 or bool(flip.any()):
        crops = [stretch_flip(x[i:i + 1], scale[i:i + 1], flip[i:i + 1]) for i in range(n)]
    else:
        crops = [x[i:i + 1].clone() for i in range(n)]
    jitter, order = params["jitter"].nonzero().flatten().tolist(), params["order"].tolist()
    for k in range(len(COLOR_OPS)):                  # ColorJitter's k-th step of every jittered crop
        contrast = [i for i in jitter if order[i][k] == 1]    # their mean luma: one product, as augment_batch's
        means = torch.cat([crops[i].mean(dim=(-2, -1)) for i in contrast]) if contrast else None
        luma = dict(zip(contrast, (means @ x.new_tensor(GRAY_WEIGHTS)).split(1))) if contrast else {}
        for i in jitter:
            j = order[i][k]
            f = factors[i:i + 1, j]
            crops[i] = adjust_contrast(crops[i], f, luma[i]) if j == 1 else COLOR_OPS[j](crops[i], f)
    for i in params["gray"].nonzero().flatten().tolist():
        crops[i] = grayscale(crops[i]).expand(-1, 3, -1, -1)
    blur = params["blur"].nonzero().flatten()
    if len(blur):
        ksize = blur_kernel_size(min(x.shape[-2:]), cfg.blur_kernel)
        kern = gaussian_kernels(params["sigma"][blur], ksize).to(x)
        for r, i in enumerate(blur.tolist()):
            crops[i] = gaussian_blur_taps(crops[i], kern[r], ksize)
    return torch.cat(crops).clamp_(0, 1)


def _where(x: torch.Tensor, mask: torch.Tensor, fn) -> None:
    """``x[i] = fn(sel, x[sel])[...]`` for the crops ``sel`` where ``mask`` (CPU bools) holds, in place."""
    sel = mask.nonzero().flatten()
    if len(sel):
        on = sel.to(x.device)
        x[on] = fn(sel, x[on])


class TwoViews:
    """``TwoViews(cfg)(batch, generator) -> (view1, view2)``: independent augmentations of every crop.

    ``per_crop``: apply the draws crop by crop, the whole call on one CPU thread (``augment_per_crop``),
    or as whole-batch operations (``augment_batch``); None: crop by crop on the CPU, whole-batch on an
    accelerator.  Either way the same views (on the CPU the same bits).
    """

    def __init__(self, cfg: AugmentConfig | None = None, per_crop: bool | None = None):
        self.cfg = cfg or AugmentConfig()
        self.per_crop = per_crop
        _check(self.cfg)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[1] != 3:
            shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise ValueError(f"TwoViews expects a B x 3 x H x W tensor of crops, got {shape}")
        per_crop = batch.device.type == "cpu" if self.per_crop is None else bool(self.per_crop)
        with single_thread(per_crop and batch.device.type == "cpu"):
            b = batch.shape[0]
            x = batch.to(torch.float32) / 255.0
            apply = augment_per_crop if per_crop else augment_batch
            views = apply(torch.cat([x, x]), self.cfg, draw_params(self.cfg, 2 * b, generator)) * 255.0
        return views[:b], views[b:]
