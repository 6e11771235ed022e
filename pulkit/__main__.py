"""The ``pulkit`` command (also ``python -m pulkit``).

Subcommands ``reproduce`` (run the notebooks), ``figures`` (re-export figures from saved results)
and ``bench`` (``python -m pulkit.tools.bench``); examples in docs/modules.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pulkit.core.config import PROFILES

# Each subcommand imports its module when it runs: `pulkit --help` and `pulkit bench` stay quick and do not
# load the notebook runner, every figure module and matplotlib first.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pulkit", description="pulkit: reproduce PUL (CVPR 2021) from notebooks.")
    sub = parser.add_subparsers(dest="command", metavar="{reproduce,figures,bench}")
    sub.required = True

    rep = sub.add_parser("reproduce", help="execute every notebook in order through papermill",
                         description="Execute notebooks/NN_*.ipynb in order with papermill; executed copies go to "
                                     "runs/<profile>/. Up-to-date notebooks are skipped; from the first stale one, "
                                     "every later one re-runs. Exit 0: all ran or were up to date; 1: a notebook "
                                     "failed; 2: bad arguments; 3: expected notebooks are missing.")
    rep.add_argument("--profile", default="cpu", help="smoke | cpu | paper (default cpu); injected as PROFILE")
    rep.add_argument("--force", action="store_true", help="re-run every selected notebook")
    rep.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (numbers or names)")
    rep.add_argument("--from", dest="start", metavar="NN", help="re-run NN and every notebook after it")
    rep.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"),
                     help="inject NAME=VALUE into every notebook's parameters cell; VALUE is a Python literal "
                          "(3, 0.5, True, None, [1, 2]) or else a string")
    rep.add_argument("--kernel", help="Jupyter kernel name (default: a 'pulkit' kernelspec running this Python)")
    rep.add_argument("--notebooks", type=Path, help="notebooks folder (default: the project's notebooks/)")

    fig = sub.add_parser("figures", help="re-export every registered figure from saved results",
                         description="Rebuild every figure in pulkit.figures.registry.FIGURES from results/<profile>/ "
                                     "(no training) and save figures/<profile>/<name>.pdf and .png.")
    fig.add_argument("--profile", default="cpu")
    fig.add_argument("--only", nargs="+", metavar="NAME", help="export only these figures")
    fig.add_argument("--seed", type=int, help="seed written into the metadata (default: the results' seed)")
    fig.add_argument("--out", type=Path, help="output folder (default figures/<profile>/)")

    bench = sub.add_parser("bench", help="benchmarks: pulkit bench tracker | ahm | train [options]",
                           add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def cmd_reproduce(args: argparse.Namespace) -> int:
    from pulkit.tools import reproduce as rp

    if args.profile not in PROFILES:
        print(f"pulkit reproduce: unknown profile {args.profile!r}; valid: {', '.join(PROFILES)}", file=sys.stderr)
        return rp.EXIT_USAGE
    names = [name for name, _ in args.parameters]
    if "PROFILE" in names:
        print("pulkit reproduce: set the profile with --profile, not -p PROFILE", file=sys.stderr)
        return rp.EXIT_USAGE
    params = {name: rp.parse_value(value) for name, value in args.parameters}
    try:
        outcomes = rp.reproduce(args.profile, force=args.force, only=args.only, start=args.start,
                                parameters=params, kernel=args.kernel, notebooks_dir=args.notebooks)
    except rp.ReproduceError as e:
        print(f"pulkit reproduce: {e}", file=sys.stderr)
        return rp.EXIT_USAGE
    print()
    print(rp.format_table(outcomes))
    code = rp.exit_code(outcomes)
    for o in outcomes:
        if o.status == "failed":
            print(f"\n{o.message}", file=sys.stderr)
    missing = [o.name for o in outcomes if o.status == "missing"]
    if missing:
        print(f"\nexpected notebooks missing: {', '.join(missing)} (nothing was produced for them)", file=sys.stderr)
    return code


def cmd_figures(args: argparse.Namespace) -> int:
    from pulkit.figures import registry

    if not registry.FIGURES:
        print("pulkit figures: no figure functions are registered in pulkit.figures.registry.FIGURES yet")
        return 0
    try:
        made, missing = registry.export_figures(args.profile, args.only, args.seed, args.out)
    except KeyError as e:
        print(f"pulkit figures: {e.args[0]}", file=sys.stderr)
        return 2
    for name, (pdf, png) in made.items():
        print(f"{name}: {pdf} {png.name}")
    for name, err in missing.items():
        run = f"run notebooks/{err.notebook}.ipynb" if err.notebook else "no notebook writes it"
        print(f"{name}: NOT MADE, results missing ({err.path}); {run}", file=sys.stderr)
    return 3 if missing else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pulkit.tools import bench

    return bench.main(list(args.args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"reproduce": cmd_reproduce, "figures": cmd_figures, "bench": cmd_bench}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
