"""Seeding and provenance: every result records where it came from."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import random
import subprocess
from functools import lru_cache
from importlib import metadata
from typing import Any

import numpy as np

from pulkit.core import paths

_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "got10k", "opencv-python-headless", "matplotlib", "pulkit")


def seed_everything(seed: int, deterministic: bool = True):
    """Seed ``random``, numpy and torch (CPU and CUDA); return a seeded ``torch.Generator``.

    Pass the returned generator to ``DataLoader(generator=...)`` and ``worker_init_fn`` to
    ``DataLoader(worker_init_fn=...)`` so data order and worker RNGs are reproducible too.
    """
    import torch

    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker seeding derived from the loader's (seeded) base seed."""
    import torch

    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The project's HEAD commit (``PULKIT_COMMIT`` overrides; ``unknown`` outside git)."""
    if os.environ.get("PULKIT_COMMIT"):
        return os.environ["PULKIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.project_root(), capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def git_dirty() -> bool:
    """True when tracked files under ``pulkit/`` or ``notebooks/`` differ from HEAD."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "pulkit", "notebooks"],
                             cwd=paths.project_root(), capture_output=True, text=True, timeout=10)
        return bool(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return False


def config_dict(cfg: Any) -> Any:
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [config_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {str(k): config_dict(v) for k, v in cfg.items()}
    return cfg


def config_hash(cfg: Any) -> str:
    """Stable 12-hex-digit hash of a config (dataclass, dict or JSON-able value)."""
    blob = json.dumps(config_dict(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def provenance(profile: str, seed: int, cfg: Any = None) -> dict[str, Any]:
    """The record every result carries: commit, dirty flag, profile, run folder, seed, config and its hash,
    versions."""
    return {
        "commit": git_commit(),
        "dirty": git_dirty(),
        "profile": profile,
        "run": paths.run_name(profile),
        "seed": int(seed),
        "config_hash": config_hash(cfg) if cfg is not None else None,
        "config": config_dict(cfg) if cfg is not None else None,
        "versions": package_versions(),
    }
