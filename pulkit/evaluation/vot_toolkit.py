"""pulkit trackers under the official VOT toolkit (PyPI ``vot-toolkit==0.7.4``, the ``vot`` extra), offline.

Builds a toolkit workspace, runs ``vot evaluate`` and ``vot analysis`` on it, and cross-checks the
toolkit's scores against pulkit's own VOT protocol on the same trajectories.
Steps, matched definitions and the residual differences: docs/modules.md.
"""
from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from pulkit.core import paths
from pulkit.core.config import EvalConfig
from pulkit.core.io import read_json, write_json
from pulkit.data.images import image_size
from pulkit.data.sequences import DataError, read_vot, read_vot_sequence
from pulkit.evaluation.vot import evaluate_vot, run_vot_sequence, vot_accuracy, vot_overlaps

STACKS = {  # name -> (title, EAO interval); burn-in 10 and skip 5 in all
    "vot2016-like": ("VOT2016 (local, pulkit)", (108, 371)),
    "vot2017-like": ("VOT2017 (local, pulkit)", (100, 356)),
    "vot2018-like": ("VOT2018 (local, pulkit)", (100, 356)),
}
MARKER = "pulkit_workspace.json"
ANALYSIS_NAME = "pulkit"
SUPERVISED, UNSUPERVISED = "baseline", "unsupervised"
_IDENTIFIER = re.compile(r"^[a-zA-Z0-9_-]+$")   # the toolkit's tracker identifiers
_TRACKER_KEYS = {"checkpoint", "device", "seed", "backbone", "tracker", "precision"}


class ToolkitError(RuntimeError):
    """The VOT toolkit failed, timed out or left results missing; the message quotes its output."""


def require_toolkit() -> None:
    """Import check: ``vot`` 0.7.4 and ``trax`` from ``vot-trax``, or an ``ImportError`` saying what to install."""
    hint = "install pulkit's vot extra: pip install -e '.[vot]' (vot-toolkit==0.7.4, attributee==0.1.9, vot-trax)"
    try:
        import vot
        from trax import Server  # noqa: F401  (vot-trax; PyPI's `trax` has no Server)
    except ImportError as e:
        raise ImportError(f"the official VOT toolkit is not importable ({e}); {hint}") from None
    if vot.__version__ != "0.7.4":
        raise ImportError(f"vot-toolkit {vot.__version__} is installed; pulkit needs 0.7.4 (later releases crash in "
                          f"the supervised experiment); {hint}")


# --------------------------------------------------------------------------- workspace
def _source_folders(sequences) -> list[Path]:
    if isinstance(sequences, (str, os.PathLike)):
        root = Path(sequences)
        if (root / "groundtruth.txt").is_file():
            return [root]
        lst = root / "list.txt"
        if not lst.is_file():
            raise DataError(f"{root}: neither a VOT root (list.txt) nor a VOT sequence (groundtruth.txt)")
        names = [ln.strip() for ln in lst.read_text().splitlines() if ln.strip()]
        if not names:
            raise DataError(f"{lst}: lists no sequence")
        return [root / n for n in names]
    folders = [Path(s) for s in sequences]
    if not folders:
        raise ValueError("build_workspace: no sequences given")
    return folders


def _select_frames(frames, n: int, where: Path) -> list[int]:
    if frames is None:
        return list(range(n))
    if isinstance(frames, (int, np.integer)):
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        return list(range(min(int(frames), n)))
    idx = [int(i) for i in frames]
    bad = [i for i in idx if not 0 <= i < n]
    if bad or not idx:
        raise ValueError(f"{where}: frame indices {bad or idx} outside 0..{n - 1}")
    if len(set(idx)) != len(idx):
        raise ValueError(f"{where}: repeated frame indices in {idx}")
    return idx


def _groundtruth_lines(path: Path, n: int) -> list[str]:
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    for k, ln in enumerate(lines, 1):
        parts = ln.split(",")
        try:
            [float(p) for p in parts]
        except ValueError:
            raise DataError(f"{path}: line {k} is not comma-separated numbers: {ln!r}") from None
        if len(parts) not in (4, 8):
            raise DataError(f"{path}: line {k} has {len(parts)} numbers, the toolkit reads 4 (rectangle) or 8 (polygon)")
    if len(lines) != n:
        raise DataError(f"{path}: {len(lines)} regions for {n} frames")
    return lines


