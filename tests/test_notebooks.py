"""Every notebook's structure (parameters cell, no outputs) and the helpers notebooks use."""
from __future__ import annotations

import ast
import json

import nbformat
import pytest

from pulkit.core import artifacts, paths
from pulkit.core import results as nbh
from pulkit.core.config import PROFILES

NOTEBOOKS = sorted(paths.notebooks_dir().glob("*.ipynb"))
REQUIRED = ("PROFILE", "SEED", "DEVICE", "INTERACTIVE")


def parameters_cells(nb):
    return [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]


def literal_assignments(source: str) -> dict:
    """``{name: value}`` of a parameters cell; fails unless every statement assigns a literal to a name."""
    out = {}
    for stmt in ast.parse(source).body:
        assert isinstance(stmt, ast.Assign), f"not an assignment: {ast.unparse(stmt)!r}"
        assert all(isinstance(t, ast.Name) for t in stmt.targets), f"not a plain name: {ast.unparse(stmt)!r}"
        try:
            value = ast.literal_eval(stmt.value)
        except ValueError:
            pytest.fail(f"not a literal (papermill cannot override derived values): {ast.unparse(stmt)!r}")
        for t in stmt.targets:
            out[t.id] = value
    return out


def test_the_first_notebook_exists():
    assert (paths.notebooks_dir() / "00_data.ipynb").is_file()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_structure(path):
    assert path.stem in artifacts.NOTEBOOKS, f"{path.name}: not in pulkit.core.artifacts.NOTEBOOKS (the run order)"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    cells = parameters_cells(nb)
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters', expected exactly one"
    params = literal_assignments(cells[0].source)
    missing = [k for k in REQUIRED if k not in params]
    assert not missing, f"{path.name}: parameters cell lacks {missing}"
    assert params["PROFILE"] in PROFILES and isinstance(params["SEED"], int)
    assert params["INTERACTIVE"] is False, f"{path.name}: INTERACTIVE must default to False (papermill runs)"
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            assert not c.outputs, f"{path.name}: cell {i + 1} has outputs (commit notebooks stripped)"
            assert c.execution_count is None, f"{path.name}: cell {i + 1} has an execution count"
    swallowing = [i + 1 for i, c in enumerate(nb.cells) if c.cell_type == "code" and catches(c.source)]
    assert not swallowing, f"{path.name}: cells {swallowing} catch exceptions (notebooks let them propagate)"


def catches(source: str) -> bool:
    """True when the cell has a ``try`` with an ``except`` clause (``try``/``finally`` is fine)."""
    from IPython.core.inputtransformer2 import TransformerManager

    tree = ast.parse(TransformerManager().transform_cell(source))  # magics become plain Python
    return any(isinstance(n, ast.Try) and n.handlers for n in ast.walk(tree))


def test_catches():
    assert catches("try:\n    x = 1\nexcept ValueError:\n    pass")
    assert not catches("%matplotlib inline\ntry:\n    x = 1\nfinally:\n    y = 2")


def test_literal_assignments_rejects_logic():
    assert literal_assignments('PROFILE = "cpu"\nSEED = 0\nX = None\nL = [1, (2, 3)]') == \
        {"PROFILE": "cpu", "SEED": 0, "X": None, "L": [1, (2, 3)]}
    for bad in ('STEPS = 10 * 2 if True else 1', 'import os', 'ROOT = os.getcwd()', 'a.b = 1'):
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            literal_assignments(bad)


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path))
    return tmp_path


def test_save_and_load_results_with_provenance(results):
    from pulkit.core.config import load_config

    cfg = load_config("smoke", seed=4)
    path = nbh.save_results("smoke", "03_training", {"auc": 0.5, "summary": {"auc": 0.5}}, cfg=cfg)
    assert path == results / "smoke" / "03_training.json"
    back = nbh.load_results("smoke", "03_training")
    assert back["auc"] == 0.5 and back["provenance"]["seed"] == 4
    assert back["provenance"]["profile"] == "smoke" and back["provenance"]["config_hash"] == cfg.hash
    assert not list((results / "smoke").glob(".*"))  # no temporaries left behind
    first = path.read_bytes()
    nbh.save_results("smoke", "03_training", {"summary": {"auc": 0.5}, "auc": 0.5}, cfg=cfg)
    assert path.read_bytes() == first  # deterministic: sorted keys, no timestamps


def test_missing_results_name_the_notebook(results):
    with pytest.raises(nbh.MissingResultsError, match="notebooks/04_noise_robustness.ipynb") as e:
        nbh.load_results("cpu", "04_noise_robustness")
    assert e.value.notebook == "04_noise_robustness" and "--only 04" in str(e.value)
    assert isinstance(e.value, FileNotFoundError)


def test_bad_results_are_refused(results):
    with pytest.raises(ValueError, match="names no notebook"):
        artifacts.results_path("cpu", "noise")
    with pytest.raises(ValueError, match="names no notebook"):
        artifacts.results_path("cpu", "04_../../etc")
    with pytest.raises(TypeError, match="scalars"):
        nbh.save_results("cpu", "04_noise_robustness", {"summary": {"auc": [0.1, 0.2]}})
    with pytest.raises(ValueError, match="provenance"):
        nbh.save_results("cpu", "04_noise_robustness", {"provenance": {}})
    with pytest.raises(TypeError, match="dict"):
        nbh.save_results("cpu", "04_noise_robustness", [1, 2])
    (results / "cpu").mkdir()
    (results / "cpu" / "04_noise_robustness.json").write_text("{truncated")
    with pytest.raises(ValueError, match="04_noise_robustness.json"):
        nbh.load_results("cpu", "04_noise_robustness")


def test_timings_go_to_their_own_file(results):
    sw = nbh.Stopwatch()
    with sw("train"):
        pass
    with sw("train"):
        pass
    path = nbh.save_timings("cpu", "01_background_discrimination", sw.seconds)
    assert path == results / "cpu" / "timings" / "01.json"
    record = json.loads(path.read_text())
    assert set(record["seconds"]) == {"train"} and record["machine"]["cpu_count"] >= 1
    with pytest.raises(TypeError, match="seconds"):
        nbh.save_timings("cpu", "01", {"train": "fast"})


def test_notebook_for_results_names():
    assert artifacts.notebook("02_temporal_correspondence") == "02_temporal_correspondence"
    assert artifacts.notebook("07_benchmarks.json") == "07_benchmarks"
    assert artifacts.notebook("07") == "07_benchmarks"
    with pytest.raises(ValueError, match="names no notebook"):
        artifacts.notebook("42_other")
