"""``make device-check``: the smoke profile, the tracker and training benchmarks (and with ``--full`` the gpu
profile) on CUDA, each in a subprocess, summarised in one JSON file.

Without a CUDA device it exits 3 and says so.  Steps, output layout and the summary's fields: docs/modules.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from pulkit.core.io import write_json
from pulkit.core.results import cpu_model

EXIT_OK, EXIT_FAILED, EXIT_NO_CUDA = 0, 1, 3
OUTPUT_ENV = ("PULKIT_RESULTS", "PULKIT_CHECKPOINTS", "PULKIT_RUNS", "PULKIT_FIGURES")
TIMEOUTS_S = {"smoke": 1800, "bench_tracker": 900, "bench_train": 900, "cost": 120, "gpu": 3600}
TAIL_CHARS = 3000            # the end of a failed step's output kept in the summary (the full log is beside it)


@dataclass(frozen=True)
class Step:
    """One check: a command, extra environment, and how long it may take."""
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 900


def cuda_info() -> dict[str, Any] | None:
    """The CUDA device and versions torch sees, or None without a usable CUDA device."""
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    info = {"device": torch.cuda.get_device_name(0), "devices": torch.cuda.device_count(),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "memory_gib": round(props.total_memory / 2**30, 1), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "bf16": bool(torch.cuda.is_bf16_supported())}
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
        info["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    return info


def run_env(folder: Path) -> dict[str, str]:
    """``PULKIT_RESULTS`` etc. pointing into ``folder``: a profile run that touches no other run's outputs."""
    return {var: str(folder / var.split("_", 1)[1].lower()) for var in OUTPUT_ENV}


def plan(out: Path, full: bool = False, python: str = sys.executable) -> list[Step]:
    """The checks in order: smoke on cuda, both benchmarks on cuda, the gpu profile's cost estimate, and with
    ``full`` the gpu profile on cuda; each profile run writes under ``out/<profile>/``."""
    def reproduce(profile: str) -> Step:
        return Step(profile, [python, "-m", "pulkit", "reproduce", "--profile", profile, "--force", "-p", "DEVICE",
                              "cuda"], run_env(out / profile), TIMEOUTS_S[profile])

    steps = [reproduce("smoke"),
             Step("bench_tracker", [python, "-m", "pulkit.tools.bench", "tracker", "--device", "cuda"],
                  timeout_s=TIMEOUTS_S["bench_tracker"]),
             Step("bench_train", [python, "-m", "pulkit.tools.bench", "train", "--device", "cuda"],
                  timeout_s=TIMEOUTS_S["bench_train"]),
             Step("cost", [python, "-m", "pulkit.tools.cost", "--profile", "gpu"], timeout_s=TIMEOUTS_S["cost"])]
    if full:
        steps.append(reproduce("gpu"))
    return steps


def last_json(text: str) -> dict[str, Any] | None:
    """The last line of ``text`` that is a JSON object (the benchmarks' and the cost tool's summary), or None."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


def run_step(step: Step, log: Path) -> dict[str, Any]:
    """Run ``step``, its output into ``log``; ``{name, status (ok | failed | timeout), returncode, seconds,
    result (its last JSON line), log, tail (failures only)}``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(step.argv, env={**os.environ, **step.env}, capture_output=True, text=True,
                              timeout=step.timeout_s)
        status, rc, text = ("ok" if proc.returncode == 0 else "failed"), proc.returncode, proc.stdout + proc.stderr
        stdout = proc.stdout
    except subprocess.TimeoutExpired as e:
        status, rc = "timeout", None
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        text = stdout + (e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or ""))
    seconds = time.perf_counter() - t0
    log.write_text(f"$ {' '.join(step.argv)}\n{text}")
    rec = {"name": step.name, "status": status, "returncode": rc, "seconds": round(seconds, 1),
           "result": last_json(stdout), "log": log.name}
    if status != "ok":
        rec["tail"] = text[-TAIL_CHARS:]
    return rec


def run_checks(steps: list[Step], out: Path, runner: Callable[[Step, Path], dict[str, Any]] | None = None,
               progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every step in order through ``runner`` (default ``run_step``); a failure does not stop the others:
    the summary shows each one's state."""
    runner = runner or run_step
    records = []
    for i, step in enumerate(steps, 1):
        progress(f"[{i}/{len(steps)}] {step.name}: {' '.join(step.argv[1:])}")
        rec = runner(step, out / f"{step.name}.log")
        progress(f"    {rec['status']} in {rec['seconds']:.0f} s")
        records.append(rec)
    return records


def summarize(info: dict[str, Any], records: list[dict[str, Any]], full: bool) -> dict[str, Any]:
    """The summary: device and versions, every step's status, seconds and JSON result, and (with the gpu
    profile run) its measured minutes against the cost tool's estimate."""
    by_name = {r["name"]: r for r in records}
    out: dict[str, Any] = {**info, "cpu_model": cpu_model(), "full": bool(full),
                           "ok": bool(records) and all(r["status"] == "ok" for r in records), "steps": records}
    estimate = (by_name.get("cost", {}).get("result") or {}).get("total", {}).get("minutes_1")
    gpu = by_name.get("gpu")
    if estimate is not None:
        out["gpu_profile_estimate_min"] = round(float(estimate), 2)
    if gpu is not None and gpu["status"] == "ok":
        out["gpu_profile_measured_min"] = round(gpu["seconds"] / 60, 2)
        if estimate:
            out["gpu_profile_measured_over_estimate"] = round(gpu["seconds"] / 60 / float(estimate), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pulkit.tools.device_check", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the runs, the logs and summary.json")
    p.add_argument("--full", action="store_true", help="also run the gpu profile (about 10 minutes on an H100)")
    args = p.parse_args(argv)
    info = cuda_info()
    if info is None:
        print(f"device-check: no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda}): "
              "run it on a machine with an NVIDIA GPU; nothing was run", file=sys.stderr)
        return EXIT_NO_CUDA
    out = args.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"device-check on {info['device']} (torch {info['torch']}, CUDA {info['cuda']}) into {out}")
    records = run_checks(plan(out, args.full), out)
    summary = summarize(info, records, args.full)
    path = write_json(out / "summary.json", summary)
    print(f"summary: {path}")
    print(json.dumps({k: v for k, v in summary.items() if k != "steps"}, sort_keys=True))
    return EXIT_OK if summary["ok"] else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
