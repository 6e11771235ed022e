"""The training loop every stage shares (BD, TC, supervised): checkpoints, resume, logs, DDP.

A stage supplies ``batch_fn`` and ``step_fn``; the loop optimises and writes atomic, resumable
checkpoints and the JSONL log.  The contract, an example and DDP: docs/modules.md.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from pulkit.core import artifacts
from pulkit.core.io import atomic_write_bytes, torch_save_atomic
from pulkit.core.provenance import provenance, seed_everything
from pulkit.models.net import CHECKPOINT_FORMAT, Net, load_checkpoint, resolve_device, save_checkpoint
from pulkit.models.precision import bf16_backbones, resolve_precision

StepFn = Callable[[nn.Module, Any, int], Mapping[str, Any]]
BatchFn = Callable[[int, torch.Generator], Any]

_LOG_KEYS = ("step", "loss", "grad_norm", "lr", "pairs_per_s", "elapsed")


class NonFiniteLossError(FloatingPointError):
    """The loss (or its gradient) became NaN or infinite; nothing of that step was applied or written."""

    def __init__(self, step: int, loss: float, checkpoint: Path | None, what: str = "loss"):
        self.step, self.loss, self.checkpoint = step, loss, checkpoint
        kept = f"; the last good checkpoint {checkpoint} is untouched" if checkpoint else ""
        detail = f"non-finite loss {loss}" if what == "loss" else f"non-finite {what} (loss {loss})"
        super().__init__(f"{detail} at step {step} (0-based){kept}")


@dataclass
class TrainResult:
    """What ``train`` returns: the number of completed steps and the last logged values."""
    step: int
    complete: bool
    checkpoint: Path | None
    resumed_from: int | None            # the checkpoint step a resumed run started from, else None
    last: dict[str, float] = field(default_factory=dict)
    precision: str = "fp32"             # the precision the steps ran in (resolved: fp32 | bf16)


# --------------------------------------------------------------------------- schedules
def exp_lr(optimizer: torch.optim.Optimizer, lr: float, lr_end: float, steps: int):
    """SiamFC's exponential decay, per step: ``lr * (lr_end / lr) ** (step / (steps - 1))``.

    Sets every parameter group's learning rate to ``lr``; the last of ``steps`` steps runs at ``lr_end``.
    """
    if lr <= 0 or lr_end <= 0 or steps < 1:
        raise ValueError(f"exp_lr needs lr > 0, lr_end > 0, steps >= 1; got {lr}, {lr_end}, {steps}")
    _set_lr(optimizer, lr)
    ratio, span = lr_end / lr, max(steps - 1, 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: ratio ** (min(s, span) / span))


def cosine_lr(optimizer: torch.optim.Optimizer, lr: float, steps: int, lr_end: float = 0.0, warmup: int = 0):
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``lr`` to ``lr_end`` at the last step."""
    if lr <= 0 or lr_end < 0 or steps < 1 or not 0 <= warmup < steps:
        raise ValueError(f"cosine_lr needs lr > 0, lr_end >= 0, 0 <= warmup < steps; got {lr}, {lr_end}, {warmup}, {steps}")
    _set_lr(optimizer, lr)
    span = max(steps - 1 - warmup, 1)

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / (warmup + 1)
        t = min(s - warmup, span) / span
        return (lr_end + (lr - lr_end) * 0.5 * (1 + math.cos(math.pi * t))) / lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


SCHEDULES = ("exp", "cosine", "constant")


