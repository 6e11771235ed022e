"""Atomic writes: a crash never leaves a half-written file that a later stage trusts."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _default_mode() -> int:
    """0o666 less the process umask: what ``open(path, "w")`` would give (mkstemp makes files 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _json_default(obj: Any):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # torch scalars
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, fixed float formatting via repr."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=True) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, to_json(obj).encode())


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such results file (run the notebook that writes it first)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    import io as _io

    import torch

    buf = _io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def npz_bytes(arrays) -> bytes:
    """An ``.npz`` (``np.load`` reads it) with fixed zip timestamps, so equal arrays give equal bytes."""
    import io as _io
    import zipfile

    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arrays[key]), allow_pickle=False)
    return buf.getvalue()


def write_npz(path: str | os.PathLike, arrays) -> Path:
    """Write ``arrays`` (name -> array) as a byte-reproducible ``.npz``, atomically."""
    return atomic_write_bytes(path, npz_bytes(arrays))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines file (blank lines skipped); a malformed line names file and line."""
    path = Path(path)
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {i}: not a JSON record ({e})") from None
    return rows


def last_jsonl_record(path: str | os.PathLike) -> dict:
    """The last well-formed record of a JSON-lines log ({} when the file is missing or empty).

    A run killed mid-write can leave a truncated last line; it is skipped, not an error.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    for line in reversed(path.read_text().splitlines()):
        if line.strip():
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return {}
