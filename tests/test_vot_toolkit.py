"""pulkit under the official VOT toolkit (vot-toolkit 0.7.4, the `vot` extra), offline.

Marked ``vot_toolkit``: these tests run the real toolkit (``vot evaluate`` / ``vot analysis``) with
pulkit's TraX server, so they need the extra installed (``pip install -e '.[vot]'``; ``make venv``
does it).  Without it they FAIL saying so: CI installs it, and a missing toolkit must not pass
silently.

Data: a shortened copy of ``vot/bag`` (evaluation-only; no training anywhere here): frames 1-12
then 121-148 (40 frames).  At the cut the target jumps about 150 pixels, so even the untrained
tracker (a seeded AlexNet, one scale for speed) fails there once and the reset path (failure, skip 5,
re-initialisation, burn-in, EAO fragments) runs.  The EAO interval is [5, 20]: the curve ends at
the longest run (23 frames), so VOT2016's [108, 371] would leave both sides NaN.

Agreement measured on these outputs (about 1-2 minutes in all on 2 busy cores; the first run in
an environment adds about 12 s of numba compilation in the toolkit): same failures and
re-initialisation frames; accuracy within 0.002, EAO within 0.006, unsupervised accuracy within
0.003 (per-frame overlaps differ by up to 0.014: the toolkit counts rounded pixels, pulkit
intersects polygons).  Tolerance: 0.01 for accuracy and EAO.  The TraX server reproduces the
in-process tracker to 1e-4 pixels (float32 transport).
"""
from __future__ import annotations

import configparser
import json
from pathlib import Path

import numpy as np
import pytest

from pulkit.core import paths
from pulkit.data.sequences import DataError, read_vot, read_vot_sequence
from pulkit.tracking.trax import box_to_region, make_tracker, region_to_box

pytestmark = [pytest.mark.vot_toolkit, pytest.mark.timeout(600)]

FRAMES = list(range(12)) + list(range(120, 148))   # 0-based frames of vot/bag; the cut is after frame index 11
CUT = 12                                             # first frame after the cut in the shortened copy
EAO_INTERVAL = (5, 20)
TOL = 0.01                                           # accuracy / EAO: pixel counting vs polygon areas
SPEC = {"device": "cpu", "seed": 0, "tracker": {"scale_num": 1}}
NAME = "pulkit_untrained"


@pytest.fixture(scope="module")
def toolkit():
    from pulkit.evaluation import vot_toolkit

    try:
        vot_toolkit.require_toolkit()
    except ImportError as e:
        pytest.fail(f"{e}  (tests/test_vot_toolkit.py needs the official VOT toolkit: install the `vot` extra)",
                    pytrace=False)
    return vot_toolkit


@pytest.fixture(scope="module")
def bag(shared_root) -> Path:
    return shared_root / "vot" / "bag"


@pytest.fixture(scope="module")
def workspace(toolkit, bag, tmp_path_factory) -> Path:
    return toolkit.build_workspace(bag, tmp_path_factory.mktemp("vot") / "ws", {NAME: SPEC, "broken": {
        "device": "cpu", "tracker": {"scale_num": 2}}}, frames=FRAMES, eao_interval=EAO_INTERVAL)


@pytest.fixture(scope="module")
def toolkit_results(toolkit, workspace):
    return toolkit.run_toolkit(workspace, NAME, timeout=500)


@pytest.fixture(scope="module")
def comparison(toolkit, workspace, toolkit_results):
    """pulkit's numbers on the toolkit's recorded outputs (both experiments)."""
    return toolkit.compare_with_pulkit(workspace, NAME)


@pytest.fixture(scope="module")
def live(toolkit, workspace, toolkit_results):
    """The same tracker in-process under pulkit's reset-based protocol, against the toolkit's run."""
    tracker = make_tracker(None, device=SPEC["device"], seed=SPEC["seed"], overrides=SPEC["tracker"])
    return toolkit.compare_with_pulkit(workspace, NAME, tracker=tracker, experiments="baseline")


# --------------------------------------------------------------------------- coordinates (no toolkit run)
def test_trax_regions_convert_like_read_vot(bag):
    """The server's conversion is pulkit's reader's: the same groundtruth line gives the same box."""
    seq = read_vot_sequence(bag)
    lines = (bag / "groundtruth.txt").read_text().split()
    for i in (0, 57, 195):
        np.testing.assert_allclose(region_to_box([float(v) for v in lines[i].split(",")]), seq.boxes[i], atol=1e-9)
    np.testing.assert_allclose(region_to_box([11.0, 21.0, 30.0, 40.0]), [10.0, 20.0, 30.0, 40.0])
    assert box_to_region([10.0, 20.0, 30.0, 40.0]) == (11.0, 21.0, 30.0, 40.0)
    np.testing.assert_allclose(region_to_box(box_to_region([3.25, 4.5, 7.0, 9.0])), [3.25, 4.5, 7.0, 9.0])