def warmup_steps(fraction: float, total: int) -> int:
    """Warm-up steps for a warm-up ``fraction`` (0 <= f < 1) of a ``total``-step schedule (rounded)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"warm-up is a fraction of the steps, 0 <= warmup < 1; got {fraction}")
    return min(int(round(fraction * total)), max(total - 1, 0))


def lr_schedule(optimizer: torch.optim.Optimizer, kind: str, lr: float, steps: int, lr_end: float = 0.0,
                warmup: int = 0, offset: int = 0, total: int | None = None):
    """The learning-rate schedule of a run of ``steps`` steps, as steps ``offset..offset+steps-1`` of one
    schedule over ``total`` steps (default: ``steps``; a TC round within one schedule over all rounds).

    ``exp``: SiamFC's exponential decay from ``lr`` to ``lr_end`` (no warm-up); ``cosine``: linear warm-up
    over ``warmup`` steps, then cosine decay to ``lr_end``; ``constant``: warm-up, then ``lr``.
    """
    total = int(steps if total is None else total)
    if kind not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {kind!r}; valid: {', '.join(SCHEDULES)}")
    if lr <= 0 or lr_end < 0 or steps < 1 or offset < 0 or offset + steps > total or not 0 <= warmup < total:
        raise ValueError(f"lr_schedule needs lr > 0, lr_end >= 0, steps >= 1, 0 <= warmup < total, "
                         f"offset + steps <= total; got lr {lr}, lr_end {lr_end}, steps {steps}, warmup {warmup}, "
                         f"offset {offset}, total {total}")
    if kind == "exp":
        if warmup:
            raise ValueError("the exp schedule (SiamFC) has no warm-up: set warmup = 0 or use cosine")
        if lr_end <= 0:
            raise ValueError("the exp schedule needs lr_end > 0")
        ratio, span = lr_end / lr, max(total - 1, 1)
        factor = lambda t: ratio ** (min(t, span) / span)  # noqa: E731
    else:
        span = max(total - 1 - warmup, 1)

        def factor(t: int) -> float:
            if t < warmup:
                return (t + 1) / (warmup + 1)
            if kind == "constant":
                return 1.0
            u = min(t - warmup, span) / span
            return (lr_end + (lr - lr_end) * 0.5 * (1 + math.cos(math.pi * u))) / lr
    _set_lr(optimizer, lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: factor(s + offset))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
        group.pop("initial_lr", None)


# --------------------------------------------------------------------------- data order
def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator ``batch_fn`` receives at ``step``: seeded from ``(seed, step)`` alone."""
    words = np.random.SeedSequence([int(seed) % 2**63, int(step)]).generate_state(2, np.uint32)
    g = torch.Generator()
    g.manual_seed((int(words[0]) << 31) ^ int(words[1]))
    return g


# --------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistInfo:
    """This process's place in a ``torchrun`` job (rank 0 of 1 outside one)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "DistInfo":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def shard_batch(batch: Any, rank: int, world_size: int) -> Any:
    """Rank ``rank``'s contiguous share of every tensor / array in ``batch`` (split on dim 0).

    Dicts, lists and tuples are walked; other values pass through.  Every batched leading
    dimension must divide by ``world_size`` so each rank's mean loss weighs alike.
    """
    if world_size == 1:
        return batch
    if isinstance(batch, Mapping):
        return {k: shard_batch(v, rank, world_size) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(shard_batch(v, rank, world_size) for v in batch)
    if isinstance(batch, (torch.Tensor, np.ndarray)) and batch.ndim >= 1:
        n = batch.shape[0]
        if n % world_size:
            raise ValueError(f"batch dimension {n} does not divide by the world size {world_size}")
        per = n // world_size
        return batch[rank * per:(rank + 1) * per]
    return batch


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside a ``DistributedDataParallel`` wrapper (or the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _batch_len(batch: Any) -> int:
    """Leading dimension of the first tensor / array found in ``batch`` (0 if none)."""
    if isinstance(batch, (torch.Tensor, np.ndarray)):
        return int(batch.shape[0]) if batch.ndim else 0
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for v in values:
        n = _batch_len(v)
        if n:
            return n
    return 0


def _resolve_device(device: str | torch.device, dinfo: DistInfo) -> torch.device:
    """``resolve_device``, with a bare ``cuda`` meaning this rank's ``cuda:LOCAL_RANK``."""
    device = resolve_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", dinfo.local_rank)
    return device


