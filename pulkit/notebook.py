"""Small helpers the notebooks use to hand results to each other through files.

Every notebook ``notebooks/NN_*.ipynb`` writes its numbers to ``results/<profile>/NN_*.json``
(``save_results``: provenance added, sorted keys, atomic) and its wall-clock timings, which differ
between runs, to ``results/<profile>/timings/NN.json`` (``save_timings``), so that results files of
two runs with the same seed are identical.  A later notebook reads an earlier one's numbers with
``load_results``, whose error names the notebook to run when the file is missing.

A results dict may carry a ``summary``: a flat dict of a few key numbers (scalars), which
``pulkit reproduce`` prints in its summary table.

    >>> save_results("cpu", "00_data", {"summary": {"sequences": 39}}, cfg=cfg)   # doctest: +SKIP
    >>> load_results("cpu", "00_data")["summary"]["sequences"]                    # doctest: +SKIP
    39
"""
from __future__ import annotations

import os
import platform
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from . import paths
from .io import read_json, write_json
from .provenance import git_commit, provenance

# The notebooks in run order (``notebooks/<name>.ipynb``); results files are prefixed by the number.
NOTEBOOKS: tuple[str, ...] = (
    "00_data",
    "01_background_discrimination",
    "02_temporal_correspondence",
    "03_training",
    "04_noise_robustness",
    "05_sectionB_taylor",
    "06_qualitative",
    "07_benchmarks",
)

_NAME = re.compile(r"^(\d\d)_[A-Za-z0-9_.-]+$")


class MissingResultsError(FileNotFoundError):
    """A results file that an earlier notebook should have written does not exist.

    ``notebook`` is the name of the notebook that writes it (``"03_training"``), or None.
    """

    def __init__(self, message: str, path: Path, notebook: str | None):
        super().__init__(message)
        self.path = path
        self.notebook = notebook


def notebook_for(name: str) -> str | None:
    """The notebook (``"03_training"``) that writes results file ``name`` (``"03_training_curves"``)."""
    number = _check_name(name)[:2]
    return next((nb for nb in NOTEBOOKS if nb.startswith(number + "_")), None)


def results_path(profile: str, name: str) -> Path:
    """``results/<profile>/<name>.json``; ``name`` starts with the writing notebook's number, ``NN_``."""
    return paths.results_dir(profile) / f"{_check_name(name)}.json"


def save_results(profile: str, name: str, obj: dict[str, Any], *, cfg: Any = None,
                 seed: int | None = None) -> Path:
    """Write ``obj`` plus a ``provenance`` entry to ``results_path(profile, name)`` atomically.

    ``cfg`` (the notebook's ``Config``) is recorded with its hash; ``seed`` defaults to ``cfg.seed``.
    Keep timings out of ``obj`` (use ``save_timings``): results of two equal runs must be equal.
    """
    if not isinstance(obj, dict):
        raise TypeError(f"results {name!r}: expected a dict, got {type(obj).__name__}")
    if "provenance" in obj:
        raise ValueError(f"results {name!r}: 'provenance' is added by save_results; do not set it")
    _check_summary(name, obj.get("summary"))
    if seed is None and cfg is not None:
        seed = getattr(cfg, "seed", None)
    prov = provenance(profile, 0 if seed is None else seed, cfg)
    prov["seed"] = None if seed is None else int(seed)
    return write_json(results_path(profile, name), {**obj, "provenance": prov})


def load_results(profile: str, name: str) -> dict[str, Any]:
    """Read ``results/<profile>/<name>.json``; a missing file names the notebook that writes it."""
    path = results_path(profile, name)
    if not path.is_file():
        nb = notebook_for(name)
        how = (f"it is written by notebooks/{nb}.ipynb: run `pulkit reproduce --profile {profile} --only {nb[:2]}`"
               if nb else "no notebook in pulkit.notebook.NOTEBOOKS writes it")
        raise MissingResultsError(f"{path}: missing results {name!r} for profile {profile!r}; {how}", path, nb)
    return read_json(path)


def timings_path(profile: str, notebook: str) -> Path:
    """``results/<profile>/timings/NN.json`` for notebook ``NN_*`` (or its number ``NN``)."""
    number = notebook[:2]
    if not number.isdigit() or not (len(notebook) == 2 or _NAME.match(notebook)):
        raise ValueError(f"notebook {notebook!r}: expected a notebook name 'NN_...' or its number 'NN'")
    return paths.results_dir(profile) / "timings" / f"{number}.json"


def save_timings(profile: str, notebook: str, seconds: dict[str, float], **extra: Any) -> Path:
    """Write named wall-clock durations (seconds) and the machine they were measured on."""
    bad = {k: v for k, v in seconds.items() if not isinstance(v, (int, float))}
    if bad:
        raise TypeError(f"timings of {notebook!r}: values must be seconds (numbers), got {bad}")
    record = {"notebook": notebook, "seconds": dict(seconds), "machine": machine(), "commit": git_commit(),
              "profile": profile, **extra}
    return write_json(timings_path(profile, notebook), record)


def machine() -> dict[str, Any]:
    """Where timings were measured: CPU count; torch threads and GPU name when torch is in use."""
    out: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                           "cpu_count": os.cpu_count()}
    torch = sys.modules.get("torch")  # only when the notebook used torch: importing it costs seconds
    if torch is not None:
        out["torch_threads"] = torch.get_num_threads()
        out["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return out


class Stopwatch:
    """Named wall-clock durations for ``save_timings``.

        >>> sw = Stopwatch()
        >>> with sw("train"):
        ...     pass
        >>> sorted(sw.seconds)
        ['train']
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


# --------------------------------------------------------------------------- internals
def _check_name(name: str) -> str:
    name = name[:-5] if name.endswith(".json") else name
    if not _NAME.match(name) or "/" in name:
        raise ValueError(f"results name {name!r}: expected 'NN_<what>' starting with the writing notebook's number")
    return name


def _check_summary(name: str, summary: Any) -> None:
    if summary is None:
        return
    if not isinstance(summary, dict):
        raise TypeError(f"results {name!r}: 'summary' must be a flat dict of key numbers, got {type(summary).__name__}")
    nested = [k for k, v in summary.items() if isinstance(v, (dict, list, tuple))]
    if nested:
        raise TypeError(f"results {name!r}: 'summary' holds scalars only; {nested} are containers")
