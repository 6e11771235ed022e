"""Parameter sweeps: ``pulkit sweep --profile P --only NN -p SEED 0 1 2`` runs every point in its own run folder.

Points already up to date are skipped; the notebooks a point needs first are found from what they read. The
aggregate (mean +- SE per key number, per-seed bands of the training curves) goes to the sweep's own folder.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from pulkit.core import paths
from pulkit.core.io import atomic_write_bytes, to_json, write_json
from pulkit.figures import sweep as figs
from pulkit.figures.style import save_figure
from pulkit.tools import reproduce as rp

SEED = "SEED"          # the parameter averaged over; every other swept parameter makes a group of its own
MAX_PANELS = 24        # key numbers drawn in the summary figure (all of them are in the table)


def points(grid: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the swept values, in the order given (``{"SEED": [0, 1]}`` -> 2 points)."""
    if not grid:
        raise rp.ReproduceError("a sweep needs at least one -p NAME VALUE [VALUE ...]")
    for name, values in grid.items():
        if name == "PROFILE":
            raise rp.ReproduceError("sweep over profiles with one `pulkit sweep` per profile, not -p PROFILE")
        if not values:
            raise rp.ReproduceError(f"-p {name}: no values")
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def sweep_name(profile: str, only: Sequence[str], grid: dict[str, Sequence[Any]], notebooks: Sequence[Path]) -> str:
    """The sweep folder's name: the notebooks, then each swept parameter and its values (hashed when long)."""
    numbers = "-".join(p.name[:2] for p in rp.select(notebooks, only))
    parts = []
    for name, values in grid.items():
        text = "-".join(str(v) for v in values)
        if not all(isinstance(v, (bool, int, float, str)) for v in values) or len(text) > 40 \
                or not all(c.isalnum() or c in "._+-" for c in text):
            text = rp._sha(to_json(list(values)).encode())[:8]
        parts.append(f"{name.lower()}{text}")
    return f"nb{numbers}_" + "_".join(parts)


def needed(only: Sequence[str], notebooks: Sequence[Path], run: str, profile: str) -> list[str]:
    """The selected notebooks and every notebook they read from, transitively; what a notebook reads comes
    from its record in this run, else in the profile's default run, else it is every earlier notebook."""
    with rp.use_run(run):
        mine = rp.read_state(profile)
    with rp.use_run(profile):
        default = rp.read_state(profile)
    by_name = {p.stem: p for p in notebooks}
    todo = [p.stem for p in rp.select(notebooks, only)]
    out: set[str] = set()
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        records = mine if name in mine else default
        todo += [d for d in rp.dependencies(by_name[name], notebooks, records) if d in by_name]
    return sorted(out)


def sweep(profile: str, only: Sequence[str], grid: dict[str, Sequence[Any]], *, force: bool = False,
          kernel: str | None = None, notebooks_dir: Path | None = None, execute: rp.Executor | None = None,
          log: Callable[[str], None] = print) -> tuple[Path, list[dict[str, Any]]]:
    """Run every point of ``grid`` for the notebooks ``only`` and aggregate; returns (sweep folder, points).

    Each point's record: its parameters, run folder, outcomes and the key numbers of the selected
    notebooks.  A failing point is recorded as failed and the remaining points still run."""
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else paths.notebooks_dir()
    notebooks = rp.discover(nb_dir)
    if not only:
        raise rp.ReproduceError("a sweep needs --only NN [NN ...]: the notebooks whose numbers it aggregates")
    chosen = rp.select(notebooks, only)
    if not chosen:
        raise rp.ReproduceError(f"--only {' '.join(only)}: no such notebook in {nb_dir}")
    grid_points = points(grid)
    done: list[dict[str, Any]] = []
    for i, point in enumerate(grid_points, 1):
        run = rp.run_folder(profile, {"PROFILE": profile, **point}, notebooks)
        selection = needed(only, notebooks, run, profile)
        log(f"[sweep {i}/{len(grid_points)}] {point} -> run folder {run}; notebooks {', '.join(selection)}")
        outcomes = rp.reproduce(profile, force=force, only=selection, parameters=point, kernel=kernel,
                                notebooks_dir=nb_dir, expected=(), execute=execute, log=log)
        failed = [o for o in outcomes if o.status == "failed"]
        for o in failed:
            log(o.message)
        with rp.use_run(run):
            numbers = {p.stem: rp._summary(profile, p.name[:2]) for p in chosen}
            curves = {p.stem: _curves(paths.results_dir(profile), p.name[:2]) for p in chosen}
        done.append({"parameters": point, "run": run, "status": "failed" if failed else "ok",
                     "outcomes": {o.name: o.status for o in outcomes}, "summary": numbers, "curves": curves})
    folder = paths.sweep_dir(profile, sweep_name(profile, only, grid, notebooks))
    write(folder, profile, grid, done)
    return folder, done


