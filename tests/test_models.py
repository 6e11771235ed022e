"""Backbones, head, Net, BN folding and checkpoints (pulkit.models)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pulkit.core.config import ModelConfig, load_config
from pulkit.losses import balanced_bce
from pulkit.models.backbones import AlexNet, CIResNet22, build_backbone
from pulkit.models.heads import XCorr, build_head, xcorr
from pulkit.models.net import (
    CHECKPOINT_FORMAT,
    Net,
    build_net,
    fuse_bn,
    load_checkpoint,
    load_net,
    resolve_device,
    save_checkpoint,
)

BACKBONES = ["alexnet", "ciresnet22"]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def pixels(*shape, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 255


# --------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("name, feats", [("alexnet", (6, 22)), ("ciresnet22", (5, 21))])
def test_feature_and_response_sizes_at_127_255(name, feats):
    net = build_net(ModelConfig(backbone=name)).eval()
    with torch.no_grad():
        fz = net.features(pixels(1, 3, 127, 127))
        fx = net.features(pixels(1, 3, 255, 255))
        r = net.head(fz, fx)
    assert fz.shape == (1, net.backbone.out_channels, feats[0], feats[0])
    assert fx.shape == (1, net.backbone.out_channels, feats[1], feats[1])
    assert r.shape == (1, 1, 17, 17)
    assert net.response_size() == 17 and net.stride == 8


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("z_sz, x_sz", [(103, 207), (135, 263)])
def test_other_valid_sizes_follow_the_arithmetic(name, z_sz, x_sz):
    net = build_net(ModelConfig(backbone=name, exemplar_sz=z_sz, instance_sz=x_sz)).eval()
    with torch.no_grad():
        for s in (z_sz, x_sz):
            assert net.features(pixels(1, 3, s, s)).shape[-1] == net.backbone.output_size(s)
        r = net(pixels(1, 3, z_sz, z_sz), pixels(1, 3, x_sz, x_sz))
    assert r.shape[-1] == r.shape[-2] == net.response_size(z_sz, x_sz)
    # stride 8: 8 more search pixels give one more response cell
    assert net.response_size(z_sz, x_sz + 8) == net.response_size(z_sz, x_sz) + 1


def test_output_size_rejects_too_small_inputs():
    with pytest.raises(ValueError, match="too small"):
        AlexNet().output_size(20)
    with pytest.raises(ValueError, match="too small"):
        CIResNet22().output_size(40)


@pytest.mark.parametrize("name, expected", [("alexnet", 2.34e6), ("ciresnet22", 1.45e6)])
def test_parameter_counts(name, expected):
    n = n_params(build_backbone(name))
    assert abs(n - expected) / expected < 0.02, n


def test_build_backbone_unknown_name():
    with pytest.raises(ValueError, match="valid backbones"):
        build_backbone("resnet50")


# --------------------------------------------------------------------------- head
def test_xcorr_pairs_and_broadcasts_like_a_loop():
    z, x = torch.randn(2, 4, 3, 3), torch.randn(4, 4, 7, 7)
    out = xcorr(z, x)
    assert out.shape == (4, 1, 5, 5)
    for k in range(4):   # search map k goes with exemplar k % nz
        ref = torch.nn.functional.conv2d(x[k:k + 1], z[k % 2:k % 2 + 1])
        torch.testing.assert_close(out[k:k + 1], ref)
    one = xcorr(z[:1], x)
    torch.testing.assert_close(one, torch.nn.functional.conv2d(x, z[:1]))
    with pytest.raises(ValueError, match="multiple"):
        xcorr(torch.randn(3, 4, 3, 3), x)


def test_xcorr_accepts_channels_last():
    z, x = torch.randn(2, 8, 3, 3), torch.randn(2, 8, 9, 9)
    cl = xcorr(z.contiguous(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, xcorr(z, x))


def test_head_defaults_per_backbone_and_overrides():
    assert (build_head("alexnet").scale, build_head("alexnet").has_bias) == (0.001, True)
    assert (build_head("ciresnet22").scale, build_head("ciresnet22").has_bias) == (0.1, False)
    net = build_net(ModelConfig(backbone="alexnet", head_scale=0.5, head_bias=False))
    assert net.arch["head_scale"] == 0.5 and net.arch["head_bias"] is False
    head = XCorr(scale=2.0, bias=True)
    with torch.no_grad():
        head.bias.fill_(3.0)
    z, x = torch.randn(1, 2, 2, 2), torch.randn(1, 2, 4, 4)
    torch.testing.assert_close(head(z, x), 2.0 * xcorr(z, x) + 3.0)


# --------------------------------------------------------------------------- training and inference form
@pytest.mark.parametrize("name", BACKBONES)
def test_one_sgd_step_with_balanced_bce(name):
    torch.manual_seed(0)
    net = build_net(ModelConfig(backbone=name, exemplar_sz=103, instance_sz=175)).train()
    z, x = pixels(2, 3, 103, 103, seed=1), pixels(2, 3, 175, 175, seed=2)
    R = net.response_size()
    i, j = np.mgrid[:R, :R]
    c = (R - 1) / 2
    labels = torch.from_numpy((np.abs(i - c) + np.abs(j - c) <= 2).astype(np.float32)).expand(2, 1, R, R)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.0)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    loss0 = balanced_bce(net(z, x), labels)
    opt.zero_grad()
    loss0.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert len(grads) == len(list(net.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    opt.step()
    changed = [k for k, v in net.named_parameters() if not torch.equal(v, before[k])]
    assert len(changed) == len(before)
    with torch.no_grad():
        loss1 = balanced_bce(net(z, x), labels)
    assert torch.isfinite(loss1) and loss1 < loss0


@pytest.mark.parametrize("name", BACKBONES)
def test_fuse_bn_computes_the_same_function(name):
    net = build_net(ModelConfig(backbone=name)).train()
    with torch.no_grad():   # give BN non-trivial running statistics
        for s in range(2):
            net.features(pixels(2, 3, 103, 103, seed=s))
    net.eval()
    fused = fuse_bn(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())   # original untouched
    z, x = pixels(1, 3, 103, 103, seed=5), pixels(2, 3, 175, 175, seed=6)
    with torch.no_grad():
        ref, out = net(z, x), fused(z, x)
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max() + 1e-5


# --------------------------------------------------------------------------- devices
def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="invalid device"):
        resolve_device("quantum")


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name", BACKBONES)
def test_checkpoint_round_trip_is_exact(tmp_path, name):
    cfg = load_config("smoke", {"model": {"backbone": name}}, seed=3)
    torch.manual_seed(0)
    net = build_net(cfg.model)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train()
    R = net.response_size()
    loss = balanced_bce(net(pixels(2, 3, 103, 103), pixels(2, 3, 207, 207)), torch.zeros(2, 1, R, R))
    loss.backward()
    opt.step()                 # momentum buffers and changed BN statistics in the state
    net.eval()
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    path = save_checkpoint(tmp_path / "ck" / "net.pt", net, cfg, optimizer=opt.state_dict(), step=7,
                           stage="tc", rng=rng)
    ckpt = load_checkpoint(path)
    assert ckpt["format"] == CHECKPOINT_FORMAT
    assert ckpt["arch"] == {"backbone": name, "head_scale": net.head.scale, "head_bias": net.head.has_bias,
                            "exemplar_sz": 103, "instance_sz": 207, "context": 0.5}
    assert ckpt["config"] == cfg.to_dict() and ckpt["provenance"]["seed"] == 3
    assert ckpt["step"] == 7 and ckpt["stage"] == "tc"
    assert torch.equal(ckpt["rng"]["torch"], rng["torch"])
    assert ckpt["optimizer"]["state"].keys() == opt.state_dict()["state"].keys()

    loaded = load_net(path, device="cpu", expect_backbone=name)
    assert loaded.arch == net.arch and not loaded.training
    ref_sd, new_sd = net.state_dict(), loaded.state_dict()
    assert ref_sd.keys() == new_sd.keys()
    assert all(torch.equal(ref_sd[k], new_sd[k]) for k in ref_sd)
    z, x = pixels(1, 3, 103, 103, seed=8), pixels(3, 3, 207, 207, seed=9)
    with torch.no_grad():
        assert torch.equal(net(z, x), loaded(z, x))
    assert load_net(ckpt, device="cpu").arch == net.arch     # from the dict too


def test_checkpoint_without_config(tmp_path):
    net = build_net()
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "a.pt", net))
    assert ckpt["config"] is None and ckpt["provenance"]["seed"] is None and "commit" in ckpt["provenance"]
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "b.pt", net, model={})


def test_wrong_architecture_names_both(tmp_path):
    path = save_checkpoint(tmp_path / "alex.pt", build_net(ModelConfig(backbone="alexnet")))
    with pytest.raises(ValueError, match=r"'alexnet'.*'ciresnet22'") as e:
        load_net(path, expect_backbone="ciresnet22")
    assert "alex.pt" in str(e.value)
    # weights that do not fit the architecture the arch entry names
    ckpt = load_checkpoint(path)
    ckpt["model"] = build_net(ModelConfig(backbone="ciresnet22")).state_dict()
    with pytest.raises(ValueError, match="do not fit the 'alexnet'"):
        load_net(ckpt)


def test_bad_checkpoint_files_are_named(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.pt"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save(build_net().state_dict(), foreign)      # a bare state dict, not a pulkit checkpoint
    with pytest.raises(ValueError, match="foreign.pt.*not a pulkit checkpoint"):
        load_checkpoint(foreign)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(save_checkpoint(tmp_path / "full.pt", build_net()).read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated.pt"):
        load_net(truncated)


def test_net_rejects_invalid_crop_sizes():
    with pytest.raises(ValueError, match="127 \\+ 8k"):
        Net(build_backbone("alexnet"), build_head("alexnet"), exemplar_sz=128)