def _link(src: Path, dst: Path) -> None:
    try:
        dst.symlink_to(src.resolve())
    except OSError:  # no symlinks here (some filesystems): copy
        shutil.copyfile(src, dst)


def _write_sequence(src_folder: Path, dst_root: Path, frames) -> dict[str, Any]:
    seq = read_vot_sequence(src_folder)
    idx = _select_frames(frames, len(seq), src_folder)
    gt = _groundtruth_lines(src_folder / "groundtruth.txt", len(seq))
    if not np.isfinite(seq.boxes[idx[0]]).all():
        raise DataError(f"{src_folder}: frame {idx[0]} (the first selected) has no usable region; the toolkit "
                        "initialises there")
    out = dst_root / seq.name
    (out / "color").mkdir(parents=True)
    for k, i in enumerate(idx, 1):
        _link(seq.frames[i], out / "color" / f"{k:08d}.jpg")
    (out / "groundtruth.txt").write_text("\n".join(gt[i] for i in idx) + "\n")
    for tag in sorted([*src_folder.glob("*.tag"), *src_folder.glob("*.label")]):
        rows = tag.read_text().splitlines()
        (out / tag.name).write_text("\n".join(rows[i] if i < len(rows) else "0" for i in idx) + "\n")
    w, h = image_size(seq.frames[idx[0]])
    (out / "sequence").write_text(f"name={seq.name}\nfps=30\nformat=default\nchannels.color=color/%08d.jpg\n"
                                  f"length={len(idx)}\nwidth={w}\nheight={h}\n")
    return {"name": seq.name, "source": str(src_folder.resolve()), "frames": idx}


def _stack(title: str, eao_interval, burnin: int, skip: int, repetitions: int) -> dict[str, Any]:
    lo, hi = (int(v) for v in eao_interval)
    if not 0 <= lo <= hi:
        raise ValueError(f"EAO interval must satisfy 0 <= low <= high, got {eao_interval}")
    ar = {"sensitivity": 30, "burnin": int(burnin)}
    return {"title": title, "experiments": {
        SUPERVISED: {"type": "supervised", "repetitions": int(repetitions), "skip_initialize": int(skip),
                     "analyses": [{"type": "supervised_average_ar", **ar}, {"type": "supervised_ar", **ar},
                                  {"type": "cumulative_failures"},
                                  {"type": "supervised_eao_score", "low": lo, "high": hi, "burnin": int(burnin)},
                                  {"type": "supervised_eao_curve", "burnin": int(burnin)}]},
        UNSUPERVISED: {"type": "unsupervised", "repetitions": 1,
                       "analyses": [{"type": "average_accuracy", "burnin": int(burnin)},
                                    {"type": "accuracy", "burnin": int(burnin)}]},
    }}


def _tracker_section(name: str, spec, timeout: int) -> dict[str, str]:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"tracker name {name!r}: the VOT toolkit takes letters, digits, '-' and '_' only")
    if spec is None or isinstance(spec, (str, os.PathLike)):
        spec = {"checkpoint": spec}
    if not isinstance(spec, Mapping):
        raise TypeError(f"tracker {name!r}: give a checkpoint path, None or a mapping, got {type(spec).__name__}")
    unknown = set(spec) - _TRACKER_KEYS
    if unknown:
        raise ValueError(f"tracker {name!r}: unknown keys {sorted(unknown)}; valid: {sorted(_TRACKER_KEYS)}")
    ckpt = spec.get("checkpoint")
    if ckpt:
        ckpt = Path(ckpt).resolve()
        if not ckpt.is_file():
            raise FileNotFoundError(f"tracker {name!r}: {ckpt}: no such checkpoint file")
    overrides = spec.get("tracker") or {}
    if not isinstance(overrides, Mapping):
        raise TypeError(f"tracker {name!r}: 'tracker' overrides must be a mapping, got {overrides!r}")
    import json

    return {"label": name, "protocol": "traxpython", "command": "pulkit.tracking.trax", "paths": str(paths.project_root()),
            "python": sys.executable, "timeout": str(int(timeout)),
            "env_PULKIT_VOT_CHECKPOINT": str(ckpt) if ckpt else "",
            "env_PULKIT_VOT_DEVICE": str(spec.get("device", "auto")),
            "env_PULKIT_VOT_SEED": str(int(spec.get("seed", 0))),
            "env_PULKIT_VOT_BACKBONE": str(spec.get("backbone", "alexnet")),
            "env_PULKIT_VOT_PRECISION": str(spec.get("precision", "auto")),
            "env_PULKIT_VOT_TRACKER": json.dumps(dict(overrides), sort_keys=True)}


