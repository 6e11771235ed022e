"""The fair no-training reference and BatchNorm estimation, and the banks' equivalence to training mode."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from pulkit.core.config import load_config
from pulkit.core.provenance import seed_everything
from pulkit.data.inventory import training_video
from pulkit.method.bd import bd_candidates, build_embedder, embed_crops
from pulkit.method.reference import bn_crops, bn_layers, estimate_bn, estimate_bn_on, random_bn, raw_init
from pulkit.models.net import build_net


def _tiny():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.05), nn.ReLU(),
                         nn.Flatten(), nn.LazyLinear(5), nn.BatchNorm1d(5))


def test_estimate_bn_is_the_average_of_batch_statistics():
    torch.manual_seed(0)
    m = _tiny()
    m(torch.randn(2, 3, 6, 6))                        # materialise the lazy layer
    m.eval()
    batches = [torch.randn(8, 3, 6, 6) * 30 + 100 for _ in range(3)]
    weights = copy.deepcopy(m.state_dict())
    seen = estimate_bn(m, batches)
    assert seen == 24
    conv, bn = m[0], m[1]
    with torch.no_grad():
        feats = [conv(b) for b in batches]
    want_mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    want_var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean, want_mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bn.running_var, want_var, rtol=1e-4, atol=1e-3)
    assert not m.training and bn.momentum == 0.05     # mode and momentum restored
    for k, v in m.state_dict().items():               # only BN statistics changed
        if "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(v, weights[k])


def test_estimate_bn_needs_batches_and_keeps_stats_for_a_single_item():
    m = _tiny()
    m(torch.randn(2, 3, 6, 6))
    with pytest.raises(ValueError, match="no batches"):
        estimate_bn(m, [])
    before = m[1].running_mean.clone()
    assert estimate_bn_on(m, lambda idx: torch.randn(len(idx), 3, 6, 6), 1, 4, 2) == 0
    torch.testing.assert_close(m[1].running_mean, before)


def test_random_bn_has_raw_init_weights_and_estimated_statistics():
    cfg = load_config("smoke", {"model": {"bn_batches": 2, "bn_batch_size": 4}})
    seqs = training_video(cfg)
    raw = raw_init(cfg)
    ref = random_bn(cfg, seqs, device="cpu")
    again = random_bn(cfg, seqs, device="cpu")
    assert not ref.training
    for (k, a), b, c in zip(raw.state_dict().items(), ref.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(b, c)              # a pure function of the seed and the video
        if "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(a, b)          # the same random weights as the raw network
    first = bn_layers(ref.backbone)[0]
    assert float(first.running_mean.abs().max()) > 1.0   # raw pixels: far from the initial mean 0 / var 1
    assert float(first.running_var.max()) > 10.0
    other = random_bn(load_config("smoke", {"seed": 1, "model": {"bn_batches": 2, "bn_batch_size": 4}}), seqs,
                      device="cpu")
    assert not torch.equal(other.backbone.state_dict()[next(iter(other.backbone.state_dict()))],
                           ref.backbone.state_dict()[next(iter(ref.backbone.state_dict()))])


def test_bn_crops_alternate_exemplar_and_search_sizes():
    cfg = load_config("smoke")
    sizes = [b.shape for b in bn_crops(cfg, training_video(cfg), n_batches=2, batch_size=3)]
    m = cfg.model
    assert sizes == [(3, 3, m.exemplar_sz, m.exemplar_sz), (3, 3, m.instance_sz, m.instance_sz)]
    with pytest.raises(ValueError, match="BN estimation"):
        next(bn_crops(cfg, training_video(cfg), n_batches=0))


def _knn(e: torch.Tensor, k: int) -> torch.Tensor:
    s = e @ e.T
    s.fill_diagonal_(-2)
    return s.topk(k, dim=1).indices


def _overlap(a: torch.Tensor, b: torch.Tensor, k: int = 64) -> float:
    na, nb = _knn(a, k), _knn(b, k)
    return float(np.mean([len(set(na[i].tolist()) & set(nb[i].tolist())) / k for i in range(len(a))]))


def test_step0_bank_agrees_with_the_training_mode_function():
    """The bank's 64 nearest neighbours at step 0 are those of the train-mode function (>= 90 %);
    the eval-mode embedding with the initial running statistics (the old bank) is not."""
    cfg = load_config("smoke", {"bd": {"max_candidates": 400, "candidates_per_frame": 3}})
    _, crops = bd_candidates(cfg, training_video(cfg), progress=False)
    seed_everything(cfg.seed)
    net = build_net(cfg.model)
    emb = build_embedder(cfg, net.backbone)
    before = copy.deepcopy(emb.state_dict())
    train_mode = copy.deepcopy(emb).train()
    with torch.no_grad():                              # batch statistics over large batches (<= 512 crops)
        ref = torch.cat([train_mode(crops.batch(np.arange(s, min(s + 512, len(crops)))))
                         for s in range(0, len(crops), 512)])
    bank = embed_crops(emb, crops, batch_size=64, device="cpu", progress=False)
    stale = embed_crops(emb, crops, batch_size=64, device="cpu", progress=False, bn_batches=None)
    assert len(crops) >= 200
    assert _overlap(bank, ref) >= 0.90
    assert _overlap(stale, ref) < 0.90
    for k, v in emb.state_dict().items():             # the model itself is untouched
        torch.testing.assert_close(v, before[k])