# --------------------------------------------------------------------------- aggregation
def aggregate(done: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{group, notebook, key, n, mean, se, values}``: the points' key numbers averaged over SEED within
    each group of the other swept parameters (failed points left out; SE is None for a single value)."""
    groups: dict[str, dict[tuple[str, str], list[float]]] = {}
    for p in done:
        if p["status"] != "ok":
            continue
        label = _group(p["parameters"])
        for nb, summary in p["summary"].items():
            for key, value in summary.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    continue
                groups.setdefault(label, {}).setdefault((nb, key), []).append(float(value))
    rows = []
    for label, keys in groups.items():
        for (nb, key), values in sorted(keys.items()):
            mean, se = mean_se(values)
            rows.append({"group": label, "notebook": nb, "key": key, "n": len(values), "mean": mean, "se": se,
                         "values": values})
    return rows


def mean_se(values: Sequence[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def write(folder: Path, profile: str, grid: dict[str, Sequence[Any]], done: Sequence[dict[str, Any]]) -> None:
    """``sweep.json`` (points and aggregate), ``summary.csv`` and the figures, in ``folder``."""
    rows = aggregate(done)
    write_json(folder / "sweep.json", {"profile": profile, "grid": {k: list(v) for k, v in grid.items()},
                                       "points": [{k: v for k, v in p.items() if k != "curves"} for p in done],
                                       "aggregate": rows})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["group", "notebook", "key", "n", "mean", "se", "values"])
    for r in rows:
        w.writerow([r["group"], r["notebook"], r["key"], r["n"], f"{r['mean']:.6g}",
                    "" if r["se"] is None else f"{r['se']:.3g}", " ".join(f"{v:.6g}" for v in r["values"])])
    atomic_write_bytes(folder / "summary.csv", buf.getvalue().encode())
    for name, fig in (("sweep_summary", figs.summary_figure(rows, MAX_PANELS)),
                      ("sweep_curves", figs.curves_figure(done))):
        if fig is not None:
            save_figure(fig, name, profile, None, out_dir=folder)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The aggregate as text: one line per group and key number, mean +- SE (n)."""
    lines = []
    for r in rows:
        se = "" if r["se"] is None else f" +- {r['se']:.3g}"
        lines.append(f"{r['group']:<24} {r['notebook'][:2]} {r['key']:<40} {r['mean']:.4g}{se} (n={r['n']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- internals
def _group(parameters: dict[str, Any]) -> str:
    rest = {k: v for k, v in parameters.items() if k != SEED}
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in rest.items()) or "all"


def _curves(results: Path, number: str) -> dict[str, dict[str, list[float]]]:
    """Training curves a notebook saved: ``curves: {name: {step: [...], metric: [...]}}`` in its results."""
    out = {}
    for f in sorted(results.glob(f"{number}_*.json")):
        try:
            curves = json.loads(f.read_text()).get("curves")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(curves, dict):
            out.update({k: v for k, v in curves.items() if isinstance(v, dict) and isinstance(v.get("step"), list)})
    return out
