"""The notebook runner: order, parameters, failures, staleness, the CLI.

Tiny throwaway notebooks live in tmp_path; results and runs go to tmp_path through the
PULKIT_RESULTS / PULKIT_RUNS variables (which the kernels inherit).  One test runs real papermill
kernels; the staleness tests execute the notebooks' cells in-process (same runner, faster).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from pulkit.__main__ import main
from pulkit.core import paths
from pulkit.tools import reproduce as rp

PARAMS = 'PROFILE = "cpu"\nSEED = 0\nDEVICE = "auto"\nINTERACTIVE = False\nTAG = "default"'


def write_notebook(path, *bodies):
    nb = new_notebook()
    params = new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell(f"# {path.stem}"), params] + [new_code_cell(b) for b in bodies]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def writer(number: str, reads: str | None = None, extra: str = "") -> str:
    """Cell source: record the parameters (and an earlier notebook's value) in results/<run>/NN_out.json.
    In-process runs have no kernel importing pulkit afresh, so the cell logs its read itself as the hook would."""
    lines = ["import json, os", "from pulkit.core import paths", "from pulkit.core.io import write_json",
             "root = paths.results_dir(PROFILE)", "got = None"]
    if reads:
        lines.append(f"src = root / '{reads}_out.json'")
        lines.append("if os.environ.get('PULKIT_TRACE_READS'): "
                     "open(os.environ['PULKIT_TRACE_READS'], 'a').write(str(src) + '\\n')")
        lines.append("got = json.loads(src.read_text())['summary']['seed']")
    lines.append(f"write_json(root / '{number}_out.json', "
                 f"{{'summary': {{'seed': SEED, 'tag': TAG, 'read': got}}, 'profile': PROFILE, 'extra': {extra!r}, "
                 f"'mplconfigdir': os.environ.get('MPLCONFIGDIR')}})")
    return "\n".join(lines)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PULKIT_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("PULKIT_CHECKPOINTS", str(tmp_path / "checkpoints"))
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    write_notebook(nbdir / "00_first.ipynb", writer("00"))
    write_notebook(nbdir / "01_second.ipynb", writer("01", reads="00"))
    write_notebook(nbdir / "02_third.ipynb", writer("02", reads="01"))
    return tmp_path, nbdir


def in_process(calls):
    """An executor running code cells in this process, with parameters applied after the tagged cell."""
    def execute(nb_path, executed, params, kernel, cwd):
        calls.append(nb_path.stem)
        if os.environ.get("PULKIT_TRACE_READS"):       # what importing pulkit does in a traced kernel
            Path(os.environ["PULKIT_TRACE_READS"]).parent.mkdir(parents=True, exist_ok=True)
            Path(os.environ["PULKIT_TRACE_READS"]).touch()
        nb = nbformat.read(nb_path, as_version=4)
        ns: dict = {}
        for cell in nb.cells:
            if cell.cell_type == "code":
                exec(cell.source, ns)
                if "parameters" in cell.metadata.get("tags", []):
                    ns.update(params)
        nbformat.write(nb, executed)
    return execute


def run(nbdir, calls, profile="smoke", **kw):
    return rp.reproduce(profile, notebooks_dir=nbdir, execute=in_process(calls), log=lambda s: None, **kw)


def results(tmp_path, number, run="smoke"):
    return json.loads((tmp_path / "results" / run / f"{number}_out.json").read_text())


# --------------------------------------------------------------------------- real papermill
def test_papermill_order_parameters_and_failure(env, capsys, monkeypatch):
    tmp_path, nbdir = env
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    write_notebook(nbdir / "03_broken.ipynb", "x = 1", "raise ValueError('deliberate failure')", "y = 2")
    write_notebook(nbdir / "04_after.ipynb", writer("04"))
    code = main(["reproduce", "--profile", "smoke", "--notebooks", str(nbdir),
                 "-p", "SEED", "3", "-p", "TAG", "sweep-a"])
    out, err = capsys.readouterr()
    assert code == rp.EXIT_FAILED
    # the run has its own folder, named from the parameters that differ from the notebooks' defaults
    run_dir = "smoke@seed3,tag-sweep-a"
    assert "run folder: smoke@seed3,tag-sweep-a" in out and not (tmp_path / "results" / "smoke").exists()
    # in order: each notebook read the previous one's results; -p values and PROFILE reached the kernels
    assert results(tmp_path, "00", run_dir)["summary"] == {"seed": 3, "tag": "sweep-a", "read": None}
    assert results(tmp_path, "01", run_dir)["summary"]["read"] == 3
    assert results(tmp_path, "02", run_dir)["profile"] == "smoke"
    # the kernels' audit hook recorded what each notebook read: 01 read 00's results, 00 read nothing
    with rp.use_run(run_dir):
        state = rp.read_state("smoke")
    assert state["01_second"]["reads"] == ["results/00_out.json"] and state["01_second"]["depends"] == ["00_first"]
    assert state["00_first"]["reads"] == [] and state["00_first"]["depends"] == []
    # the kernels keep matplotlib's state in the project's .cache/, not in $HOME
    assert results(tmp_path, "00", run_dir)["mplconfigdir"] == str(paths.project_root() / ".cache" / "matplotlib")
    assert "MPLCONFIGDIR" not in os.environ
    # the failure names the notebook, its cell, the error and where the traceback is; nothing after it ran
    assert "03_broken.ipynb at cell 4 of 5" in err and "ValueError: deliberate failure" in err
    assert str(tmp_path / "runs" / run_dir / "03_broken.ipynb") in err
    assert not (tmp_path / "results" / run_dir / "04_out.json").exists()
    assert "04_after" in out and "not run" in out and "seed=3" in out
    executed = nbformat.read(tmp_path / "runs" / run_dir / "00_first.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    assert "03_broken" not in state and "02_third" in state


# --------------------------------------------------------------------------- staleness (in-process)
def test_skips_up_to_date_and_reruns_stale_ones_and_what_reads_them(env):
    tmp_path, nbdir = env
    calls: list[str] = []
    assert [o.status for o in run(nbdir, calls)] == ["ran"] * 3
    assert calls == ["00_first", "01_second", "02_third"]

    calls.clear()
    assert [o.status for o in run(nbdir, calls)] == ["skipped"] * 3
    assert calls == []

    # an edit that leaves 01's results as they were: 01 re-runs, 02 (which reads them) does not
    write_notebook(nbdir / "01_second.ipynb", writer("01", reads="00") + "\n# edited")
    calls.clear()
    out = run(nbdir, calls)
    assert [o.status for o in out] == ["skipped", "ran", "skipped"] and calls == ["01_second"]

    # an edit that changes 01's results: 02 reads them, so it re-runs too
    write_notebook(nbdir / "01_second.ipynb", writer("01", reads="00", extra="new"))
    calls.clear()
    out = run(nbdir, calls)
    assert [o.status for o in out] == ["skipped", "ran", "ran"] and calls == ["01_second", "02_third"]

    calls.clear()
    assert [o.status for o in run(nbdir, calls, force=True)] == ["ran"] * 3


def test_outputs_show_notebooks_that_are_not_up_to_date(env):
    tmp_path, nbdir = env
    calls: list[str] = []
    run(nbdir, calls)
    (tmp_path / "results" / "smoke" / "01_out.json").unlink()      # a results file lost
    calls.clear()
    run(nbdir, calls)
    assert calls == ["01_second"]          # re-made with the same bytes: 02, which reads it, stays up to date
    calls.clear()
    run(nbdir, calls, parameters={"SEED": 5})                       # new parameters: a new run folder
    assert calls == ["00_first", "01_second", "02_third"]
    assert results(tmp_path, "02", "smoke@seed5")["summary"]["seed"] == 5
    assert results(tmp_path, "02")["summary"]["seed"] == 0          # the default run is untouched ...
    calls.clear()
    run(nbdir, calls)
    assert calls == []                                              # ... and still up to date
    run(nbdir, calls, parameters={"SEED": 0, "INTERACTIVE": True})  # defaults and display-only parameters
    assert calls == [] and not (tmp_path / "results" / "smoke@interactiveTrue").exists()


def test_checkpoints_a_notebook_writes_are_its_outputs(env):
    tmp_path, nbdir = env
    ckpt = "paths.checkpoints_dir(PROFILE).mkdir(parents=True, exist_ok=True)\n" \
           "(paths.checkpoints_dir(PROFILE) / 'net.pt').write_bytes(b'weights')"
    write_notebook(nbdir / "00_first.ipynb", writer("00"), ckpt)
    calls: list[str] = []
    run(nbdir, calls)
    assert "checkpoints/net.pt" in rp.read_state("smoke")["00_first"]["outputs"]
    assert "checkpoints/net.pt" in rp.read_state("smoke")["01_second"]["key"]["inputs"]
    (tmp_path / "checkpoints" / "smoke" / "net.pt").write_bytes(b"other weights")
    calls.clear()
    run(nbdir, calls)
    assert calls == ["00_first"]            # re-running 00 restored the bytes 01 read: 01 stays up to date
    (tmp_path / "checkpoints" / "smoke" / "net.pt").write_bytes(b"other weights")
    write_notebook(nbdir / "00_first.ipynb", writer("00"), ckpt.replace("b'weights'", "b'new weights'"))
    calls.clear()
    run(nbdir, calls)
    assert calls == ["00_first", "01_second"]   # 01 read 00's outputs, which changed; 02 reads only 01's


def test_package_change_makes_every_notebook_stale(env, monkeypatch):
    tmp_path, nbdir = env
    calls: list[str] = []
    run(nbdir, calls)
    monkeypatch.setattr(rp, "package_hash", lambda package_dir=None: "another-source")
    calls.clear()
    run(nbdir, calls)
    assert calls == ["00_first", "01_second", "02_third"]


def test_package_hash_covers_the_whole_package(tmp_path):
    """Not only ``pulkit/tools`` (where the runner lives): an edit to the method must make results stale."""
    import shutil

    import pulkit
    root = Path(pulkit.__file__).resolve().parent
    assert rp.package_hash() == rp.package_hash(root)
    copy = tmp_path / "pulkit"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = rp.package_hash(copy)
    (copy / "method" / "tc.py").write_text((copy / "method" / "tc.py").read_text() + "\n# an edit\n")
    assert rp.package_hash(copy) != before


def test_only_and_from(env):
    tmp_path, nbdir = env
    calls: list[str] = []
    out = run(nbdir, calls, only=["1"], force=True)
    assert [o.name for o in out] == ["01_second"] and calls == ["01_second"]   # 00's results absent: it fails
    assert out[0].status == "failed" and "FileNotFoundError" in out[0].message
    calls.clear()
    run(nbdir, calls)
    assert calls == ["00_first", "01_second", "02_third"]
    calls.clear()
    out = run(nbdir, calls, start="01")
    assert calls == ["01_second", "02_third"] and [o.status for o in out] == ["ran", "ran"]
    with pytest.raises(rp.ReproduceError, match="--only 07"):
        run(nbdir, calls, only=["07"])


def test_failure_stops_the_run_and_is_not_recorded(env):
    tmp_path, nbdir = env
    write_notebook(nbdir / "01_second.ipynb", "raise RuntimeError('no data')")
    calls: list[str] = []
    out = run(nbdir, calls)
    assert [o.status for o in out] == ["ran", "failed", "not run"] and rp.exit_code(out) == rp.EXIT_FAILED
    assert "01_second.ipynb" in out[1].message and "RuntimeError: no data" in out[1].message
    assert set(rp.read_state("smoke")) == {"00_first"}


def test_killed_notebook_is_never_recorded_as_done(env):
    tmp_path, nbdir = env
    calls: list[str] = []
    run(nbdir, calls)
    write_notebook(nbdir / "01_second.ipynb", writer("01", reads="00") + "\n# edited")
    inner = in_process(calls)

    def killed(nb_path, *args):
        inner(nb_path, *args)          # writes its results, then the process is killed before returning
        if nb_path.stem == "01_second":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rp.reproduce("smoke", notebooks_dir=nbdir, execute=killed, log=lambda s: None)
    assert "01_second" not in rp.read_state("smoke")
    assert not (tmp_path / "runs" / "smoke" / ".lock").exists()
    calls.clear()
    run(nbdir, calls)
    assert calls == ["01_second"]           # 02's input, 01's results, came out the same


def test_staleness_follows_what_a_notebook_reads(env):
    tmp_path, nbdir = env
    write_notebook(nbdir / "02_third.ipynb", writer("02"))          # reads nothing earlier
    calls: list[str] = []
    logged: list[str] = []
    rp.reproduce("smoke", notebooks_dir=nbdir, execute=in_process(calls), log=logged.append)
    assert rp.read_state("smoke")["02_third"]["depends"] == []
    write_notebook(nbdir / "00_first.ipynb", writer("00", extra="changed"))
    calls.clear()
    logged.clear()
    rp.reproduce("smoke", notebooks_dir=nbdir, execute=in_process(calls), only=["02"], log=logged.append)
    assert calls == [] and not any("warning" in m for m in logged)  # 02 is up to date, reads nothing of 00
    rp.reproduce("smoke", notebooks_dir=nbdir, execute=in_process(calls), only=["01"], log=logged.append)
    assert calls == [] and any("00_first is not run and not up to date" in m for m in logged)   # 01 reads 00's
    assert rp.dependencies(nbdir / "02_third.ipynb", rp.discover(nbdir), rp.read_state("smoke")) == []


def test_run_folder_names():
    from pathlib import Path as P
    nb = P(__file__).resolve().parents[1] / "notebooks" / "05_sectionB_taylor.ipynb"
    assert rp.run_folder("cpu", {}, [nb]) == "cpu" == rp.run_folder("cpu", {"SEED": 0, "INTERACTIVE": True}, [nb])
    assert rp.run_folder("cpu", {"SEED": 1}, [nb]) == "cpu@seed1"
    assert rp.run_folder("cpu", {"SEED": 2, "DEVICE": "cuda"}, [nb]) == "cpu@device-cuda,seed2"
    hashed = rp.run_folder("smoke", {"NOISE_LEVELS": [1.0]}, [nb])
    assert hashed.startswith("smoke@noise_levels-") and hashed == rp.run_folder("smoke", {"NOISE_LEVELS": (1.0,)}, [nb])


def test_notebook_writing_no_results_fails(env):
    tmp_path, nbdir = env
    write_notebook(nbdir / "02_third.ipynb", "x = 1")
    out = run(nbdir, [])
    assert out[2].status == "failed" and "wrote no results" in out[2].message


def test_missing_expected_notebooks_are_reported(env):
    tmp_path, nbdir = env
    out = run(nbdir, [], expected=("00_first", "01_second", "02_third", "03_fourth"))
    assert out[-1].name == "03_fourth" and out[-1].status == "missing"
    assert rp.exit_code(out) == rp.EXIT_MISSING
    assert "03_fourth" in rp.format_table(out)
    out = run(nbdir, [], only=["00"], expected=("00_first", "03_fourth"))
    assert [o.status for o in out] == ["skipped"]


def test_second_runner_on_the_same_profile_is_refused(env):
    tmp_path, nbdir = env
    lock = tmp_path / "runs" / "smoke" / ".lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(str(os.getpid()))
    with pytest.raises(rp.ReproduceError, match="is running"):
        run(nbdir, [])
    lock.write_text("999999999")                  # a dead owner's lock is taken over
    assert [o.status for o in run(nbdir, [])] == ["ran"] * 3


def test_notebook_hash_ignores_outputs(tmp_path):
    path = tmp_path / "00_x.ipynb"
    write_notebook(path, "print(1)")
    before = rp.notebook_hash(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[-1].execution_count = 7
    nbformat.write(nb, path)
    assert rp.notebook_hash(path) == before
    nb.cells[-1].source = "print(2)"
    nbformat.write(nb, path)
    assert rp.notebook_hash(path) != before
    (tmp_path / "01_bad.ipynb").write_text("{not json")
    with pytest.raises(rp.ReproduceError, match="01_bad.ipynb"):
        rp.notebook_hash(tmp_path / "01_bad.ipynb")


# --------------------------------------------------------------------------- CLI
def test_parse_value_like_papermill():
    assert rp.parse_value("3") == 3 and rp.parse_value("0.5") == 0.5 and rp.parse_value("1e-3") == 1e-3
    assert rp.parse_value("True") is True and rp.parse_value("None") is None
    assert rp.parse_value("[1, 2]") == [1, 2] and rp.parse_value("'07'") == "07"
    assert rp.parse_value("cuda") == "cuda" and rp.parse_value("data/got10k") == "data/got10k"


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "reproduce" in out and "figures" in out and "bench" in out


def test_cli_rejects_unknown_profile_and_profile_parameter(env, capsys):
    tmp_path, nbdir = env
    assert main(["reproduce", "--profile", "huge", "--notebooks", str(nbdir)]) == rp.EXIT_USAGE
    assert main(["reproduce", "--profile", "smoke", "-p", "PROFILE", "cpu", "--notebooks", str(nbdir)]) == rp.EXIT_USAGE
    assert "unknown profile 'huge'" in capsys.readouterr().err
