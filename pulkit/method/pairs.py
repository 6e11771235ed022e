"""Pair datasets for the Siamese stages, the crop cache that makes them fast, and the uint8 crop store
that holds them on the training device.

Turns ground-truth boxes (supervised runs) or a mined pairs table (TC) into exemplar / search
training batches with their label offsets.  Crop geometry, datasets and batch format: docs/modules.md.
"""
from __future__ import annotations

import abc
import hashlib
import math
import os
import tempfile
import warnings
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping
from typing import Sequence as Seq

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from pulkit.core import paths
from pulkit.core.config import DataConfig, ModelConfig, check_crop_size
from pulkit.data import crops
from pulkit.data.curate import curated_cache
from pulkit.data.images import read_rgb
from pulkit.data.sequences import DataError

STRIDE = 8  # backbone stride of both AlexNet and CIResNet-22 (pixels per response-map cell)

# --------------------------------------------------------------------------- mined pairs table schema
# One row per mined pair: frame indices are 0-based positions in the video's frame list, boxes are
# 0-based [x, y, w, h] pixels (pulkit.data.crops), k = frame_b - frame_a, confidence is the miner's
# score, round the progressive round (1-based) that mined it.  Extra columns are allowed and ignored.
PAIR_COLUMNS: dict[str, str] = {
    "video": "str",
    "frame_a": "int", "frame_b": "int",
    "xa": "float", "ya": "float", "wa": "float", "ha": "float",
    "xb": "float", "yb": "float", "wb": "float", "hb": "float",
    "k": "int",
    "confidence": "float",
    "round": "int",
}
BOX_A, BOX_B = ["xa", "ya", "wa", "ha"], ["xb", "yb", "wb", "hb"]


def validate_pairs(table: Any, source: str = "pairs table") -> pd.DataFrame:
    """Check a mined pairs table against ``PAIR_COLUMNS``; return it with a clean 0..N-1 index.

    Raises ``DataError`` naming ``source`` and the first problem: not a DataFrame, missing columns,
    non-numeric or non-integer values, non-finite or non-positive boxes, negative frames,
    ``k != frame_b - frame_a``, empty video names.
    """
    if not isinstance(table, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in PAIR_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing}; a pairs table has {list(PAIR_COLUMNS)}")
    table = table.reset_index(drop=True)
    for col, kind in PAIR_COLUMNS.items():
        if kind == "str":
            bad = ~table[col].map(lambda v: isinstance(v, str) and len(v) > 0)
            if bad.any():
                raise DataError(f"{source}: column {col!r} must hold non-empty strings (row {int(np.flatnonzero(bad)[0])})")
            continue
        if not pd.api.types.is_numeric_dtype(table[col]) or pd.api.types.is_bool_dtype(table[col]):
            raise DataError(f"{source}: column {col!r} must be numeric, got dtype {table[col].dtype}")
        values = table[col].to_numpy(np.float64)
        if not np.isfinite(values).all():
            raise DataError(f"{source}: column {col!r} has non-finite values (row {int(np.flatnonzero(~np.isfinite(values))[0])})")
        if kind == "int" and (values != np.round(values)).any():
            raise DataError(f"{source}: column {col!r} must hold integers (row {int(np.flatnonzero(values != np.round(values))[0])})")
    for col in ("frame_a", "frame_b"):
        if (table[col] < 0).any():
            raise DataError(f"{source}: column {col!r} has negative frame indices")
    for col in ("wa", "ha", "wb", "hb"):
        if (table[col] <= 0).any():
            raise DataError(f"{source}: column {col!r} has non-positive box sizes (row {int(np.flatnonzero(table[col] <= 0)[0])})")
    bad_k = table["k"] != table["frame_b"] - table["frame_a"]
    if bad_k.any():
        raise DataError(f"{source}: k != frame_b - frame_a in row {int(np.flatnonzero(bad_k)[0])}")
    return table


