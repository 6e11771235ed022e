"""``pulkit explore NN``: a copy of notebook NN with ``INTERACTIVE = True`` and a run's parameters, written into that
run's folder (``runs/<run>/explore/``) and opened in JupyterLab; the tracked notebooks stay untouched.
"""
from __future__ import annotations

import ast
import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from pulkit.core import paths, reads
from pulkit.core.io import atomic_write_bytes, to_json
from pulkit.tools import lab, reproduce

EXPLORE = {"INTERACTIVE": True}      # what every explore copy sets on top of the run's parameters
METADATA_KEY = "pulkit_explore"      # the copy's notebook metadata: source notebook, run, parameters
PIN_TAG = "pulkit-explore-run"       # the copy's first cell, which points its kernel at the run
RUNNER_ONLY = {reads.LOG_ENV, reads.ROOTS_ENV}   # PULKIT_* variables the copy does not carry over


@dataclass(frozen=True)
class Copy:
    """An explore copy: where it is, the run it belongs to, its parameters, and whether an existing copy
    with the same cells was kept (``kept``) or an edited one moved aside (``previous``)."""
    path: Path
    run: str
    parameters: dict[str, Any]
    kept: bool = False
    previous: Path | None = None


def explore_dir(profile: str) -> Path:
    """Explore copies of ``profile``'s active run (``pulkit.core.paths.run_name``)."""
    return paths.runs_dir(profile) / "explore"


def write_copy(number: str, profile: str = "cpu", parameters: Mapping[str, Any] | None = None,
               notebooks_dir: Path | None = None) -> Copy:
    """Write the explore copy of notebook ``number`` for the run that ``parameters`` name (as ``pulkit reproduce
    --profile profile -p ...`` would run it) and return it.

    An existing copy with the same cells (its outputs aside) is kept as it is; one whose cells differ (edited
    in JupyterLab, or the notebook changed since) is renamed ``NN_name.prev.ipynb`` first.
    """
    params = dict(parameters or {})
    if "PROFILE" in params:
        raise reproduce.ReproduceError("set the profile with --profile, not -p PROFILE")
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else paths.notebooks_dir()
    notebooks = reproduce.discover(nb_dir)
    chosen = reproduce.select(notebooks, [number])
    if not chosen:
        raise reproduce.ReproduceError(f"no notebook {number!r} in {nb_dir}")
    source = chosen[0]
    run_params = {"PROFILE": profile, **params}
    run = reproduce.run_folder(profile, run_params, notebooks)
    values = {**run_params, **{k: v for k, v in EXPLORE.items() if k not in params}}   # -p INTERACTIVE False wins
    try:
        nb = json.loads(source.read_text())
    except (OSError, ValueError) as e:
        raise reproduce.ReproduceError(f"{source}: not a readable notebook ({type(e).__name__}: {e})") from None
    with reproduce.use_run(run):
        target = explore_dir(profile) / source.name
        pins = {**{k: v for k, v in os.environ.items() if k.startswith("PULKIT_") and k not in RUNNER_ONLY},
                paths.RUN_ENV: run}
    fresh = explore_notebook(nb, values, pins, source)
    if target.is_file():
        try:
            old = json.loads(target.read_text())
        except ValueError:
            old = None
        if old is not None and _cells(old) == _cells(fresh):
            return Copy(target, run, values, kept=True)
        previous = target.with_name(f"{target.stem}.prev.ipynb")
        target.replace(previous)
    else:
        previous = None
    atomic_write_bytes(target, (json.dumps(fresh, indent=1, ensure_ascii=False) + "\n").encode())
    return Copy(target, run, values, previous=previous)


