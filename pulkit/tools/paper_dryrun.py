"""The paper profile's code paths end to end on generated datasets: ``make paper-dryrun`` (a CI step).

Writes GOT-10k / VID / OTB / VOT stand-ins at real resolutions into a folder, curates GOT-10k and VID with
``pulkit prepare``, then runs every notebook with ``--profile paper-dryrun --force``, all outputs in that folder.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pulkit.core.results import cpu_model
from pulkit.data.fake_datasets import write_got10k, write_otb, write_vid, write_vot

PROFILE = "paper-dryrun"


def environment(out: Path, roots: dict[str, Path]) -> dict[str, str]:
    """The run's variables: the four dataset roots, and every output under ``out``."""
    env = {f"PULKIT_{name.upper()}": str(path) for name, path in roots.items()}
    env.update({"PULKIT_CURATED": str(out / "curated"), "PULKIT_DATA": str(out / "data"),
                "PULKIT_RESULTS": str(out / "results"), "PULKIT_CHECKPOINTS": str(out / "checkpoints"),
                "PULKIT_RUNS": str(out / "runs"), "PULKIT_FIGURES": str(out / "figures")})
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pulkit.tools.paper_dryrun", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="folder for the datasets and every output (default: a temporary one, "
                                            "removed after a successful run)")
    p.add_argument("--videos", type=int, default=2, help="training videos of GOT-10k and of VID (snippets)")
    p.add_argument("--eval-videos", type=int, default=1, help="videos of OTB, VOT and GOT-10k val")
    p.add_argument("--frames", type=int, default=12, help="frames per generated video")
    p.epilog = "Other arguments (e.g. --only 00 01) are passed on to `pulkit reproduce`."
    a, reproduce_args = p.parse_known_args(argv)
    out = a.out or Path(tempfile.mkdtemp(prefix="pulkit-paper-dryrun-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"paper-dryrun: CPU {cpu_model()}, {os.cpu_count()} cores, outputs in {out}", flush=True)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    d = out / "datasets"
    roots = {"got10k": write_got10k(d / "got10k", a.videos, a.eval_videos, a.frames),
             "vid": write_vid(d / "vid", a.videos, a.frames), "otb": write_otb(d / "otb", a.eval_videos, a.frames),
             "vot": write_vot(d / "vot", a.eval_videos, a.frames)}
    seconds["datasets"] = time.perf_counter() - t0
    env = {**os.environ, **environment(out, roots)}
    steps = [("prepare got10k", ["prepare", "got10k", "--profile", PROFILE, "--no-progress"]),
             ("prepare vid", ["prepare", "vid", "--profile", PROFILE, "--no-progress"]),
             ("reproduce", ["reproduce", "--profile", PROFILE, "--force", *reproduce_args])]
    code = 0
    for name, args in steps:
        t = time.perf_counter()
        code = subprocess.run([sys.executable, "-m", "pulkit", *args], env=env).returncode
        seconds[name] = time.perf_counter() - t
        if code:
            print(f"paper-dryrun: `pulkit {' '.join(args)}` failed (exit {code}); outputs kept in {out}",
                  file=sys.stderr)
            break
    total = time.perf_counter() - t0
    used = resource.getrusage(resource.RUSAGE_CHILDREN)       # every finished descendant: kernels included
    cpu = used.ru_utime + used.ru_stime + time.process_time()
    print("paper-dryrun: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + f"; total {total:.0f} s "
          f"({total / 60:.1f} min) wall, {cpu:.0f} s CPU time (load average {os.getloadavg()[0]:.1f})")
    if code == 0 and a.out is None:
        shutil.rmtree(out, ignore_errors=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
