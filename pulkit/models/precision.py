"""Numeric precision of tracking and training: ``auto | fp32 | bf16`` resolved per device, and where bf16 runs.

bf16 covers the backbones' forward passes (training: ``torch.autocast``; tracking: bf16 weights of the inference
copy); the cross-correlation head, projections, losses, weights, gradients and optimiser state stay fp32.
Detection rules, measurements and choices: docs/modules.md.
"""
from __future__ import annotations

import functools
import itertools
import statistics
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn

from pulkit.core.config import PRECISIONS
from pulkit.core.results import cpu_model, note_precision
from pulkit.models.backbones import BACKBONES, AlexNet
from pulkit.models.net import fuse_bn, resolve_device

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")   # /proc/cpuinfo flags of CPUs with native bf16 matrix units
PROBE_SHAPE = (2, 3, 159, 159)                  # the start-up timing's batch (folded channels_last AlexNet)
PROBE_REPEATS = 5                               # interleaved fp32 / bf16 passes after one warm-up each
PROBE_THREADS = 1                               # CPU threads while probing (stable under other jobs' load)
AUTO_MIN_SPEEDUP = 1.2                          # auto picks bf16 on a CPU only when the probe is this much faster

_BACKBONE_TYPES = tuple(BACKBONES.values())


class PrecisionError(ValueError):
    """An unknown precision, or bf16 requested on a device that has no native bf16."""


# --------------------------------------------------------------------------- detection
def cpu_bf16_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The native-bf16 flags (``BF16_CPU_FLAGS``) this CPU reports in ``/proc/cpuinfo`` (``cpuinfo``: its text).

    Without ``/proc/cpuinfo`` (macOS, Windows) the answer comes from torch's CPU capability string: native
    only when it names AMX or BF16.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            capability = str(torch.backends.cpu.get_cpu_capability()).upper()
            return tuple(f for f in ("AMX", "BF16") if f in capability)
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return tuple(f for f in BF16_CPU_FLAGS if f in flags)


def native_bf16(device: str | torch.device) -> tuple[bool, str]:
    """(does ``device`` run bf16 natively, why): CPU flags, ``torch.cuda.is_bf16_supported()`` on CUDA."""
    dev = resolve_device(device)
    if dev.type == "cpu":
        flags = cpu_bf16_flags()
        if flags:
            return True, f"CPU flags {' '.join(flags)}"
        return False, f"this CPU ({cpu_model()}) reports none of {', '.join(BF16_CPU_FLAGS)}"
    if dev.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, f"{torch.cuda.get_device_name(dev)} supports bf16"
        return False, f"{torch.cuda.get_device_name(dev)} does not support bf16"
    return False, f"pulkit runs bf16 on CPU and CUDA only, not on {dev.type}"


@functools.lru_cache(maxsize=None)
def probe_speedup(device_type: str = "cpu") -> dict[str, float]:
    """fp32 / bf16 time of a folded channels_last AlexNet on ``PROBE_SHAPE``, measured once per process.

    Passes alternate (fp32, bf16, bf16, fp32, ...) so both see the same background load, on
    ``PROBE_THREADS`` CPU threads (restored afterwards); ``speedup`` is the median of the paired ratios.  The
    global RNG is left as it was (the probe draws from its own).
    """
    dev = torch.device(device_type)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = fuse_bn(AlexNet()).to(dev, memory_format=torch.channels_last)
        x = (255 * torch.rand(PROBE_SHAPE)).to(dev).contiguous(memory_format=torch.channels_last)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    threads = torch.get_num_threads()
    torch.set_num_threads(PROBE_THREADS)
    try:
        with torch.inference_mode():
            for i in range(PROBE_REPEATS + 1):
                for name in (("fp32", "bf16") if i % 2 else ("bf16", "fp32")):
                    _sync(dev)
                    t0 = time.perf_counter()
                    with autocast(name, dev):
                        net(x)
                    _sync(dev)
                    if i:                               # the first pass of each is a warm-up
                        times[name].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    ratios = [f / b for f, b in zip(times["fp32"], times["bf16"])]
    return {"fp32_ms": 1e3 * statistics.median(times["fp32"]), "bf16_ms": 1e3 * statistics.median(times["bf16"]),
            "speedup": statistics.median(ratios)}