def explore_notebook(nb: dict, values: Mapping[str, Any], pins: Mapping[str, str], source: Path) -> dict:
    """The explore copy of notebook ``nb``: ``values`` set in its parameters cell, a first cell that sets the
    environment variables ``pins`` (the run, and the output folders when moved) in its kernel, the
    ``pulkit`` kernelspec and no outputs."""
    out = copy.deepcopy(nb)
    cells = out.get("cells")
    tagged = [c for c in cells or [] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise reproduce.ReproduceError(f"{source}: {len(tagged)} cells tagged 'parameters', expected exactly one")
    tagged[0]["source"] = set_parameters(_text(tagged[0]["source"]), values, source)
    for c in cells:
        if c.get("cell_type") == "code":
            c["outputs"], c["execution_count"] = [], None
    lines = ["# pulkit explore: this copy's kernel reads and writes the run below (set before pulkit is used).",
             "import os", ""] + [f"os.environ[{k!r}] = {v!r}" for k, v in sorted(pins.items())]
    pin = {"cell_type": "code", "execution_count": None, "metadata": {"tags": [PIN_TAG]}, "outputs": [],
           "source": "\n".join(lines)}
    if out.get("nbformat", 4) >= 4 and out.get("nbformat_minor", 0) >= 5:
        pin["id"] = PIN_TAG
    cells = [c for c in cells if PIN_TAG not in c.get("metadata", {}).get("tags", [])]
    first_code = next(i for i, c in enumerate(cells) if c.get("cell_type") == "code")
    out["cells"] = cells[:first_code] + [pin] + cells[first_code:]
    meta = out.setdefault("metadata", {})
    meta["kernelspec"] = {"name": lab.KERNEL_NAME, "display_name": lab.KERNEL_DISPLAY, "language": "python"}
    meta[METADATA_KEY] = {"notebook": source.name, "run": pins[paths.RUN_ENV],
                          "parameters": json.loads(to_json(dict(values)))}
    return out


def set_parameters(text: str, values: Mapping[str, Any], where: Path | str = "parameters cell") -> str:
    """``text`` (a parameters cell) with each assigned name in ``values`` given its new value (comments kept);
    names the cell lacks are appended, as papermill injects them."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise reproduce.ReproduceError(f"{where}: its parameters cell does not parse ({e.msg}, line {e.lineno})") \
            from None
    lines = [line.encode() for line in text.splitlines(keepends=True)]
    spans = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in values:
            v = node.value
            spans.append((v.lineno - 1, v.col_offset, v.end_lineno - 1, v.end_col_offset, node.targets[0].id))
    for l0, c0, l1, c1, name in sorted(spans, reverse=True):     # bottom up: earlier offsets stay valid
        lines[l0:l1 + 1] = [lines[l0][:c0] + _literal(values[name]).encode() + lines[l1][c1:]]
    out = b"".join(lines).decode()
    missing = [k for k in values if k not in {s[4] for s in spans}]
    if missing:
        out = out.rstrip("\n") + "\n" + "".join(f"{k} = {_literal(values[k])}  # set by pulkit explore\n"
                                                for k in missing)
    return out.rstrip("\n")


def _literal(value: Any) -> str:
    text = repr(value)
    if isinstance(value, str) and not any(ch in value for ch in "\"\\'"):
        text = f'"{value}"'                       # the notebooks' own style
    try:
        if ast.literal_eval(text) == value:
            return text
    except (ValueError, SyntaxError):
        pass
    raise reproduce.ReproduceError(f"parameter value {value!r} is not a Python literal")


def _cells(nb: dict) -> list[tuple[str, str]]:
    return [(c.get("cell_type", ""), _text(c.get("source", ""))) for c in nb.get("cells", [])]


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def explore(number: str, profile: str = "cpu", parameters: Mapping[str, Any] | None = None, *,
            open_lab: bool = True, notebooks_dir: Path | None = None) -> int:
    """``pulkit explore``: write the copy, print where it is, and (``open_lab``) serve it in JupyterLab."""
    c = write_copy(number, profile, parameters, notebooks_dir)
    state = "kept (same cells; its outputs too)" if c.kept else "written"
    print(f"explore copy of run {c.run}, {state}: {c.path}")
    if c.previous is not None:
        print(f"  the earlier copy had other cells; it is now {c.previous}")
    if not open_lab:
        return 0
    root = paths.project_root().resolve()
    if not c.path.resolve().is_relative_to(root):
        root = c.path.parent.resolve()     # outputs moved out of the project: serve the explore folder
    return lab.serve(lab.extra_args([]), root, c.path)
