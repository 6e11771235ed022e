"""Losses: balanced BCE (SiamFC), InfoNCE, and the noise-robust (NR) loss."""
from __future__ import annotations

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
