"""Learning-rate schedules sized to the step count: warm-up, cosine / constant, SiamFC's exp, rounds as segments."""
from __future__ import annotations

import math

import pytest
import torch

from pulkit.core.config import load_config
from pulkit.method.loop import exp_lr, lr_schedule, warmup_steps


def _lrs(sched_fn, steps):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = sched_fn(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_exp_matches_siamfc_decay():
    a = _lrs(lambda o: lr_schedule(o, "exp", 1e-2, 10, 1e-5), 10)
    b = _lrs(lambda o: exp_lr(o, 1e-2, 1e-5, 10), 10)
    assert a == pytest.approx(b)
    assert a[0] == pytest.approx(1e-2) and a[-1] == pytest.approx(1e-5)


def test_cosine_warms_up_then_decays_to_lr_end():
    lrs = _lrs(lambda o: lr_schedule(o, "cosine", 0.1, 20, 0.0, warmup=4), 20)
    assert lrs[:4] == pytest.approx([0.1 * (i + 1) / 5 for i in range(4)])
    assert lrs[4] == pytest.approx(0.1)
    assert all(x >= y for x, y in zip(lrs[4:], lrs[5:]))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    mid = 4 + (20 - 1 - 4) / 2
    assert lrs[int(mid)] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * (int(mid) - 4) / 15)))


def test_constant_and_rounds_are_segments_of_one_schedule():
    assert _lrs(lambda o: lr_schedule(o, "constant", 0.05, 6, warmup=2), 6)[2:] == pytest.approx([0.05] * 4)
    whole = _lrs(lambda o: lr_schedule(o, "cosine", 0.01, 30, warmup=3), 30)
    parts = sum((_lrs(lambda o, r=r: lr_schedule(o, "cosine", 0.01, 10, warmup=3, offset=10 * r, total=30), 10)
                 for r in range(3)), [])
    assert parts == pytest.approx(whole)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="step"), "unknown learning-rate schedule"),
    (dict(kind="exp", warmup=2), "no warm-up"),
    (dict(kind="exp", lr_end=0.0), "lr_end > 0"),
    (dict(kind="cosine", warmup=10), "warmup < total"),
    (dict(kind="cosine", offset=5), "offset"),
])
def test_schedule_errors(kwargs, match):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    args = dict(kind="cosine", lr=0.1, steps=10, lr_end=1e-5, warmup=0) | kwargs
    with pytest.raises(ValueError, match=match):
        lr_schedule(opt, **args)


def test_short_profiles_do_not_squeeze_siamfc_decay():
    """cpu and smoke warm up and decay over their own step counts; paper keeps SiamFC's schedule."""
    for profile in ("cpu", "smoke"):
        cfg = load_config(profile)
        assert cfg.tc.schedule == cfg.supervised.schedule == "cosine" and not cfg.tc.restart
        assert 0 < cfg.tc.warmup < 0.5 and 0 < cfg.bd.warmup < 0.5 and 0 < cfg.supervised.warmup < 0.5
        steps = cfg.tc.rounds * cfg.tc.steps_per_round
        warm = warmup_steps(cfg.tc.warmup, steps)
        lrs = _lrs(lambda o: lr_schedule(o, "cosine", cfg.tc.lr, steps, cfg.tc.lr_end, warm), steps)
        assert sum(lr >= cfg.tc.lr / 2 for lr in lrs) >= steps // 2 - warm
    paper = load_config("paper")
    assert paper.tc.schedule == paper.supervised.schedule == "exp"


def test_warmup_is_a_fraction_of_the_steps():
    assert warmup_steps(0.1, 120) == 12 and warmup_steps(0.05, 240) == 12 and warmup_steps(0.0, 5) == 0
    assert warmup_steps(0.5, 2) == 1 and warmup_steps(0.9, 1) == 0     # always < total
    with pytest.raises(ValueError, match="fraction"):
        warmup_steps(1.0, 10)
