"""JupyterLab for pulkit (``make lab``, ``pulkit explore``): installs the project's kernelspec and starts JupyterLab
on a laptop, a headless server or as root, then prints the URL with its token.  Flags and examples: docs/modules.md.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import quote

from pulkit.core import paths
from pulkit.core.io import atomic_write_bytes

KERNEL_NAME = "pulkit"                  # the kernelspec every notebook names in its metadata
KERNEL_DISPLAY = "pulkit (.venv)"
KERNEL_ENV = {"PYTHONHASHSEED": "0"}    # the runner's hash seed in every kernel: the same numbers
START_TIMEOUT_S = 120.0                 # waiting for the server to announce its URL
LAB_ARGS_ENV = "LAB_ARGS"               # extra `jupyter lab` flags, as `make lab LAB_ARGS="..."` passes them


class LabError(RuntimeError):
    """The kernelspec cannot be installed, or JupyterLab did not start."""


# --------------------------------------------------------------------------- the kernelspec
def kernel_spec() -> dict:
    """The ``kernel.json`` of the ``pulkit`` kernelspec: this interpreter, with ipykernel's own metadata
    (debugger, CurveZMQ transport encryption) and the runner's hash seed."""
    from ipykernel.kernelspec import get_kernel_dict

    spec = get_kernel_dict()
    spec["argv"][0] = sys.executable
    return {**spec, "display_name": KERNEL_DISPLAY, "env": dict(KERNEL_ENV)}


def install_kernelspec(name: str = KERNEL_NAME) -> str:
    """Write ``kernel_spec()`` under ``sys.prefix`` when it differs, and check that Jupyter resolves ``name`` to it.

    Raises ``LabError`` when a kernelspec of that name elsewhere (e.g. the user's Jupyter folder) shadows it.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    folder = Path(sys.prefix) / "share" / "jupyter" / "kernels" / name
    want = kernel_spec()
    try:
        current = json.loads((folder / "kernel.json").read_text())
    except (OSError, ValueError):
        current = None
    if current != want:
        try:
            atomic_write_bytes(folder / "kernel.json", (json.dumps(want, indent=1) + "\n").encode())
            _copy_logos(folder)
        except OSError as e:
            raise LabError(f"cannot write the kernelspec {name!r} to {folder}: {e}") from None
    try:
        found = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise LabError(f"kernelspec {name!r} was written to {folder} but Jupyter does not find it there "
                       f"(JUPYTER_PATH / JUPYTER_DATA_DIR point elsewhere?)") from None
    if Path(found.resource_dir).resolve() != folder.resolve() and not _same_python(found.argv):
        raise LabError(f"kernelspec {name!r} at {found.resource_dir} runs {found.argv[0] if found.argv else '?'}, "
                       f"not {sys.executable}; remove it (jupyter kernelspec remove {name})")
    return name


def _copy_logos(folder: Path) -> None:
    from ipykernel.kernelspec import RESOURCES

    for logo in Path(RESOURCES).glob("logo-*"):
        atomic_write_bytes(folder / logo.name, logo.read_bytes())


def _same_python(argv: Sequence[str]) -> bool:
    return bool(argv) and os.path.abspath(argv[0]) == os.path.abspath(sys.executable)


# --------------------------------------------------------------------------- the command line
def lab_command(extra: Sequence[str] = (), root_dir: Path | None = None, open_path: Path | None = None, *,
                as_root: bool | None = None, headless: bool | None = None) -> list[str]:
    """The ``jupyter lab`` command: served from ``root_dir`` (default: the project), opening ``open_path``
    (a notebook or a folder under it; default ``notebooks/``), then the ``extra`` flags.

    Adds ``--allow-root`` as root, ``--no-browser`` without a display (Linux without ``DISPLAY`` /
    ``WAYLAND_DISPLAY``) and CurveZMQ-encrypted kernel channels, unless ``extra`` already decides them.
    """
    root = served_root(root_dir)
    target = Path(open_path if open_path is not None else paths.notebooks_dir()).resolve()
    if not target.is_relative_to(root):
        raise LabError(f"{target} is not under the folder JupyterLab serves ({root})")
    as_root = (hasattr(os, "geteuid") and os.geteuid() == 0) if as_root is None else as_root
    headless = _headless() if headless is None else headless
    given = " ".join(extra)
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}",
           f"--LabApp.default_url={lab_path(target.relative_to(root))}"]
    if as_root and "allow-root" not in given and "allow_root" not in given:
        cmd.append("--allow-root")
    if headless and "browser" not in given:
        cmd.append("--no-browser")
    if "transport_encryption" not in given and has_curve():
        cmd.append("--KernelManager.transport_encryption=auto")
    return cmd + list(extra)


def served_root(root_dir: Path | None = None) -> Path:
    return Path(root_dir or paths.project_root()).resolve()


def lab_path(rel: Path | str) -> str:
    """JupyterLab's path for a file or folder relative to the served root (``/lab/tree/notebooks``)."""
    rel = Path(rel).as_posix()
    return "/lab" if rel in ("", ".") else f"/lab/tree/{quote(rel)}"