# --------------------------------------------------------------------------- noisy annotations
def noisy_boxes(boxes: np.ndarray, noise_px: float, seed: int, name: str) -> np.ndarray:
    """``boxes`` with every centre shifted by (dx, dy) ~ U[-noise_px, noise_px]^2 frame pixels.

    One draw per annotation from a stream keyed by ``(seed, name)``: the same seed gives the same
    noisy dataset whatever the order of the sequences; sizes are kept; NaN rows stay NaN.
    """
    boxes = crops.as_boxes(boxes).copy()
    if noise_px < 0:
        raise ValueError(f"noise_px must be >= 0, got {noise_px}")
    if noise_px == 0:
        return boxes
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))
    boxes[:, :2] += rng.uniform(-noise_px, noise_px, size=(len(boxes), 2))
    return boxes


# --------------------------------------------------------------------------- crop cache
@dataclass(frozen=True)
class PairGeometry:
    """The cached crop's geometry: SiamFC sizes, context and the shift margin ``M`` (pixels)."""
    exemplar_sz: int
    instance_sz: int
    context: float
    margin: int

    @property
    def side(self) -> int:
        """Side S of a cached entry: the search crop plus the margin on every side."""
        return self.instance_sz + 2 * self.margin

    def cut(self, img: np.ndarray, box: np.ndarray, border) -> np.ndarray:
        """The S x S x 3 uint8 entry around ``box`` (see the module docstring)."""
        cx, cy, w, h = crops.xywh_to_cxcywh(box)[0]
        _, x_sz = crops.crop_sizes(w, h, self.exemplar_sz, self.instance_sz, self.context)
        return crops.crop(img, (cx, cy), x_sz * self.side / self.instance_sz, self.side, border)

    def exemplar(self, entry: np.ndarray) -> np.ndarray:
        o = self.margin + (self.instance_sz - self.exemplar_sz) // 2
        return entry[o:o + self.exemplar_sz, o:o + self.exemplar_sz]

    def search(self, entry: np.ndarray, sx: int, sy: int) -> np.ndarray:
        r, c = self.margin + sy, self.margin + sx
        return entry[r:r + self.instance_sz, c:c + self.instance_sz]