def build_workspace(sequences_root_or_list, workspace, trackers: Mapping[str, Any], stack: str = "vot2016-like", *,
                    frames=None, eao_interval: tuple[int, int] | None = None, cfg: EvalConfig | None = None,
                    repetitions: int = 1, timeout: int = 120, overwrite: bool = False) -> Path:
    """Write a VOT toolkit workspace at ``workspace`` (returned) that runs offline.

    ``sequences_root_or_list``: a VOT root (``list.txt``, ``<seq>/groundtruth.txt``), one sequence
    folder, or a list of sequence folders (frames ``%08d.jpg`` in the folder or ``color/``).
    ``frames``: None (all), N (the first N) or 0-based frame indices taken from every sequence, in
    that order: a shortened copy (frames are linked, ``groundtruth.txt`` and tag files cut to match).
    ``trackers``: name -> checkpoint path, None (an untrained AlexNet from seed 0) or a mapping with
    ``checkpoint``, ``device`` (default ``auto``), ``seed``, ``backbone``, ``tracker`` (a dict of
    ``TrackerConfig`` overrides); see ``pulkit.tracking.trax``.  ``stack``: one of ``STACKS`` (the EAO
    interval); ``eao_interval`` overrides it, e.g. to fit short sequences.  Burn-in and skip come
    from ``cfg`` (``EvalConfig``: 10 and 5).  ``repetitions``: runs of the supervised experiment;
    1 suits a deterministic tracker (VOT2016 used 15, and the toolkit stops after three identical
    runs).  ``timeout``: seconds the toolkit waits for each tracker reply (the first includes
    importing torch).  ``overwrite``: replace a workspace this function wrote before (never any
    other folder).
    """
    if stack not in STACKS:
        raise ValueError(f"unknown stack {stack!r}; pulkit's local stacks: {', '.join(STACKS)}")
    if not trackers:
        raise ValueError("build_workspace: no trackers given")
    if repetitions < 1:
        raise ValueError(f"repetitions must be >= 1, got {repetitions}")
    cfg = cfg or EvalConfig()
    title, interval = STACKS[stack]
    interval = eao_interval if eao_interval is not None else interval
    sections = {name: _tracker_section(name, spec, timeout) for name, spec in trackers.items()}
    folders = _source_folders(sequences_root_or_list)

    ws = Path(workspace).resolve()
    if ws.exists() and any(ws.iterdir()):
        if not (ws / MARKER).is_file():
            raise FileExistsError(f"{ws}: not empty and not a pulkit VOT workspace; choose an empty folder")
        if not overwrite:
            raise FileExistsError(f"{ws}: a pulkit VOT workspace is already there (pass overwrite=True to replace it)")
        shutil.rmtree(ws)
    ws.mkdir(parents=True, exist_ok=True)
    try:
        seq_root = ws / "sequences"
        seq_root.mkdir()
        written = [_write_sequence(f, seq_root, frames) for f in folders]
        names = [s["name"] for s in written]
        if len(set(names)) != len(names):
            raise DataError(f"two sequences share a name: {names}")
        (seq_root / "list.txt").write_text("\n".join(names) + "\n")

        import yaml

        (ws / "stack.yaml").write_text(yaml.safe_dump(
            _stack(title, interval, cfg.vot_burnin, cfg.vot_skip_after_failure, repetitions), sort_keys=False))
        # What `vot initialize stack.yaml --nodownload` writes, with the stack relative to the workspace.
        (ws / "config.yaml").write_text(yaml.safe_dump({"registry": ["./trackers.ini"], "stack": "stack.yaml"}))
        ini = configparser.ConfigParser(interpolation=None)
        ini.optionxform = str
        for name, sec in sections.items():
            ini[name] = sec
        with open(ws / "trackers.ini", "w") as f:
            ini.write(f)
        write_json(ws / MARKER, {"stack": stack, "eao_interval": [int(v) for v in interval],
                                 "burnin": cfg.vot_burnin, "skip": cfg.vot_skip_after_failure,
                                 "repetitions": int(repetitions), "sequences": written, "trackers": sections})
    except BaseException:
        shutil.rmtree(ws, ignore_errors=True)
        raise
    return ws


