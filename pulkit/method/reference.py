"""Fair references and BatchNorm statistics: the no-training baseline every trained model is compared to.

``random_bn`` is the run's seeded random network with BatchNorm statistics estimated by forward passes
in train mode (no gradient) over label-free crops of the unlabeled training video; ``raw_init`` keeps
the initial statistics and is a diagnostic only.  ``estimate_bn`` is shared with the banks.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from pulkit.data.crops import exemplar_crop, search_crop
from pulkit.data.images import read_rgb
from pulkit.data.sequences import unlabeled
from pulkit.method.candidates import sample_candidates
from pulkit.models.net import Net, build_net, resolve_device

RANDOM_BN = "random_bn"
RAW_INIT = "raw_init (diagnostic)"
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def bn_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, _BN)]


@torch.no_grad()
def estimate_bn(module: nn.Module, batches: Iterable, forward: Callable | None = None) -> int:
    """Replace every BatchNorm's running statistics by their average over ``batches``; return the samples seen.

    Each batch is passed through ``forward(module, batch)`` (default ``module(batch)``) in train mode
    without gradient; the running mean / variance become the plain average of the batch statistics
    (``momentum=None``).  Weights, momenta and every module's train/eval mode are left as they were.
    """
    layers = bn_layers(module)
    if not layers:
        return 0
    modes = [(m, m.training) for m in module.modules()]
    momenta = [(bn, bn.momentum) for bn in layers]
    forward = forward or (lambda mod, b: mod(b))
    seen = 0
    try:
        for bn in layers:
            bn.reset_running_stats()
            bn.momentum = None
        module.train()
        for batch in batches:
            forward(module, batch)
            seen += len(batch) if isinstance(batch, torch.Tensor) else len(batch[0])
    finally:
        for bn, mom in momenta:
            bn.momentum = mom
        for m, mode in modes:
            m.training = mode
    if seen == 0:
        raise ValueError("estimate_bn: no batches given (BatchNorm statistics would be the initial ones)")
    return seen


def estimate_bn_on(module: nn.Module, batch_of: Callable[[np.ndarray], torch.Tensor], n: int, batch_size: int,
                   max_batches: int, seed: int = 0, device="cpu") -> int:
    """``estimate_bn`` over up to ``max_batches`` random batches of ``batch_of(indices)`` (indices < ``n``).

    Fewer than 2 items: nothing is estimated (returns 0) and the running statistics stay.
    """
    if n < 2:
        return 0                               # one sample has no batch statistics: keep the running ones
    order = np.random.default_rng(seed).permutation(n)[:max_batches * batch_size]
    chunks = [np.sort(c) for c in np.array_split(order, max(1, -(-len(order) // batch_size)))]
    return estimate_bn(module, (batch_of(c).to(device) for c in chunks if len(c) >= 2))


# --------------------------------------------------------------------------- label-free crops
def bn_crops(cfg, sequences, n_batches: int | None = None, batch_size: int | None = None,
             seed: int | None = None) -> Iterator[torch.Tensor]:
    """Label-free network inputs for BN estimation: float32 B x 3 x S x S raw pixels.

    Boxes are BD candidates (random textured boxes; no label is read) of the unlabeled ``sequences``;
    batches alternate the tracker's two inputs, exemplar crops (``cfg.model.exemplar_sz``) and search
    crops (``instance_sz``) around the same kind of box.
    """
    n_batches = int(cfg.model.bn_batches if n_batches is None else n_batches)
    batch_size = int(cfg.model.bn_batch_size if batch_size is None else batch_size)
    seed = int(cfg.seed if seed is None else seed)
    if n_batches < 1 or batch_size < 2:
        raise ValueError(f"BN estimation needs >= 1 batch of >= 2 crops, got {n_batches} x {batch_size}")
    table = sample_candidates([unlabeled(s) for s in sequences], cfg.bd, seed, progress=False)
    if len(table) == 0:
        raise ValueError("BN estimation: the unlabeled training video gave no candidate boxes")
    rng = np.random.default_rng([seed, 7331])
    m = cfg.model
    for b in range(n_batches):
        rows = table.iloc[rng.integers(0, len(table), batch_size)]
        out = []
        for path, x, y, w, h in rows[["path", "x", "y", "w", "h"]].itertuples(index=False):
            img = read_rgb(path)
            box = np.array([x, y, w, h], dtype=np.float64)
            if b % 2 == 0:
                out.append(exemplar_crop(img, box, m.exemplar_sz, m.context))
            else:
                out.append(search_crop(img, box, m.exemplar_sz, m.instance_sz, m.context)[0])
        yield torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float()


# --------------------------------------------------------------------------- references
def raw_init(cfg, backbone: str | None = None) -> Net:
    """The run's random network at initialisation (the weights BD starts from), eval mode.

    Diagnostic only: its BatchNorm statistics are the initial ones (mean 0, variance 1 on raw pixels).
    """
    model_cfg = dataclasses.replace(cfg.model, backbone=backbone or cfg.model.backbone)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.seed))
        net = build_net(model_cfg)
    return net.eval()


def random_bn(cfg, sequences, backbone: str | None = None, device="auto") -> Net:
    """The fair no-training reference: ``raw_init``'s weights, BN statistics estimated on label-free crops.

    ``cfg.model.bn_batches`` batches of ``cfg.model.bn_batch_size`` crops from ``bn_crops`` over the
    profile's unlabeled training video ``sequences``; returned in eval mode on ``device``.
    """
    dev = resolve_device(device)
    net = raw_init(cfg, backbone).to(dev)
    estimate_bn(net.backbone, (b.to(dev) for b in bn_crops(cfg, sequences)))
    return net.eval()
