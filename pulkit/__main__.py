"""The ``pulkit`` command (also ``python -m pulkit``).

Subcommands ``reproduce`` (run the notebooks), ``sweep`` (run them over a parameter grid and aggregate),
``explore`` (a notebook's interactive copy in JupyterLab), ``figures`` (re-export figures from saved results),
``prepare`` (curate GOT-10k / VID once) and ``bench`` (``python -m pulkit.tools.bench``); examples in docs/modules.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pulkit.core.config import PROFILES

# Each subcommand imports its module when it runs: `pulkit --help` and `pulkit bench` stay quick and do not
# load the notebook runner, every figure module and matplotlib first.


PROFILE_CHOICES = " | ".join(PROFILES)


def runner_options(parser: argparse.ArgumentParser) -> None:
    """The notebook runner's options that ``reproduce`` and ``sweep`` share."""
    parser.add_argument("--kernel", help="Jupyter kernel name (default: a 'pulkit' kernelspec running this Python)")
    parser.add_argument("--notebooks", type=Path, help="notebooks folder (default: the project's notebooks/)")


def unknown_profile(command: str, profile: str) -> bool:
    """Say so (exit code 2 follows) when ``profile`` is not one of ``PROFILES``."""
    if profile in PROFILES:
        return False
    print(f"pulkit {command}: unknown profile {profile!r}; valid: {', '.join(PROFILES)}", file=sys.stderr)
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pulkit", description="pulkit: reproduce PUL (CVPR 2021) from notebooks.")
    sub = parser.add_subparsers(dest="command")
    sub.required = True

    rep = sub.add_parser("reproduce", help="execute every notebook in order through papermill",
                         description="Execute notebooks/NN_*.ipynb in order with papermill; executed copies go to "
                                     "runs/<run>/, results to results/<run>/, where <run> is the profile plus the -p "
                                     "parameters that differ from the notebooks' defaults (cpu, cpu@seed1). A "
                                     "notebook re-runs when it is stale: its cells, the package, the parameters or "
                                     "the outputs of a notebook it read changed. Exit 0: all ran or were up to date; 1: a notebook "
                                     "failed; 2: bad arguments; 3: expected notebooks are missing.")
    rep.add_argument("--profile", default="cpu", help=f"{PROFILE_CHOICES} (default cpu); injected as PROFILE")
    rep.add_argument("--force", action="store_true", help="re-run every selected notebook")
    rep.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (numbers or names)")
    rep.add_argument("--from", dest="start", metavar="NN", help="re-run NN and every notebook after it")
    rep.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"),
                     help="inject NAME=VALUE into every notebook's parameters cell; VALUE is a Python literal "
                          "(3, 0.5, True, None, [1, 2]) or else a string")
    runner_options(rep)

    fig = sub.add_parser("figures", help="re-export every registered figure from saved results",
                         description="Rebuild every figure in pulkit.figures.registry.FIGURES from results/<profile>/ "
                                     "(no training) and save figures/<profile>/<name>.pdf and .png.")
    fig.add_argument("--profile", default="cpu")
    fig.add_argument("--only", nargs="+", metavar="NAME", help="export only these figures")
    fig.add_argument("--seed", type=int, help="seed written into the metadata (default: the results' seed)")
    fig.add_argument("--out", type=Path, help="output folder (default figures/<profile>/)")

    swp = sub.add_parser("sweep", help="run notebooks at every point of a parameter grid and aggregate",
                         description="Run the --only notebooks (and what they read) once per point of the grid "
                                     "given by -p NAME VALUE [VALUE ...], each point in its own run folder "
                                     "(results/<profile>@<parameters>/; points up to date are skipped), then write "
                                     "mean +- SE per key number over SEED and figures with per-seed bands to "
                                     "results/sweeps/<profile>/<sweep>/. Exit 0: every point ran or was up to "
                                     "date; 1: a point failed (the others still ran and are aggregated).")
    swp.add_argument("--profile", default="cpu", help=f"{PROFILE_CHOICES} (default cpu)")
    swp.add_argument("--only", nargs="+", required=True, metavar="NN", help="the notebooks whose numbers it aggregates")
    swp.add_argument("-p", "--parameter", dest="parameters", nargs="+", action="append", default=[],
                     metavar="NAME VALUE", help="a swept parameter and its values, e.g. -p SEED 0 1 2 (repeatable: "
                                                "the grid is every combination); values are Python literals")
    swp.add_argument("--force", action="store_true", help="re-run every point's notebooks")
    runner_options(swp)

    exp = sub.add_parser("explore", help="open an interactive copy of a notebook in JupyterLab",
                         description="Write a copy of notebook NN with INTERACTIVE = True and the run's parameters "
                                     "(the run that `pulkit reproduce --profile P -p ...` makes) into "
                                     "runs/<run>/explore/, then open it in JupyterLab (flags for `jupyter lab` from "
                                     "$LAB_ARGS). The tracked notebooks and the run's staleness records stay as "
                                     "they are. Exit 0: written (and the server stopped cleanly); 2: bad arguments.")
    exp.add_argument("notebook", metavar="NN", help="notebook number or name (05, 05_sectionB_taylor)")
    exp.add_argument("--profile", default="cpu", help=f"{PROFILE_CHOICES} (default cpu)")
    exp.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="a run parameter, as for `pulkit reproduce` (e.g. -p SEED 1)")
    exp.add_argument("--no-lab", action="store_true", help="only write the copy and print its path")
    exp.add_argument("--notebooks", type=Path, help="notebooks folder (default: the project's notebooks/)")

    prep = sub.add_parser("prepare", help="cut a real training dataset's crops once (curation)",
                          description="Curate the training split of GOT-10k or ILSVRC-2015 VID for a profile's crop "
                                      "geometry: ground-truth crops in sharded files plus an index, and the videos' "
                                      "frames, under PULKIT_CURATED (data/curated/). Prints a size estimate first; "
                                      "a re-run after a kill skips finished shards. Profiles with data.curated "
                                      "(paper) train only on these crops.")
    prep.add_argument("dataset", choices=("got10k", "vid"))
    prep.add_argument("--profile", default="paper", help="profile whose crop geometry is cut (default paper)")
    prep.add_argument("--root", type=Path, help="the dataset's root (default: PULKIT_GOT10K / PULKIT_VID)")
    prep.add_argument("--data-root", type=Path, help="a folder holding got10k/ and vid/ (as DATA_ROOT)")
    prep.add_argument("--seed", type=int, help="seed of BD's candidate crops, cut once every training source is "
                                               "curated (default: the profile's)")
    prep.add_argument("--workers", type=int, help="processes cutting shards at once (default: data.curate_workers)")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")

    bench = sub.add_parser("bench", help="benchmarks: pulkit bench tracker | ahm | train [options]",
                           add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def cmd_reproduce(args: argparse.Namespace) -> int:
    from pulkit.tools import reproduce as rp

    if unknown_profile("reproduce", args.profile):
        return 2
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
        skipped: dict = {}
        made, missing = registry.export_figures(args.profile, args.only, args.seed, args.out, skipped=skipped)
    except KeyError as e:
        print(f"pulkit figures: {e.args[0]}", file=sys.stderr)
        return 2
    for name, (pdf, png) in made.items():
        print(f"{name}: {pdf} {png.name}")
    for name, err in skipped.items():
        print(f"{name}: not made, this profile does not measure it ({err})")
    for name, err in missing.items():
        run = f"run notebooks/{err.notebook}.ipynb" if err.notebook else "no notebook writes it"
        print(f"{name}: NOT MADE, results missing ({err.path}); {run}", file=sys.stderr)
    return 3 if missing else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pulkit.tools import reproduce as rp
    from pulkit.tools import sweep as sw

    if unknown_profile("sweep", args.profile):
        return 2
    bad = [p[0] for p in args.parameters if len(p) < 2]
    if bad:
        print(f"pulkit sweep: -p {bad[0]} needs at least one value (-p NAME VALUE [VALUE ...])", file=sys.stderr)
        return rp.EXIT_USAGE
    grid = {p[0]: [rp.parse_value(v) for v in p[1:]] for p in args.parameters}
    try:
        folder, done = sw.sweep(args.profile, args.only, grid, force=args.force, kernel=args.kernel,
                                notebooks_dir=args.notebooks)
    except rp.ReproduceError as e:
        print(f"pulkit sweep: {e}", file=sys.stderr)
        return rp.EXIT_USAGE
    print()
    print(sw.format_table(sw.aggregate(done)))
    failed = [p["run"] for p in done if p["status"] != "ok"]
    print(f"\nsweep: {len(done) - len(failed)} of {len(done)} points done; aggregate in {folder}")
    if failed:
        print(f"failed points: {', '.join(failed)}", file=sys.stderr)
    return rp.EXIT_FAILED if failed else rp.EXIT_OK


def cmd_explore(args: argparse.Namespace) -> int:
    from pulkit.tools import explore as ex
    from pulkit.tools import lab
    from pulkit.tools import reproduce as rp

    if unknown_profile("explore", args.profile):
        return 2
    params = {name: rp.parse_value(value) for name, value in args.parameters}
    try:
        return ex.explore(args.notebook, args.profile, params, open_lab=not args.no_lab,
                          notebooks_dir=args.notebooks)
    except (rp.ReproduceError, lab.LabError) as e:
        print(f"pulkit explore: {e}", file=sys.stderr)
        return rp.EXIT_USAGE


def cmd_prepare(args: argparse.Namespace) -> int:
    from pulkit.core.config import load_config
    from pulkit.data import curate, inventory
    from pulkit.data.sequences import DataError

    if unknown_profile("prepare", args.profile):
        return 2
    cfg = load_config(args.profile) if args.seed is None else load_config(args.profile, seed=args.seed)
    try:
        root = args.root or inventory.dataset_root(args.dataset, args.data_root)
        curate.prepare(cfg, args.dataset, root, progress=not args.no_progress, workers=args.workers)
    except DataError as e:
        print(f"pulkit prepare: {e}", file=sys.stderr)
        return 1
    if cfg.data.curated and args.root is None:
        _prepare_candidates(cfg, args)
    return 0


def _prepare_candidates(cfg, args: argparse.Namespace) -> None:
    """BD's candidate crops (``pulkit.method.bd.bd_candidates``), once every training source is curated."""
    from pulkit.data import curate, inventory
    from pulkit.method.bd import bd_candidates

    try:
        seqs = inventory.profile_sequences(cfg.override({"data": {"eval_sources": ()}}), args.data_root)["train"]
    except curate.CurationError as e:
        print(f"pulkit prepare: BD's candidate crops wait for every training source: {str(e).split('; ')[-1]}")
        return
    try:
        table, crops = bd_candidates(cfg, seqs, progress=not args.no_progress)
    except ValueError as e:
        print(f"pulkit prepare: BD's candidate crops not cut: {e}")
        return
    state = "already cut" if crops.from_cache else "cut now"
    print(f"pulkit prepare: BD's candidate crops (seed {cfg.seed}): {len(table)} of {crops.crop_sz} px, {state}, "
          f"in {crops.path}")


def cmd_bench(args: argparse.Namespace) -> int:
    from pulkit.tools import bench

    return bench.main(list(args.args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return globals()[f"cmd_{args.command}"](args)      # each subcommand X is handled by cmd_X


if __name__ == "__main__":
    raise SystemExit(main())