# --------------------------------------------------------------------------- running the toolkit
def _toolkit_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"VOT_RESULTS_BINARY": "false", "VOT_PERSISTENT_CACHE": "false", "VOT_WORKER_POOL_SIZE": "1"})
    env.setdefault("MPLCONFIGDIR", str(paths.project_root() / ".cache" / "matplotlib"))
    return env


def _run_vot(args: list[str], workspace: Path, timeout: float, log_name: str) -> str:
    """``python -m vot <args>``; its output (also in ``<workspace>/logs/<log_name>.log``)."""
    cmd = [sys.executable, "-m", "vot", *args]
    log = workspace / "logs" / f"{log_name}.log"
    log.parent.mkdir(exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workspace, env=_toolkit_env(),
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)   # the toolkit and the tracker it launched
            proc.wait()
            raise ToolkitError(f"`{' '.join(args[:1])}` ran past {timeout:.0f} s and was stopped; output in {log}:\n"
                               f"{_tail(log)}") from None
    text = log.read_text(errors="replace")
    if rc != 0:
        raise ToolkitError(f"`vot {' '.join(args)}` exited with {rc}; output in {log}:\n{_tail(log)}")
    return text


def _tail(path: Path, n: int = 3000) -> str:
    text = path.read_text(errors="replace") if path.is_file() else ""
    return re.sub(r"(\d+ %\n)+", "", text)[-n:]


def _experiments(workspace: Path, experiments) -> list[str]:
    import yaml

    stack = yaml.safe_load((workspace / "stack.yaml").read_text())
    have = list(stack["experiments"])
    if experiments is None:
        return have
    wanted = [experiments] if isinstance(experiments, str) else list(experiments)
    unknown = [e for e in wanted if e not in have]
    if unknown:
        raise ValueError(f"{workspace / 'stack.yaml'}: no experiment {unknown}; it has {have}")
    return wanted


def _check_complete(workspace: Path, tracker_name: str, experiments: list[str], log: Path) -> None:
    names = (workspace / "sequences" / "list.txt").read_text().split()
    missing = [f"{e}/{s}" for e in experiments for s in names
               if not (workspace / "results" / tracker_name / e / s / f"{s}_001.txt").is_file()]
    if missing:
        tracker_logs = sorted((workspace / "logs").glob(f"{tracker_name}_*.log"), key=lambda p: p.stat().st_mtime)
        extra = f"\ntracker output ({tracker_logs[-1]}):\n{_tail(tracker_logs[-1], 2000)}" if tracker_logs else ""
        raise ToolkitError(f"the toolkit left no trajectory for {', '.join(missing)} (the tracker failed?); "
                           f"output in {log}:\n{_tail(log)}{extra}")


def run_toolkit(workspace, tracker_name: str, experiments: Iterable[str] | str | None = None, *, force: bool = False,
                timeout: float = 900, analysis_name: str = ANALYSIS_NAME) -> dict[str, Any]:
    """``vot evaluate`` then ``vot analysis --format json`` for ``tracker_name`` in ``workspace``.

    ``experiments``: names in the workspace's stack (default all: ``baseline``, ``unsupervised``).
    ``force``: re-run trajectories the toolkit already has (else it keeps them).  ``timeout``:
    seconds for each of the two commands; a command past it is killed with the tracker it runs.
    The analysis lands in ``<workspace>/analysis/<analysis_name>.json``; returns
    ``read_toolkit_results(workspace, tracker_name, analysis_name)``.  Logs: ``<workspace>/logs/``.
    The first run in an environment compiles the toolkit's numba kernels (about 12 s).
    """
    require_toolkit()
    ws = Path(workspace).resolve()
    if not (ws / "config.yaml").is_file():
        raise FileNotFoundError(f"{ws}: not a VOT workspace (no config.yaml); build one with build_workspace")
    exps = _experiments(ws, experiments)
    args = ["evaluate", "--workspace", str(ws), "--experiments", ",".join(exps)] + (["--force"] if force else [])
    _run_vot(args + [tracker_name], ws, timeout, "evaluate")
    _check_complete(ws, tracker_name, exps, ws / "logs" / "evaluate.log")
    report = ws / "analysis" / f"{analysis_name}.json"
    report.unlink(missing_ok=True)
    _run_vot(["analysis", "--workspace", str(ws), "--format", "json", "--name", analysis_name, tracker_name],
             ws, timeout, "analysis")
    if not report.is_file():
        log = ws / "logs" / "analysis.log"
        raise ToolkitError(f"`vot analysis` wrote no {report}; output in {log}:\n{_tail(log)}")
    return read_toolkit_results(ws, tracker_name, analysis_name)


