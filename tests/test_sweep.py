"""``pulkit sweep``: every point in its own run folder, points up to date skipped, only the notebooks a point
needs, the default run untouched, and the aggregate (mean +- SE over seeds, figures) in the sweep's folder."""
from __future__ import annotations

import csv
import json
import math

import pytest
from test_reproduce import env, in_process, write_notebook, writer  # noqa: F401 (env is a fixture)

from pulkit.core import paths
from pulkit.tools import reproduce as rp
from pulkit.tools import sweep as sw


def curves_writer(number: str) -> str:
    """A notebook that saves a key number and a training curve depending on SEED."""
    return "\n".join([
        "from pulkit.core import paths", "from pulkit.core.io import write_json",
        f"write_json(paths.results_dir(PROFILE) / '{number}_curve.json', {{'summary': {{'acc': 0.5 + SEED / 10, "
        "'ok': True}, 'curves': {'bd': {'step': [0, 1, 2], 'loss': [1.0, 0.5 + SEED, 0.2], 'lr': [1, 1, 1]}}})"])


def test_sweep_keeps_every_seed_and_aggregates(env, capsys):
    tmp_path, nbdir = env
    write_notebook(nbdir / "03_curves.ipynb", curves_writer("03"))     # reads nothing earlier
    calls: list[str] = []
    rp.reproduce("smoke", notebooks_dir=nbdir, execute=in_process(calls), log=lambda s: None)   # the default run
    default_state = (tmp_path / "runs" / "smoke" / ".state.json").read_bytes()

    calls.clear()
    folder, done = sw.sweep("smoke", ["03"], {"SEED": [0, 1, 2]}, notebooks_dir=nbdir, execute=in_process(calls),
                            log=lambda s: None)
    # seed 0 is the default run (up to date: nothing ran); seeds 1 and 2 ran 03 alone, since it reads nothing
    assert calls == ["03_curves", "03_curves"]
    assert [p["run"] for p in done] == ["smoke", "smoke@seed1", "smoke@seed2"]
    for seed, run in ((1, "smoke@seed1"), (2, "smoke@seed2")):
        saved = json.loads((tmp_path / "results" / run / "03_curve.json").read_text())
        assert saved["summary"]["acc"] == pytest.approx(0.5 + seed / 10)
    assert (tmp_path / "runs" / "smoke" / ".state.json").read_bytes() == default_state
    assert json.loads((tmp_path / "results" / "smoke" / "03_curve.json").read_text())["summary"]["acc"] == 0.5

    assert folder == paths.sweep_dir("smoke", "nb03_seed0-1-2")
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    acc = next(r for r in rows if r["key"] == "acc")
    assert float(acc["mean"]) == pytest.approx(0.6) and int(acc["n"]) == 3
    assert float(acc["se"]) == pytest.approx(0.1 / math.sqrt(3), rel=1e-3)
    assert not any(r["key"] == "ok" for r in rows)                     # booleans are not averaged
    saved = json.loads((folder / "sweep.json").read_text())
    assert saved["grid"] == {"SEED": [0, 1, 2]} and len(saved["points"]) == 3
    assert (folder / "sweep_summary.png").stat().st_size > 0 and (folder / "sweep_curves.png").stat().st_size > 0

    calls.clear()                                                     # a second sweep: every point is up to date
    sw.sweep("smoke", ["03"], {"SEED": [0, 1, 2]}, notebooks_dir=nbdir, execute=in_process(calls), log=lambda s: None)
    assert calls == []
    rp.reproduce("smoke", notebooks_dir=nbdir, execute=in_process(calls), log=lambda s: None)
    assert calls == []                                                # nor does the plain run re-run anything


def test_a_point_runs_the_notebooks_it_reads_first(env):
    tmp_path, nbdir = env
    calls: list[str] = []
    rp.reproduce("smoke", notebooks_dir=nbdir, execute=in_process(calls), log=lambda s: None)
    calls.clear()
    _, done = sw.sweep("smoke", ["02"], {"SEED": [4]}, notebooks_dir=nbdir, execute=in_process(calls),
                       log=lambda s: None)
    assert calls == ["00_first", "01_second", "02_third"]             # 02 reads 01, which reads 00
    assert done[0]["summary"]["02_third"]["read"] == 4


def test_sweep_groups_other_parameters_and_reports_failures(env):
    tmp_path, nbdir = env
    write_notebook(nbdir / "03_curves.ipynb", curves_writer("03") + "\nassert TAG != 'bad'")
    folder, done = sw.sweep("smoke", ["03"], {"TAG": ["a", "bad"], "SEED": [0, 1]}, notebooks_dir=nbdir,
                            execute=in_process([]), log=lambda s: None)
    assert [p["status"] for p in done] == ["ok", "ok", "failed", "failed"]
    rows = sw.aggregate(done)
    assert {r["group"] for r in rows} == {'TAG="a"'}
    assert next(r for r in rows if r["key"] == "acc")["n"] == 2


def test_bad_sweeps_are_refused(env):
    tmp_path, nbdir = env
    with pytest.raises(rp.ReproduceError, match="at least one"):
        sw.points({})
    with pytest.raises(rp.ReproduceError, match="PROFILE"):
        sw.points({"PROFILE": ["cpu"]})
    with pytest.raises(rp.ReproduceError, match="--only"):
        sw.sweep("smoke", [], {"SEED": [0]}, notebooks_dir=nbdir, execute=in_process([]))