# --------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """Every global RNG as tensors and plain Python (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------- checkpoints
def save_training_checkpoint(path: str | os.PathLike, model: nn.Module, cfg: Any = None, **state: Any) -> Path:
    """Write one checkpoint in the project's single format, atomically.

    A ``Net`` goes through ``pulkit.models.net.save_checkpoint`` (which adds its ``arch``); any
    other module (a BD embedder, a test's toy net) gets the same dict with ``arch: None``.
    """
    if isinstance(model, Net):
        return Path(save_checkpoint(path, model, cfg, **state))
    clash = [k for k in state if k in ("format", "arch", "model", "config")]
    if clash:
        raise ValueError(f"save_training_checkpoint: {', '.join(clash)} are reserved checkpoint keys")
    record = {"format": CHECKPOINT_FORMAT, "arch": None, "model": model.state_dict(),
              "config": cfg.to_dict() if cfg is not None else None, **state}
    return torch_save_atomic(record, path)


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint to CPU (``pulkit.models.net.load_checkpoint``: clear errors for bad files)."""
    return load_checkpoint(path, map_location="cpu")


def require_complete(path: str | os.PathLike, profile: str, what: str) -> Path:
    """``path`` when it holds a complete checkpoint, else the ``MissingResultsError`` naming its notebook."""
    path = Path(path)
    if not path.is_file():
        raise artifacts.missing(path, profile, what)
    if not is_complete(path):
        raise artifacts.missing(path, profile, what, state="incomplete (its training run was interrupted)")
    return path


def is_complete(path: str | os.PathLike) -> bool:
    """True when ``path`` holds the final checkpoint of a finished run; False when absent or interrupted."""
    if not Path(path).is_file():
        return False
    return bool(load_training_checkpoint(path).get("complete", False))


# --------------------------------------------------------------------------- the loop
def train(model: nn.Module, optimizer: torch.optim.Optimizer, step_fn: StepFn, batch_fn: BatchFn, steps: int, *,
          scheduler: Any = None, checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 100,
          resume: bool = True, log: str | os.PathLike | None = None, log_every: int = 1, stage: str = "train",
          cfg: Any = None, seed: int | None = None, profile: str | None = None, device: str | torch.device = "auto",
          progress: bool = True, extra_state: Mapping[str, Any] | None = None,
          find_unused_parameters: bool = False, resume_keys: Sequence[str] | None = None,
          precision: str | None = None) -> TrainResult:
    """Run ``steps`` optimisation steps of ``model``; see the module docstring for the contract.

    ``checkpoint``: file to write every ``checkpoint_every`` steps and at the end (None: no
    checkpoints).  ``resume``: continue from that file when it exists (a complete checkpoint
    only loads its weights and returns); ``resume=False`` starts afresh and overwrites it.
    ``log``: JSON-lines file, one record every ``log_every`` steps: ``step`` (completed steps),
    ``loss``, ``grad_norm``, ``lr``, ``pairs_per_s`` (batch items per second, checkpoint writing
    excluded), ``elapsed`` (s, summed over resumes) and the metrics.
    ``cfg``: the whole ``Config`` (or None), stored with provenance; ``seed`` and ``profile``
    default to ``cfg.seed`` / ``cfg.profile`` (else 0 / "unknown").  ``extra_state``: named objects
    with ``state_dict()`` / ``load_state_dict()`` (an embedding bank, say) checkpointed alongside.
    ``find_unused_parameters``: passed to ``DistributedDataParallel`` (True when some parameters get
    no gradient in a step).  ``resume_keys``: the top-level config entries that must equal the
    checkpoint's for a resume (None: the whole config); stages pass the entries that determine their
    weights, so a change to, say, the tracker settings does not block resuming a training run.
    ``precision``: ``auto | fp32 | bf16`` (None: ``cfg.precision``, fp32 without a cfg), resolved on the device
    (``pulkit.models.precision``); bf16 runs the backbones' forwards inside ``step_fn`` under autocast, while
    weights, gradients, optimiser state, heads and losses stay fp32.  Checkpoints record the resolved
    precision; resuming one under another precision is a ``ValueError`` (a checkpoint from before the
    setting, fp32, resumed in bf16: a warning).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    seed = int(seed if seed is not None else getattr(cfg, "seed", 0))
    profile = profile if profile is not None else getattr(cfg, "profile", "unknown")
    extra_state = dict(extra_state or {})
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    log = Path(log) if log is not None else None
    dinfo = DistInfo.from_env()
    device = _resolve_device(device, dinfo)
    requested = precision if precision is not None else getattr(cfg, "precision", "fp32")
    used = resolve_precision(requested, device)
    own_group = False
    if dinfo.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        own_group = True
    is_main = dinfo.rank == 0
    try:
        model.to(device)
        if cfg is not None and not hasattr(cfg, "to_dict"):
            raise TypeError(f"train(cfg=...) takes the whole pulkit Config (or None), got {type(cfg).__name__}")
        config = cfg.to_dict() if cfg is not None else None
        start, elapsed0, resumed_from, last = 0, 0.0, None, {}
        ckpt = load_training_checkpoint(checkpoint) if resume and checkpoint is not None and checkpoint.is_file() else None
        if ckpt is not None:
            _check_resumable(ckpt, checkpoint, stage, config, steps, resume_keys)
            model.load_state_dict(ckpt["model"])
            if ckpt.get("complete") and ckpt["step"] >= steps:
                return TrainResult(ckpt["step"], True, checkpoint, ckpt["step"], dict(ckpt.get("metrics") or {}),
                                   ckpt.get("precision", "fp32"))
            _check_precision(ckpt, checkpoint, requested, used, device)
            optimizer.load_state_dict(ckpt["optimizer"])
            if scheduler is not None and ckpt.get("scheduler") is not None:
                scheduler.load_state_dict(ckpt["scheduler"])
            saved_extra = ckpt.get("extra") or {}
            for name, obj in extra_state.items():
                if name not in saved_extra:
                    raise ValueError(f"{checkpoint}: no saved state for extra_state {name!r} "
                                     f"(it holds {sorted(saved_extra)})")
                obj.load_state_dict(saved_extra[name])
            set_rng_state(ckpt["rng"])
            start = resumed_from = int(ckpt["step"])
            elapsed0, last = float(ckpt.get("elapsed", 0.0)), dict(ckpt.get("metrics") or {})
        else:
            seed_everything(seed)
        if is_main and log is not None:
            _truncate_log(log, start)
        prov = provenance(profile, seed, cfg) if is_main and checkpoint is not None else None
        net = model
        if dinfo.distributed:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters)

        def save(step: int, complete: bool, elapsed: float) -> None:
            if not is_main or checkpoint is None:
                return
            save_training_checkpoint(
                checkpoint, model, cfg, provenance=prov, stage=stage, step=step, steps=steps, complete=complete,
                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict() if scheduler is not None else None,
                rng={**rng_state(), "batch_seed": seed}, elapsed=elapsed, metrics=last, precision=used,
                extra={name: obj.state_dict() for name, obj in extra_state.items()})

        t0 = time.perf_counter()
        t_log, items_since = t0, 0
        bar = tqdm(total=steps, initial=start, desc=stage, disable=not (progress and is_main), dynamic_ncols=True)
        for step in range(start, steps):
            batch = batch_fn(step, step_generator(seed, step))
            items_since += _batch_len(batch)
            batch = _to_device(shard_batch(batch, dinfo.rank, dinfo.world_size), device)
            net.train()
            with bf16_backbones(model, used, device):
                out = step_fn(net, batch, step)
            loss, metrics = _split_output(out, step)
            values = _reduce_scalars(loss.detach(), metrics, dinfo)
            if not math.isfinite(values["loss"]):
                raise NonFiniteLossError(step, values["loss"], checkpoint if checkpoint and checkpoint.is_file() else None)
            lr = float(optimizer.param_groups[0]["lr"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            values["grad_norm"] = _grad_norm(optimizer)
            if not math.isfinite(values["grad_norm"]):
                raise NonFiniteLossError(step, values["loss"], checkpoint if checkpoint and checkpoint.is_file() else None,
                                         what="gradient")
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            done = step + 1
            elapsed = elapsed0 + time.perf_counter() - t0
            if done % max(log_every, 1) == 0 or done == steps:
                now = time.perf_counter()
                rate = items_since / max(now - t_log, 1e-9)
                t_log, items_since = now, 0
                last = {"step": done, **values, "lr": lr, "pairs_per_s": rate, "elapsed": elapsed}
                if is_main and log is not None:
                    _append_log(log, last)
                bar.set_postfix(loss=f"{values['loss']:.4f}", pairs_s=f"{rate:.1f}")
            bar.update(1)
            if done == steps or (checkpoint_every > 0 and done % checkpoint_every == 0):
                t_save = time.perf_counter()
                save(done, done == steps, elapsed)
                t_log += time.perf_counter() - t_save        # throughput counts training, not writing
        bar.close()
        if dinfo.distributed:
            dist.barrier()
        return TrainResult(steps, True, checkpoint, resumed_from, last, used)
    finally:
        if own_group:
            dist.destroy_process_group()


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (``to_dict`` form)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            out += config_diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".") or "<root>"]