# --------------------------------------------------------------------------- reading results
def read_trajectory(path) -> list[np.ndarray]:
    """A toolkit trajectory file as pulkit regions: per frame ``[code]`` (1 init, 2 failure, 0 none)
    or the region's numbers, moved to pulkit's 0-based coordinates (x, y / every corner minus 1,
    as ``read_vot`` reads ``groundtruth.txt``)."""
    path = Path(path)
    out = []
    for k, ln in enumerate(path.read_text().splitlines(), 1):
        if not ln.strip():
            continue
        try:
            v = np.array([float(t) for t in ln.split(",")], dtype=np.float64)
        except ValueError:
            raise DataError(f"{path}: line {k} is not a region or a code: {ln!r}") from None
        if v.size == 4:
            v[:2] -= 1.0
        elif v.size >= 6 and v.size % 2 == 0:
            v -= 1.0
        elif v.size != 1:
            raise DataError(f"{path}: line {k} has {v.size} numbers")
        out.append(v)
    return out


def _analysis(block: Mapping, short: str):
    """(parameters, results) of the analysis of class ``short`` in one experiment's block."""
    for i, p in enumerate(block["parameters"]["analyses"]):
        if p["type"].rsplit(".", 1)[-1] == short:
            return p, block["results"][i]
    return None, None


def read_toolkit_results(workspace, tracker_name: str, analysis_name: str = ANALYSIS_NAME) -> dict[str, Any]:
    """The toolkit's scores and trajectories for ``tracker_name``.

    From ``<workspace>/analysis/<analysis_name>.json`` (``vot analysis --format json``) and the
    trajectory files under ``results/``.  Per experiment: ``type`` (``supervised`` /
    ``unsupervised``), ``parameters`` (the toolkit's, as recorded) and, for ``supervised``:
    ``accuracy``, ``robustness`` (failures per sequence, length-weighted), ``failures`` (total),
    ``eao``, ``eao_curve``, ``eao_interval``, ``burnin``, ``skip``; for ``unsupervised``:
    ``accuracy``.  ``sequences``: per sequence ``accuracy``, ``failures`` (supervised), ``frames``
    and ``trajectories`` (one list of per-frame regions per repetition, pulkit coordinates, see
    ``read_trajectory``).  Missing analysis or trajectory files are errors naming them.
    """
    ws = Path(workspace).resolve()
    report = ws / "analysis" / f"{analysis_name}.json"
    data = read_json(report)
    seq_names = list(data["sequences"])
    try:
        t_index = list(data["trackers"]).index(tracker_name)
    except ValueError:
        raise ValueError(f"{report}: no tracker {tracker_name!r}; it has {list(data['trackers'])}") from None
    out: dict[str, Any] = {"tracker": tracker_name, "toolkit": data.get("toolkit"), "analysis": str(report),
                           "experiments": {}}
    for exp, block in data["results"].items():
        kind = block["type"].rsplit(".", 1)[-1]
        params = block["parameters"]
        seqs = {}
        for s in seq_names:
            folder = ws / "results" / tracker_name / exp / s
            trajs = [read_trajectory(p) for p in sorted(folder.glob(f"{s}_[0-9][0-9][0-9].txt"))]
            if not trajs:
                raise FileNotFoundError(f"{folder}: no trajectory {s}_001.txt (run_toolkit first)")
            seqs[s] = {"frames": int(data["sequences"][s]["length"]), "trajectories": trajs}
        entry: dict[str, Any] = {"parameters": params, "sequences": seqs}
        if kind == "SupervisedExperiment":
            p_avg, r_avg = _analysis(block, "AverageAccuracyRobustness")
            p_eao, r_eao = _analysis(block, "EAOScore")
            _, r_curve = _analysis(block, "EAOCurve")
            _, r_seq = _analysis(block, "AccuracyRobustness")
            _, r_cum = _analysis(block, "CumulativeFailureCount")
            if r_avg is None or r_eao is None:
                raise ValueError(f"{report}: experiment {exp!r} lacks the AR or EAO analysis (not a pulkit stack?)")
            acc, rob = r_avg[t_index][0], r_avg[t_index][1]
            entry.update(type="supervised", accuracy=float(acc), robustness=float(rob),
                         eao=_float(r_eao[t_index][0]), eao_interval=[int(p_eao["low"]), int(p_eao["high"])],
                         burnin=int(p_avg["burnin"]), skip=int(params["skip_initialize"]),
                         failures=float(r_cum[t_index][0]) if r_cum is not None else None,
                         eao_curve=[_float(v) for v in r_curve[t_index][0]] if r_curve is not None else None)
            if r_seq is not None:  # a trackers x sequences grid, serialised row-major
                for i, s in enumerate(seq_names):
                    cell = r_seq[t_index * len(seq_names) + i]
                    seqs[s].update(accuracy=float(cell[0]), failures=float(cell[1]))
        elif kind == "UnsupervisedExperiment":
            p_avg, r_avg = _analysis(block, "AverageAccuracy")
            _, r_seq = _analysis(block, "SequenceAccuracy")
            if r_avg is None:
                raise ValueError(f"{report}: experiment {exp!r} lacks the average accuracy analysis")
            entry.update(type="unsupervised", accuracy=float(r_avg[t_index][0]), burnin=int(p_avg["burnin"]))
            if r_seq is not None:
                for i, s in enumerate(seq_names):
                    seqs[s]["accuracy"] = float(r_seq[t_index * len(seq_names) + i][0])
        else:
            entry["type"] = kind
        out["experiments"][exp] = entry
    return out


