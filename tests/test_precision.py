"""The precision setting: resolution rules, bf16 tracking against fp32, same numbers twice and bitwise resume
under bf16, refusing a resume in another precision, and the fp32 path left as it was.

Native bf16 detection is monkeypatched where a test needs bf16, so every test runs on any CPU (torch emulates
bf16 where the CPU lacks it: slower, same arithmetic).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import pulkit.models.precision as prec
from pulkit.core.config import ConfigError, ModelConfig, load_config
from pulkit.core.results import precisions_used, save_results
from pulkit.data.images import read_rgb
from pulkit.data.sequences import read_otb_sequence
from pulkit.method.loop import load_training_checkpoint, train
from pulkit.models.net import build_net, fuse_bn
from pulkit.tracking.siamfc import SiamFCTracker

CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx512f {extra} avx2\n"


@pytest.fixture
def native(monkeypatch):
    """This CPU reports AMX bf16 and the start-up probe measures bf16 2x faster."""
    monkeypatch.setattr(prec, "cpu_bf16_flags", lambda cpuinfo=None: ("amx_bf16",))
    monkeypatch.setattr(prec, "probe_speedup", lambda device_type="cpu": {"speedup": 2.0})


@pytest.fixture
def not_native(monkeypatch):
    monkeypatch.setattr(prec, "cpu_bf16_flags", lambda cpuinfo=None: ())
    monkeypatch.setattr(prec, "probe_speedup", lambda device_type="cpu": pytest.fail("probed without native bf16"))


# --------------------------------------------------------------------------- resolution
def test_cpu_flags_are_read_from_cpuinfo():
    assert prec.cpu_bf16_flags(CPUINFO.format(extra="amx_bf16 amx_tile avx512_bf16")) == ("amx_bf16", "avx512_bf16")
    assert prec.cpu_bf16_flags(CPUINFO.format(extra="avx512_vnni")) == ()


def test_fp32_is_always_fp32(native):
    assert prec.resolve_precision("fp32", "cpu") == "fp32"


def test_auto_without_native_bf16_is_fp32(not_native):
    assert prec.resolve_precision("auto", "cpu") == "fp32"


def test_auto_with_native_bf16_follows_the_probe(native, monkeypatch):
    assert prec.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(prec, "probe_speedup", lambda device_type="cpu": {"speedup": 1.05})
    assert prec.resolve_precision("auto", "cpu") == "fp32"          # native but not measured faster


def test_forced_bf16_where_unsupported_is_a_clear_error(not_native):
    with pytest.raises(prec.PrecisionError, match=r"'bf16' requested on cpu.*amx_bf16, avx512_bf16.*'auto' or 'fp32'"):
        prec.resolve_precision("bf16", "cpu")
    with pytest.raises(prec.PrecisionError, match="unknown precision 'fp16'; valid: auto, fp32, bf16"):
        prec.resolve_precision("fp16", "cpu")


def test_config_field_and_profiles():
    assert load_config("smoke").precision == "fp32"
    assert load_config("cpu").precision == "auto" and load_config("paper").precision == "auto"
    assert load_config("cpu", precision="bf16").precision == "bf16"
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16, got 'half'"):
        load_config("cpu", precision="half")


def test_resolved_precision_goes_into_results(native, tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path))
    prec.resolve_precision("bf16", "cpu")
    assert "bf16" in precisions_used()["cpu"]
    path = save_results("smoke", "05_sectionB_taylor", {"x": 1}, cfg=load_config("smoke"))
    assert "bf16" in json.loads(path.read_text())["provenance"]["precision"]["cpu"]


def test_probe_leaves_the_global_rng_and_threads_alone():
    torch.manual_seed(3)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    out = prec.probe_speedup.__wrapped__("cpu")
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads
    assert out["speedup"] > 0 and out["fp32_ms"] > 0 and out["bf16_ms"] > 0


# --------------------------------------------------------------------------- tracking
@pytest.fixture(scope="module")
def deer(shared_root):
    seq = read_otb_sequence(shared_root / "otb" / "Deer")
    return [read_rgb(f) for f in seq.frames[:8]], seq.boxes[0]


def _net():
    torch.manual_seed(0)
    return build_net(ModelConfig(exemplar_sz=103, instance_sz=199))


def test_bf16_tracking_agrees_with_fp32(native, deer):
    """Both trackers see the same crops every frame (bf16's state is set to fp32's before each update)."""
    frames, box0 = deer
    net = _net()
    a, b = SiamFCTracker(net, device="cpu"), SiamFCTracker(net, device="cpu", precision="bf16")
    assert (a.precision, b.precision) == ("fp32", "bf16")
    a.init(frames[0], box0)
    b.init(frames[0], box0)
    assert b.kernel.dtype == torch.float32                            # the xcorr runs in fp32
    box_diff, resp_diff = [], []
    for f in frames[1:]:
        b.center, b.size_factor = a.center.copy(), a.size_factor
        box_diff.append(np.abs(b.update(f) - a.update(f)).max())
        resp_diff.append(np.abs(b.last_responses - a.last_responses).max() / np.ptp(a.last_responses))
    assert 0 < max(resp_diff) < 0.02, resp_diff                       # 0: the backbone did not run in bf16
    assert sum(d <= 1.0 for d in box_diff) >= len(box_diff) - 1, box_diff   # px; one peak may flip


def test_bf16_mining_agrees_with_fp32(shared_root):
    """The miner runs phi in bf16 as the tracker does (the xcorr and the response in fp32), and its tracks
    stay within a few px of fp32's; 'auto' is refused (mining takes a resolved precision)."""
    from pulkit.core.config import MiningConfig
    from pulkit.data.sequences import Sequence
    from pulkit.method import mining

    seq = read_otb_sequence(shared_root / "otb" / "Deer")
    seq = Sequence("Deer", seq.frames[:9], boxes=seq.boxes[:9])
    mcfg, model = MiningConfig(scale_num=1, start_stride=4), ModelConfig(exemplar_sz=103, instance_sz=199)
    inf, _, _ = mining._prepare(_net(), mcfg, model, "cpu", "bf16")
    assert any(p.dtype == torch.bfloat16 for p in inf.backbone.parameters())      # phi runs in bf16
    assert all(p.dtype == torch.float32 for p in inf.head.parameters())
    q = {p: mining.mining_quality(_net(), [seq], mcfg, model, ks=(2, 4), device="cpu", progress=False, precision=p)
         for p in ("fp32", "bf16")}
    a, b = (q[p][q[p]["sequence"] == "Deer"].set_index("k") for p in ("fp32", "bf16"))
    assert (a["n"] == b["n"]).all() and a["n"].min() >= 1
    assert (np.abs(a["center_error"] - b["center_error"]) <= 4.0).all(), (a["center_error"], b["center_error"])
    with pytest.raises(ValueError, match="resolved precision"):
        mining.mining_quality(_net(), [seq], mcfg, model, ks=(2,), device="cpu", progress=False, precision="auto")


