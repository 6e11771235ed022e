"""Every path pulkit uses, resolved from the project root in this one module.

A ``PULKIT_*`` environment variable overrides each location, so results, checkpoints and real
datasets can live anywhere.  The variables and their defaults: docs/modules.md.
"""
from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parents[1]   # the pulkit package folder


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def project_root() -> Path:
    return _env_path("PULKIT_ROOT", _PKG.parent)


def shared_sequences() -> Path:
    """The bundled real sequences (read-only; never copied into the repo)."""
    return _env_path("PULKIT_SHARED", project_root().parent / "shared" / "data" / "sequences")


def data_dir() -> Path:
    return _env_path("PULKIT_DATA", project_root() / "data")


def synthetic_dir() -> Path:
    return data_dir() / "synthetic"


def cache_dir() -> Path:
    return data_dir() / "cache"


def results_dir(profile: str) -> Path:
    return _env_path("PULKIT_RESULTS", project_root() / "results") / profile


def checkpoints_dir(profile: str) -> Path:
    return _env_path("PULKIT_CHECKPOINTS", project_root() / "checkpoints") / profile


def runs_dir(profile: str) -> Path:
    return _env_path("PULKIT_RUNS", project_root() / "runs") / profile


def figures_dir() -> Path:
    return _env_path("PULKIT_FIGURES", project_root() / "figures")


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def dataset_root(name: str) -> Path | None:
    """Root of a user-provided real dataset (``otb``, ``vot``, ``got10k``, ``vid``), or None."""
    var = {"otb": "PULKIT_OTB", "vot": "PULKIT_VOT", "got10k": "PULKIT_GOT10K", "vid": "PULKIT_VID"}[name]
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else None