def _check_resumable(ckpt: Mapping[str, Any], path: Path, stage: str, config: Any, steps: int,
                     keys: Sequence[str] | None = None) -> None:
    saved = ckpt.get("config")
    if keys is not None and config is not None and saved is not None:
        config, saved = {k: config.get(k) for k in keys}, {k: saved.get(k) for k in keys}
    if config is not None and saved is not None:       # the precision is checked resolved (_check_precision)
        config, saved = ({k: v for k, v in d.items() if k != "precision"} for d in (config, saved))
    if ckpt.get("stage") != stage:
        raise ValueError(f"{path}: checkpoint of stage {ckpt.get('stage')!r}, not {stage!r}; "
                         "use another path or resume=False")
    if config is not None and saved is not None and saved != config:
        changed = config_diff(saved, config)
        shown = ", ".join(changed[:8]) + (f" (+{len(changed) - 8} more)" if len(changed) > 8 else "")
        raise ValueError(f"{path}: checkpoint written with a different config (changed: {shown}); delete it, "
                         "use another path, or pass resume=False to retrain from scratch")
    if int(ckpt["step"]) > steps:
        raise ValueError(f"{path}: checkpoint is at step {ckpt['step']}, beyond the requested {steps} steps")


def _check_precision(ckpt: Mapping[str, Any], path: Path, requested: str, used: str, device: torch.device) -> None:
    """Resuming continues bitwise only in the precision the checkpoint was trained in: refuse another one."""
    saved = ckpt.get("precision")
    if saved is None:
        if used != "fp32":
            warnings.warn(f"{path}: checkpoint records no precision (written before the setting existed: fp32); "
                          f"resuming it in {used} continues in another precision, so the result will not equal "
                          "an uninterrupted run's", stacklevel=3)
        return
    if saved != used:
        raise ValueError(f"{path}: checkpoint was trained in {saved}, but precision {requested!r} resolves to {used} "
                         f"on {device.type}; resume it with precision {saved!r} (Config.precision), or pass "
                         "resume=False to retrain from scratch")


