"""The notebook runner behind ``make reproduce``: every notebook in order through papermill.

Runs the pipeline end to end into the run's folder (``run_folder``: the profile and the result-changing
parameters) and skips the notebooks that are up to date.  Staleness rules and the kernel: docs/modules.md.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from pulkit.core import artifacts, paths, reads
from pulkit.core.artifacts import NOTEBOOKS
from pulkit.core.io import atomic_write_bytes, to_json
from pulkit.core.provenance import package_versions
from pulkit.tools import lab

KERNEL_NAME = lab.KERNEL_NAME
STATE_FORMAT = "pulkit-reproduce-state-v2"
# Parameters that change what a notebook shows, not what it computes: they neither name a run nor make it stale.
DISPLAY_ONLY = frozenset({"INTERACTIVE"})
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING = 0, 1, 2, 3

# execute(notebook, executed_copy, parameters, kernel_name, cwd): raises when a cell fails.
Executor = Callable[[Path, Path, dict, str, Path], None]


class ReproduceError(RuntimeError):
    """Bad runner input (unknown notebook number, unreadable notebook, a run already in progress)."""


@dataclass
class Outcome:
    """What happened to one notebook: status is ran | skipped | failed | missing | not run."""
    name: str
    status: str
    seconds: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    executed: Path | None = None


# --------------------------------------------------------------------------- parameters
def parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value: a Python literal (``3``, ``0.5``, ``True``, ``None``, ``[1, 2]``,
    ``'x'``) when it parses as one, else the string itself (``cpu``, ``data/got10k``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def notebook_parameters(path: Path) -> dict[str, Any]:
    """``{NAME: literal}`` of the notebook's ``parameters`` cell (the defaults a run starts from)."""
    try:
        cells = json.loads(Path(path).read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ReproduceError(f"{path}: not a readable notebook ({type(e).__name__}: {e})") from None
    out: dict[str, Any] = {}
    for cell in cells:
        if "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        try:
            tree = ast.parse(_text(cell.get("source", "")))
        except SyntaxError as e:
            raise ReproduceError(f"{path}: its parameters cell does not parse ({e.msg}, line {e.lineno})") from None
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                try:
                    out[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    raise ReproduceError(f"{path}: parameter {node.targets[0].id} is not a literal") from None
    return out


def run_folder(profile: str, parameters: dict[str, Any] | None, notebooks: Sequence[Path] = ()) -> str:
    """The run's folder name: ``profile``, then ``@`` and every parameter that differs from the notebooks'
    defaults (display-only ones aside), sorted: ``cpu``, ``cpu@seed1``, ``cpu@device-cuda,seed2``.
    Values that are not short plain words (lists, paths) appear as a hash of their JSON."""
    defaults = [notebook_parameters(nb) for nb in notebooks]
    parts = []
    for name, value in sorted((parameters or {}).items()):
        if name == "PROFILE" or name in DISPLAY_ONLY:
            continue
        declared = [d[name] for d in defaults if name in d]
        if declared and all(_canonical(v) == _canonical(value) for v in declared):
            continue
        text = "" if isinstance(value, (dict, list, tuple)) else str(value)
        if isinstance(value, (bool, int, float)) and re.fullmatch(r"[A-Za-z0-9.+-]{1,24}", text):
            parts.append(f"{name.lower()}{text}")
        elif isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9._+-]{1,24}", text):
            parts.append(f"{name.lower()}-{text}")
        else:
            parts.append(f"{name.lower()}-{_sha(to_json(value).encode())[:8]}")
    return f"{profile}@{','.join(parts)}" if parts else profile


# --------------------------------------------------------------------------- discovery
def discover(notebooks_dir: Path) -> list[Path]:
    """``NN_*.ipynb`` files of ``notebooks_dir`` in run (number) order."""
    found = sorted(p for p in Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb") if p.is_file())
    numbers = [p.name[:2] for p in found]
    dupes = sorted({n for n in numbers if numbers.count(n) > 1})
    if dupes:
        raise ReproduceError(f"{notebooks_dir}: several notebooks share the number(s) {', '.join(dupes)}")
    return found


def select(notebooks: Sequence[Path], only: Sequence[str] | None = None, start: str | None = None) -> list[Path]:
    """The notebooks ``--only NN ...`` / ``--from NN`` pick (numbers ``3``, ``03`` or names ``03_training``)."""
    chosen = list(notebooks)
    if only:
        wanted = {_number(x) for x in only}
        chosen = [p for p in chosen if p.name[:2] in wanted]
    if start is not None:
        chosen = [p for p in chosen if p.name[:2] >= _number(start)]
    return chosen


# --------------------------------------------------------------------------- hashing
def notebook_hash(path: Path) -> str:
    """Hash of a notebook's cells (type, source, tags): outputs and execution counts do not count."""
    try:
        nb = json.loads(Path(path).read_text())
        cells = [{"type": c["cell_type"], "source": _text(c.get("source", "")),
                  "tags": sorted(c.get("metadata", {}).get("tags", []))} for c in nb["cells"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ReproduceError(f"{path}: not a readable notebook ({type(e).__name__}: {e})") from None
    return _sha(json.dumps(cells, sort_keys=True).encode())


def package_hash(package_dir: Path | None = None) -> str:
    """Hash of every ``*.py`` under the package (names and contents)."""
    root = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parents[1]   # pulkit/
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


class Outputs:
    """The files a profile's notebooks write, ``results/<profile>/`` and ``checkpoints/<profile>/``
    (``results/<profile>/timings/`` and dot-files excepted), named ``results/...`` / ``checkpoints/...``;
    content hashes are cached by size and modification time."""

    def __init__(self, profile: str):
        self.roots = {"results": paths.results_dir(profile), "checkpoints": paths.checkpoints_dir(profile)}
        self._cache: dict[tuple[str, int, int, int], str] = {}

    def path(self, rel: str) -> Path:
        root, _, rest = rel.partition("/")
        return self.roots[root] / rest

    def name(self, path: str | Path) -> str | None:
        """``results/...`` / ``checkpoints/...`` for a file below one of the roots, else None."""
        real = Path(os.path.realpath(path))
        for label, root in self.roots.items():
            try:
                return f"{label}/{real.relative_to(Path(os.path.realpath(root))).as_posix()}"
            except ValueError:
                continue
        return None

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        """``{name: (size, mtime_ns, inode)}`` of every file now present (atomic writes change the inode)."""
        out = {}
        for label, root in self.roots.items():
            if not root.is_dir():
                continue
            for f in root.rglob("*"):
                rel = f.relative_to(root)
                if (label == "results" and rel.parts[0] == "timings") or any(p.startswith(".") for p in rel.parts):
                    continue
                if f.is_file():
                    st = f.stat()
                    out[f"{label}/{rel.as_posix()}"] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return out

    def results_of(self, number: str) -> list[str]:
        """Names of the notebook's own results files, ``results/NN_*`` (files and folders)."""
        root = self.roots["results"]
        if not root.is_dir():
            return []
        names = []
        for top in sorted(root.glob(f"{number}_*")):
            for f in [top] if top.is_file() else sorted(top.rglob("*")):
                rel = f.relative_to(root)
                if f.is_file() and not any(p.startswith(".") for p in rel.parts):
                    names.append(f"results/{rel.as_posix()}")
        return names

    def digest(self, rel: str) -> str | None:
        """sha256 of the file's content, None when it does not exist."""
        f = self.path(rel)
        try:
            st = f.stat()
        except FileNotFoundError:
            return None
        key = (rel, st.st_size, st.st_mtime_ns, st.st_ino)
        if key not in self._cache:
            self._cache[key] = _sha(f.read_bytes())
        return self._cache[key]

    def digests(self, rels) -> dict[str, str | None]:
        return {rel: self.digest(rel) for rel in sorted(rels)}


def run_key(notebook: Path, profile: str, parameters: dict[str, Any], inputs: dict[str, str],
            package: str) -> dict[str, Any]:
    """Everything a notebook's results depend on (see the module docstring)."""
    return {"notebook": notebook_hash(notebook), "package": package, "versions": package_versions(),
            "profile": profile, "parameters": json.loads(to_json(parameters)), "inputs": inputs}


# --------------------------------------------------------------------------- state
def state_path(profile: str) -> Path:
    return paths.runs_dir(profile) / ".state.json"


def read_state(profile: str) -> dict[str, Any]:
    """``{notebook name: record}`` of the notebooks last recorded as done (empty when none)."""
    path = state_path(profile)
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except ValueError:
        print(f"warning: {path} is corrupt; every notebook counts as stale", file=sys.stderr)
        return {}
    if state.get("format") != STATE_FORMAT:
        return {}
    return dict(state.get("notebooks", {}))


def write_state(profile: str, records: dict[str, Any]) -> None:
    atomic_write_bytes(state_path(profile), to_json({"format": STATE_FORMAT, "notebooks": records}).encode())


def is_up_to_date(record: dict[str, Any] | None, key: dict[str, Any], outputs: Outputs) -> tuple[bool, str]:
    """(up to date?, why not) for a notebook's state record against its current key."""
    if not record:
        return False, "never recorded as done"
    if record.get("key") != key:
        old = record.get("key", {})
        changed = sorted(k for k in key if old.get(k) != key[k])
        if changed == ["inputs"]:
            files = sorted(f for f in set(key["inputs"]) | set(old.get("inputs") or {})
                           if key["inputs"].get(f) != (old.get("inputs") or {}).get(f))
            return False, f"an input changed: {', '.join(files[:3])}"
        return False, f"changed: {', '.join(changed)}"
    recorded = record.get("outputs") or {}
    if not recorded:
        return False, "no outputs recorded"
    lost = [f for f, h in recorded.items() if outputs.digest(f) != h]
    if lost:
        return False, f"outputs missing or modified: {', '.join(lost[:3])}"
    return True, "up to date"


# --------------------------------------------------------------------------- execution
def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """The kernelspec ``name``, running ``sys.executable`` (``pulkit.tools.lab.install_kernelspec`` writes it under
    ``sys.prefix`` when absent; one of that name elsewhere that runs another interpreter is an error)."""
    try:
        return lab.install_kernelspec(name)
    except lab.LabError as e:
        raise ReproduceError(f"{e}; or pass --kernel NAME") from None


def execute_papermill(notebook: Path, executed: Path, parameters: dict, kernel_name: str, cwd: Path) -> None:
    """Run one notebook with papermill; a failing cell raises ``PapermillExecutionError``."""
    import papermill
    from traitlets.config import Config

    encryption = Config({"KernelManager": {"transport_encryption": "auto" if lab.has_curve() else "disabled"}})
    papermill.execute_notebook(str(notebook), str(executed), parameters=parameters, kernel_name=kernel_name,
                               cwd=str(cwd), progress_bar=sys.stderr.isatty(), log_output=False, config=encryption)


def reproduce(profile: str, *, force: bool = False, only: Sequence[str] | None = None, start: str | None = None,
              parameters: dict[str, Any] | None = None, kernel: str | None = None,
              notebooks_dir: Path | None = None, expected: Sequence[str] | None = None,
              execute: Executor | None = None, log: Callable[[str], None] = print) -> list[Outcome]:
    """Execute the notebooks of ``notebooks_dir`` (default ``notebooks/``) in order for ``profile``.

    Everything goes to the run's folder, ``run_folder(profile, parameters)``.  A notebook re-runs when it
    is stale: never done, or its cells, the package, the versions, the parameters or the outputs of a
    notebook it read (recorded by tracing its reads) changed.  ``only`` / ``start`` select notebooks
    (``--only`` / ``--from``; ``start`` also forces that notebook and all after it to re-run); ``force``
    re-runs every selected notebook.  ``parameters`` are injected besides ``PROFILE``.  ``expected`` lists
    the notebook names that should exist (default: ``pulkit.core.artifacts.NOTEBOOKS`` for the project's
    folder, none elsewhere); absent ones come back with status ``missing``.  Returns one ``Outcome`` per
    selected or missing notebook, in order; after a failure the rest are ``not run``.
    """
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else paths.notebooks_dir()
    if not nb_dir.is_dir():
        raise ReproduceError(f"{nb_dir}: no such notebooks folder")
    if expected is None:
        expected = NOTEBOOKS if nb_dir.resolve() == paths.notebooks_dir().resolve() else ()
    notebooks = discover(nb_dir)
    chosen = select(notebooks, only, start)
    numbers_present = {p.name[:2] for p in notebooks}
    wanted_missing = [n for n in _selection_numbers(expected, only, start) if n[:2] not in numbers_present]
    if only:
        unknown = [x for x in only if _number(x) not in numbers_present | {n[:2] for n in expected}]
        if unknown:
            raise ReproduceError(f"--only {' '.join(unknown)}: no such notebook in {nb_dir}")

    params = {"PROFILE": profile, **(parameters or {})}
    execute = execute or execute_papermill
    kernel = kernel or (ensure_kernel() if execute is execute_papermill else KERNEL_NAME)
    package = package_hash()
    forced_from = _number(start) if start is not None else None
    run = run_folder(profile, params, notebooks)

    outcomes: dict[str, Outcome] = {}
    with use_run(run), _lock(profile), lab.child_env():
        runs = paths.runs_dir(profile)
        runs.mkdir(parents=True, exist_ok=True)
        if run != profile:
            log(f"run folder: {run} (results in {paths.results_dir(profile)})")
        outputs = Outputs(profile)
        records = read_state(profile)
        with use_run(profile):                  # what the default run's notebooks read: a hint for a new run
            hint = read_state(profile) if run != profile else {}
        failed = False
        for nb in notebooks:
            name, number = nb.stem, nb.name[:2]
            ok, why = is_up_to_date(records.get(name), current_key(nb, notebooks, profile, params, records,
                                                                   outputs, package), outputs)
            if nb not in chosen:
                readers = [c for c in chosen if c.name[:2] > number
                           and name in dependencies(c, notebooks, records if c.stem in records else hint)]
                if not ok and readers:
                    known = any((records.get(c.stem) or hint.get(c.stem) or {}).get("depends") is not None
                                for c in readers)
                    log(f"warning: {name} is not run and not up to date ({why}); "
                        + ("a later notebook reads its outputs" if known else
                           "later notebooks may read its outputs (they have not run here yet)"))
                continue
            if failed:
                outcomes[name] = Outcome(name, "not run")
                continue
            if ok and not (force or (forced_from is not None and number >= forced_from)):
                outcomes[name] = Outcome(name, "skipped", None, _summary(profile, number), "up to date",
                                         runs / nb.name)
                continue
            log(f"[{name}] running ({'forced' if ok else why}) ...")
            # Drop its record before it starts: a killed run is never 'done'.
            records.pop(name, None)
            write_state(profile, records)
            before = outputs.snapshot()
            trace = runs / ".reads" / f"{number}.txt"
            trace.unlink(missing_ok=True)
            with _tracing(trace, outputs):
                outcome = _run_one(nb, runs / nb.name, params, kernel, execute)
            if outcome.status == "ran":
                after = outputs.snapshot()
                written = {f for f, st in after.items() if before.get(f) != st}
                own = outputs.results_of(number)
                if not written & set(own):
                    outcome = Outcome(name, "failed", outcome.seconds, executed=outcome.executed, message=(
                        f"FAILED {nb.name}: it finished but wrote no results file "
                        f"{paths.results_dir(profile)}/{number}_*.json (every notebook saves its numbers with "
                        f"pulkit.core.results.save_results); executed copy: {outcome.executed}"))
            outcomes[name] = outcome
            if outcome.status != "ran":
                failed = True
                log(f"[{name}] failed after {outcome.seconds:.1f} s")
                continue
            overwritten = sorted(f for k, r in records.items() for f in r.get("outputs", {}) if f in written)
            if overwritten:
                log(f"warning: {name} rewrote outputs of earlier notebooks ({', '.join(overwritten[:3])}); "
                    f"they will count as stale next time")
            mine = written | set(own)
            read = reads.read_log(trace)
            record = {"outputs": outputs.digests(mine), "seconds": round(outcome.seconds, 1), "executed": nb.name,
                      "reads": None if read is None else sorted({r for r in map(outputs.name, read)
                                                                 if r is not None and r not in mine})}
            record["depends"] = _depends_on(name, record["reads"], notebooks, records, profile)
            records[name] = {**record, "key": current_key(nb, notebooks, profile, params,
                                                          {**records, name: record}, outputs, package)}
            write_state(profile, records)
            log(f"[{name}] done in {outcome.seconds:.1f} s")

    for name in wanted_missing:
        outcomes[name] = Outcome(name, "missing", message=f"{nb_dir.name}/{name}.ipynb does not exist yet")
    return [outcomes[k] for k in sorted(outcomes)]


def dependencies(nb: Path, notebooks: Sequence[Path], records: dict[str, Any]) -> list[str]:
    """The notebooks whose outputs ``nb`` read when it last ran; every earlier notebook when that is unknown
    (never run, or run untraced)."""
    depends = (records.get(nb.stem) or {}).get("depends")
    if depends is None:
        return [p.stem for p in notebooks if p.name[:2] < nb.name[:2]]
    return list(depends)


def current_key(nb: Path, notebooks: Sequence[Path], profile: str, params: dict[str, Any],
                records: dict[str, Any], outputs: "Outputs", package: str) -> dict[str, Any]:
    """``run_key`` with the current outputs of the notebooks ``nb`` depends on as its inputs."""
    deps = set(dependencies(nb, notebooks, records))
    effective = {**notebook_parameters(nb), **params}       # -p SEED 0 is the same run as no -p at all
    return run_key(nb, profile, {k: v for k, v in effective.items() if k not in DISPLAY_ONLY},
                   _inputs([p for p in notebooks if p.stem in deps], records, outputs), package)


def _depends_on(name: str, read: list[str] | None, notebooks: Sequence[Path], records: dict[str, Any],
                profile: str) -> list[str] | None:
    """The notebooks that wrote the files in ``read`` (by the state's records, else by ``artifacts.producer``)."""
    if read is None:
        return None
    known = {p.stem for p in notebooks}
    deps = set()
    for rel in read:
        nb = next((k for k, r in records.items() if rel in r.get("outputs", {})), None)
        if nb is None:
            root, _, rest = rel.partition("/")
            base = paths.results_dir(profile) if root == "results" else paths.checkpoints_dir(profile)
            nb = artifacts.producer(base / rest, profile)
        if nb is not None and nb != name and nb in known:
            deps.add(nb)
    return sorted(deps)


@contextmanager
def use_run(run: str) -> Iterator[None]:
    """Point ``pulkit.core.paths`` (here and in the kernels started meanwhile) at run folder ``run``."""
    old = os.environ.get(paths.RUN_ENV)
    os.environ[paths.RUN_ENV] = run
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(paths.RUN_ENV, None)
        else:
            os.environ[paths.RUN_ENV] = old


@contextmanager
def _tracing(log: Path, outputs: "Outputs") -> Iterator[None]:
    """Ask the kernels started meanwhile to record the results and checkpoints they read into ``log``."""
    env = {reads.LOG_ENV: str(log), reads.ROOTS_ENV: os.pathsep.join(str(r) for r in outputs.roots.values())}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _inputs(earlier: Sequence[Path], records: dict[str, Any], outputs: Outputs) -> dict[str, str | None]:
    """Current hashes of every output of the given notebooks (recorded ones and their ``NN_*`` results)."""
    names: set[str] = set()
    for nb in earlier:
        names |= set((records.get(nb.stem) or {}).get("outputs", {})) | set(outputs.results_of(nb.name[:2]))
    return outputs.digests(names)


def _run_one(nb: Path, executed: Path, params: dict, kernel: str, execute: Executor) -> Outcome:
    t0 = time.perf_counter()
    try:
        execute(nb, executed, dict(params), kernel, nb.parent)
    except Exception as e:  # reported with the notebook's name, then the run stops (non-zero exit)
        return Outcome(nb.stem, "failed", time.perf_counter() - t0, message=describe_failure(nb, executed, e),
                       executed=executed)
    return Outcome(nb.stem, "ran", time.perf_counter() - t0, _summary(params["PROFILE"], nb.name[:2]),
                   executed=executed)


def describe_failure(nb: Path, executed: Path, error: BaseException) -> str:
    """The notebook, failing cell, error name and message, and where the full traceback is."""
    if hasattr(error, "ename") and hasattr(error, "cell_index"):  # papermill's PapermillExecutionError
        first = next((line for line in _text(error.source).splitlines() if line.strip()), "")
        return (f"FAILED {nb.name} at {_source_cell(nb, error.source, error.cell_index)} "
                f"(In [{error.exec_count}]: {first[:80]!r}): "
                f"{error.ename}: {str(error.evalue).strip()}\n"
                f"  full traceback in the executed copy: {executed}")
    return (f"FAILED {nb.name}: {type(error).__name__}: {str(error).strip()}\n"
            f"  executed copy (if written): {executed}")


def _source_cell(nb: Path, source: Any, index: int) -> str:
    """'cell i of n' (1-based) in the source notebook for the failing cell's source; ``index`` is its
    position in papermill's copy (which holds an extra 'injected-parameters' cell)."""
    try:
        cells = json.loads(nb.read_text())["cells"]
        text = _text(source)
        matches = [i for i, c in enumerate(cells) if _text(c.get("source", "")) == text]
        if matches:
            return f"cell {matches[0] + 1} of {len(cells)}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return f"cell {index + 1} of the executed copy"


# --------------------------------------------------------------------------- reporting
def format_table(outcomes: Sequence[Outcome]) -> str:
    """A plain-text summary table: notebook, status, seconds, key numbers."""
    rows = [("notebook", "status", "seconds", "key numbers")]
    for o in outcomes:
        secs = f"{o.seconds:.1f}" if o.seconds is not None else "-"
        nums = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(o.summary.items()))
        rows.append((o.name, o.status, secs, nums or ("-" if o.status != "missing" else o.message)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}" for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def exit_code(outcomes: Sequence[Outcome]) -> int:
    if any(o.status == "failed" for o in outcomes):
        return EXIT_FAILED
    if any(o.status == "missing" for o in outcomes):
        return EXIT_MISSING
    return EXIT_OK


# --------------------------------------------------------------------------- internals
def _number(x: str | int) -> str:
    s = str(x).strip()
    head = s.split("_", 1)[0]
    if not head.isdigit() or len(head) > 2:
        raise ReproduceError(f"{x!r} is not a notebook number (00-99) or name (03_training)")
    return head.zfill(2)


def _selection_numbers(expected: Sequence[str], only, start) -> list[str]:
    chosen = list(expected)
    if only:
        wanted = {_number(x) for x in only}
        chosen = [n for n in chosen if n[:2] in wanted]
    if start is not None:
        chosen = [n for n in chosen if n[:2] >= _number(start)]
    return chosen


def _summary(profile: str, number: str) -> dict[str, Any]:
    """Merged ``summary`` entries of the notebook's top-level results JSON files."""
    out: dict[str, Any] = {}
    for f in sorted(paths.results_dir(profile).glob(f"{number}_*.json")):
        try:
            s = json.loads(f.read_text()).get("summary")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(s, dict):
            out.update(s)
    return out


def _canonical(value: Any) -> Any:
    return json.loads(to_json(value))


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def _lock(profile: str) -> Iterator[None]:
    """One runner per run folder at a time (``runs/<run>/.lock`` holds the owner's pid)."""
    path = paths.runs_dir(profile) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                path.unlink(missing_ok=True)  # left behind by a run that died
                continue
            except PermissionError:
                pass
            raise ReproduceError(f"{path}: another `pulkit reproduce --profile {profile}` (pid {pid}) is running")
    else:
        raise ReproduceError(f"{path}: cannot take the run lock")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)
