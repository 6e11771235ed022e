"""Results files: each notebook's numbers as ``results/<profile>/<notebook>.json`` (provenance added,
sorted keys, atomic), its arrays as ``<notebook>.npz``, and its wall-clock timings apart from both,
so results of two runs with the same seed are identical."""
from __future__ import annotations

import os
import platform
import sys
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from pulkit.core import artifacts
from pulkit.core.artifacts import MissingResultsError, timings_path  # noqa: F401 (re-exported)
from pulkit.core.io import read_json, write_json, write_npz
from pulkit.core.provenance import git_commit, provenance


def save_results(profile: str, notebook: str, obj: Mapping[str, Any], *, cfg: Any = None, seed: int | None = None,
                 arrays: Mapping[str, Any] | None = None) -> Path:
    """Write ``obj`` plus a ``provenance`` entry to ``<notebook>.json`` and ``arrays`` (if any) to
    ``<notebook>.npz``, atomically; returns the JSON path.

    ``cfg`` (the notebook's ``Config``) is recorded with its hash; ``seed`` defaults to ``cfg.seed``.
    Keep timings out of ``obj`` (use ``save_timings``): results of two equal runs must be equal.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"results {notebook!r}: expected a dict, got {type(obj).__name__}")
    if "provenance" in obj:
        raise ValueError(f"results {notebook!r}: 'provenance' is added by save_results; do not set it")
    path = artifacts.results_path(profile, notebook)
    _check_summary(notebook, obj.get("summary"))
    if seed is None and cfg is not None:
        seed = getattr(cfg, "seed", None)
    prov = provenance(profile, 0 if seed is None else seed, cfg)
    prov["seed"] = None if seed is None else int(seed)
    prov["precision"] = precisions_used()
    if arrays is not None:
        write_npz(artifacts.results_path(profile, notebook, "npz"), arrays)
    return write_json(path, {**obj, "provenance": prov})


def load_results(profile: str, notebook: str) -> dict[str, Any]:
    """Read ``<notebook>.json``; a missing file names the notebook that writes it."""
    path = artifacts.results_path(profile, notebook)
    if not path.is_file():
        raise artifacts.missing(path, profile, f"results of {artifacts.notebook(notebook)}")
    return read_json(path)


def load_arrays(profile: str, notebook: str) -> dict[str, np.ndarray]:
    """Every array of ``<notebook>.npz``; a missing file names its notebook, an unreadable one says so."""
    path = artifacts.results_path(profile, notebook, "npz")
    if not path.is_file():
        raise artifacts.missing(path, profile, f"arrays of {artifacts.notebook(notebook)}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable arrays file ({type(e).__name__}: {e})") from None


def save_timings(profile: str, notebook: str, seconds: dict[str, float], **extra: Any) -> Path:
    """Write named wall-clock durations (seconds) and the machine they were measured on."""
    bad = {k: v for k, v in seconds.items() if not isinstance(v, (int, float))}
    if bad:
        raise TypeError(f"timings of {notebook!r}: values must be seconds (numbers), got {bad}")
    record = {"notebook": notebook, "seconds": dict(seconds), "machine": machine(), "commit": git_commit(),
              "profile": profile, **extra}
    return write_json(timings_path(profile, notebook), record)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else ``platform.processor()``): numbers differ between CPUs."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Where timings were measured: CPU count; torch threads and GPU name when torch is in use."""
    out: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                           "cpu_count": os.cpu_count(), "cpu_model": cpu_model()}
    torch = sys.modules.get("torch")  # only when the notebook used torch: importing it costs seconds
    if torch is not None:
        out["torch_threads"] = torch.get_num_threads()
        out["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    out["precision"] = precisions_used()
    return out


_PRECISIONS: dict[str, set[str]] = {}


def note_precision(device_type: str, precision: str) -> None:
    """Record that this process resolved ``precision`` (``fp32`` / ``bf16``) on a ``device_type`` device
    (``pulkit.models.precision.resolve_precision`` calls it)."""
    _PRECISIONS.setdefault(str(device_type), set()).add(str(precision))


def precisions_used() -> dict[str, list[str]]:
    """The precisions this process resolved, per device type (``{"cpu": ["bf16"]}``; ``{}`` before any)."""
    return {dev: sorted(used) for dev, used in sorted(_PRECISIONS.items())}


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


def _check_summary(name: str, summary: Any) -> None:
    if summary is None:
        return
    if not isinstance(summary, dict):
        raise TypeError(f"results {name!r}: 'summary' must be a flat dict of key numbers, got {type(summary).__name__}")
    nested = [k for k, v in summary.items() if isinstance(v, (dict, list, tuple))]
    if nested:
        raise TypeError(f"results {name!r}: 'summary' holds scalars only; {nested} are containers")
