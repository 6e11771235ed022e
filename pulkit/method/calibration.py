"""Head calibration: rescale the cross-correlation head so a fresh stage starts with sane logits.

Used before TC round 1 and supervised runs so training starts outside the NR loss's give-up regime,
without moving the tracker's argmax.  Rationale: docs/modules.md.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch


@torch.no_grad()
def calibrate_head(net, pairs, target_std: float, batch_size: int, seed: int, n_batches: int = 4,
                   device="cpu") -> dict[str, Any]:
    """Rescale ``net.head`` so its logits on ``n_batches`` batches of ``pairs`` have std ``target_std`` (and mean 0
    when it has a bias).  Statistics come from a train-mode copy (BN batch statistics, as in training;
    the net's running statistics are untouched) on batches drawn with a generator seeded by ``seed``.
    Returns the record (scale and bias before and after, the raw logit mean and std)."""
    if not target_std > 0:
        raise ValueError(f"head_calibration must be > 0 (or None: off), got {target_std}")
    probe = copy.deepcopy(net).to(device).train()
    g = torch.Generator().manual_seed(int(seed))
    xc = []
    for _ in range(n_batches):
        b = pairs.sample_batch(batch_size, g)
        xc.append(probe.head.scale ** -1 * (probe(b["z"].to(device), b["x"].to(device)) -
                                             (probe.head.bias if probe.head.bias is not None else 0.0)))
    xc = torch.cat(xc).double()
    mean, std = float(xc.mean()), float(xc.std())
    if not (std > 0 and np.isfinite(std)):
        raise ValueError(f"head calibration: the responses of the pairs have std {std}: cannot rescale")
    old_scale, old_bias = float(net.head.scale), (float(net.head.bias) if net.head.bias is not None else None)
    net.head.scale = float(target_std / std)
    if net.head.bias is not None:
        net.head.bias.fill_(-net.head.scale * mean)
    return {"xcorr_mean": mean, "xcorr_std": std, "logit_mean_before": old_scale * mean + (old_bias or 0.0),
            "logit_std_before": old_scale * std, "head_scale_before": old_scale, "head_bias_before": old_bias,
            "head_scale": float(net.head.scale),
            "head_bias": float(net.head.bias) if net.head.bias is not None else None,
            "target_std": float(target_std), "pairs_seen": n_batches * batch_size}
