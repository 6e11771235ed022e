"""Same numbers twice: compare the result trees of two runs, file by file.

Checks that two runs of ``pulkit reproduce`` (same profile, seed and CPU machine) wrote the same
results, checkpoints and figures: ``python -m pulkit.tools.determinism RUN_A RUN_B`` (exit 0:
identical, 1: differences, 2: bad input).  Comparison rules and skipped files: docs/modules.md.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

# Wall-clock fields the training loop writes into its logs and checkpoints (pulkit.method.loop).
TIMING_KEYS = frozenset({"elapsed", "pairs_per_s"})
SKIP_DIRS = ("timings", "times")        # notebooks' timings/NN.json; OTB-layout tracker times/<seq>_time.txt
SKIP_FILES = ("*_time.txt",)            # GOT-10k-layout tracker times <seq>/<seq>_time.txt
MAX_LISTED = 5          # differing keys / tensors listed per file


@dataclass(frozen=True)
class Difference:
    """One file that differs: ``path`` relative to the roots, ``kind`` of check, what differs."""
    path: str
    kind: str           # only-in-a | only-in-b | json | jsonl | pixels | arrays | torch | bytes | unreadable
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: [{self.kind}] {self.detail}"


@dataclass
class Report:
    """What ``compare_trees`` found: every compared file and the differences."""
    a: Path
    b: Path
    compared: list[str] = field(default_factory=list)     # relative paths present in both trees
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def format(self) -> str:
        head = (f"{self.a} vs {self.b}: {len(self.compared)} files compared, "
                f"{len(self.differences)} difference(s)")
        if self.ok:
            return head + " -- identical"
        return "\n".join([head, *(f"  {d}" for d in self.differences)])


# --------------------------------------------------------------------------- walking
def list_files(root: Path, skip_dirs: Sequence[str] = SKIP_DIRS, skip_files: Sequence[str] = SKIP_FILES
               ) -> list[str]:
    """Relative POSIX paths of the files under ``root``, without dot-names, ``skip_dirs`` folders and
    files whose name matches a ``skip_files`` pattern (``fnmatch``)."""
    out = []
    for f in Path(root).rglob("*"):
        rel = f.relative_to(root)
        if (any(p.startswith(".") for p in rel.parts) or any(p in skip_dirs for p in rel.parts[:-1])
                or any(fnmatch.fnmatchcase(rel.name, pat) for pat in skip_files)):
            continue
        if f.is_file():
            out.append(rel.as_posix())
    return sorted(out)


def compare_trees(a: str | Path, b: str | Path, *, skip_dirs: Sequence[str] = SKIP_DIRS,
                  skip_files: Sequence[str] = SKIP_FILES, ignore_keys: Sequence[str] = ()) -> Report:
    """Compare every file under roots ``a`` and ``b`` (see the module docstring); returns a ``Report``.

    Raises ``FileNotFoundError`` naming a root that is not a folder.
    """
    a, b = Path(a), Path(b)
    for root in (a, b):
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such folder to compare")
    fa, fb = set(list_files(a, skip_dirs, skip_files)), set(list_files(b, skip_dirs, skip_files))
    report = Report(a, b)
    for rel in sorted(fa - fb):
        report.differences.append(Difference(rel, "only-in-a", f"missing under {b}"))
    for rel in sorted(fb - fa):
        report.differences.append(Difference(rel, "only-in-b", f"missing under {a}"))
    for rel in sorted(fa & fb):
        report.compared.append(rel)
        diff = compare_files(a / rel, b / rel, ignore_keys=ignore_keys)
        if diff is not None:
            report.differences.append(Difference(rel, *diff))
    return report


def compare_files(fa: Path, fb: Path, *, ignore_keys: Sequence[str] = ()) -> tuple[str, str] | None:
    """None when the two files are equal by their type's rule, else ``(kind, detail)``."""
    suffix = fa.suffix.lower()
    if fa.read_bytes() == fb.read_bytes():
        return None
    if suffix == ".json":
        kind, check = "json", lambda x, y: _check_json(x, y, ignore_keys)
    else:
        kind, check = _CHECKS.get(suffix, ("bytes", _check_bytes))
    try:
        detail = check(fa, fb)
    except Exception as e:  # a file that does not parse as its suffix says: reported, not raised
        return "unreadable", f"{type(e).__name__}: {e}"
    return None if detail is None else (kind, detail)


