"""The shared training loop: bitwise resume (in-process and after SIGKILL), non-finite guard,
completion marker, schedules, and 2-process DDP with gloo.

The helpers at the top are also imported by child processes (by file path), so the killed
run and the DDP ranks train exactly the model the in-process runs train.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from pulkit.core import paths
from pulkit.method.loop import (
    NonFiniteLossError,
    cosine_lr,
    exp_lr,
    is_complete,
    load_training_checkpoint,
    shard_batch,
    step_generator,
    train,
    unwrap,
)

STEPS = 12


# --------------------------------------------------------------------------- helpers (shared with children)
def tiny_net(seed: int, bn: bool = True) -> nn.Module:
    """Conv (+ BatchNorm) + dropout + linear: running stats and dropout RNG must survive a resume."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 4, 3)] + ([nn.BatchNorm2d(4)] if bn else []) + [nn.ReLU()]
    if bn:
        layers.append(nn.Dropout(0.3))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))


def batch_fn(step: int, g: torch.Generator) -> dict:
    return {"x": torch.randn(4, 3, 8, 8, generator=g), "y": torch.randn(4, 1, generator=g)}


class Counter:
    """Stand-in for stage state outside the model (an embedding bank): it changes the loss."""

    def __init__(self):
        self.n = torch.zeros(())

    def state_dict(self):
        return {"n": self.n.clone()}

    def load_state_dict(self, d):
        self.n = d["n"].clone()


def make_step_fn(counter: Counter | None = None, crash_at: int | None = None, nan_at: int | None = None,
                 nan_grad_at: int | None = None, sleep: float = 0.0):
    def step_fn(model, batch, step):
        if step == crash_at:
            raise RuntimeError(f"simulated crash at step {step}")
        time.sleep(sleep)
        scale = 1.0
        if counter is not None:
            counter.n += 1
            scale = 1.0 + 0.01 * float(counter.n)
        loss = ((model(batch["x"]) - scale * batch["y"]) ** 2).mean()
        if step == nan_at:
            loss = loss * float("nan")
        if step == nan_grad_at:                      # finite loss, NaN gradient (0 * d sqrt(-1))
            w = unwrap(model)[0].weight
            loss = torch.where(torch.tensor(True), loss, torch.sqrt(-(w ** 2).sum() - 1))
        return {"loss": loss, "scale": scale}
    return step_fn


def run(tmp: Path, init_seed: int = 0, steps: int = STEPS, resume: bool = True, counter: Counter | None = None,
        **kw):
    """One training run of the tiny net; returns (model, optimizer, result)."""
    step_opts = {k: kw.pop(k) for k in ("crash_at", "nan_at", "nan_grad_at", "sleep") if k in kw}
    model = tiny_net(init_seed, bn=kw.pop("bn", True))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = exp_lr(opt, 0.1, 1e-3, steps)
    counter = counter if counter is not None else Counter()
    result = train(model, opt, make_step_fn(counter, **step_opts), kw.pop("batch_fn", batch_fn), steps,
                   scheduler=sched, checkpoint=tmp / "ckpt.pt", checkpoint_every=kw.pop("checkpoint_every", 4),
                   resume=resume, log=tmp / "log.jsonl", stage="test", seed=7, device="cpu", progress=False,
                   extra_state={"counter": counter}, **kw)
    return model, opt, result


def child_main(argv: list[str]) -> None:
    """Entry of the killed child: a slow run that checkpoints every 3 steps."""
    run(Path(argv[0]), sleep=float(argv[1]), checkpoint_every=3)


def ddp_child(out: str) -> None:
    """One rank of the torchrun job: DDP on CPU (gloo), global batch 4 sharded 2 + 2."""
    model, _, result = run(Path(out), bn=False, steps=5, checkpoint_every=2)
    rank = int(os.environ["RANK"])
    torch.save(unwrap(model).state_dict(), Path(out) / f"rank{rank}.pt")


def load_this_module():
    spec = importlib.util.spec_from_file_location("loop_test_helpers", __file__)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def assert_same_weights(a: nn.Module | dict, b: nn.Module | dict) -> None:
    sa = a.state_dict() if isinstance(a, nn.Module) else a
    sb = b.state_dict() if isinstance(b, nn.Module) else b
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


def log_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(paths.project_root()), env.get("PYTHONPATH", "")])
    return env


# --------------------------------------------------------------------------- tests
def test_uninterrupted_run_writes_complete_checkpoint_and_log(tmp_path):
    model, _, result = run(tmp_path)
    assert result.complete and result.step == STEPS and result.resumed_from is None
    assert is_complete(tmp_path / "ckpt.pt")
    ckpt = load_training_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt["stage"] == "test" and ckpt["step"] == STEPS and ckpt["provenance"]["seed"] == 7
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python", "cuda", "batch_seed"}
    assert_same_weights(model.state_dict(), ckpt["model"])
    records = log_records(tmp_path / "log.jsonl")
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert set(records[0]) == {"step", "loss", "grad_norm", "lr", "pairs_per_s", "elapsed", "scale"}
    assert records[0]["lr"] == pytest.approx(0.1) and records[-1]["lr"] == pytest.approx(1e-3)
    assert not list(tmp_path.glob(".*.tmp")), "a temporary checkpoint file was left behind"