class CropCache:
    """Decode + crop once: an in-memory LRU (``memory_mb``) in front of one ``.npy`` file per entry.

    Entries are keyed by a hash of (frame path, its size and mtime, box to 1e-3 px, geometry), live
    under ``root/<2 hex>/<hash>.npy`` (``root=None``: memory only; default
    ``pulkit.core.paths.cache_dir() / "pairs"``) and are written atomically, so concurrent processes
    (DDP ranks) can share a cache.  ``stats`` counts memory hits, disk hits and misses.

    The folder holds at most ``disk_mb`` (``data.crop_cache_disk_mb``; an instance crop is ~0.2 MB,
    so a paper-scale run would otherwise write tens of GB): its size is measured once, at the first
    write, and once full, new entries stay in memory only (a warning says so; delete the folder to
    reclaim it).  ``disk_mb=None``: no limit.
    """

    def __init__(self, root: str | os.PathLike | None = "default", memory_mb: float = 256,
                 disk_mb: float | None = 4096):
        self.root = paths.cache_dir() / "pairs" if root == "default" else (Path(root) if root is not None else None)
        self.max_bytes = int(memory_mb * 2**20)
        self.max_disk_bytes = None if disk_mb is None else int(disk_mb * 2**20)
        self._disk_bytes: int | None = None        # the folder's size, measured at the first write
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._stat: dict[str, str] = {}
        self.stats = {"memory": 0, "disk": 0, "miss": 0, "not_written": 0}

    def key(self, geometry: PairGeometry, path: Path, box: np.ndarray) -> str:
        path = str(path)
        ident = self._stat.get(path)
        if ident is None:
            try:
                st = os.stat(path)
            except OSError as e:
                raise DataError(f"{path}: frame file not readable ({e.strerror})") from None
            ident = self._stat[path] = f"{path}|{st.st_size}|{st.st_mtime_ns}"
        text = f"{ident}|{','.join(f'{v:.3f}' for v in box)}|{geometry}"
        return hashlib.sha1(text.encode()).hexdigest()

    def get_many(self, geometry: PairGeometry, items: Seq[tuple[Path, np.ndarray]]) -> list[np.ndarray]:
        """The entries of ``(frame path, box)`` items; missing ones are cut with each frame decoded once."""
        keys = [self.key(geometry, p, b) for p, b in items]
        out: list[np.ndarray | None] = [self._lookup(k) for k in keys]
        todo: dict[str, list[int]] = {}
        for i, entry in enumerate(out):
            if entry is None:
                todo.setdefault(str(items[i][0]), []).append(i)
        for path, idx in todo.items():
            img = read_rgb(path)
            border = crops.mean_color(img)
            for i in idx:
                if out[i] is None:          # the same (frame, box) twice in one batch: cut once
                    entry = geometry.cut(img, crops.as_boxes(items[i][1]), border)
                    self._store(keys[i], entry)
                    for j in idx:
                        if keys[j] == keys[i]:
                            out[j] = entry
                    self.stats["miss"] += 1
        return out  # type: ignore[return-value]

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def _lookup(self, key: str) -> np.ndarray | None:
        entry = self._lru.get(key)
        if entry is not None:
            self._lru.move_to_end(key)
            self.stats["memory"] += 1
            return entry
        if self.root is not None:
            f = self._file(key)
            if f.is_file():
                try:
                    entry = np.load(f)
                except (OSError, ValueError):
                    return None             # an unreadable entry is cut again and rewritten
                self._remember(key, entry)
                self.stats["disk"] += 1
                return entry
        return None

    def _disk_full(self, entry: np.ndarray) -> bool:
        if self.max_disk_bytes is None:
            return False
        if self._disk_bytes is None:
            self._disk_bytes = sum(f.stat().st_size for f in self.root.glob("??/*.npy")) if self.root.is_dir() else 0
        if self._disk_bytes + entry.nbytes <= self.max_disk_bytes:
            return False
        if not self.stats["not_written"]:
            warnings.warn(f"{self.root}: crop cache reached its {self.max_disk_bytes / 2**20:.0f} MB limit "
                          "(data.crop_cache_disk_mb); new crops are kept in memory only. Delete the folder "
                          "to reclaim the space and start afresh.", stacklevel=4)
        self.stats["not_written"] += 1
        return True

    def _store(self, key: str, entry: np.ndarray) -> None:
        if self.root is not None and not self._disk_full(entry):
            f = self._file(key)
            f.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=f.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.save(fh, entry)
                os.replace(tmp, f)
                if self._disk_bytes is not None:
                    self._disk_bytes += f.stat().st_size
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        self._remember(key, entry)

    def _remember(self, key: str, entry: np.ndarray) -> None:
        entry.flags.writeable = False
        if entry.nbytes > self.max_bytes:
            return
        self._lru[key] = entry
        self._bytes += entry.nbytes
        while self._bytes > self.max_bytes:
            _, old = self._lru.popitem(last=False)
            self._bytes -= old.nbytes


