"""The Siamese head: cross-correlation of exemplar features with search features.

``response = scale * (phi(z) * phi(x)) + bias`` (logits; ``f = sigmoid(response)``).
SiamFC scales by 0.001 and learns a bias; SiamDW scales by 0.1 without bias.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

HEAD_DEFAULTS: dict[str, dict] = {
    "alexnet": dict(scale=0.001, bias=True),       # SiamFC
    "ciresnet22": dict(scale=0.1, bias=False),     # SiamDW
}


def xcorr(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Batched cross-correlation: ``nz`` exemplar maps against ``nx`` search maps (``nx % nz == 0``).

    Search map ``k`` is correlated with exemplar ``k % nz``: ``nz == nx`` pairs them one to one,
    ``nz == 1`` correlates one template with every search map (the tracker's scale pyramid).
    One grouped conv with the exemplars as weights; ``reshape`` (not ``view``) so channels_last
    inputs work.  Returns nx x 1 x (H - h + 1) x (W - w + 1).
    """
    nz, c, h, w = z.shape
    nx, cx, H, W = x.shape
    if cx != c:
        raise ValueError(f"xcorr: exemplar has {c} channels, search has {cx}")
    if nx % nz:
        raise ValueError(f"xcorr: {nx} search maps cannot be paired with {nz} exemplars (need a multiple)")
    out = F.conv2d(x.reshape(-1, nz * c, H, W), z, groups=nz)
    return out.reshape(nx, 1, out.shape[-2], out.shape[-1])


class XCorr(nn.Module):
    """Cross-correlation head: ``scale * xcorr(z, x) (+ learned scalar bias)``."""

    def __init__(self, scale: float = 0.001, bias: bool = True):
        super().__init__()
        self.scale = float(scale)
        self.bias = nn.Parameter(torch.zeros(1)) if bias else None

    @property
    def has_bias(self) -> bool:
        return self.bias is not None

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = xcorr(z, x) * self.scale
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"scale={self.scale}, bias={self.has_bias}"


def build_head(backbone: str, scale: float | None = None, bias: bool | None = None) -> XCorr:
    """The head for ``backbone`` with its published defaults; explicit ``scale`` / ``bias`` override."""
    if backbone not in HEAD_DEFAULTS:
        raise ValueError(f"unknown backbone {backbone!r}; valid backbones: {', '.join(HEAD_DEFAULTS)}")
    d = HEAD_DEFAULTS[backbone]
    return XCorr(d["scale"] if scale is None else scale, d["bias"] if bias is None else bias)
