"""`pulkit explore`: the copy goes to the run's folder with INTERACTIVE = True and the run's parameters, its kernel
uses that run, the tracked notebook stays as it was, and an edited copy is moved aside rather than lost."""
from __future__ import annotations

import json
import os
import shutil

import nbformat
import pytest

from pulkit.__main__ import main
from pulkit.core import paths
from pulkit.tools import explore as ex
from pulkit.tools import lab
from pulkit.tools import reproduce as rp


@pytest.fixture
def runs(tmp_path, monkeypatch):
    for name in ("RESULTS", "CHECKPOINTS", "RUNS", "FIGURES"):
        monkeypatch.setenv(f"PULKIT_{name}", str(tmp_path / name.lower()))
    monkeypatch.delenv(paths.RUN_ENV, raising=False)
    return tmp_path / "runs"


@pytest.fixture
def notebooks(tmp_path):
    """A copy of the project's 05 and 06 (the copy's source must not be the tracked file in these tests)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for nb in ("05_sectionB_taylor.ipynb", "06_qualitative.ipynb"):
        shutil.copy(paths.notebooks_dir() / nb, folder / nb)
    return folder


def test_set_parameters_keeps_comments_and_appends_new_names():
    cell = 'PROFILE = "cpu"      # smoke | cpu | paper\nSEED = 0\nLEVELS = [0,\n          1]  # σ levels\nX = None'
    out = ex.set_parameters(cell, {"PROFILE": "smoke", "SEED": 3, "LEVELS": [0.5], "NEW": (1, "a")})
    assert out.splitlines() == ['PROFILE = "smoke"      # smoke | cpu | paper', "SEED = 3",
                                "LEVELS = [0.5]  # σ levels", "X = None", "NEW = (1, 'a')  # set by pulkit explore"]
    assert ex.set_parameters("A = 1", {"A": "it's"}) == 'A = "it\'s"'
    with pytest.raises(rp.ReproduceError, match="does not parse"):
        ex.set_parameters("A = (", {"A": 1})
    with pytest.raises(rp.ReproduceError, match="not a Python literal"):
        ex.set_parameters("A = 1", {"A": object()})


def test_copy_lives_in_the_run_folder_with_the_run_parameters(runs, notebooks, monkeypatch):
    tracked = (notebooks / "05_sectionB_taylor.ipynb").read_bytes()
    c = ex.write_copy("5", "smoke", {"SEED": 1}, notebooks)
    assert c.run == "smoke@seed1" and not c.kept and c.previous is None
    assert c.path == runs / "smoke@seed1" / "explore" / "05_sectionB_taylor.ipynb"
    assert (notebooks / "05_sectionB_taylor.ipynb").read_bytes() == tracked          # the source is untouched

    nb = nbformat.read(c.path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == lab.KERNEL_NAME == "pulkit"
    assert nb.metadata.kernelspec.display_name == "pulkit (.venv)"
    assert nb.metadata[ex.METADATA_KEY]["run"] == "smoke@seed1"
    assert rp.notebook_parameters(c.path) == {**rp.notebook_parameters(notebooks / "05_sectionB_taylor.ipynb"),
                                              "PROFILE": "smoke", "SEED": 1, "INTERACTIVE": True}
    assert not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")

    pin = next(cell for cell in nb.cells if cell.cell_type == "code")                # runs before any other code
    assert ex.PIN_TAG in pin.metadata.tags
    with monkeypatch.context() as mp:
        mp.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("PULKIT_")})
        exec(pin.source, {})                                                        # what the copy's kernel does
        assert os.environ[paths.RUN_ENV] == "smoke@seed1"
        assert paths.runs_dir("smoke") == runs / "smoke@seed1"                      # the run's folders, moved ones too


def test_display_only_parameters_do_not_change_the_run(runs, notebooks):
    plain = ex.write_copy("05", "smoke", {}, notebooks)
    assert plain.run == "smoke" and plain.path.parent == runs / "smoke" / "explore"
    same = ex.write_copy("05", "smoke", {"INTERACTIVE": False, "SEED": 0}, notebooks)   # SEED 0 is the default
    assert same.run == "smoke"
    assert rp.notebook_parameters(same.path)["INTERACTIVE"] is False                  # asked for explicitly


def test_an_unchanged_copy_is_kept_and_an_edited_one_moved_aside(runs, notebooks):
    first = ex.write_copy("06", "smoke", {}, notebooks)
    nb = json.loads(first.path.read_text())
    nb["cells"][-1].setdefault("outputs", []).append({"output_type": "stream", "name": "stdout", "text": "x"})
    first.path.write_text(json.dumps(nb))                                             # JupyterLab saved outputs
    again = ex.write_copy("06", "smoke", {}, notebooks)
    assert again.kept and json.loads(again.path.read_text()) == nb

    nb["cells"][-1]["source"] = "print('my edit')"
    first.path.write_text(json.dumps(nb))
    fresh = ex.write_copy("06", "smoke", {}, notebooks)
    assert not fresh.kept and fresh.previous == first.path.with_name("06_qualitative.prev.ipynb")
    assert "my edit" in fresh.previous.read_text() and "my edit" not in fresh.path.read_text()


def test_bad_requests_are_refused(runs, notebooks, capsys):
    with pytest.raises(rp.ReproduceError, match="no notebook '42'"):
        ex.write_copy("42", "smoke", {}, notebooks)
    with pytest.raises(rp.ReproduceError, match="--profile"):
        ex.write_copy("05", "smoke", {"PROFILE": "cpu"}, notebooks)
    broken = json.loads((notebooks / "05_sectionB_taylor.ipynb").read_text())
    for cell in broken["cells"]:
        cell.get("metadata", {}).pop("tags", None)
    (notebooks / "05_sectionB_taylor.ipynb").write_text(json.dumps(broken))
    with pytest.raises(rp.ReproduceError, match="05_sectionB_taylor.ipynb: 0 cells tagged 'parameters'"):
        ex.write_copy("05", "smoke", {}, notebooks)
    assert main(["explore", "05", "--profile", "nope", "--no-lab"]) == rp.EXIT_USAGE
    assert "unknown profile" in capsys.readouterr().err


def test_cli_writes_the_copy_without_a_server(runs, notebooks, capsys):
    assert main(["explore", "06", "--profile", "smoke", "-p", "SEED", "2", "--no-lab",
                 "--notebooks", str(notebooks)]) == 0
    out = capsys.readouterr().out
    assert "run smoke@seed2" in out and str(runs / "smoke@seed2" / "explore" / "06_qualitative.ipynb") in out