def test_bf16_weights_compute_what_autocast_computes():
    net = fuse_bn(_net()).to(memory_format=torch.channels_last)
    x = (255 * torch.rand(2, 3, 199, 199)).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        with prec.autocast("bf16", "cpu"):
            want = net.features(x).float()
        got = prec.infer(prec.bf16_weights(net).features, x, "bf16")
    assert got.dtype == torch.float32 and torch.equal(got, want)
    assert net.backbone.conv1[0].weight.dtype == torch.bfloat16 and net.head.bias.dtype == torch.float32


def test_fp32_tracking_is_the_plain_network_call(deer):
    """The fp32 path computes exactly phi and the xcorr of the inference copy, with no precision machinery."""
    frames, box0 = deer
    t = SiamFCTracker(_net(), device="cpu", precision="fp32")
    t.init(frames[0], box0)
    x = t._crops(frames[1], t.init_x_sz * t.scale_factors, t.instance_sz)
    with torch.inference_mode():
        want = t.net.head(t.net.features(t._crops(frames[0], [t.init_z_sz], t.exemplar_sz)), t.net.features(x))
    t.update(frames[1])
    np.testing.assert_array_equal(t.last_responses, want[:, 0].numpy())


# --------------------------------------------------------------------------- training
def _tiny_net(seed: int) -> nn.Module:
    """No pulkit backbone: the whole model is the bf16 region (conv + BatchNorm + dropout + linear)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.3), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 1))


def _tiny_batch(step: int, g: torch.Generator) -> dict:
    return {"x": 255 * torch.rand(4, 3, 16, 16, generator=g), "y": torch.randn(4, 1, generator=g)}


def _train(tmp, precision, steps=6, crash_at=None, init_seed=0):
    model = _tiny_net(init_seed)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step_fn(model, batch, step):
        if step == crash_at:
            raise RuntimeError(f"simulated crash at step {step}")
        return {"loss": ((model(batch["x"]).float() - batch["y"]) ** 2).mean()}

    result = train(model, opt, step_fn, _tiny_batch, steps, checkpoint=tmp / "ckpt.pt", checkpoint_every=2,
                   log=tmp / "log.jsonl", stage="test", cfg=load_config("smoke", precision=precision), device="cpu",
                   progress=False)
    return model, opt, result


def _losses(tmp):
    """(step, loss, grad norm, lr) of every logged step."""
    records = [json.loads(line) for line in (tmp / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in records]


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bf16_training_is_the_same_twice_and_differs_from_fp32(native, tmp_path):
    a, opt, ra = _train(tmp_path / "a", "bf16")
    b, _, _ = _train(tmp_path / "b", "bf16")
    f, _, rf = _train(tmp_path / "f", "fp32")
    assert ra.precision == "bf16" and rf.precision == "fp32"
    assert _same(a, b) and _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert not _same(a, f) and _losses(tmp_path / "a") != _losses(tmp_path / "f")
    assert all(p.dtype == torch.float32 for p in a.parameters())
    assert all(s["momentum_buffer"].dtype == torch.float32 for s in opt.state_dict()["state"].values())
    assert load_training_checkpoint(tmp_path / "a" / "ckpt.pt")["precision"] == "bf16"
    assert not a._forward_pre_hooks and not hasattr(a, prec._MARK)    # nothing left behind


def test_bf16_resume_is_bitwise(native, tmp_path):
    ref, _, _ = _train(tmp_path / "ref", "bf16")
    with pytest.raises(RuntimeError, match="simulated crash at step 3"):
        _train(tmp_path / "cut", "bf16", crash_at=3)
    model, _, result = _train(tmp_path / "cut", "bf16", init_seed=9)
    assert result.resumed_from == 2 and result.precision == "bf16"
    assert _same(ref, model) and _losses(tmp_path / "ref") == _losses(tmp_path / "cut")


def test_resume_in_another_precision_is_refused(native, tmp_path):
    with pytest.raises(RuntimeError):
        _train(tmp_path, "bf16", crash_at=3)
    with pytest.raises(ValueError, match=r"ckpt.pt: checkpoint was trained in bf16, but precision 'fp32' resolves "
                                         r"to fp32 on cpu; resume it with precision 'bf16'"):
        _train(tmp_path, "fp32")
    ckpt = load_training_checkpoint(tmp_path / "ckpt.pt")            # a checkpoint from before the setting
    del ckpt["precision"]
    torch.save(ckpt, tmp_path / "ckpt.pt")
    with pytest.warns(UserWarning, match="records no precision"):
        _train(tmp_path, "bf16")


def _net_batch(step: int, g: torch.Generator) -> dict:
    return {"z": 255 * torch.rand(2, 3, 87, 87, generator=g), "x": 255 * torch.rand(2, 3, 127, 127, generator=g),
            "y": (torch.rand(2, 1, 6, 6, generator=g) > 0.7).float()}


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_training_runs_the_backbone_in_bf16_and_the_rest_in_fp32(native, precision):
    """bf16: the backbone's convs in bf16 on channels_last input, the xcorr head, logits, weights and gradients
    fp32.  fp32: no hook is registered while step_fn runs (today's path)."""
    torch.manual_seed(0)
    net = build_net(ModelConfig(exemplar_sz=87, instance_sz=127))
    conv_out, seen = [], []
    net.backbone.conv1[0].register_forward_hook(
        lambda m, i, o: conv_out.append((o.dtype, i[0].is_contiguous(memory_format=torch.channels_last))))

    def step_fn(model, batch, step):
        seen.append(len(model.backbone._forward_pre_hooks))
        logits = model(batch["z"], batch["x"])
        seen.append(logits.dtype)
        return {"loss": F.binary_cross_entropy_with_logits(logits, batch["y"])}

    result = train(net, torch.optim.SGD(net.parameters(), lr=1e-2), step_fn, _net_batch, 1,
                   cfg=load_config("smoke", precision=precision), device="cpu", progress=False)
    want = (torch.bfloat16, True) if precision == "bf16" else (torch.float32, False)   # bf16: channels_last input
    assert result.precision == precision and conv_out == [want, want]
    assert seen == [1 if precision == "bf16" else 0, torch.float32]
    assert all(p.dtype == p.grad.dtype == torch.float32 for p in net.parameters() if p.grad is not None)


def test_copies_follow_the_region_only_while_it_is_active(native):
    net = _net().eval()
    z, x = 255 * torch.rand(1, 3, 103, 103), 255 * torch.rand(1, 3, 199, 199)
    dtypes = []
    with torch.inference_mode():
        with prec.bf16_backbones(net, "bf16", "cpu") as covered:
            assert covered == [net.backbone]
            copy = fuse_bn(net)                                          # an inference copy made inside
            handle = copy.backbone.conv1[0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
            inside = copy(z, x)
        after = copy(z, x)
    handle.remove()
    assert dtypes == [torch.bfloat16, torch.bfloat16, torch.float32, torch.float32]    # z and x, inside then after
    assert inside.dtype == after.dtype == torch.float32 and not torch.equal(inside, after)