def _headless() -> bool:
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def has_curve() -> bool:
    """Whether pyzmq can encrypt kernel channels (CurveZMQ); the kernelspec declares that ipykernel can."""
    import zmq

    return bool(zmq.has("curve"))


@contextmanager
def child_env() -> Iterator[None]:
    """Jupyter / IPython / matplotlib / inductor state of the processes started meanwhile in ``.cache/``, and
    the runner's hash seed, for every variable not already set (the Makefile exports the same)."""
    cache = paths.project_root() / ".cache"
    defaults = {"JUPYTER_RUNTIME_DIR": cache / "jupyter-runtime", "IPYTHONDIR": cache / "ipython",
                "MPLCONFIGDIR": cache / "matplotlib", "TORCHINDUCTOR_CACHE_DIR": cache / "inductor",
                "PYTHONHASHSEED": KERNEL_ENV["PYTHONHASHSEED"]}
    added = [k for k in defaults if not os.environ.get(k)]
    for k in added:
        os.environ[k] = str(defaults[k])
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


# --------------------------------------------------------------------------- the server
@dataclass
class Lab:
    """A running JupyterLab: its process, served root, base URL (``http://localhost:8888/``) and token."""
    process: subprocess.Popen
    root: Path
    url: str
    token: str

    def link(self, path: Path | str | None = None) -> str:
        """The browser URL of ``path`` (a file or folder under the root; None or elsewhere: the root), token
        included."""
        resolved = None if path is None else Path(path).resolve()
        rel = resolved.relative_to(self.root) if resolved is not None and resolved.is_relative_to(self.root) else ""
        link = self.url.rstrip("/") + lab_path(rel)
        return f"{link}?token={self.token}" if self.token else link

    def stop(self, timeout: float = 30.0) -> int:
        """Shut the server (and its kernels) down; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def start(extra: Sequence[str] = (), root_dir: Path | None = None, open_path: Path | None = None,
          timeout: float = START_TIMEOUT_S, **kw) -> Lab:
    """Start JupyterLab (``lab_command``) with the kernelspec installed and Jupyter's state in ``.cache/``;
    returns once the server has announced its URL.  ``kw``: ``as_root`` / ``headless`` (auto-detected)."""
    install_kernelspec()
    cmd = lab_command(extra, root_dir, open_path, **kw)
    root = served_root(root_dir)
    with child_env():
        runtime = Path(os.environ["JUPYTER_RUNTIME_DIR"])
        process = subprocess.Popen(cmd, cwd=root)
    info_file = runtime / f"jpserver-{process.pid}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LabError(f"JupyterLab exited with code {process.returncode} before it served anything "
                           f"(its messages are above); command: {shlex.join(cmd)}")
        try:
            info = json.loads(info_file.read_text())
            return Lab(process, Path(info.get("root_dir", root)).resolve(), info["url"], info.get("token", ""))
        except (OSError, ValueError, KeyError):
            time.sleep(0.2)
    Lab(process, root, "", "").stop()
    raise LabError(f"JupyterLab did not announce its URL within {timeout:.0f} s ({info_file} never appeared)")


def serve(extra: Sequence[str] = (), root_dir: Path | None = None, open_path: Path | None = None) -> int:
    """Start JupyterLab, print the URL to open (token included) and wait until the server stops."""
    lab = start(extra, root_dir, open_path)
    target = open_path if open_path is not None else paths.notebooks_dir()
    print(f"\nJupyterLab is running (stop it with Ctrl-C twice). Open:\n\n    {lab.link(target)}\n", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: lab.process.terminate())   # a terminated launcher stops its server
    while True:
        try:
            return lab.process.wait()
        except KeyboardInterrupt:      # the server got the same Ctrl-C: it asks, or stops, by itself
            continue


def extra_args(argv: Sequence[str]) -> list[str]:
    """The ``jupyter lab`` flags: ``$LAB_ARGS`` (shell-split), then ``argv``."""
    try:
        return shlex.split(os.environ.get(LAB_ARGS_ENV, "")) + list(argv)
    except ValueError as e:
        raise LabError(f"{LAB_ARGS_ENV}={os.environ.get(LAB_ARGS_ENV)!r} does not parse: {e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pulkit.tools.lab [jupyter lab flags]``: JupyterLab on the project, opened at ``notebooks/``."""
    try:
        return serve(extra_args(sys.argv[1:] if argv is None else argv))
    except LabError as e:
        print(f"pulkit lab: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
