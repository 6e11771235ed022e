"""Rewrite the README's claims block from ``results/<profile>/claims.json``: the verdicts are never typed by hand.

``python -m pulkit.tools.readme --profile cpu`` replaces the text between the two markers below with the
forest plot and one table row per claim record (paired difference, 95 % interval, n, seeds, verdict).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping, Sequence

from pulkit.core import artifacts, paths
from pulkit.core.io import read_json

START, END = "<!-- claims:start -->", "<!-- claims:end -->"
Z95 = 1.96


def _fmt(x: float, unit: str) -> str:
    return f"{x:+.1f}" if unit == "px" else f"{x:+.3f}"


def claims_markdown(claims: Mapping[str, Any], profile: str = "cpu") -> str:
    """The block: the figure, a table of every record and the run's provenance (commit, CPU)."""
    rows = ["| claim | metric | treatment | control | diff (95 % CI) | n | seeds | verdict |",
            "|---|---|---|---|---|---|---|---|"]
    for r in claims["claims"]:
        d, se, unit = float(r["diff"]), float(r["se"]), r.get("unit", "fraction")
        ci = f"{_fmt(d, unit)} ({_fmt(d - Z95 * se, unit)} to {_fmt(d + Z95 * se, unit)})"
        rows.append(f"| `{r['claim']}` | {r['metric']} | {r['treatment']} | {r['control']} | {ci} | {r['n']} | "
                    f"{', '.join(str(s) for s in r.get('seeds', []))} | **{r['verdict']}** |")
    prov = claims.get("provenance") or {}
    note = (f"From `results/{profile}/claims.json` (commit {str(prov.get('commit', '?'))[:10]}, seed "
            f"{prov.get('seed', '?')}, CPU {claims.get('cpu_model', '?')}); positive = treatment better, "
            "errors in px are control minus treatment.")
    missing = claims.get("missing") or []
    if missing:
        note += f" Not measured (results absent): {', '.join(missing)}."
    fig = f"![claims forest](figures/{profile}/claims_forest.png)"
    return "\n".join([fig, "", note, "", *rows])


def rewrite(readme: str, block: str) -> str:
    """``readme`` with the text between ``START`` and ``END`` replaced by ``block``."""
    if readme.count(START) != 1 or readme.count(END) != 1 or readme.index(START) > readme.index(END):
        raise ValueError(f"README: expected one {START} ... {END} block")
    head, rest = readme.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{block}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pulkit.tools.readme", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--readme", default=None, help="default: README.md of the project")
    a = p.parse_args(argv)
    path = artifacts.claims_path(a.profile)
    if not path.is_file():
        raise SystemExit(f"{path}: no claims file; run notebook 07 of profile {a.profile!r} first")
    readme = Path(a.readme) if a.readme else paths.project_root() / "README.md"
    readme.write_text(rewrite(readme.read_text(), claims_markdown(read_json(path), a.profile)))
    print(f"{readme}: claims block rewritten from {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