# --------------------------------------------------------------------------- crop store
class CropStore:
    """Crops cut once and held as one N x 3 x S x S uint8 tensor on a device (``data``), gathered there.

    ``crops``: N x S x S x 3 uint8 (numpy or torch, as cut by ``pulkit.data.crops``).  ``window`` takes
    every row's own square window in one indexing operation on the device; ``batch`` whole crops as
    float32 raw pixels (the network input).  Sizes at which a stage holds all of its crops: docs/modules.md.
    """

    def __init__(self, crops: np.ndarray | torch.Tensor, device: str | torch.device = "cpu"):
        t = torch.from_numpy(np.ascontiguousarray(crops)) if isinstance(crops, np.ndarray) else crops
        if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3 \
                or t.shape[1] != t.shape[2]:
            what = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(crops).__name__
            raise ValueError(f"CropStore expects N x S x S x 3 uint8 crops, got {what}")
        self.data = t.to(device).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def side(self) -> int:
        return int(self.data.shape[-1])

    @property
    def nbytes(self) -> int:
        return self.data.numel()

    def window(self, rows, top, left, size: int) -> torch.Tensor:
        """B x 3 x size x size uint8: row ``rows[i]``'s window with top-left pixel ``(top[i], left[i])``
        (one indexing operation on an accelerator; numpy's strided copies on the CPU)."""
        rows, top, left = (torch.as_tensor(np.asarray(v), dtype=torch.long).reshape(-1) for v in (rows, top, left))
        if not len(rows) == len(top) == len(left):
            raise ValueError(f"window: {len(rows)} rows, {len(top)} tops and {len(left)} lefts")
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= len(self)):
            raise IndexError(f"CropStore: row out of range 0..{len(self) - 1}")
        reach = self.side - int(size)
        if size < 1 or reach < 0 or (len(rows) and (min(int(top.min()), int(left.min())) < 0
                                                     or max(int(top.max()), int(left.max())) > reach)):
            raise ValueError(f"CropStore: a {size} px window must lie inside the {self.side} px crops")
        if self.device.type == "cpu":               # numpy's strided copies: no index arithmetic, no thread pool
            a = self.data.numpy()
            return torch.from_numpy(np.stack([a[i, :, t:t + size, l_:l_ + size]
                                              for i, t, l_ in zip(rows.tolist(), top.tolist(), left.tolist())]))
        return gather_windows(self.data, rows, top, left, int(size))

    def batch(self, idx) -> torch.Tensor:
        """Crops ``idx`` as a float32 B x 3 x S x S tensor of raw 0..255 pixels, on the store's device."""
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long).reshape(-1)
        return self.data[idx.to(self.device)].to(torch.float32)


def gather_windows(data: torch.Tensor, rows: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
                   size: int) -> torch.Tensor:
    """``data[rows[i], :, top[i]:top[i] + size, left[i]:left[i] + size]`` for every i, stacked, as one
    advanced-indexing operation on ``data``'s device (N x C x S x S; indices are not checked here)."""
    dev = data.device
    span = torch.arange(size, device=dev)
    r = (top.to(dev).view(-1, 1) + span).view(-1, 1, size, 1)
    c = (left.to(dev).view(-1, 1) + span).view(-1, 1, 1, size)
    channels = torch.arange(data.shape[1], device=dev).view(1, -1, 1, 1)
    return data[rows.to(dev).view(-1, 1, 1, 1), channels, r, c]


