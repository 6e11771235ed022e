"""Kill at any moment and resume: SIGKILL real pipeline processes, then check what they left behind.

* training (``train_supervised`` in a subprocess, tiny config): killed mid-run, the checkpoint under
  its final name loads, is not complete and is not trusted by ``matches``; the run loses at most one
  checkpoint interval, the resumed run starts from the checkpoint's step and ends with the same
  weights as an uninterrupted run; a complete checkpoint is reused, not retrained;
* a kill inside a checkpoint write (the process hangs in ``fsync`` of the temporary file, then is
  killed) leaves the previous checkpoint under the final name;
* figure export (``save_figure``): a killed export leaves each of the PDF and the PNG either as it
  was before or complete, never partial, and nothing under the final names when none existed;
* the notebook runner: a notebook killed mid-run (results file already written) is not recorded as
  done, and the next run re-runs it.

Children run in their own session and are killed with ``os.killpg(pid, SIGKILL)`` on their own
process group.  A child may be slowed down (``PULKIT_TEST_STEP_DELAY``) so the kill lands mid-run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

import pulkit.method.supervised as sup_mod
from pulkit.core.config import load_config
from pulkit.data.sequences import read_got10k
from pulkit.data.synthetic import generate_split
from pulkit.method.loop import is_complete
from pulkit.method.supervised import log_path, matches, run_config, train_supervised
from pulkit.models.net import load_checkpoint
from pulkit.tools import reproduce as rp

STEPS, EVERY = 12, 4
TINY = {"model": dict(exemplar_sz=95, instance_sz=127),
        "supervised": dict(steps=STEPS, batch_size=2, checkpoint_every=EVERY, log_every=1, max_gap=3)}

# Child prelude: optional per-batch delay, and an fsync trap that hangs inside pulkit.core.io's atomic write.
PRELUDE = textwrap.dedent('''
    import os, sys, time, types
    from pathlib import Path
    import pulkit.core.io as pio

    def trap_fsync(at, marker):
        """The at-th fsync of pulkit.core.io (1-based) writes `marker` and hangs: a kill then lands mid-write."""
        count = [0]
        def fsync(fd):
            count[0] += 1
            if count[0] == at:
                Path(marker).write_text(str(os.getpid()))
                time.sleep(600)
            os.fsync(fd)
        proxy = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
        proxy.fsync = fsync
        pio.os = proxy
''')

TRAIN = PRELUDE + textwrap.dedent('''
    import json
    from pulkit.core.config import load_config
    from pulkit.method.pairs import GroundTruthPairs
    from pulkit.data.sequences import read_got10k
    from pulkit.method.supervised import train_supervised

    data, ckpt, tiny, trap_at, marker = sys.argv[1:6]
    delay = float(os.environ.get("PULKIT_TEST_STEP_DELAY", "0"))
    if delay:
        sample = GroundTruthPairs.sample_batch
        GroundTruthPairs.sample_batch = lambda self, *a, **k: (time.sleep(delay), sample(self, *a, **k))[1]
    if int(trap_at):
        trap_fsync(int(trap_at), marker)
    cfg = load_config("smoke", json.loads(tiny), device="cpu")
    train_supervised(cfg, read_got10k(data, subset="train"), ckpt, loss="bce", progress=False)
''')

TC_ROUND = PRELUDE + textwrap.dedent('''
    import json
    from pulkit.core.config import load_config
    from pulkit.data.sequences import Sequence
    from pulkit.method import tc

    videos, init, out, over = sys.argv[1:5]
    delay = float(os.environ.get("PULKIT_TEST_STEP_DELAY", "0"))
    nce = tc.infonce                       # called once per training step: the slow-down hook
    tc.infonce = lambda *a, **k: (time.sleep(delay), nce(*a, **k))[1]
    seqs = [Sequence(d.name, sorted(d.glob("*.png"))) for d in sorted(Path(videos).iterdir())]
    tc.run_progressive(load_config("smoke", json.loads(over), device="cpu"), init, seqs, out, device="cpu",
                       progress=False)
''')

EXPORT = PRELUDE + textwrap.dedent('''
    from pulkit.figures.style import new_figure, save_figure

    out, mode, marker = sys.argv[1:4]

    def figure(v):
        fig, axes = new_figure(1, 1, width=2.0)
        axes[0, 0].plot([0, 1, 2], [0, v, 1])
        return fig

    figs = {1: figure(1.0), 2: figure(2.0)}
    if mode == "loop":                     # alternate versions until killed
        Path(marker).write_text(str(os.getpid()))
        while True:
            for v in (1, 2):
                save_figure(figs[v], "fig", "smoke", 0, out)
    else:                                  # "trapN": the N-th fsync of one export of version 2 hangs
        trap_fsync(int(mode[4:]), marker)
        save_figure(figs[2], "fig", "smoke", 0, out)
''')


# --------------------------------------------------------------------------- helpers
def spawn(tmp_path, source: str, *args, name: str = "child", **env) -> subprocess.Popen:
    """Run ``source`` with ``args`` in a new session; its output goes to ``tmp_path/<name>.log``."""
    script = tmp_path / f"{name}.py"
    script.write_text(source)
    log = open(tmp_path / f"{name}.log", "wb")
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLCONFIGDIR": str(tmp_path / "mpl"),
                 "PULKIT_DATA": str(tmp_path / "cache"), **{k: str(v) for k, v in env.items()}}
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], env=child_env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"child exited ({proc.returncode}) before {what}")
        if time.monotonic() > end:
            kill(proc)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the child's own process group (it was started in a new session) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def logged_steps(path: Path) -> list[int]:
    """Steps of the complete JSON lines of a training log (a last line cut by the kill is dropped)."""
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except json.JSONDecodeError:
            pass
    return steps


KILL_SEED = 20210619   # kill timings are drawn from this seed; PULKIT_TEST_KILL_SEED=<n> replays another draw


def kill_delay(low: float, high: float, what: str) -> tuple[float, str]:
    """A seeded random delay before a kill, and a note naming the seed (printed, and put in assertion
    messages, so a failure says how to replay it)."""
    seed = int(os.environ.get("PULKIT_TEST_KILL_SEED", KILL_SEED))
    delay = float(np.random.default_rng(seed).uniform(low, high))
    note = f"[{what}: killed {delay:.4f} s after the trigger; seed {seed}, replay with PULKIT_TEST_KILL_SEED={seed}]"
    print(note)
    return delay, note


def final_names(folder: Path) -> list[str]:
    """Files under ``folder`` that are not dot-named temporaries of an atomic write."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