@pytest.mark.parametrize("values, match", [([1, 2, 3], "rectangle"), ([1, 2, 0, 5], "no area"),
                                           ([1, 2, np.nan, 5], "non-finite"), ([1, 1, 1, 1, 1, 1], "no area")])
def test_trax_bad_regions(values, match):
    with pytest.raises(ValueError, match=match):
        region_to_box(values)


def test_untrained_tracker_is_deterministic(bag):
    seq = read_vot_sequence(bag)
    outs = []
    for _ in range(2):
        t = make_tracker(None, device="cpu", seed=3, overrides={"scale_num": 1})
        t.init(seq.image(0), seq.boxes[0])
        outs.append(t.update(seq.image(1)))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_trax_tracker_follows_the_precision_setting(monkeypatch):
    """The TraX server's tracker takes ``--precision`` / PULKIT_VOT_PRECISION (default auto, as the notebooks'
    trackers); fp32 stays available everywhere, bf16 is refused with a clear error where the CPU lacks it."""
    import pulkit.models.precision as prec
    from pulkit.tracking import trax

    assert make_tracker(None, device="cpu", seed=3, precision="fp32").precision == "fp32"
    monkeypatch.setattr(prec, "cpu_bf16_flags", lambda cpuinfo=None: ())
    assert make_tracker(None, device="cpu", seed=3).precision == "fp32"           # auto without native bf16
    with pytest.raises(prec.PrecisionError, match="native bf16"):
        make_tracker(None, device="cpu", seed=3, precision="bf16")
    monkeypatch.setenv("PULKIT_VOT_PRECISION", "fp32")
    assert trax._parse_args([]).precision == "fp32"
    assert trax._parse_args(["--precision", "bf16"]).precision == "bf16"


# --------------------------------------------------------------------------- workspace (no toolkit run)
def test_workspace_layout(toolkit, workspace, bag):
    seq_dir = workspace / "sequences" / "bag"
    assert (workspace / "sequences" / "list.txt").read_text().split() == ["bag"]
    frames = sorted((seq_dir / "color").iterdir())
    assert [f.name for f in frames[:2]] == ["00000001.jpg", "00000002.jpg"] and len(frames) == len(FRAMES)
    assert frames[CUT].resolve() == (bag / f"{FRAMES[CUT] + 1:08d}.jpg").resolve()   # linked, not copied
    src = (bag / "groundtruth.txt").read_text().split()
    assert (seq_dir / "groundtruth.txt").read_text().split() == [src[i] for i in FRAMES]
    seq = read_vot(workspace / "sequences")[0]                 # pulkit reads the copy as the toolkit does
    np.testing.assert_array_equal(seq.boxes, read_vot_sequence(bag).boxes[FRAMES])

    import yaml

    stack = yaml.safe_load((workspace / "stack.yaml").read_text())
    assert "dataset" not in stack                               # nothing to download
    base = stack["experiments"]["baseline"]
    assert base["type"] == "supervised" and base["skip_initialize"] == 5 and base["repetitions"] == 1
    eao = next(a for a in base["analyses"] if a["type"] == "supervised_eao_score")
    assert (eao["low"], eao["high"]) == EAO_INTERVAL
    assert stack["experiments"]["unsupervised"]["type"] == "unsupervised"
    assert yaml.safe_load((workspace / "config.yaml").read_text()) == {"registry": ["./trackers.ini"],
                                                                       "stack": "stack.yaml"}
    ini = configparser.ConfigParser(interpolation=None)
    ini.optionxform = str
    ini.read(workspace / "trackers.ini")
    sec = ini[NAME]
    assert (sec["protocol"], sec["command"]) == ("traxpython", "pulkit.tracking.trax")
    assert Path(sec["paths"]) == paths.project_root()
    assert sec["env_PULKIT_VOT_CHECKPOINT"] == "" and json.loads(sec["env_PULKIT_VOT_TRACKER"]) == {"scale_num": 1}
    assert sec["env_PULKIT_VOT_PRECISION"] == "auto"


def test_workspace_bad_input(toolkit, bag, tmp_path):
    good = {NAME: None}
    with pytest.raises(ValueError, match="unknown stack"):
        toolkit.build_workspace(bag, tmp_path / "a", good, stack="vot2099")
    with pytest.raises(ValueError, match="letters, digits"):
        toolkit.build_workspace(bag, tmp_path / "b", {"bad name": None})
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        toolkit.build_workspace(bag, tmp_path / "c", {NAME: tmp_path / "missing.pt"})
    with pytest.raises(ValueError, match="unknown keys"):
        toolkit.build_workspace(bag, tmp_path / "d", {NAME: {"chekpoint": None}})
    with pytest.raises(ValueError, match="outside 0..195"):
        toolkit.build_workspace(bag, tmp_path / "e", good, frames=[0, 196])
    with pytest.raises(DataError, match="neither a VOT root"):
        toolkit.build_workspace(tmp_path, tmp_path / "f", good)
    assert not any((tmp_path / n).exists() for n in "abcdef")   # nothing half-written
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a pulkit VOT workspace"):
        toolkit.build_workspace(bag, tmp_path / "g", good, frames=3)
    ws = toolkit.build_workspace(bag, tmp_path / "h", good, frames=3)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        toolkit.build_workspace(bag, ws, good, frames=3)
    assert toolkit.build_workspace(bag, ws, good, frames=4, overwrite=True) == ws
    assert len(list((ws / "sequences" / "bag" / "color").iterdir())) == 4


