"""The BD embedding: backbone -> global average pool -> projection MLP -> unit vector.

Used by background discrimination (contrastive learning, METHOD.md section 1) and by the
InfoNCE term of TC learning.  Only the backbone is kept for tracking; the projection head is
saved beside it in the checkpoint.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ProjectionHead(nn.Module):
    """2-layer MLP ``Linear(in_dim, hidden) - BN - ReLU - Linear(hidden, out)``, output l2-normalised."""

    def __init__(self, in_dim: int, hidden: int = 256, out: int = 128):
        super().__init__()
        self.in_dim, self.hidden, self.out = int(in_dim), int(hidden), int(out)
        self.net = nn.Sequential(
            nn.Linear(self.in_dim, self.hidden, bias=False),
            nn.BatchNorm1d(self.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(self.hidden, self.out),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """B x in_dim pooled features -> B x out unit vectors."""
        return F.normalize(self.net(h), dim=1)


class Embedder(nn.Module):
    """``backbone`` (B x 3 x S x S raw 0..255 pixels -> B x C x s x s) -> mean over space -> ``head``."""

    def __init__(self, backbone: nn.Module, head: ProjectionHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def pool(self, img: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled backbone features, B x C."""
        return self.backbone(img).mean(dim=(2, 3))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """B x 3 x S x S images -> B x out l2-normalised embeddings."""
        return self.head(self.pool(img))
