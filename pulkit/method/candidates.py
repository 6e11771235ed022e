"""Candidate patches for background discrimination (BD, METHOD.md section 1).

Draws random boxes in frames of unlabeled video (never reading a label) and caches their exemplar
crops, for BD and for the start boxes of mining.  Geometry and texture prior: docs/modules.md.
"""
from __future__ import annotations

import hashlib
import math
import os
import tempfile
import zlib
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from pulkit.core import paths
from pulkit.data.crops import exemplar_crop, mean_color
from pulkit.data.images import read_rgb

COLUMNS = ("cand_id", "video", "frame", "x", "y", "w", "h", "path")


# --------------------------------------------------------------------------- sampling
def _check_cfg(bd_cfg) -> None:
    if not 0 < bd_cfg.min_side <= bd_cfg.max_side <= 1:
        raise ValueError(f"bd.min_side/max_side must satisfy 0 < min <= max <= 1, "
                         f"got {bd_cfg.min_side}, {bd_cfg.max_side}")
    if not 0 < bd_cfg.min_aspect <= bd_cfg.max_aspect:
        raise ValueError(f"bd.min_aspect/max_aspect must satisfy 0 < min <= max, "
                         f"got {bd_cfg.min_aspect}, {bd_cfg.max_aspect}")
    if bd_cfg.candidates_per_frame < 1 or bd_cfg.max_candidates < 1 or bd_cfg.texture_tries < 1:
        raise ValueError("bd.candidates_per_frame, bd.max_candidates and bd.texture_tries must be >= 1")


def gradient_magnitude(img: np.ndarray) -> np.ndarray:
    """Per-pixel gradient magnitude of the grayscale image (central differences), float32 H x W."""
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    gy, gx = np.gradient(g.astype(np.float32))
    return np.hypot(gx, gy)