def _float(v) -> float:
    return float("nan") if v is None else float(v)


# --------------------------------------------------------------------------- pulkit on the same outputs
class ProtocolMismatch(RuntimeError):
    """pulkit's protocol re-initialised (or failed) where the toolkit's did not, replaying its outputs."""


class ReplayTracker:
    """A got10k-style tracker that answers pulkit's VOT protocol with the toolkit's recorded outputs.

    ``runs``: ``(sequence name, trajectory)`` in the order ``evaluate_vot`` tracks them (sequences in
    order, repetitions 1..R within each).  ``init`` starts the next run at its frame 0, or the
    current run at its next initialisation frame; each ``update`` returns the next frame's region.
    At a frame the toolkit recorded as a failure (its region is not stored) it returns a box outside
    the image, whose overlap is 0 under any definition, so pulkit records a failure there too.  A
    failure pulkit sees elsewhere (a region the toolkit kept, overlap 0 for pulkit) shows at the next
    ``init``, which then does not fall on the toolkit's next initialisation frame: ``ProtocolMismatch``.
    """

    is_deterministic = True
    FAILED = np.array([-1e6, -1e6, 1.0, 1.0])   # 0-based box far outside any frame

    def __init__(self, runs: list[tuple[str, list[np.ndarray]]], name: str = "toolkit-replay"):
        self.name = name
        self.runs = list(runs)
        self.run = -1
        self.frame = None
        self.inits: list[int] = []

    def init(self, image, box) -> None:
        if self.run >= 0 and self.frame < len(self.traj) - 1:   # pulkit stopped before the run's end
            if not _is_code(self.traj[self.frame], 2):
                raise ProtocolMismatch(self._where(f"pulkit failed at frame {self.frame}, where the toolkit kept the "
                                                   f"region {self.traj[self.frame].tolist()}"))
            if self.inits:                                       # the toolkit re-initialised after this failure
                self.frame = self.inits.pop(0)
                return
        self.run += 1
        if self.run >= len(self.runs):
            raise ProtocolMismatch(f"pulkit started run {self.run + 1}, the toolkit recorded {len(self.runs)}")
        self.seq, self.traj = self.runs[self.run]
        self.inits = [i for i, r in enumerate(self.traj) if _is_code(r, 1)]
        if self.inits[:1] != [0]:
            raise ProtocolMismatch(self._where("the toolkit's trajectory does not start with an initialisation"))
        self.frame = self.inits.pop(0)

    def update(self, image) -> np.ndarray:
        self.frame += 1
        if self.frame >= len(self.traj):
            raise ProtocolMismatch(self._where("pulkit asked for a frame past the trajectory"))
        r = self.traj[self.frame]
        if _is_code(r, 2):
            return self.FAILED.copy()
        if r.size == 1:
            raise ProtocolMismatch(self._where(f"pulkit tracked frame {self.frame}, which the toolkit skipped"))
        return r.copy()

    def _where(self, msg: str) -> str:
        return f"{self.seq} (run {self.run + 1}): {msg}"


