"""Which files a notebook reads: an audit hook the runner switches on for its kernels.

With ``PULKIT_TRACE_READS=<log>`` and ``PULKIT_TRACE_ROOTS=<dir>[:<dir>...]`` set, importing pulkit appends
every file opened for reading below a root to ``<log>``, once per path; the runner turns those paths into a
notebook's dependencies (staleness follows what a notebook actually reads).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

LOG_ENV, ROOTS_ENV = "PULKIT_TRACE_READS", "PULKIT_TRACE_ROOTS"
_installed: list[str] = []


def install_from_env() -> bool:
    """Install the hook when the runner asked for it (both variables set); True when installed."""
    log, roots = os.environ.get(LOG_ENV), os.environ.get(ROOTS_ENV)
    if not log or not roots or _installed:
        return False
    install(log, roots.split(os.pathsep))
    return True


def install(log: str | Path, roots: list[str | Path]) -> None:
    """Record, in ``log`` (created now, so 'read nothing' differs from 'not traced'), each file below one of
    ``roots`` that this process opens for reading."""
    log = os.path.abspath(log)
    prefixes = tuple(os.path.realpath(r) + os.sep for r in roots if r)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    Path(log).touch()
    seen: set[str] = set()
    busy = [False]

    def hook(event: str, args: tuple) -> None:
        if event != "open" or busy[0]:
            return
        path, mode, flags = args
        if path is None or isinstance(path, int):
            return
        if mode is not None:
            if any(c in str(mode) for c in "wax+"):
                return
        elif flags is not None and (flags & os.O_ACCMODE) != os.O_RDONLY:
            return
        busy[0] = True
        try:
            real = os.path.realpath(os.fsdecode(path))
            if real in seen or not real.startswith(prefixes) or not os.path.isfile(real):
                return
            seen.add(real)
            with open(log, "a") as f:
                f.write(real + "\n")
        except (OSError, TypeError, ValueError):
            pass
        finally:
            busy[0] = False

    sys.addaudithook(hook)
    _installed.append(log)


def read_log(log: str | Path) -> list[str] | None:
    """The paths a traced process read (in order, unique), or None when it was not traced (no log)."""
    try:
        lines = Path(log).read_text().splitlines()
    except FileNotFoundError:
        return None
    return list(dict.fromkeys(line for line in lines if line))
