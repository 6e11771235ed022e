"""The package's shape: layers depend one way, no import cycles, imports at the top, one backing module
per notebook, short module docstrings, and ARCHITECTURE.md's module table matching the tree."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from pulkit.core import artifacts, paths

PKG = paths.project_root() / "pulkit"
# Layer of each top-level part; a module may import its own layer and the layers below it.
LAYERS = {"core": 0, "data": 1, "models": 2, "losses": 2, "method": 3, "tracking": 4, "evaluation": 5,
          "experiments": 6}
# Figures read results through core (and draw data, sequences and label maps): never the pipeline.
FIGURES_MAY_IMPORT = {"core", "data", "losses", "figures"}
# Thin re-exports kept for public names that moved; nothing inside pulkit imports them.
COMPAT = {"pulkit.sampling", "pulkit.tracker", "pulkit.bench", "pulkit.determinism"}
# Entry points: may import anything (the CLI, the runner, the benchmarks).
ENTRY = {"pulkit.__main__", "pulkit.__init__"}


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        parts = f.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


MODULES = _modules()


def _imports(path: Path, top_only: bool = False) -> set[str]:
    """The pulkit modules ``path`` imports (``from pulkit.x import y`` counts ``pulkit.x.y`` when that is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pulkit"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("pulkit")}
    return out


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


@pytest.mark.parametrize("module", sorted(MODULES))
def test_dependencies_run_one_way(module):
    if module in ENTRY | COMPAT:
        return
    part = _part(module)
    bad = []
    for dep in _imports(MODULES[module]):
        if dep in COMPAT:
            bad.append(f"{dep} (a compatibility re-export: import the real module)")
            continue
        dpart = _part(dep)
        if dpart == "figures" and part not in ("figures", "tools"):
            bad.append(f"{dep} (only notebooks, the registry and the CLI use figures)")
        elif part == "figures":
            if dpart not in FIGURES_MAY_IMPORT:
                bad.append(f"{dep} (figures read results through core only)")
            elif dep.startswith("pulkit.figures.") and dep.endswith(".registry") and module != "pulkit.figures.registry":
                bad.append(f"{dep} (the registry imports the figure modules, never the other way round)")
        elif part == "tools" or dpart == "tools":
            if dpart == "tools" and part != "tools":
                bad.append(f"{dep} (tools are entry points)")
        elif part in LAYERS and dpart in LAYERS and LAYERS[dpart] > LAYERS[part]:
            bad.append(f"{dep} (layer {dpart} is above {part})")
    assert not bad, f"{module} imports: {bad}"


def test_no_import_cycles():
    graph = {m: {d for d in _imports(f) if d in MODULES and d != m} for m, f in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_pulkit_imports_at_the_top(module):
    if module == "pulkit.__main__":
        return      # the CLI imports a subcommand's module when it runs (`pulkit --help` stays quick)
    inner = _imports(MODULES[module]) - _imports(MODULES[module], top_only=True)
    assert not inner, f"{module} imports {sorted(inner)} inside a function: import pulkit modules at the top"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_docstrings_are_short(module):
    doc = ast.get_docstring(ast.parse(MODULES[module].read_text()), clean=False)
    assert doc, f"{module}: no module docstring"
    assert len(doc.strip().splitlines()) <= 5, (
        f"{module}: a module docstring of a few lines; measurements and rationale go to docs/")


NOTEBOOK_FILES = sorted(paths.notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_are_the_run_order():
    assert [p.stem for p in NOTEBOOK_FILES] == list(artifacts.NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_each_notebook_has_one_backing_module(path):
    name = path.stem[3:]
    assert f"pulkit.experiments.{name}" in MODULES, f"{path.name}: no pulkit/experiments/{name}.py"
    assert f"pulkit.figures.{name}" in MODULES, f"{path.name}: no pulkit/figures/{name}.py"
    allowed = {f"pulkit.experiments.{name}", f"pulkit.figures.{name}", "pulkit.figures.style", "pulkit.figures.widgets"}
    cells = [("".join(c["source"])) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    used = set()
    for src in cells:
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pulkit"):
                used |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                         for a in node.names}
            elif isinstance(node, ast.Import):
                used |= {a.name for a in node.names if a.name.startswith("pulkit")}
        assert not re.search(r"^\s*record\s*=\s*\{", src, re.M), f"{path.name}: a cell builds a results record inline"
    bad = sorted(m for m in used if m not in allowed and not m.startswith("pulkit.core."))
    assert not bad, f"{path.name} imports {bad}; a notebook uses its experiment and figure modules (plus core)"
    assert f"pulkit.experiments.{name}" in used and f"pulkit.figures.{name}" in used


def test_results_files_are_named_after_their_notebooks(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path))
    for nb in artifacts.NOTEBOOKS:
        assert artifacts.results_path("smoke", nb[:2]).name == f"{nb}.json"
        assert artifacts.results_path("smoke", nb, "npz").name == f"{nb}.npz"
        assert artifacts.producer(artifacts.results_path("smoke", nb), "smoke") == nb
        assert artifacts.producer(artifacts.results_folder("smoke", nb) / "x.csv", "smoke") == nb
    with pytest.raises(ValueError, match="names no notebook"):
        artifacts.results_path("smoke", "04_noise")


def test_checkpoint_producers(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_CHECKPOINTS", str(tmp_path))
    want = {artifacts.bd_checkpoint("cpu", "rss"): "01_background_discrimination",
            artifacts.tc_checkpoint("cpu", 3): "02_temporal_correspondence",
            artifacts.pairs_table("cpu", 1): "02_temporal_correspondence",
            artifacts.tc_checkpoint("cpu", 1, "nr", "ciresnet22"): "03_training",
            artifacts.tc_checkpoint("cpu", 2, "bce"): "03_training",
            artifacts.supervised_checkpoint("cpu", "bce", "ciresnet22"): "03_training",
            artifacts.noise_checkpoint("cpu", "nr", 10, 1): "04_noise_robustness"}
    assert {p: artifacts.producer(p, "cpu") for p in want} == want
    err = artifacts.missing(artifacts.tc_checkpoint("cpu", 2), "cpu", "TC round 2 checkpoint")
    assert err.notebook == "02_temporal_correspondence"
    assert "--only 02" in str(err) and "notebooks/02_temporal_correspondence.ipynb" in str(err)
    assert artifacts.tracker_producer("ResPUL", "cpu", 3) == "03_training"


def test_architecture_table_matches_the_tree():
    text = (paths.project_root() / "docs" / "ARCHITECTURE.md").read_text()
    listed = set(re.findall(r"^\| `(pulkit/[\w/]+\.py)` \|", text, re.M))
    present = {f.relative_to(PKG.parent).as_posix() for f in PKG.rglob("*.py") if f.name != "__init__.py"}
    assert listed == present, (f"docs/ARCHITECTURE.md's module table: missing {sorted(present - listed)}, "
                               f"stale {sorted(listed - present)}")


def test_box_drawing_and_mosaic_are_written_once():
    sources = {m: f.read_text() for m, f in MODULES.items() if m.startswith("pulkit.figures")}
    rect = sorted(m for m, s in sources.items() if "Rectangle(" in s)
    assert rect == ["pulkit.figures.style"], f"boxes are drawn by figures.style.draw_box only, also in {rect}"
    grids = sorted(m for m, s in sources.items() if re.search(r"np\.full\(\(nrows", s))
    assert grids == ["pulkit.figures.style"], f"crop grids come from figures.style.crop_mosaic only, also in {grids}"
