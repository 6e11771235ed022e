"""Two augmented views of a batch of crops (PUL supplementary F), with torchvision transforms v2.

Each crop of the batch gets its own random draw, in SimCLR's order: SiamFC's random stretch,
horizontal flip, colour distortion (``ColorJitter``, applied with probability ``jitter_p``),
grayscale, Gaussian blur.  Every probability and strength is a field of ``AugmentConfig``.

Input: a B x 3 x H x W batch, uint8 or float with raw 0..255 pixels (the network convention).
Output: two float32 B x 3 x H x W batches of raw 0..255 pixels, on the input's device.

torchvision's random transforms draw from the global torch RNG.  ``TwoViews`` draws one seed
from the ``torch.Generator`` it is given, then runs the transforms inside
``torch.random.fork_rng`` seeded with it: the views are a pure function of the batch and the
generator's state, and the caller's global RNG stream is left exactly as it was.

    views = TwoViews(cfg.augment)
    z1, z2 = views(batch["z"], generator)
"""
from __future__ import annotations

from typing import Any

import torch
import torchvision.transforms.v2 as v2
import torchvision.transforms.v2.functional as F

from ..config import AugmentConfig


class RandomStretch(v2.Transform):
    """SiamFC's random stretch: resize each axis by ``1 + u``, ``u ~ U[-stretch, stretch]`` (independently
    per axis), then cut the centre back to the input size; an axis that shrank is padded on both sides
    with the image's mean colour (the border convention of ``pulkit.data.crops``)."""

    def __init__(self, stretch: float = 0.05):
        super().__init__()
        if not 0 <= stretch < 1:
            raise ValueError(f"stretch must be in [0, 1), got {stretch}")
        self.stretch = float(stretch)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = flat_inputs[0].shape[-2:]
        sy, sx = (1 + (2 * torch.rand(2) - 1) * self.stretch).tolist()
        return {"size": (max(1, round(h * sy)), max(1, round(w * sx))), "out": (h, w)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        img = F.resize(inpt, list(params["size"]), antialias=True)
        return _fit_center(img, *params["out"])


def _fit_center(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The centre ``h`` x ``w`` of ``img`` (... x C x H' x W'), mean-colour padded where it is smaller."""
    ih, iw = img.shape[-2:]
    top, left = max((ih - h) // 2, 0), max((iw - w) // 2, 0)
    img = img[..., top:top + min(ih, h), left:left + min(iw, w)]
    if img.shape[-2:] == (h, w):
        return img
    out = img.mean(dim=(-2, -1), keepdim=True).expand(*img.shape[:-2], h, w).clone()
    ph, pw = (h - img.shape[-2]) // 2, (w - img.shape[-1]) // 2
    out[..., ph:ph + img.shape[-2], pw:pw + img.shape[-1]] = img
    return out


def _check(cfg: AugmentConfig) -> None:
    for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
        p = getattr(cfg, name)
        if not 0 <= p <= 1:
            raise ValueError(f"AugmentConfig.{name} is a probability, got {p}")
    lo, hi = cfg.blur_sigma
    if not 0 < lo <= hi:
        raise ValueError(f"AugmentConfig.blur_sigma must be 0 < min <= max, got {cfg.blur_sigma}")
    if not 0 < cfg.blur_kernel <= 1:
        raise ValueError(f"AugmentConfig.blur_kernel is a fraction of the crop side in (0, 1], got {cfg.blur_kernel}")


def blur_kernel_size(side: int, fraction: float) -> int:
    """An odd Gaussian kernel size of about ``fraction * side`` pixels, at least 3."""
    k = max(3, int(round(fraction * side)))
    return k if k % 2 else k + 1


class TwoViews:
    """``TwoViews(cfg)(batch, generator) -> (view1, view2)``: independent augmentations of every crop."""

    def __init__(self, cfg: AugmentConfig | None = None):
        self.cfg = cfg or AugmentConfig()
        _check(self.cfg)

    def pipeline(self, height: int, width: int) -> v2.Compose:
        """The per-crop transform for float [0, 1] C x H x W images of this size."""
        c = self.cfg
        return v2.Compose([
            RandomStretch(c.stretch),
            v2.RandomHorizontalFlip(c.flip_p),
            v2.RandomApply([v2.ColorJitter(c.brightness, c.contrast, c.saturation, c.hue)], p=c.jitter_p),
            v2.RandomGrayscale(c.grayscale_p),
            v2.RandomApply([v2.GaussianBlur(blur_kernel_size(min(height, width), c.blur_kernel), c.blur_sigma)],
                           p=c.blur_p),
        ])

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[1] != 3:
            shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise ValueError(f"TwoViews expects a B x 3 x H x W tensor of crops, got {shape}")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        images = batch.to(torch.float32) / 255.0
        pipe = self.pipeline(*batch.shape[-2:])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            views = tuple(torch.stack([pipe(img) for img in images]) * 255.0 for _ in range(2))
        return views