def _integral(a: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
    out[1:, 1:] = a.cumsum(0, dtype=np.float64).cumsum(1)
    return out


def box_means(integral: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean of the image behind ``integral`` inside each integer ``[x, y, w, h]`` box."""
    x0, y0 = boxes[:, 0].astype(int), boxes[:, 1].astype(int)
    x1, y1 = x0 + boxes[:, 2].astype(int), y0 + boxes[:, 3].astype(int)
    s = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return s / (boxes[:, 2] * boxes[:, 3])


def propose_boxes(rng: np.random.Generator, n: int, width: int, height: int, bd_cfg) -> np.ndarray:
    """``n`` random integer boxes inside a ``width`` x ``height`` frame (geometry: module docstring).

    Returns an M x 4 float64 array, M <= n (proposals larger than the frame are dropped).
    """
    f = rng.uniform(bd_cfg.min_side, bd_cfg.max_side, n)
    log_a = rng.uniform(math.log(bd_cfg.min_aspect), math.log(bd_cfg.max_aspect), n)
    u = rng.uniform(0.0, 1.0, (n, 2))
    s = f * min(width, height)
    w = np.maximum(1, np.round(s * np.exp(log_a / 2)))
    h = np.maximum(1, np.round(s * np.exp(-log_a / 2)))
    fits = (w <= width) & (h <= height)
    x = np.floor(u[:, 0] * (width - w + 1))
    y = np.floor(u[:, 1] * (height - h + 1))
    return np.stack([x, y, w, h], axis=1)[fits]


def _frame_rng(seed: int, video: str, frame: int) -> np.random.Generator:
    """One generator per (seed, video, frame): a frame's candidates do not depend on any other video."""
    return np.random.default_rng([int(seed), zlib.crc32(video.encode()), int(frame)])


def sample_candidates(sequences: Iterable, bd_cfg, seed: int, frame_stride: int = 1,
                      progress: bool = True) -> pd.DataFrame:
    """Candidate boxes in every ``frame_stride``-th frame of each (unlabeled) sequence.

    Returns a DataFrame with columns ``cand_id`` (0..N-1, equal to the row index; stable: a pure
    function of the frames, ``bd_cfg``, ``seed`` and ``frame_stride``), ``video`` (the sequence
    name), ``frame`` (0-based index into ``sequence.frames``), ``x``, ``y``, ``w``, ``h``
    (0-based integer pixels, fully inside the frame) and ``path`` (the frame file).  When more than
    ``bd_cfg.max_candidates`` are found, a seeded uniform subsample (kept in video/frame order) is
    returned.  Labels are never read.
    """
    _check_cfg(bd_cfg)
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    sequences = list(sequences)
    names = [str(s.name) for s in sequences]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"sequence names must be unique (candidates are keyed by video): {dup}")
    k = bd_cfg.candidates_per_frame
    n_prop = k * bd_cfg.texture_tries if bd_cfg.texture_prior else k
    rows = []
    todo = [(s, i) for s in sequences for i in range(0, len(s.frames), frame_stride)]
    for seq, i in tqdm(todo, desc="candidates", unit="frame", disable=not progress, leave=False):
        path = Path(seq.frames[i])
        img = read_rgb(path)
        height, width = img.shape[:2]
        boxes = propose_boxes(_frame_rng(seed, str(seq.name), i), n_prop, width, height, bd_cfg)
        if bd_cfg.texture_prior and len(boxes):
            boxes = boxes[box_means(_integral(gradient_magnitude(img)), boxes) >= bd_cfg.texture_min]
        for b in boxes[:k]:
            rows.append((str(seq.name), i, *b, str(path)))
    table = pd.DataFrame(rows, columns=list(COLUMNS[1:]))
    table = table.astype({"frame": np.int64, "x": np.float64, "y": np.float64, "w": np.float64, "h": np.float64})
    if len(table) > bd_cfg.max_candidates:
        keep = np.random.default_rng([int(seed), 0x5EED]).choice(len(table), bd_cfg.max_candidates, replace=False)
        table = table.iloc[np.sort(keep)]
    table = table.reset_index(drop=True)
    table.insert(0, "cand_id", np.arange(len(table), dtype=np.int64))
    return table


# --------------------------------------------------------------------------- crops
def table_hash(table: pd.DataFrame, *extra) -> str:
    """Hash of the candidate table's geometry and frame files, plus ``extra`` values (sizes)."""
    h = hashlib.sha256()
    h.update(table[list(COLUMNS)].to_csv(index=False).encode())
    h.update(repr(extra).encode())
    return h.hexdigest()[:16]


def cut_crops(table: pd.DataFrame, crop_sz: int, context: float, out: np.ndarray | None = None,
              progress: bool = True) -> np.ndarray:
    """Exemplar crops of every candidate, N x crop_sz x crop_sz x 3 uint8; each frame decoded once."""
    if out is None:
        out = np.empty((len(table), crop_sz, crop_sz, 3), np.uint8)
    groups = table.groupby("path", sort=False).indices
    for path, rows in tqdm(groups.items(), desc="candidate crops", unit="frame", disable=not progress,
                           leave=False):
        img = read_rgb(path)
        border = mean_color(img)
        for r in rows:
            box = table.iloc[r][["x", "y", "w", "h"]].to_numpy(np.float64)
            out[r] = exemplar_crop(img, box, crop_sz, context, border)
    return out


class CandidateCrops:
    """The un-augmented SiamFC exemplar crop of every candidate, cut once and cached on disk.

    ``crops`` is an N x S x S x 3 uint8 array (RGB, S = ``crop_sz``, row ``i`` is ``cand_id`` i),
    read memory-mapped from ``<cache>/bd_crops_<hash>.npy`` where the hash covers the table
    (geometry and frame paths), ``crop_sz`` and ``context``.  The file is written atomically
    (temporary file, then rename) and reused when present: ``from_cache`` says which happened.
    """

    def __init__(self, table: pd.DataFrame, crop_sz: int = 127, context: float = 0.5,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True):
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"candidate table lacks columns {missing} (build it with sample_candidates)")
        if not np.array_equal(table["cand_id"].to_numpy(), np.arange(len(table))):
            raise ValueError("candidate table: cand_id must equal the row position 0..N-1")
        if crop_sz < 1:
            raise ValueError(f"crop_sz must be positive, got {crop_sz}")
        self.table = table
        self.crop_sz = int(crop_sz)
        self.context = float(context)
        root = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "candidates"
        self.path = root / f"bd_crops_{table_hash(table, self.crop_sz, self.context)}.npy"
        self.from_cache = self.path.is_file()
        if not self.from_cache:
            self._build(progress)
        self.crops = np.load(self.path, mmap_mode="r")
        want = (len(table), self.crop_sz, self.crop_sz, 3)
        if self.crops.shape != want or self.crops.dtype != np.uint8:
            raise ValueError(f"{self.path}: cached crops have shape {self.crops.shape} {self.crops.dtype}, "
                             f"expected {want} uint8 (delete the file to rebuild it)")

    def _build(self, progress: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        try:
            shape = (len(self.table), self.crop_sz, self.crop_sz, 3)
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            cut_crops(self.table, self.crop_sz, self.context, out=arr, progress=progress)
            arr.flush()
            del arr
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, idx) -> np.ndarray:
        """Crops of one index or an index array, as a (copied) uint8 array."""
        return np.array(self.crops[idx])

    def batch(self, idx) -> "torch.Tensor":  # noqa: F821
        """Crops ``idx`` as a float32 tensor B x 3 x S x S with raw pixel values 0..255 (network input)."""
        import torch

        a = np.array(self.crops[np.asarray(idx)])
        return torch.from_numpy(a).permute(0, 3, 1, 2).float()