# --------------------------------------------------------------------------- training
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread here and in the children: the same kernels (bitwise comparable weights), and
    several times faster than two threads on a machine shared with other jobs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_split(tmp_path_factory.mktemp("kill") / "train", n_videos=2, n_frames=6, width=96, height=72,
                          seed=7, n_distractors=0)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PULKIT_DATA", str(tmp_path_factory.mktemp("cache")))
        yield load_config("smoke", TINY, device="cpu")


@pytest.fixture(scope="module")
def reference(cfg, data, tmp_path_factory):
    """The uninterrupted run's final weights."""
    ckpt = train_supervised(cfg, read_got10k(data, subset="train"), tmp_path_factory.mktemp("ref") / "ref.pt",
                            loss="bce", progress=False)
    return load_checkpoint(ckpt)["model"]


def resume(cfg, data, ckpt, monkeypatch) -> list:
    """Resume in this process; returns the loop's TrainResult(s) (none when the checkpoint is reused)."""
    results = []
    real = sup_mod.train
    monkeypatch.setattr(sup_mod, "train", lambda *a, **k: results.append(real(*a, **k)) or results[-1])
    train_supervised(cfg, read_got10k(data, subset="train"), ckpt, loss="bce", progress=False)
    return results


def assert_same_weights(ckpt: Path, reference, note: str = "") -> None:
    got = load_checkpoint(ckpt)["model"]
    assert got.keys() == reference.keys()
    assert all(torch.equal(got[k], reference[k]) for k in got), f"resumed weights differ from the uninterrupted run {note}"