# --------------------------------------------------------------------------- per type
def _check_bytes(fa: Path, fb: Path) -> str | None:
    da, db = fa.read_bytes(), fb.read_bytes()
    first = next((i for i, (x, y) in enumerate(zip(da, db)) if x != y), min(len(da), len(db)))
    return f"bytes differ ({len(da)} vs {len(db)} bytes, first at offset {first})"


def _check_json(fa: Path, fb: Path, ignore_keys: Sequence[str]) -> str | None:
    va, vb = json.loads(fa.read_text()), json.loads(fb.read_text())
    for key in ignore_keys:
        _drop(va, key.split("."))
        _drop(vb, key.split("."))
    return _listed(value_diffs(va, vb))


def _check_jsonl(fa: Path, fb: Path) -> str | None:
    la, lb = fa.read_text().splitlines(), fb.read_text().splitlines()
    if len(la) != len(lb):
        return f"{len(la)} vs {len(lb)} lines"
    diffs = []
    for n, (x, y) in enumerate(zip(la, lb), 1):
        diffs += [f"line {n}: {d}" for d in value_diffs(json.loads(x), json.loads(y), skip=TIMING_KEYS)]
    return _listed(diffs)


def _check_png(fa: Path, fb: Path) -> str | None:
    import cv2

    ia, ib = (cv2.imdecode(np.fromfile(str(f), np.uint8), cv2.IMREAD_UNCHANGED) for f in (fa, fb))
    for f, img in ((fa, ia), (fb, ib)):
        if img is None:
            raise ValueError(f"{f}: cannot decode PNG")
    if ia.shape != ib.shape or ia.dtype != ib.dtype:
        return f"image {ia.shape} {ia.dtype} vs {ib.shape} {ib.dtype}"
    if np.array_equal(ia, ib):
        return None  # same pixels, different metadata or compression
    diff = np.abs(ia.astype(np.int64) - ib.astype(np.int64))
    pixels = int(np.any(diff.reshape(diff.shape[0], diff.shape[1], -1) > 0, axis=2).sum())
    return f"{pixels} of {ia.shape[0] * ia.shape[1]} pixels differ (max abs {int(diff.max())})"


def _check_arrays(fa: Path, fb: Path) -> str | None:
    def load(f: Path) -> dict[str, np.ndarray]:
        if f.suffix.lower() == ".npy":
            return {"": np.load(f, allow_pickle=False)}
        with np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    return _listed(value_diffs(load(fa), load(fb)))


def _check_torch(fa: Path, fb: Path) -> str | None:
    import torch

    # pulkit's own checkpoints carry optimizer and RNG state: unpickled in full (load only trusted files).
    va, vb = (torch.load(f, map_location="cpu", weights_only=False) for f in (fa, fb))
    return _listed(value_diffs(va, vb, skip=TIMING_KEYS))


_CHECKS: dict[str, tuple[str, Callable[[Path, Path], str | None]]] = {
    ".jsonl": ("jsonl", _check_jsonl),
    ".png": ("pixels", _check_png),
    ".npz": ("arrays", _check_arrays),
    ".npy": ("arrays", _check_arrays),
    ".pt": ("torch", _check_torch),
}