def _is_code(r: np.ndarray, code: int) -> bool:
    return r.size == 1 and int(r[0]) == code


def _frames_with(traj: list[np.ndarray], code: int) -> list[int]:
    return [i for i, r in enumerate(traj) if _is_code(r, code)]


def _codes(traj: list[np.ndarray]) -> list[int]:
    return [int(r[0]) if r.size == 1 else -1 for r in traj]


def _max_region_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Largest coordinate difference between two trajectories' regions (inf where kinds differ)."""
    if len(a) != len(b):
        return float("inf")
    worst = 0.0
    for x, y in zip(a, b):
        if x.size != y.size or (x.size == 1 and x[0] != y[0]):
            return float("inf")
        if x.size > 1:
            worst = max(worst, float(np.max(np.abs(x - y))))
    return worst


def _compare_supervised(exp: dict, seqs, tracker, progress: bool) -> dict[str, Any]:
    cfg = EvalConfig(vot_eao_interval=tuple(exp["eao_interval"]), vot_burnin=exp["burnin"],
                     vot_skip_after_failure=exp["skip"])
    reps = {len(exp["sequences"][s.name]["trajectories"]) for s in seqs}
    if len(reps) != 1:
        raise ValueError(f"the toolkit recorded different numbers of runs per sequence ({sorted(reps)}); "
                         "replay needs the same number for every sequence")
    n_rep = reps.pop()
    runs = [(s.name, t) for s in seqs for t in exp["sequences"][s.name]["trajectories"]]
    out: dict[str, Any] = {"config": {"burnin": cfg.vot_burnin, "skip": cfg.vot_skip_after_failure,
                                      "eao_interval": list(cfg.vot_eao_interval), "repetitions": n_rep}}
    tk = {k: exp[k] for k in ("accuracy", "robustness", "failures", "eao")}
    tk["sequences"] = {s: {k: v[k] for k in ("accuracy", "failures") if k in v} for s, v in exp["sequences"].items()}
    out["toolkit"] = tk
    try:
        res = evaluate_vot(ReplayTracker(runs), seqs, cfg=cfg, key="toolkit-replay", repetitions=n_rep,
                           progress=progress)
    except ProtocolMismatch as e:
        out.update(agree_protocol=False, mismatch=str(e))
    else:
        out["pulkit"] = {k: res[k] for k in ("accuracy", "robustness", "failures", "eao", "eao_interval_used")}
        out["pulkit"]["sequences"] = {s: {k: r[k] for k in ("accuracy", "failures", "failure_frames", "init_frames")}
                                      for s, r in res["sequences"].items()}
        # pulkit's own decisions (first run): failures and re-initialisations on the toolkit's frames
        out["agree_protocol"] = all(
            res["sequences"][s]["failure_frames"] == _frames_with(exp["sequences"][s]["trajectories"][0], 2) and
            res["sequences"][s]["init_frames"] == _frames_with(exp["sequences"][s]["trajectories"][0], 1)
            for s in res["sequences"])
        diff = {k: abs(res[k] - exp[k]) for k in ("accuracy", "robustness", "eao")}
        diff["failures"] = abs(res["failures"] - exp["failures"]) if exp.get("failures") is not None else None
        curve_t = np.asarray(exp.get("eao_curve") or [], dtype=np.float64)
        curve_p = np.asarray(res["eao_curve"], dtype=np.float64)
        lo, hi = cfg.vot_eao_interval
        n = min(len(curve_t), len(curve_p))
        diff["eao_curve_max"] = float(np.nanmax(np.abs(curve_t[lo:min(hi + 1, n)] - curve_p[lo:min(hi + 1, n)]))) \
            if n > lo else float("nan")
        diff["eao_curve_length"] = [int(len(curve_t)), int(len(curve_p))]
        diff["sequences"] = {s: {"accuracy": abs(res["sequences"][s]["accuracy"] - tk["sequences"][s]["accuracy"])}
                             for s in res["sequences"] if "accuracy" in tk["sequences"].get(s, {})}
        out["difference"] = diff
    if tracker is not None:
        live = {}
        for s in seqs:
            traj, _ = run_vot_sequence(tracker, s, skip=cfg.vot_skip_after_failure)
            ref = exp["sequences"][s.name]["trajectories"][0]
            live[s.name] = {"same_codes": _codes(traj) == _codes(ref),
                            "max_region_difference": _max_region_difference(traj, ref),
                            "failure_frames": _frames_with(traj, 2), "toolkit_failure_frames": _frames_with(ref, 2)}
        out["live"] = live
    return out