def test_killed_training_resumes_from_its_last_checkpoint(cfg, data, reference, tmp_path, monkeypatch):
    ckpt = tmp_path / "run" / "sup_bce.pt"
    proc = spawn(tmp_path, TRAIN, data, ckpt, json.dumps(TINY), 0, "-", PULKIT_TEST_STEP_DELAY=0.1)
    # kill somewhere in the second checkpoint interval, after the first checkpoint (step 4) is written
    wait_for(lambda: log_path(ckpt).is_file() and len(logged_steps(log_path(ckpt))) >= EVERY + 2, proc,
             what="step 6 in the training log")
    delay, note = kill_delay(0, 0.1, "training")
    time.sleep(delay)
    kill(proc)

    state = load_checkpoint(ckpt)                 # the file under the final name is whole
    saved = int(state["step"])
    last = max(logged_steps(log_path(ckpt)))
    assert saved % EVERY == 0 and EVERY <= saved < STEPS, (saved, note)
    assert 0 <= last - saved <= EVERY, f"lost {last - saved} steps, more than one checkpoint interval {note}"
    assert not state.get("complete") and not is_complete(ckpt), note
    assert not matches(ckpt, run_config(cfg, "bce")), note      # a later stage does not trust it
    assert final_names(ckpt.parent) == ["sup_bce.jsonl", "sup_bce.pt"], note

    (result,) = resume(cfg, data, ckpt, monkeypatch)
    assert result.resumed_from == saved and result.complete, note
    assert logged_steps(log_path(ckpt)) == list(range(1, STEPS + 1)), note     # every step logged once
    assert is_complete(ckpt) and matches(ckpt, run_config(cfg, "bce")), note
    assert_same_weights(ckpt, reference, note)

    before = ckpt.stat()
    assert resume(cfg, data, ckpt, monkeypatch) == []     # complete: reused, the loop is not even entered
    after = ckpt.stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_kill_inside_a_checkpoint_write_keeps_the_previous_checkpoint(cfg, data, reference, tmp_path, monkeypatch):
    ckpt, marker = tmp_path / "run" / "sup_bce.pt", tmp_path / "in_write"
    # pulkit.core.io's fsyncs in this run: 1 = the checkpoint of step 4, 2 = the checkpoint of step 8
    proc = spawn(tmp_path, TRAIN, data, ckpt, json.dumps(TINY), 2, marker)
    wait_for(marker.is_file, proc, what="the second checkpoint write")
    kill(proc)

    temps = [p.name for p in ckpt.parent.iterdir() if p.name.startswith(".sup_bce.pt.")]
    assert temps, "the kill should have left the atomic write's temporary file"
    assert final_names(ckpt.parent) == ["sup_bce.jsonl", "sup_bce.pt"]
    assert load_checkpoint(ckpt)["step"] == EVERY and not is_complete(ckpt)
    assert max(logged_steps(log_path(ckpt))) == 2 * EVERY

    (result,) = resume(cfg, data, ckpt, monkeypatch)
    assert result.resumed_from == EVERY
    assert_same_weights(ckpt, reference)


def test_kill_delay_replays_from_its_seed(monkeypatch):
    monkeypatch.setenv("PULKIT_TEST_KILL_SEED", "123")
    d1, note = kill_delay(0.0, 1.0, "x")
    d2, _ = kill_delay(0.0, 1.0, "x")
    assert d1 == d2 == float(np.random.default_rng(123).uniform(0.0, 1.0)) and "PULKIT_TEST_KILL_SEED=123" in note
    monkeypatch.delenv("PULKIT_TEST_KILL_SEED")
    assert kill_delay(0.0, 1.0, "x")[0] == float(np.random.default_rng(KILL_SEED).uniform(0.0, 1.0))


# --------------------------------------------------------------------------- a TC round
TC_STEPS = 6
TC_TINY = {"model": dict(exemplar_sz=103, instance_sz=167),
           "mining": dict(spans=(1,), candidates_per_video=2, start_stride=2, scale_num=1, response_up=4,
                          confidence="cosine", min_response=-1.0, fb_iou=0.0),
           "tc": dict(rounds=1, steps_per_round=TC_STEPS, batch_size=3, checkpoint_every=1, log_every=1),
           "bd": dict(bank_batch=8, exclude_frames=2, separation_frames=2, bank_refresh=2)}