def _split_output(out: Mapping[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
    if not isinstance(out, Mapping) or "loss" not in out:
        raise ValueError(f"step_fn must return a dict with a 'loss' tensor (step {step}), got {type(out).__name__}")
    loss = out["loss"]
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"step_fn's 'loss' must be a scalar tensor (step {step}), got {loss!r}")
    metrics = {k: v for k, v in out.items() if k != "loss"}
    clash = set(metrics) & set(_LOG_KEYS)
    if clash:
        raise ValueError(f"step_fn metric names {sorted(clash)} clash with the log's own fields {_LOG_KEYS}")
    return loss.reshape(()), metrics


def _reduce_scalars(loss: torch.Tensor, metrics: Mapping[str, Any], dinfo: DistInfo) -> dict[str, float]:
    """Loss and metrics as floats, averaged over the ranks under DDP (every rank sees the same values)."""
    names = ["loss", *metrics]
    scalars = [loss] + [v.detach() if isinstance(v, torch.Tensor) else torch.tensor(float(v)) for v in metrics.values()]
    vec = torch.stack([v.to(loss.device, torch.float32).reshape(()) for v in scalars])
    if dinfo.distributed:
        dist.all_reduce(vec)
        vec = vec / dinfo.world_size
    return dict(zip(names, (float(v) for v in vec.cpu())))


def _grad_norm(optimizer: torch.optim.Optimizer) -> float:
    """L2 norm of the gradients of everything the optimiser updates (after DDP's all-reduce)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.nn.utils.get_total_norm(grads))


def _append_log(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record, allow_nan=True) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Keep only the records of steps <= ``step`` (what the checkpoint being resumed has seen)."""
    if not path.is_file():
        return
    if step == 0:
        path.unlink()
        return
    lines, kept = path.read_text().splitlines(), []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                continue  # the last line, cut short by a kill
            raise ValueError(f"{path}: line {n} is not JSON") from None
        if record.get("step", 0) <= step:
            kept.append(line)
    atomic_write_bytes(path, ("\n".join(kept) + "\n" if kept else "").encode())