def _compare_unsupervised(exp: dict, seqs) -> dict[str, Any]:
    burnin = exp["burnin"]
    rows, n, acc = {}, [], []
    for s in seqs:
        bound = image_size(s.frames[0])
        gt = s.polygons if s.polygons is not None else s.boxes
        trajs = exp["sequences"][s.name]["trajectories"]
        a = float(np.mean([vot_accuracy(t, vot_overlaps(t, gt, bound), burnin)[0] for t in trajs]))
        rows[s.name] = {"accuracy": a}
        n.append(len(s))
        acc.append(a)
    n, acc = np.asarray(n, dtype=np.float64), np.asarray(acc)
    pulkit_acc = float(np.sum(n * acc) / n.sum())
    tk_seq = {s: v.get("accuracy") for s, v in exp["sequences"].items()}
    return {"config": {"burnin": burnin},
            "toolkit": {"accuracy": exp["accuracy"], "sequences": tk_seq},
            "pulkit": {"accuracy": pulkit_acc, "sequences": rows},
            "difference": {"accuracy": abs(pulkit_acc - exp["accuracy"]),
                           "sequences": {s: abs(rows[s]["accuracy"] - tk_seq[s]) for s in rows if tk_seq.get(s) is not None}}}


def compare_with_pulkit(workspace, tracker_name: str, tracker=None, *, analysis_name: str = ANALYSIS_NAME,
                        experiments: Iterable[str] | str | None = None, progress: bool = False) -> dict[str, Any]:
    """pulkit's own VOT numbers on the toolkit's recorded outputs, beside the toolkit's.

    Sequences are read by pulkit (``read_vot``) from the workspace, so both sides score the same
    frames and ground truth.  Per experiment (default: all in the analysis file):

    * supervised (``baseline``): ``pulkit.evaluation.vot.evaluate_vot`` runs pulkit's reset-based protocol
      on a ``ReplayTracker`` of the toolkit's trajectories, with ``EvalConfig`` taken from the
      toolkit's recorded parameters (``config``).  ``agree_protocol``: pulkit re-initialised on the
      same frames (else ``mismatch`` says where, and there are no numbers).  ``toolkit``,
      ``pulkit``: accuracy, robustness, failures, EAO, per sequence accuracy and failures;
      ``difference``: absolute differences, ``eao_curve_max`` over the EAO interval.
    * unsupervised: pulkit's ``vot_accuracy`` (same burn-in) on the recorded trajectory, frame-weighted
      over sequences like the toolkit's ``AverageAccuracy``; ``difference``.

    ``tracker`` (optional, e.g. ``pulkit.tracking.trax.make_tracker`` with the workspace's options):
    also run it in-process with pulkit's own reset-based protocol (``run_vot_sequence``) and report,
    per sequence, ``live``: ``same_codes`` (init / failure / skipped on the same frames as the
    toolkit's first run), ``max_region_difference`` (pixels), the failure frames of both: whether
    the TraX server reproduces the in-process tracker and pulkit's protocol the toolkit's decisions
    on a live tracker.
    """
    ws = Path(workspace).resolve()
    results = read_toolkit_results(ws, tracker_name, analysis_name)
    seqs = read_vot(ws / "sequences")
    wanted = list(results["experiments"]) if experiments is None else \
        ([experiments] if isinstance(experiments, str) else list(experiments))
    out: dict[str, Any] = {"tracker": tracker_name, "toolkit_version": results["toolkit"], "experiments": {}}
    for name in wanted:
        if name not in results["experiments"]:
            raise ValueError(f"{results['analysis']}: no experiment {name!r}; it has {list(results['experiments'])}")
        exp = results["experiments"][name]
        if exp["type"] == "supervised":
            out["experiments"][name] = {"type": "supervised", **_compare_supervised(exp, seqs, tracker, progress)}
        elif exp["type"] == "unsupervised":
            out["experiments"][name] = {"type": "unsupervised", **_compare_unsupervised(exp, seqs)}
        else:
            raise ValueError(f"experiment {name!r} is a {exp['type']}; pulkit compares supervised and unsupervised ones")
    return out
