"""Repository hygiene: notebooks committed stripped, no machine paths, no generated files tracked.

Runs on the files git tracks (plus, for notebooks, their committed version at HEAD); outside a git
checkout it scans the working tree instead.  ``.ci/run`` runs this module before ``make test``.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from pulkit.core import paths

ROOT = paths.project_root()
SCANNED = ("pulkit/", "tests/", "notebooks/", "Makefile", ".ci/")
# Built from pieces so this file does not match itself.
MACHINE_PATH = re.compile("(?<![\\w.~])/(" + "|".join(["wo" + "rk", "t" + "mp", "ro" + "ot", "ho" + "me"]) + ")/")
GENERATED = ("results/", "runs/", "checkpoints/", "data/synthetic/", "data/cache/", ".venv/", ".cache/")
MAX_TRACKED_BYTES = 2_000_000
COMMITTED_RESULTS = ("results/cpu/claims.json",)   # the cpu run's claims: the README's verdicts come from it


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def tracked_files() -> list[str]:
    listed = _git("ls-files", "-z")
    if listed is None:  # not a git checkout: everything under the scanned roots
        return sorted(p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                      if p.is_file() and ".venv" not in p.parts and "__pycache__" not in p.parts)
    return sorted(f for f in listed.split("\0") if f and (ROOT / f).is_file())


def scanned_files() -> list[str]:
    return [f for f in tracked_files() if f.startswith(SCANNED) or f in SCANNED]


def machine_paths(text: str) -> list[str]:
    """Lines of ``text`` holding an absolute machine path."""
    return [line.strip() for line in text.splitlines() if MACHINE_PATH.search(line)]


def notebook_outputs(text: str) -> list[int]:
    """1-based numbers of code cells with outputs or an execution count."""
    nb = json.loads(text)
    return [i + 1 for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]


def test_scans_something():
    files = scanned_files()
    assert any(f.startswith("pulkit/") for f in files) and "Makefile" in files


def test_no_absolute_machine_paths():
    offenders = {}
    for f in scanned_files():
        try:
            text = (ROOT / f).read_text()
        except UnicodeDecodeError:
            continue
        hits = machine_paths(text)
        if hits:
            offenders[f] = hits[:3]
    assert not offenders, f"absolute machine paths (resolve them from pulkit.core.paths or tmp_path): {offenders}"


def test_detector_catches_paths_and_spares_the_rest():
    bad = "/".join(["", "work", "main", "x.py"])
    assert machine_paths(f"root = '{bad}'") and machine_paths("cd " + "/".join(["", "tmp", "x"]))
    assert not machine_paths("paths.results_dir(profile) / 'timings/01.json'")
    assert not machine_paths("see https://example.org/home/page and ~/.cache/x and data/tmp/x")


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_notebooks_stripped_in_tree_and_at_head(path):
    assert not notebook_outputs((ROOT / path).read_text()), f"{path}: outputs in the working tree (nbstripout it)"
    committed = committed_at_head(path)
    if committed is not None:  # None: HEAD does not hold this notebook yet (a git failure fails instead)
        assert not notebook_outputs(committed), f"{path}: committed with outputs"


def _git_or_fail(*args: str, cwd: Path = ROOT) -> str:
    """``git args`` in ``cwd``; FAILS the test (never skips) when git cannot run or exits non-zero."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.fail(f"git {' '.join(args)} could not run in {cwd}: {e!r}; the stripped-at-HEAD check needs git")
    if out.returncode != 0:
        pytest.fail(f"git {' '.join(args)} failed in {cwd} (exit {out.returncode}): {out.stderr.strip()}; "
                    "the stripped-at-HEAD check needs a git checkout with a HEAD commit")
    return out.stdout


def committed_at_head(path: str, cwd: Path = ROOT) -> str | None:
    """``path``'s text at HEAD; None only when HEAD does not hold it (a new notebook); fails when git fails."""
    if not _git_or_fail("ls-tree", "--name-only", "HEAD", "--", path, cwd=cwd).strip():
        return None
    return _git_or_fail("show", f"HEAD:{path}", cwd=cwd)


def test_git_failure_fails_the_head_check(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    with pytest.raises(pytest.fail.Exception, match="needs a git checkout"):
        committed_at_head("notebooks/00_data.ipynb", cwd=tmp_path)  # not a git checkout
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # git not found at all
    with pytest.raises(pytest.fail.Exception, match="could not run"):
        committed_at_head("notebooks/00_data.ipynb")


def test_head_lookup_reads_committed_text_and_spots_new_files():
    committed = committed_at_head("Makefile")
    assert committed is not None and committed == _git_or_fail("show", "HEAD:Makefile")
    assert committed_at_head("notebooks/does_not_exist_at_head.ipynb") is None


def test_no_generated_or_huge_files_tracked():
    files = tracked_files()
    generated = [f for f in files if (f.startswith(GENERATED) and f not in COMMITTED_RESULTS)
                 or "/.ipynb_checkpoints/" in f or f.endswith(".pyc")]
    assert not generated, f"generated files are tracked: {generated[:5]}"
    huge = [f for f in files if (ROOT / f).stat().st_size > MAX_TRACKED_BYTES]
    assert not huge, f"files over {MAX_TRACKED_BYTES} bytes are tracked: {huge}"


def test_outputs_of_other_runs_are_ignored():
    """A sweep's or an explore's run folders (``<profile>@<key>``) and the smoke run's outputs never show up as
    untracked files; the cpu run's figures and claims stay committable."""
    if _git("rev-parse", "--git-dir") is None:
        pytest.skip("not a git checkout")
    outputs = ["figures/smoke@seed1/fig.png", "figures/cpu@seed2/fig.png", "results/cpu@seed1/01.json",
               "results/sweeps/cpu/x.json", "runs/cpu@seed1/explore/05.ipynb", "checkpoints/cpu@seed1/bd.pt",
               "figures/smoke/fig.png"]
    ignored = (_git("check-ignore", "--no-index", *outputs) or "").split()
    assert ignored == outputs
    assert _git("check-ignore", "--no-index", "figures/cpu/fig.png", "results/cpu/claims.json") is None


def test_no_tracked_executed_notebooks_outside_notebooks():
    stray = [f for f in tracked_files() if f.endswith(".ipynb") and not f.startswith("notebooks/")]
    assert not stray, f"notebooks outside notebooks/ are tracked (executed copies belong in runs/): {stray}"


def _requirement(spec: str) -> tuple[str, str]:
    """``("opencv-python-headless", ">=4.8")`` from a requirement string (name normalised)."""
    m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*$", spec)
    assert m, f"unparsable requirement {spec!r}"
    return re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    import tomllib
    import yaml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_requirement(s) for s in project["dependencies"]}
    for extra in project.get("optional-dependencies", {}).values():
        declared |= {_requirement(s) for s in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_requirement(s) for s in pip if not s.startswith("-e")}
    assert listed == declared, (f"environment.yml and pyproject.toml disagree: only in environment.yml "
                                f"{sorted(listed - declared)}, only in pyproject.toml {sorted(declared - listed)}")
    assert "python=3.11" in conda and "pip" in conda