# --------------------------------------------------------------------------- resolution
def check_precision(precision: str) -> str:
    """``precision`` when it is one of ``PRECISIONS``, else a ``PrecisionError`` naming the valid ones."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str, device: str | torch.device = "auto") -> str:
    """The precision actually used for ``precision`` (``auto | fp32 | bf16``) on ``device``: ``fp32`` or ``bf16``.

    ``fp32`` is always fp32.  ``bf16`` needs native bf16 (``native_bf16``), else a ``PrecisionError`` naming the
    device and what it lacks.  ``auto``: bf16 on CUDA when supported; on a CPU when it has native bf16 *and*
    the start-up probe (``probe_speedup``) measures it at least ``AUTO_MIN_SPEEDUP`` x faster; else fp32.
    The result is noted for ``pulkit.core.results`` (results' provenance, timings' machine record).
    """
    check_precision(precision)
    dev = resolve_device(device)
    used = "fp32"
    if precision != "fp32":
        native, why = native_bf16(dev)
        if precision == "bf16" and not native:
            raise PrecisionError(f"precision 'bf16' requested on {dev.type}, which has no native bf16 ({why}); "
                                 "use precision 'auto' or 'fp32'")
        if precision == "bf16" or (native and (dev.type == "cuda"
                                               or probe_speedup(dev.type)["speedup"] >= AUTO_MIN_SPEEDUP)):
            used = "bf16"
    note_precision(dev.type, used)
    return used


# --------------------------------------------------------------------------- running under a precision
def autocast(precision: str, device: str | torch.device):
    """A context manager running ``torch.autocast`` in bf16 when ``precision`` (resolved) is ``bf16``, else nothing."""
    if check_precision(precision) == "auto":
        raise PrecisionError("autocast takes a resolved precision (fp32 or bf16); call resolve_precision first")
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(resolve_device(device).type, dtype=torch.bfloat16)


def bf16_weights(module: nn.Module) -> nn.Module:
    """``module`` (an inference copy, changed in place) with every conv and linear layer's weights in bf16.

    Fed a bf16 input, it computes what bf16 autocast computes (BatchNorm keeps fp32 parameters, as under
    autocast) without casting the weights on every call.  Use with ``infer``.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.to(torch.bfloat16)
    return module


def infer(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, precision: str) -> torch.Tensor:
    """``fn(x)`` of a module prepared for ``precision`` (resolved; bf16: ``bf16_weights``), returned as float32:
    bf16 feeds ``x`` in bf16; fp32 is exactly ``fn(x)``."""
    if precision == "fp32":
        return fn(x)
    return fn(x.to(torch.bfloat16)).float()


class _Regions(threading.local):
    active: frozenset = frozenset()
    stack: list | None = None


_REGIONS = _Regions()
_MARK = "_pulkit_bf16_region"           # a backbone's region token (an int: deep copies keep it)
_TOKENS = itertools.count(1)


@contextmanager
def bf16_backbones(model: nn.Module, precision: str, device: str | torch.device) -> Iterator[list[nn.Module]]:
    """While active, every pulkit backbone inside ``model`` (the model itself when it holds none) runs its forward
    under bf16 autocast on channels_last input and returns float32, when ``precision`` (resolved) is ``bf16``;
    fp32: nothing changes.

    Everything outside the backbones (the xcorr head, projections, losses) stays fp32.  Copies of the model
    made while the context is active (an inference copy, say) follow it; after it, they are plain again.
    Yields the modules covered.
    """
    if check_precision(precision) == "auto":
        raise PrecisionError("bf16_backbones takes a resolved precision (fp32 or bf16); call resolve_precision first")
    if precision == "fp32":
        yield []
        return
    dev_type = resolve_device(device).type
    mods = [m for m in model.modules() if isinstance(m, _BACKBONE_TYPES)] or [model]
    token = next(_TOKENS)

    def enter(module, args):
        if getattr(module, _MARK, None) in _REGIONS.active:
            ctx = torch.autocast(dev_type, dtype=torch.bfloat16)
            ctx.__enter__()
            _REGIONS.stack.append(ctx)
            return tuple(a.contiguous(memory_format=torch.channels_last)
                         if isinstance(a, torch.Tensor) and a.dim() == 4 else a for a in args)
        return None

    def leave(module, args, out):
        if getattr(module, _MARK, None) in _REGIONS.active:
            _REGIONS.stack.pop().__exit__(None, None, None)
            return out.float() if isinstance(out, torch.Tensor) else out
        return None

    handles, before = [], [getattr(m, _MARK, None) for m in mods]
    for m in mods:
        setattr(m, _MARK, token)
        handles += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave, always_call=True)]
    if _REGIONS.stack is None:
        _REGIONS.stack = []
    _REGIONS.active = _REGIONS.active | {token}
    try:
        yield mods
    finally:
        _REGIONS.active = _REGIONS.active - {token}
        for h in handles:
            h.remove()
        for m, prev in zip(mods, before):
            if prev is None:
                delattr(m, _MARK)
            else:
                setattr(m, _MARK, prev)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