# --------------------------------------------------------------------------- datasets
class _PairDataset(abc.ABC):
    """Shared assembly: specs (index, frames, boxes, shift) -> cached entries -> tensors."""

    def __init__(self, model_cfg: ModelConfig, shift_px: float, seed: int, stride: int,
                 cache: CropCache | None):
        if shift_px < 0:
            raise ValueError(f"shift_px must be >= 0, got {shift_px}")
        ez = check_crop_size(int(model_cfg.exemplar_sz), "exemplar")
        ix = check_crop_size(int(model_cfg.instance_sz), "instance")
        if ix < ez:
            raise ValueError(f"instance_sz {ix} is smaller than exemplar_sz {ez}")
        self.model_cfg = model_cfg
        self.shift_px = float(shift_px)
        self.seed = int(seed)
        self.stride = int(stride)
        self.geometry = PairGeometry(ez, ix, float(model_cfg.context), int(math.floor(shift_px)))
        self.cache = cache if cache is not None else CropCache()
        self.store: CropStore | None = None          # set by ``hold``
        self._rows: dict[tuple[str, bytes], int] = {}

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of indices: sequences (``GroundTruthPairs``) or table rows (``MinedPairs``)."""

    @abc.abstractmethod
    def _specs(self, indices: np.ndarray, generator: torch.Generator) -> dict[str, Any]:
        """Per index: ``frames`` (B x 2), ``paths`` (B x 2) and ``boxes`` (B x 2 x 4) of z and x."""

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` pairs with indices drawn uniformly (see ``batch``)."""
        pool = self._sample_pool()
        pick = torch.randint(len(pool), (int(batch_size),), generator=generator).numpy()
        return self.batch(pool[pick], generator)

    def _sample_pool(self) -> np.ndarray:
        return np.arange(len(self))

    def batch(self, indices: Iterable[int], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The pairs of ``indices``, with their random draws (frames, shifts) taken from ``generator``."""
        indices = np.asarray(list(indices) if not isinstance(indices, (np.ndarray, torch.Tensor)) else indices,
                             dtype=np.int64).reshape(-1)
        if len(indices) == 0:
            raise ValueError("batch needs at least one index")
        bad = (indices < 0) | (indices >= len(self))
        if bad.any():
            raise IndexError(f"{type(self).__name__}: index {int(indices[bad][0])} out of range 0..{len(self) - 1}")
        spec = self._specs(indices, generator)
        m = self.geometry.margin
        shift = torch.randint(-m, m + 1, (len(indices), 2), generator=generator).numpy()
        items = [(spec["paths"][i][r], spec["boxes"][i, r]) for i in range(len(indices)) for r in (0, 1)]
        if self.store is not None:
            z, x = self._from_store(items, shift)
        else:
            entries = self.cache.get_many(self.geometry, items)
            z = _to_tensor(np.stack([self.geometry.exemplar(entries[2 * i]) for i in range(len(indices))]))
            x = _to_tensor(np.stack([self.geometry.search(entries[2 * i + 1], sx, sy)
                                     for i, (sx, sy) in enumerate(shift)]))
        out = {
            "z": z, "x": x,
            "centers": torch.from_numpy(-shift.astype(np.float32) / self.stride),
            "shift": torch.from_numpy(shift.astype(np.int64)),
            "index": torch.from_numpy(indices.copy()),
            "frames": torch.from_numpy(spec["frames"].astype(np.int64)),
        }
        out.update({k: v for k, v in spec.items() if k not in ("frames", "paths", "boxes")})
        return out

    @abc.abstractmethod
    def _all_items(self) -> list[tuple[Path, np.ndarray]]:
        """Every (frame path, box) entry the dataset can ask for."""

    def _entries(self) -> dict[tuple[str, bytes], int]:
        """Every distinct (frame path, box) entry the dataset can ask for -> its row in a held store."""
        rows: dict[tuple[str, bytes], int] = {}
        for p, b in self._all_items():
            rows.setdefault((str(p), crops.as_boxes(b)[0].tobytes()), len(rows))
        return rows

    def store_mb(self) -> float:
        """MB (2**20 bytes) of the uint8 store ``hold`` would fill: distinct (frame, box) entries x S^2 x 3,
        counted without cutting anything."""
        return len(self._entries()) * self.geometry.side ** 2 * 3 / 2**20

    def hold(self, device: str | torch.device = "cpu", progress: bool = True) -> CropStore:
        """Cut every entry the dataset can ask for once (through the crop cache, each frame decoded once)
        into one uint8 ``CropStore`` on ``device``; from then on ``batch`` gathers ``z`` and ``x`` there,
        the same pixels as from the cache, and returns them on ``device`` (the other fields stay on the CPU).
        """
        rows = self._entries()
        side = self.geometry.side
        unique = [(Path(p), np.frombuffer(b, np.float64)) for p, b in rows]
        by_frame: dict[str, list[int]] = {}
        for r, (p, _) in enumerate(unique):
            by_frame.setdefault(str(p), []).append(r)
        host = np.empty((len(unique), side, side, 3), np.uint8)
        desc = f"{type(self).__name__} store: {len(unique)} crops, {host.nbytes / 2**20:.0f} MB uint8"
        for group in tqdm(by_frame.values(), desc=desc, unit="frame", disable=not progress, leave=False):
            for r, entry in zip(group, self.cache.get_many(self.geometry, [unique[r] for r in group])):
                host[r] = entry
        self.store, self._rows = CropStore(host, device), rows
        return self.store

    def _from_store(self, items: list[tuple[Path, np.ndarray]], shift: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``z`` and ``x`` of ``items`` (z, x alternating) gathered from the store, float32 on its device."""
        try:
            rows = np.array([self._rows[(str(p), crops.as_boxes(b)[0].tobytes())] for p, b in items], np.int64)
        except KeyError as e:
            raise DataError(f"{type(self).__name__}: frame {e.args[0][0]} with that box is not in the crop store "
                            "(the dataset changed after hold(); call hold() again)") from None
        g, n = self.geometry, len(shift)
        oz = np.full(n, g.margin + (g.instance_sz - g.exemplar_sz) // 2)
        z = self.store.window(rows[0::2], oz, oz, g.exemplar_sz)
        x = self.store.window(rows[1::2], g.margin + shift[:, 1], g.margin + shift[:, 0], g.instance_sz)
        return z.to(torch.float32), x.to(torch.float32)

    def precache(self, progress: bool = True) -> int:
        """Cut every entry the dataset can ask for (each frame decoded once); returns the entry count."""
        items = self._all_items()
        by_frame: dict[str, list[tuple[Path, np.ndarray]]] = {}
        for p, b in items:
            by_frame.setdefault(str(p), []).append((p, b))
        for group in tqdm(by_frame.values(), desc=f"{type(self).__name__} crops", unit="frame",
                          disable=not progress, leave=False):
            self.cache.get_many(self.geometry, group)
        return len(items)


def hold_decision(data_cfg: DataConfig, device: str | torch.device, dataset: _PairDataset) -> bool:
    """Whether a training loop holds ``dataset``'s crops on ``device`` (``dataset.hold``) or cuts its batches
    through the crop cache: ``data.hold_crops`` ``always`` | ``never`` | ``auto``: on a CUDA device when the
    store (``dataset.store_mb()``, estimated before cutting) fits ``data.hold_crops_mb``."""
    mode = data_cfg.hold_crops                 # validated by DataConfig
    if mode != "auto":
        return mode == "always"
    return torch.device(device).type == "cuda" and dataset.store_mb() <= data_cfg.hold_crops_mb


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    """B x H x W x 3 uint8 -> B x 3 x H x W float32 (raw 0..255), contiguous."""
    return torch.from_numpy(a).permute(0, 3, 1, 2).to(torch.float32).contiguous()


class GroundTruthPairs(_PairDataset):
    """Random labelled frame pairs: an index is a sequence; frame ``a`` is uniform over its frames with a
    usable box, frame ``b`` uniform over usable frames with ``1 <= |b - a| <= max_gap`` (``a`` itself when
    there is none), either order in time.

    ``noise_px = n`` replaces every annotation by ``noisy_boxes(boxes, n, seed, name)`` (centres shifted
    by U[-n, n] px per axis in the frame, drawn once), for exemplar and search boxes alike; they are in
    ``self.noisy_boxes[seq_index]``.  Frames whose original box is NaN or empty are never used.
    """

    def __init__(self, sequences: Seq, model_cfg: ModelConfig, max_gap: int, shift_px: float,
                 noise_px: float = 0, seed: int = 0, stride: int = STRIDE, cache: CropCache | None = None):
        super().__init__(model_cfg, shift_px, seed, stride, cache)
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {max_gap}")
        self.sequences = list(sequences)
        self.max_gap = int(max_gap)
        self.noise_px = float(noise_px)
        self.noisy_boxes: list[np.ndarray] = []
        self.valid: list[np.ndarray] = []
        for seq in self.sequences:
            boxes = seq.boxes
            if boxes is None:
                raise DataError(f"{seq.name}: GroundTruthPairs needs labelled sequences (boxes is None)")
            if len(boxes) != len(seq.frames):
                raise DataError(f"{seq.name}: {len(boxes)} boxes for {len(seq.frames)} frames")
            self.valid.append(np.flatnonzero(crops.valid_boxes(boxes)))
            self.noisy_boxes.append(noisy_boxes(boxes, self.noise_px, self.seed, seq.name))
        self._usable = np.array([i for i, v in enumerate(self.valid) if len(v)], dtype=np.int64)
        if not len(self._usable):
            raise DataError("GroundTruthPairs: no sequence has a usable box")
        self.cache = curated_cache(self.sequences, self.cache)   # curated video: crops from its store (data.curate)

    def __len__(self) -> int:
        return len(self.sequences)

    def _sample_pool(self) -> np.ndarray:
        return self._usable

    def _specs(self, indices: np.ndarray, generator: torch.Generator) -> dict[str, np.ndarray]:
        frames = np.empty((len(indices), 2), np.int64)
        for n, s in enumerate(indices):
            v = self.valid[s]
            if not len(v):
                raise DataError(f"{self.sequences[s].name}: no frame with a usable box")
            ia = int(torch.randint(len(v), (1,), generator=generator))
            lo = int(np.searchsorted(v, v[ia] - self.max_gap, "left"))
            hi = int(np.searchsorted(v, v[ia] + self.max_gap, "right"))
            if hi - lo > 1:
                r = lo + int(torch.randint(hi - lo - 1, (1,), generator=generator))
                ib = r + 1 if r >= ia else r             # skip a itself
            else:
                ib = ia
            frames[n] = v[ia], v[ib]
        paths_ = [(self.sequences[s].frames[a], self.sequences[s].frames[b]) for s, (a, b) in zip(indices, frames)]
        boxes = np.stack([self.noisy_boxes[s][[a, b]] for s, (a, b) in zip(indices, frames)])
        return {"frames": frames, "paths": paths_, "boxes": boxes}

    def _all_items(self) -> list[tuple[Path, np.ndarray]]:
        return [(self.sequences[s].frames[f], self.noisy_boxes[s][f]) for s in self._usable for f in self.valid[s]]


class MinedPairs(_PairDataset):
    """Mined pairs from unlabeled video: index ``i`` is row ``i`` of the (validated) table.

    ``sequences_by_name`` maps the table's ``video`` names to sequences (``unlabeled()`` views are
    fine: only ``frames`` is read, never ``boxes``).  The batch adds the rows' ``confidence``.
    """

    def __init__(self, table: pd.DataFrame, sequences_by_name: Mapping[str, Any], model_cfg: ModelConfig,
                 shift_px: float, seed: int = 0, stride: int = STRIDE, cache: CropCache | None = None,
                 source: str = "pairs table"):
        super().__init__(model_cfg, shift_px, seed, stride, cache)
        self.table = validate_pairs(table, source)
        unknown = sorted(set(self.table["video"]) - set(sequences_by_name))
        if unknown:
            raise DataError(f"{source}: videos {unknown[:5]} are not among the given sequences")
        self._frames = {name: list(sequences_by_name[name].frames) for name in self.table["video"].unique()}
        n_frames = self.table["video"].map(lambda v: len(self._frames[v])).to_numpy()
        beyond = (self.table["frame_a"].to_numpy() >= n_frames) | (self.table["frame_b"].to_numpy() >= n_frames)
        if beyond.any():
            r = int(np.flatnonzero(beyond)[0])
            raise DataError(f"{source}: row {r} refers to a frame beyond video "
                            f"{self.table['video'][r]!r} ({n_frames[r]} frames)")
        self._video = self.table["video"].to_numpy()
        self._fr = self.table[["frame_a", "frame_b"]].to_numpy(np.int64)
        self._boxes = np.stack([self.table[BOX_A].to_numpy(np.float64), self.table[BOX_B].to_numpy(np.float64)], 1)
        self._conf = self.table["confidence"].to_numpy(np.float32)

    def __len__(self) -> int:
        return len(self.table)

    def _specs(self, indices: np.ndarray, generator: torch.Generator) -> dict[str, Any]:
        frames = self._fr[indices]
        paths_ = [(self._frames[self._video[i]][a], self._frames[self._video[i]][b]) for i, (a, b) in zip(indices, frames)]
        return {"frames": frames, "paths": paths_, "boxes": self._boxes[indices],
                "confidence": torch.from_numpy(self._conf[indices].copy())}

    def _all_items(self) -> list[tuple[Path, np.ndarray]]:
        out = []
        for i in range(len(self)):
            for r in (0, 1):
                out.append((self._frames[self._video[i]][self._fr[i, r]], self._boxes[i, r]))
        return out