def test_replay_reports_a_protocol_disagreement(toolkit, workspace):
    """A region the toolkit kept but that does not overlap the target for pulkit: no numbers, a message."""
    from pulkit.evaluation.vot import evaluate_vot

    seq = read_vot(workspace / "sequences")[0]
    traj = [np.array([1.0])] + [p.copy() for p in seq.polygons[1:]]   # perfect polygons
    res = evaluate_vot(toolkit.ReplayTracker([("bag", traj)]), [seq], key="replay", repetitions=1, progress=False)
    assert res["failures"] == 0 and res["sequences"]["bag"]["accuracy"] > 0.99
    traj[7] = np.array([-500.0, -500.0, 10.0, 10.0])
    with pytest.raises(toolkit.ProtocolMismatch, match="failed at frame 7"):
        evaluate_vot(toolkit.ReplayTracker([("bag", traj)]), [seq], key="replay", repetitions=1, progress=False)


# --------------------------------------------------------------------------- the toolkit's runs
def test_toolkit_reset_experiment_runs_offline(toolkit_results):
    base = toolkit_results["experiments"]["baseline"]
    traj = base["sequences"]["bag"]["trajectories"]
    assert len(traj) == 1 and len(traj[0]) == len(FRAMES)
    codes = [int(r[0]) if r.size == 1 else -1 for r in traj[0]]
    assert codes[0] == 1 and codes[CUT] == 2                    # the cut makes the tracker fail ...
    assert codes[CUT + 1:CUT + 5] == [0] * 4 and codes[CUT + 5] == 1   # ... and the toolkit re-initialises 5 frames on
    assert base["failures"] == codes.count(2) and base["robustness"] == codes.count(2)   # one sequence
    assert 0 < base["accuracy"] < 1 and 0 < base["eao"] < 1
    assert base["eao_interval"] == list(EAO_INTERVAL) and (base["burnin"], base["skip"]) == (10, 5)
    uns = toolkit_results["experiments"]["unsupervised"]
    assert 0 < uns["accuracy"] < 1 and all(r.size == 4 for r in uns["sequences"]["bag"]["trajectories"][0][1:])


def test_toolkit_recorded_confidence(toolkit_results, workspace):
    conf = (workspace / "results" / NAME / "baseline" / "bag" / "bag_001_confidence.value").read_text().split("\n")
    tracked = [i for i, r in enumerate(toolkit_results["experiments"]["baseline"]["sequences"]["bag"]["trajectories"][0])
               if r.size == 4]
    assert all(np.isfinite(float(conf[i])) for i in tracked)


def test_pulkit_agrees_with_toolkit_reset_based(comparison):
    c = comparison["experiments"]["baseline"]
    assert c["agree_protocol"], c.get("mismatch")
    assert c["config"] == {"burnin": 10, "skip": 5, "eao_interval": list(EAO_INTERVAL), "repetitions": 1}
    d = c["difference"]
    assert d["failures"] == 0 and d["robustness"] == 0
    assert d["accuracy"] <= TOL and d["sequences"]["bag"]["accuracy"] <= TOL, d
    assert d["eao"] <= TOL and d["eao_curve_max"] <= 2 * TOL, d
    assert d["eao_curve_length"][0] == d["eao_curve_length"][1]
    assert c["pulkit"]["sequences"]["bag"]["failure_frames"] == [CUT]
    assert c["pulkit"]["sequences"]["bag"]["init_frames"] == [0, CUT + 5]


def test_pulkit_agrees_with_toolkit_unsupervised(comparison):
    c = comparison["experiments"]["unsupervised"]
    assert c["difference"]["accuracy"] <= TOL, c


def test_trax_server_reproduces_in_process_tracker(live):
    """Same tracker in-process under pulkit's protocol: same failures, boxes equal to float32 transport."""
    c = live["experiments"]["baseline"]
    assert list(live["experiments"]) == ["baseline"] and c["agree_protocol"]
    bag = c["live"]["bag"]
    assert bag["same_codes"] and bag["failure_frames"] == bag["toolkit_failure_frames"] == [CUT]
    assert bag["max_region_difference"] < 1e-3


def test_tracker_crash_is_an_error(toolkit, workspace, toolkit_results):
    """`vot evaluate` exits 0 when the tracker dies; run_toolkit checks the results and says so."""
    with pytest.raises(toolkit.ToolkitError, match="left no trajectory") as err:
        toolkit.run_toolkit(workspace, "broken", experiments="unsupervised", timeout=300)
    assert "scale_num must be odd" in str(err.value)          # the tracker's own error, from its log
    with pytest.raises(ValueError, match="no experiment"):
        toolkit.run_toolkit(workspace, NAME, experiments="realtime")