# --------------------------------------------------------------------------- values
def value_diffs(a: Any, b: Any, path: str = "", skip: Iterable[str] = frozenset()) -> list[str]:
    """Where two nested values (dicts, lists, arrays, tensors, scalars) differ, as ``key.path: a != b``.

    Numbers compare exactly (NaN equals NaN; int 1 equals float 1.0 as JSON does); arrays and
    tensors must agree in dtype, shape and every element; dict keys in ``skip`` are left out.
    """
    skip = frozenset(skip)
    where = path or "<top>"
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        ka, kb = {k for k in a if k not in skip}, {k for k in b if k not in skip}
        for k in sorted(ka ^ kb, key=str):
            out.append(f"{_join(path, k)}: only in {'a' if k in ka else 'b'}")
        for k in sorted(ka & kb, key=str):
            out += value_diffs(a[k], b[k], _join(path, k), skip)
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} != {len(b)}"]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += value_diffs(x, y, f"{path}[{i}]", skip)
        return out
    ta, tb = _as_array(a), _as_array(b)
    if ta is not None or tb is not None:
        if ta is None or tb is None:
            return [f"{where}: {type(a).__name__} != {type(b).__name__}"]
        if ta.dtype != tb.dtype or ta.shape != tb.shape:
            return [f"{where}: array {ta.dtype}{list(ta.shape)} != {tb.dtype}{list(tb.shape)}"]
        if _arrays_equal(ta, tb):
            return []
        if ta.dtype.kind in "iuf":
            x, y = ta.astype(np.float64), tb.astype(np.float64)
            differ = ~((x == y) | (np.isnan(x) & np.isnan(y)))
            d = np.abs(x - y)[differ]
            worst = f"max abs {np.nanmax(d):.3g}" if np.isfinite(d).any() else "NaN/inf"
            return [f"{where}: {int(differ.sum())} of {ta.size} elements differ ({worst})"]
        return [f"{where}: arrays differ"]
    if _scalar_equal(a, b):
        return []
    return [f"{where}: {_short(a)} != {_short(b)}"]


def _as_array(v: Any) -> np.ndarray | None:
    if isinstance(v, np.ndarray):
        return v
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(v, torch.Tensor):
        t = v.detach().cpu()
        # numpy has no bfloat16: compare its bits
        return t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
    return None


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _scalar_equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return False
    try:
        return bool(a == b)
    except Exception:
        return repr(a) == repr(b)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _short(v: Any, n: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= n else s[:n - 3] + "..."


def _listed(diffs: list[str]) -> str | None:
    if not diffs:
        return None
    more = f" (+{len(diffs) - MAX_LISTED} more)" if len(diffs) > MAX_LISTED else ""
    return "; ".join(diffs[:MAX_LISTED]) + more


def _drop(obj: Any, keys: list[str]) -> None:
    """Remove the dotted path ``keys`` from a nested dict, in place (absent: nothing to do)."""
    for k in keys[:-1]:
        if not isinstance(obj, dict) or k not in obj:
            return
        obj = obj[k]
    if isinstance(obj, dict):
        obj.pop(keys[-1], None)


# --------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pulkit.tools.determinism",
        description="Compare two runs' result trees: JSON values equal, PNG pixels identical, arrays and "
                    "checkpoint tensors identical, other files byte-identical (timings/, times/, *_time.txt and "
                    "dot-files skipped). "
                    "Exit 0: identical; 1: differences; 2: bad input.")
    parser.add_argument("a", type=Path, help="first run's root (results, figures and/or checkpoints folders)")
    parser.add_argument("b", type=Path, help="second run's root, same layout")
    parser.add_argument("--skip-dir", action="append", default=None, metavar="NAME",
                        help=f"skip folders with this name (repeatable; default: {', '.join(SKIP_DIRS)})")
    parser.add_argument("--skip-file", action="append", default=None, metavar="PATTERN",
                        help=f"skip files whose name matches (repeatable; default: {', '.join(SKIP_FILES)})")
    parser.add_argument("--ignore-key", action="append", default=[], metavar="DOTTED.KEY",
                        help="drop this key path from every JSON comparison (repeatable), e.g. provenance.dirty")
    args = parser.parse_args(argv)
    try:
        report = compare_trees(args.a, args.b, skip_dirs=tuple(args.skip_dir or SKIP_DIRS),
                               skip_files=tuple(args.skip_file or SKIP_FILES), ignore_keys=args.ignore_key)
    except FileNotFoundError as e:
        print(f"pulkit.tools.determinism: {e}", file=sys.stderr)
        return 2
    print(report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
