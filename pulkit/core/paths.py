"""Every path pulkit uses, resolved from the project root in this one module.

A ``PULKIT_*`` environment variable overrides each location.  A run's results, checkpoints, figures and
runner state live in its run folder (``run_name``: ``cpu``, ``cpu@seed1``).  Variables: docs/modules.md.
"""
from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parents[1]   # the pulkit package folder
RUN_ENV = "PULKIT_RUN"                       # the active run's folder name, set by the runner for its kernels


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


def curated_dir() -> Path:
    """Curated training crops of real datasets (``pulkit prepare got10k|vid``): ``<this>/<dataset>/<key>/``."""
    return _env_path("PULKIT_CURATED", data_dir() / "curated")


def run_name(profile: str) -> str:
    """The folder name of ``profile``'s active run: ``$PULKIT_RUN`` when it names a run of this profile
    (``cpu@seed1``), else the profile itself (the default run)."""
    run = os.environ.get(RUN_ENV, "")
    return run if run.split("@", 1)[0] == profile else profile


def results_dir(profile: str) -> Path:
    return results_root() / run_name(profile)


def checkpoints_dir(profile: str) -> Path:
    return _env_path("PULKIT_CHECKPOINTS", project_root() / "checkpoints") / run_name(profile)


def runs_dir(profile: str) -> Path:
    """Executed notebooks, runner state and explore copies of the active run."""
    return _env_path("PULKIT_RUNS", project_root() / "runs") / run_name(profile)


def figures_dir() -> Path:
    return _env_path("PULKIT_FIGURES", project_root() / "figures")


def run_figures_dir(profile: str) -> Path:
    return figures_dir() / run_name(profile)


def results_root() -> Path:
    return _env_path("PULKIT_RESULTS", project_root() / "results")


def sweep_dir(profile: str, name: str) -> Path:
    """A sweep's aggregate (``pulkit sweep``): ``results/sweeps/<profile>/<name>/``."""
    return results_root() / "sweeps" / profile / name


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def dataset_root(name: str) -> Path | None:
    """Root of a user-provided real dataset (``otb``, ``vot``, ``got10k``, ``vid``), or None."""
    var = {"otb": "PULKIT_OTB", "vot": "PULKIT_VOT", "got10k": "PULKIT_GOT10K", "vid": "PULKIT_VID"}[name]
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else None
