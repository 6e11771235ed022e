"""Benchmarks that print figures: ``python -m pulkit.tools.bench tracker | ahm | train | loader [options]``.

Each benchmark prints human-readable lines and ends with one JSON object on its last line.
Speed is measured here, as ratios against a baseline in the same run, never asserted in tests.
"""
from __future__ import annotations

import importlib
import sys

BENCHES = {
    "tracker": "pulkit.tools.bench_tracker",   # whole-loop and network fps, FLOPs, speed-up vs plain eager
    "ahm": "pulkit.tools.bench_ahm",           # AHM batch selection time on a 200,000 x 128 bank
    "train": "pulkit.tools.bench_train",       # training pairs/s per backbone, NR vs BCE step time
    "loader": "pulkit.tools.bench_loader",     # curated pairs/s per DataLoader worker, workers to feed a GPU
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in BENCHES:
        print(f"usage: python -m pulkit.tools.bench {{{'|'.join(BENCHES)}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHES[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