def test_killed_tc_round_resumes_bitwise(tmp_path, monkeypatch):
    """SIGKILL a progressive TC run mid-round; resumed here it reuses the mined pairs and ends with the
    uninterrupted run's weights, projection head, AHM bank, head calibration and log."""
    import cv2

    from pulkit.data.sequences import Sequence
    from pulkit.method import tc
    from pulkit.models.net import build_net, save_checkpoint

    monkeypatch.setenv("PULKIT_DATA", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for v in range(3):                     # three panning videos of smooth texture, 6 frames
        big = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (5, 5), 0)
        (tmp_path / "videos" / f"v{v}").mkdir(parents=True)
        for i in range(6):
            cv2.imwrite(str(tmp_path / "videos" / f"v{v}" / f"{i:04d}.png"), big[i * 2:i * 2 + 72, i * 3:i * 3 + 96])
    seqs = [Sequence(d.name, sorted(d.glob("*.png"))) for d in sorted((tmp_path / "videos").iterdir())]
    cfg = load_config("smoke", TC_TINY, device="cpu")
    torch.manual_seed(0)
    init = save_checkpoint(tmp_path / "bd.pt", build_net(cfg.model), cfg, stage="bd/ahm")
    (ref,) = tc.run_progressive(cfg, init, seqs, tmp_path / "ref", device="cpu", progress=False)

    out = tmp_path / "run"
    ckpt = out / "tc_round1.pt"
    proc = spawn(tmp_path, TC_ROUND, tmp_path / "videos", init, out, json.dumps(TC_TINY), PULKIT_TEST_STEP_DELAY=0.3)
    wait_for(lambda: tc.log_path(ckpt).is_file() and len(logged_steps(tc.log_path(ckpt))) >= 2, proc,
             what="step 2 in the TC log")
    delay, note = kill_delay(0, 0.3, "TC round")
    time.sleep(delay)
    kill(proc)

    state = load_checkpoint(ckpt)
    saved = int(state["step"])
    assert 1 <= saved < TC_STEPS and not state["complete"], (saved, note)   # step 1 checkpointed before step 2
    assert max(logged_steps(tc.log_path(ckpt))) - saved <= 1, note          # checkpoint_every = 1
    assert not (out / "tc_round1.json").exists(), note
    pairs = out / f"pairs_round1{tc.pairs_suffix()}"
    mined = pairs.read_bytes()

    def mined_again(*a, **k):
        raise AssertionError(f"the killed round's pairs were mined again {note}")

    monkeypatch.setattr(tc, "mine_pairs", mined_again)
    (resumed,) = tc.run_progressive(cfg, init, seqs, out, device="cpu", progress=False)
    assert pairs.read_bytes() == mined == (tmp_path / "ref" / pairs.name).read_bytes(), note
    a, b = load_checkpoint(ref), load_checkpoint(resumed)
    assert b["complete"] and b["step"] == TC_STEPS, note
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), f"weights differ {note}"
    proj_a, proj_b = a["extra"]["projection"], b["extra"]["projection"]
    assert all(torch.equal(proj_a[k], proj_b[k]) for k in proj_a), f"projection heads differ {note}"
    assert a["extra"]["bank"]["step"] == b["extra"]["bank"]["step"], note
    assert torch.equal(a["extra"]["bank"]["embeddings"], b["extra"]["bank"]["embeddings"]), f"banks differ {note}"
    assert a["extra"]["calibration"] == b["extra"]["calibration"] and a["arch"] == b["arch"], note
    keys = ("step", "loss", "nr_loss", "infonce", "giveup_frac", "hardness")
    rows = [json.loads(line) for line in tc.log_path(resumed).read_text().splitlines()]
    ref_rows = [json.loads(line) for line in tc.log_path(ref).read_text().splitlines()]
    assert [[r[k] for k in keys] for r in rows] == [[r[k] for k in keys] for r in ref_rows], note


# --------------------------------------------------------------------------- figure export
@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """The bytes of the two figure versions the children export (save_figure is byte-deterministic)."""
    from pulkit.figures.style import new_figure, save_figure

    out = {}
    for v in (1, 2):
        fig, axes = new_figure(1, 1, width=2.0)
        axes[0, 0].plot([0, 1, 2], [0, float(v), 1])
        folder = tmp_path_factory.mktemp(f"v{v}")
        pdf, png = save_figure(fig, "fig", "smoke", 0, folder)
        out[v] = {"fig.pdf": pdf.read_bytes(), "fig.png": png.read_bytes()}
    assert out[1]["fig.png"] != out[2]["fig.png"]
    return out


@pytest.mark.parametrize("trap, expect", [(1, {"fig.pdf": 1, "fig.png": 1}),     # killed writing the PDF
                                          (2, {"fig.pdf": 2, "fig.png": 1}),     # PDF done, killed writing the PNG
                                          (1, {})])                               # first export ever, killed