def test_resume_after_in_process_crash_is_bitwise(tmp_path):
    ref_model, ref_opt, _ = run(tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash at step 7"):
        run(tmp_path / "cut", crash_at=7)
    ckpt = load_training_checkpoint(tmp_path / "cut" / "ckpt.pt")
    assert ckpt["step"] == 4 and not ckpt["complete"] and not is_complete(tmp_path / "cut" / "ckpt.pt")
    # A fresh process would build a differently initialised net: the checkpoint must override it.
    model, opt, result = run(tmp_path / "cut", init_seed=123)
    assert result.resumed_from == 4 and result.complete
    assert_same_weights(ref_model, model)
    assert torch.equal(ref_opt.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"])
    ref_log, log = log_records(tmp_path / "ref" / "log.jsonl"), log_records(tmp_path / "cut" / "log.jsonl")
    assert [(r["step"], r["loss"], r["lr"], r["scale"]) for r in log] == \
           [(r["step"], r["loss"], r["lr"], r["scale"]) for r in ref_log]


def test_resume_without_extra_state_would_differ(tmp_path):
    """Guards the test above: the counter (state outside the model) does change the result."""
    ref_model, _, _ = run(tmp_path / "ref")
    with pytest.raises(RuntimeError):
        run(tmp_path / "cut", crash_at=7)
    ckpt_path = tmp_path / "cut" / "ckpt.pt"
    ckpt = load_training_checkpoint(ckpt_path)
    ckpt["extra"]["counter"]["n"] = torch.zeros(())
    torch.save(ckpt, ckpt_path)
    model, _, _ = run(tmp_path / "cut")
    assert not torch.equal(ref_model[-1].weight, model[-1].weight)


def test_resume_after_sigkill_is_bitwise(tmp_path):
    ref_model, _, _ = run(tmp_path / "ref")
    cut = tmp_path / "cut"
    cut.mkdir()
    code = (f"import importlib.util, sys; spec = importlib.util.spec_from_file_location('h', {str(__file__)!r}); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); m.child_main(sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", code, str(cut), "0.3"], env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (cut / "ckpt.pt").exists():
            assert proc.poll() is None, f"child exited early: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "child wrote no checkpoint within 60 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    ckpt = load_training_checkpoint(cut / "ckpt.pt")
    assert 0 < ckpt["step"] < STEPS and not ckpt["complete"], "the child was not killed mid-run"
    model, _, result = run(cut, init_seed=99)
    assert result.resumed_from == ckpt["step"]
    assert_same_weights(ref_model, model)
    assert [r["step"] for r in log_records(cut / "log.jsonl")] == list(range(1, STEPS + 1))


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError, match="at step 9") as err:
        run(tmp_path, nan_at=9)
    assert err.value.step == 9 and err.value.checkpoint == tmp_path / "ckpt.pt"
    before = (tmp_path / "ckpt.pt").read_bytes()
    ckpt = load_training_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt["step"] == 8 and not ckpt["complete"]
    assert [r["step"] for r in log_records(tmp_path / "log.jsonl")] == list(range(1, 10))
    assert all(math.isfinite(r["loss"]) for r in log_records(tmp_path / "log.jsonl"))
    with pytest.raises(NonFiniteLossError):
        run(tmp_path, nan_at=9)     # resuming meets the same bad step again, and still writes nothing
    assert (tmp_path / "ckpt.pt").read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_non_finite_gradient_stops_before_the_update(tmp_path):
    with pytest.raises(NonFiniteLossError, match="non-finite gradient .* at step 5") as err:
        run(tmp_path, nan_grad_at=5)
    assert err.value.step == 5 and math.isfinite(err.value.loss)
    assert load_training_checkpoint(tmp_path / "ckpt.pt")["step"] == 4


def test_complete_checkpoint_loads_weights_without_training(tmp_path):
    ref_model, _, _ = run(tmp_path)
    model, _, result = run(tmp_path, init_seed=5, crash_at=0)   # would crash if any step ran
    assert result.complete and result.resumed_from == STEPS
    assert_same_weights(ref_model, model)


def test_resume_false_starts_afresh(tmp_path):
    with pytest.raises(RuntimeError):
        run(tmp_path / "a", crash_at=7)
    _, _, result = run(tmp_path / "a", resume=False)
    assert result.resumed_from is None
    ref_model, _, _ = run(tmp_path / "b")
    assert_same_weights(ref_model.state_dict(), load_training_checkpoint(tmp_path / "a" / "ckpt.pt")["model"])


def test_is_complete_and_bad_checkpoints(tmp_path):
    assert not is_complete(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        is_complete(tmp_path / "junk.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt.*format"):
        is_complete(tmp_path / "other.pt")


def test_checkpoint_of_another_stage_is_refused(tmp_path):
    run(tmp_path)
    model = tiny_net(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="stage 'test', not 'other'"):
        train(model, opt, make_step_fn(), batch_fn, STEPS, checkpoint=tmp_path / "ckpt.pt", stage="other",
              progress=False, device="cpu")


def test_step_fn_output_is_checked(tmp_path):
    model = tiny_net(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="'loss'"):
        train(model, opt, lambda m, b, s: {"l": 0}, batch_fn, 2, progress=False, device="cpu")
    with pytest.raises(ValueError, match="clash"):
        train(model, opt, lambda m, b, s: {"loss": m(b["x"]).mean(), "lr": 1.0}, batch_fn, 2, progress=False,
              device="cpu")


def test_schedules():
    p = [nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(p, lr=1.0)
    sched, lrs = exp_lr(opt, 1e-2, 1e-5, 10), []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-5)
    assert all(b / a == pytest.approx(lrs[1] / lrs[0]) for a, b in zip(lrs, lrs[1:]))
    opt = torch.optim.SGD(p, lr=1.0)
    sched, lrs = cosine_lr(opt, 0.05, 11, warmup=1), []
    for _ in range(11):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.025) and lrs[1] == pytest.approx(0.05) and lrs[-1] == pytest.approx(0.0)
    assert all(b <= a for a, b in zip(lrs[1:], lrs[2:]))
    with pytest.raises(ValueError):
        exp_lr(opt, 0.0, 1e-5, 10)


def test_step_generator_and_sharding():
    a = torch.randn(3, generator=step_generator(1, 5))
    assert torch.equal(a, torch.randn(3, generator=step_generator(1, 5)))
    assert not torch.equal(a, torch.randn(3, generator=step_generator(1, 6)))
    assert not torch.equal(a, torch.randn(3, generator=step_generator(2, 5)))
    batch = {"z": torch.arange(8).reshape(4, 2), "meta": "keep", "pair": (torch.arange(4),)}
    part = shard_batch(batch, 1, 2)
    assert part["z"].tolist() == [[4, 5], [6, 7]] and part["meta"] == "keep" and part["pair"][0].tolist() == [2, 3]
    with pytest.raises(ValueError, match="divide"):
        shard_batch({"z": torch.zeros(3)}, 0, 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_gloo(tmp_path):
    script = tmp_path / "ddp_job.py"
    script.write_text(textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("h", {str(__file__)!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        m.ddp_child(sys.argv[1])
    """))
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script), str(out)]
    env = {**child_env(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0, w1 = torch.load(out / "rank0.pt", map_location="cpu"), torch.load(out / "rank1.pt", map_location="cpu")
    assert_same_weights(w0, w1)
    # DDP over two shards of 2 = one process over the full batch of 4 (to float rounding).
    single, _, _ = run(tmp_path / "single", bn=False, steps=5, checkpoint_every=2)
    for k, v in single.state_dict().items():
        torch.testing.assert_close(w0[k], v, rtol=1e-5, atol=1e-6)
    assert not torch.equal(w0["0.weight"], tiny_net(0, bn=False).state_dict()["0.weight"])
    assert [r["step"] for r in log_records(out / "log.jsonl")] == [1, 2, 3, 4, 5], "only rank 0 may log"
    assert is_complete(out / "ckpt.pt")


def test_net_checkpoint_is_the_project_format(tmp_path):
    """A ``Net`` trained by the loop comes back through ``load_net`` (one checkpoint format)."""
    from pulkit.core.config import load_config
    from pulkit.models.net import build_net, load_net

    cfg = load_config("smoke")
    torch.manual_seed(0)
    net = build_net(cfg.model)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)

    def pair_batch(step, g):
        return {"z": 255 * torch.rand(2, 3, cfg.model.exemplar_sz, cfg.model.exemplar_sz, generator=g),
                "x": 255 * torch.rand(2, 3, cfg.model.instance_sz, cfg.model.instance_sz, generator=g)}

    train(net, opt, lambda m, b, s: {"loss": m(b["z"], b["x"]).pow(2).mean()}, pair_batch, 1,
          checkpoint=tmp_path / "net.pt", stage="supervised", cfg=cfg, progress=False, device="cpu")
    ckpt = load_training_checkpoint(tmp_path / "net.pt")
    assert ckpt["arch"]["backbone"] == cfg.model.backbone and ckpt["config"] == cfg.to_dict()
    assert ckpt["provenance"]["profile"] == "smoke" and ckpt["complete"]
    assert_same_weights(net.state_dict(), load_net(tmp_path / "net.pt", device="cpu").state_dict())
    with pytest.raises(TypeError, match="whole pulkit Config"):
        train(net, opt, lambda m, b, s: {}, pair_batch, 1, cfg=cfg.model, progress=False, device="cpu")


def test_config_diff_names_the_changed_keys():
    from pulkit.core.config import load_config
    from pulkit.method.loop import config_diff

    a = load_config("smoke").to_dict()
    b = load_config("smoke", {"bd.steps": 99, "seed": 3}).to_dict()
    assert config_diff(a, b) == ["bd.steps", "seed"]
    assert config_diff(a, a) == []