def test_killed_figure_export_leaves_old_or_complete_files(tmp_path, versions, trap, expect):
    out, marker = tmp_path / "figures", tmp_path / "in_write"
    out.mkdir()
    if expect:
        for name, data in versions[1].items():
            (out / name).write_bytes(data)
    proc = spawn(tmp_path, EXPORT, out, f"trap{trap}", marker, PULKIT_COMMIT=_commit())
    wait_for(marker.is_file, proc, what=f"fsync {trap} of the export")
    kill(proc)
    assert final_names(out) == sorted(expect)
    for name, v in expect.items():
        assert (out / name).read_bytes() == versions[v][name], f"{name} is neither whole old nor whole new"


def test_figure_export_killed_at_a_random_moment(tmp_path, versions):
    out, marker = tmp_path / "figures", tmp_path / "started"
    proc = spawn(tmp_path, EXPORT, out, "loop", marker, PULKIT_COMMIT=_commit())
    wait_for(lambda: marker.is_file() and (out / "fig.png").is_file(), proc, what="the first export")
    delay, note = kill_delay(0.05, 1.0, "figure export")
    time.sleep(delay)
    kill(proc)
    assert final_names(out) == ["fig.pdf", "fig.png"], note
    for name in ("fig.pdf", "fig.png"):
        assert (out / name).read_bytes() in (versions[1][name], versions[2][name]), f"{name} is partial {note}"


def _commit() -> str:
    """The commit the parent's figures carry (children must write the same metadata)."""
    from pulkit.core.provenance import git_commit

    return git_commit()


# --------------------------------------------------------------------------- the notebook runner
def _notebook(path: Path, body: str) -> None:
    nb = new_notebook()
    params = new_code_cell('PROFILE = "cpu"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


WRITE = textwrap.dedent('''
    import os, time
    from pathlib import Path
    from pulkit.core import paths
    from pulkit.core.io import write_json
    write_json(paths.results_dir(PROFILE) / "0{nn}_out.json", {{"summary": {{"n": {nn}}}}})
    flag = Path(os.environ["PULKIT_TEST_FLAG"])
    if {nn} == 1 and flag.is_file():          # killed here, after its results file is written
        (flag.parent / "sleeping").write_text(str(os.getpid()))
        time.sleep(600)
''')


def test_runner_never_records_a_killed_notebook_as_done(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _notebook(nbdir / "00_first.ipynb", WRITE.format(nn=0))
    _notebook(nbdir / "01_slow.ipynb", WRITE.format(nn=1))
    flag, sleeping = tmp_path / "flag", tmp_path / "sleeping"
    flag.write_text("sleep")
    env = {"PULKIT_RESULTS": tmp_path / "results", "PULKIT_RUNS": tmp_path / "runs",
           "PULKIT_CHECKPOINTS": tmp_path / "checkpoints", "PULKIT_TEST_FLAG": flag}
    script = "from pulkit.__main__ import main\nimport sys\nraise SystemExit(main(sys.argv[1:]))\n"
    args = ("reproduce", "--profile", "smoke", "--notebooks", nbdir)
    package = rp.package_hash()

    proc = spawn(tmp_path, script, *args, name="first", **env)
    wait_for(sleeping.is_file, proc, timeout=180, what="notebook 01 to start sleeping")
    kernel = int(sleeping.read_text())
    kill(proc)
    try:
        os.kill(kernel, signal.SIGKILL)        # the kernel runs in its own session; it is ours to end
    except ProcessLookupError:
        pass

    state = json.loads((tmp_path / "runs" / "smoke" / ".state.json").read_text())["notebooks"]
    assert set(state) == {"00_first"}, "a notebook killed mid-run was recorded as done"
    assert (tmp_path / "results" / "smoke" / "01_out.json").is_file()     # its results file exists ...
    assert (tmp_path / "runs" / "smoke" / ".lock").is_file()              # ... and the dead run's lock

    flag.unlink()
    proc = spawn(tmp_path, script, *args, name="second", **env)
    code = proc.wait(timeout=180)
    log = (tmp_path / "second.log").read_text()
    assert code == 0, log[-3000:]
    state = json.loads((tmp_path / "runs" / "smoke" / ".state.json").read_text())["notebooks"]
    assert set(state) == {"00_first", "01_slow"}
    assert "[01_slow] running (never recorded as done)" in log
    if rp.package_hash() == package:           # another engineer's edit to pulkit/ would make 00 stale too
        assert "[00_first] running" not in log, "the finished notebook 00 was re-run"
