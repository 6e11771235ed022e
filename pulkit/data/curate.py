"""Curated training crops of real datasets (``pulkit prepare got10k|vid``): cut once, then read by training.

A store holds, per shard of videos, the ground-truth context crops as records in one memory-mappable uint8
``crops.npy`` and the videos' whole frames, plus one index table (its DataLoader: ``pulkit.data.loader``).
Layout, resumption and what each stage reads: docs/modules.md.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping
from typing import Sequence as Seq

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from pulkit.core import artifacts
from pulkit.core.config import ConfigError, check_crop_size
from pulkit.core.io import atomic_write_bytes, read_json, write_json
from pulkit.core.provenance import config_hash
from pulkit.data import crops
from pulkit.data.images import read_rgb
from pulkit.data.sequences import DataError, Sequence, read_got10k, read_vid

CURATE_VERSION = 1
DATASETS = artifacts.CURATED_DATASETS
CODECS = ("jpeg", "raw")
READERS: dict[str, Callable[[Path], list[Sequence]]] = {
    "got10k": lambda root: read_got10k(root, subset="train"),
    "vid": lambda root: read_vid(root, subset="train"),
}
# One row per (sequence, frame).  path: the curated frame, relative to the store; x, y, w, h: the ground truth
# in curated-frame pixels (NaN: absent); frame_scale: curated px per recorded px; offset / nbytes: the frame's
# ground-truth crop in its shard's crops.npy (-1 / 0: none); crop_scale: crop px per curated-frame px;
# border_*: the recorded frame's mean colour (fills what a shifted window takes from beyond the crop).
INDEX_COLUMNS = ("sequence", "frame", "shard", "path", "x", "y", "w", "h", "frame_scale", "offset", "nbytes",
                 "crop_scale", "border_r", "border_g", "border_b")
SEQUENCE_COLUMNS = ("sequence", "shard", "frames", "width", "height", "group")
_NPY_HEADER = 128                       # bytes of a 1-D uint8 .npy header (np.lib.format pads it to this)
_ESTIMATE_SAMPLES = 6                   # frames encoded up front to estimate the store's size


class CurationError(DataError):
    """Curated crops that training needs are missing, incomplete or cut for another geometry."""


def prepare_command(dataset: str, profile: str) -> str:
    return f"pulkit prepare {dataset} --profile {profile}"


# --------------------------------------------------------------------------- parameters
def curation_params(cfg, dataset: str, source: str | os.PathLike) -> dict[str, Any]:
    """What determines a store's bytes (its hash names the folder): geometry, codec, frame side, the source."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r} to curate; valid: {', '.join(DATASETS)}")
    d, m = cfg.data, cfg.model
    if d.curate_codec not in CODECS:
        raise ConfigError(f"data.curate_codec must be one of {CODECS}, got {d.curate_codec!r}")
    if d.curate_margin < 0 or d.curate_shard_videos < 1 or not 1 <= d.curate_quality <= 100:
        raise ConfigError("data.curate_margin must be >= 0, data.curate_shard_videos >= 1, "
                          f"data.curate_quality in 1..100; got {d.curate_margin}, {d.curate_shard_videos}, "
                          f"{d.curate_quality}")
    if d.curate_frame_side is not None and d.curate_frame_side < 32:
        raise ConfigError(f"data.curate_frame_side must be None or >= 32 px, got {d.curate_frame_side}")
    return {"version": CURATE_VERSION, "dataset": dataset, "subset": "train",
            "source": str(Path(source).expanduser().resolve()),
            "exemplar_sz": check_crop_size(int(m.exemplar_sz), "exemplar"),
            "instance_sz": check_crop_size(int(m.instance_sz), "instance"), "context": float(m.context),
            "margin": int(d.curate_margin), "frame_side": d.curate_frame_side, "codec": d.curate_codec,
            "quality": int(d.curate_quality), "shard_videos": int(d.curate_shard_videos)}


def store_dir(cfg, dataset: str, source: str | os.PathLike) -> Path:
    return artifacts.curated_store(dataset, config_hash(curation_params(cfg, dataset, source)))


# --------------------------------------------------------------------------- records
def encode(crop: np.ndarray, codec: str, quality: int) -> bytes:
    """One S x S x 3 RGB uint8 crop as a record: JPEG bytes or its raw pixels."""
    if codec == "raw":
        return np.ascontiguousarray(crop).tobytes()
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(crop[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError("JPEG encoding of a curated crop failed")
    return buf.tobytes()


def decode(record: np.ndarray, codec: str, side: int, where: str = "curated record") -> np.ndarray:
    """A record back to the S x S x 3 RGB uint8 crop."""
    if codec == "raw":
        if record.size != side * side * 3:
            raise CurationError(f"{where}: {record.size} bytes, expected {side * side * 3}")
        return np.asarray(record).reshape(side, side, 3)
    img = cv2.imdecode(np.asarray(record), cv2.IMREAD_COLOR)
    if img is None or img.shape != (side, side, 3):
        raise CurationError(f"{where}: not a {side} x {side} JPEG crop (corrupt shard?)")
    return np.ascontiguousarray(img[:, :, ::-1])


def crop_side(params: Mapping[str, Any]) -> int:
    """Side of a ground-truth record: the search crop plus the margin on every side."""
    return int(params["instance_sz"]) + 2 * int(params["margin"])


def window(crop: np.ndarray, side: int, dx: float, dy: float, border) -> np.ndarray:
    """The ``side`` x ``side`` window of ``crop`` centred ``(dx, dy)`` crop px off its centre; a slice when the
    offsets are whole and inside, else a bilinear shift whose outside is ``border``."""
    full = crop.shape[0]
    o = (full - side) / 2
    if float(dx).is_integer() and float(dy).is_integer() and o.is_integer():
        c, r = int(o + dx), int(o + dy)
        if 0 <= c and 0 <= r and c + side <= full and r + side <= full:
            return crop[r:r + side, c:c + side]
    m = np.array([[1, 0, o + dx], [0, 1, o + dy]], dtype=np.float64)
    return cv2.warpAffine(crop, m, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(b) for b in border))


def scaled_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Boxes in a frame resized by ``scale`` (pixel centres map as ``(u + 0.5) * scale - 0.5``)."""
    if scale == 1.0:
        return np.array(boxes, dtype=np.float64)
    c = crops.xywh_to_cxcywh(boxes)
    c[:, :2] = (c[:, :2] + 0.5) * scale - 0.5
    c[:, 2:] *= scale
    return crops.cxcywh_to_xywh(c)


# --------------------------------------------------------------------------- preparing a store
@dataclass
class _Group:
    """Videos sharing frame files (a VID snippet's tracks; one GOT-10k video alone)."""
    key: str
    sequences: list[Sequence]


def _groups(seqs: list[Sequence]) -> list[_Group]:
    out: dict[str, _Group] = {}
    for s in seqs:
        key = str(s.attributes.get("snippet") or s.name)
        out.setdefault(key, _Group(key, [])).sequences.append(s)
    return list(out.values())


def _shards(groups: list[_Group], per_shard: int) -> list[list[_Group]]:
    return [groups[i:i + per_shard] for i in range(0, len(groups), per_shard)]


def _shard_name(i: int) -> str:
    return f"{i:05d}"


def _frame_scale(width: int, height: int, side: int | None) -> float:
    return 1.0 if side is None or max(width, height) <= side else side / max(width, height)


def _gt_crop(img: np.ndarray, box: np.ndarray, params: Mapping[str, Any], border) -> tuple[np.ndarray, float]:
    """The record around ``box`` (recorded px) and its crop px per recorded px."""
    cx, cy, w, h = crops.xywh_to_cxcywh(box)[0]
    _, x_sz = crops.crop_sizes(w, h, params["exemplar_sz"], params["instance_sz"], params["context"])
    side = crop_side(params)
    return crops.crop(img, (cx, cy), x_sz * side / params["instance_sz"], side, border), params["instance_sz"] / x_sz


def _put_frame(src: Path, img: np.ndarray | None, dst_stem: Path, scale: float, params: Mapping[str, Any]) -> Path:
    """The curated copy of one frame: linked (or copied) when kept as recorded, else resized and encoded."""
    if scale == 1.0:
        dst = dst_stem.with_suffix(src.suffix.lower())
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        return dst
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    if params["codec"] == "raw":
        dst, ok_buf = dst_stem.with_suffix(".png"), cv2.imencode(".png", small[:, :, ::-1])
    else:
        dst = dst_stem.with_suffix(".jpg")
        ok_buf = cv2.imencode(".jpg", small[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, params["quality"]])
    if not ok_buf[0]:
        raise OSError(f"{src}: encoding its curated frame failed")
    ok_buf[1].tofile(str(dst))
    return dst


class _ShardWriter:
    """``crops.npy`` written as it grows: a placeholder header, the records, then the real header."""

    def __init__(self, path: Path):
        self.path = path
        self.f = open(path, "wb")
        self.f.write(b"\0" * _NPY_HEADER)
        self.size = 0

    def add(self, record: bytes) -> int:
        offset = self.size
        self.f.write(record)
        self.size += len(record)
        return offset

    def close(self) -> None:
        header = _npy_header(self.size)
        self.f.seek(0)
        self.f.write(header)
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


def _npy_header(n: int) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": (int(n),)})
    header = buf.getvalue()
    if len(header) != _NPY_HEADER:
        raise RuntimeError(f"unexpected .npy header length {len(header)} for {n} bytes")
    return header


def _write_shard(final: Path, shard: int, groups: list[_Group], params: Mapping[str, Any], bar) -> None:
    """Cut one shard into a temporary sibling folder, then rename it into place (atomic)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    try:
        writer = _ShardWriter(tmp / "crops.npy")
        rows, seq_rows = [], []
        for g_idx, group in enumerate(groups):
            frames_dir = tmp / "frames" / f"{g_idx:04d}"
            frames_dir.mkdir(parents=True)
            ref = group.sequences[0]
            n = len(ref.frames)
            for s in group.sequences:
                if len(s.frames) != n:
                    raise DataError(f"{s.name}: {len(s.frames)} frames, but {ref.name} of the same snippet has {n}")
            valid = [crops.valid_boxes(s.boxes) for s in group.sequences]
            scale = None
            for i in range(n):
                src = Path(ref.frames[i])
                needs = any(v[i] for v in valid)
                img = read_rgb(src) if needs or params["frame_side"] is not None else None
                if scale is None:
                    size = img.shape[1::-1] if img is not None else tuple(ref.attributes.get("resolution") or
                                                                          read_rgb(src).shape[1::-1])
                    scale, full_size = _frame_scale(size[0], size[1], params["frame_side"]), size
                dst = _put_frame(src, img, frames_dir / f"{i + 1:08d}", scale, params)
                rel = dst.relative_to(tmp).as_posix()
                border = crops.mean_color(img) if img is not None else (np.nan,) * 3
                for s, v in zip(group.sequences, valid):
                    box = scaled_boxes(s.boxes[i:i + 1], scale)[0] if v[i] else np.full(4, np.nan)
                    offset, nbytes, crop_scale = -1, 0, np.nan
                    if v[i]:
                        crop, per_px = _gt_crop(img, s.boxes[i], params, border)
                        record = encode(crop, params["codec"], params["quality"])
                        offset, nbytes, crop_scale = writer.add(record), len(record), per_px / scale
                    rows.append((s.name, i, shard, f"{_shard_name(shard)}/{rel}", *box, scale, offset, nbytes,
                                 crop_scale, *border))
                if bar is not None:
                    bar.update(1)
            w, h = (round(full_size[0] * scale), round(full_size[1] * scale))
            for s in group.sequences:
                seq_rows.append((s.name, shard, n, w, h, group.key))
        writer.close()
        pd.DataFrame(rows, columns=list(INDEX_COLUMNS)).to_csv(tmp / "index.csv", index=False)
        pd.DataFrame(seq_rows, columns=list(SEQUENCE_COLUMNS)).to_csv(tmp / "sequences.csv", index=False)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "index.csv").is_file():     # else a concurrent run finished this shard first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _remove_dead_temps(folder: Path) -> None:
    """Temporary shard folders of killed runs (``.<shard>.tmp-<pid>-*`` whose process is gone)."""
    for p in folder.glob(".*.tmp-*"):
        try:
            pid = int(p.name.split(".tmp-")[1].split("-")[0])
            os.kill(pid, 0)
        except (IndexError, ValueError, ProcessLookupError):
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            continue


def estimate_bytes(groups: list[_Group], params: Mapping[str, Any]) -> dict[str, float]:
    """Bytes the store will take, from a few frames cut and encoded now: crops, frames, and their counts."""
    seq_frames = [(s, i) for g in groups for s in g.sequences for i in np.flatnonzero(crops.valid_boxes(s.boxes))]
    n_frames = sum(len(g.sequences[0].frames) for g in groups)
    pick = [seq_frames[int(k)] for k in np.linspace(0, len(seq_frames) - 1, min(_ESTIMATE_SAMPLES, len(seq_frames)))]
    crop_bytes, frame_bytes = [], []
    for s, i in pick:
        img = read_rgb(s.frames[i])
        crop, _ = _gt_crop(img, s.boxes[i], params, crops.mean_color(img))
        crop_bytes.append(len(encode(crop, params["codec"], params["quality"])))
        scale = _frame_scale(img.shape[1], img.shape[0], params["frame_side"])
        if scale < 1.0:
            new = (round(img.shape[1] * scale), round(img.shape[0] * scale))
            small = cv2.resize(img, new, interpolation=cv2.INTER_AREA)
            frame_bytes.append(len(encode(small, "jpeg", params["quality"])) if params["codec"] == "jpeg"
                               else small.nbytes)
        else:
            frame_bytes.append(0.0)          # kept as recorded: a hard link (a copy across file systems)
    per_crop = float(np.mean(crop_bytes)) if crop_bytes else 0.0
    per_frame = float(np.mean(frame_bytes)) if frame_bytes else 0.0
    return {"crops": len(seq_frames), "frames": n_frames, "crop_bytes": per_crop * len(seq_frames),
            "frame_bytes": per_frame * n_frames, "linked_frames": params["frame_side"] is None}


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def prepare(cfg, dataset: str, source: str | os.PathLike, progress: bool = True,
            log: Callable[[str], None] = print, workers: int | None = None) -> "CuratedStore":
    """Curate ``dataset``'s training split read from ``source`` for ``cfg``'s geometry; return the store.

    Prints the size estimate first, then cuts every shard not already finished (a re-run after a kill skips
    them; a temporary shard folder of a dead run is removed), ``workers`` processes at a time (None:
    ``data.curate_workers``), and finally writes the index and the manifest.
    """
    workers = int(cfg.data.curate_workers if workers is None else workers)
    if workers < 1:
        raise ConfigError(f"curation needs at least one worker process, got {workers}")
    params = curation_params(cfg, dataset, source)
    root = artifacts.curated_store(dataset, config_hash(params))
    if (root / "manifest.json").is_file():
        store = CuratedStore(root)
        if store.params == params:
            log(f"{dataset}: curated store complete, nothing to do ({root})")
            return store
    seqs = READERS[dataset](Path(source))
    if not seqs:
        raise DataError(f"{source}: no {dataset} training sequences to curate")
    groups = _groups(seqs)
    shards = _shards(groups, params["shard_videos"])
    shard_root = root / "shards"
    shard_root.mkdir(parents=True, exist_ok=True)
    _remove_dead_temps(shard_root)
    done = {i for i in range(len(shards)) if (shard_root / _shard_name(i) / "index.csv").is_file()}
    est = estimate_bytes(groups, params)
    frames_note = "frames linked as recorded" if est["linked_frames"] else f"frames {_human(est['frame_bytes'])}"
    log(f"{dataset}: {len(seqs)} sequences, {est['frames']} frames, {est['crops']} ground-truth crops of "
        f"{crop_side(params)} px in {len(shards)} shards -> about {_human(est['crop_bytes'] + est['frame_bytes'])} "
        f"(crops {_human(est['crop_bytes'])}, {frames_note}) in {root}; {len(done)} shards already done")
    free = shutil.disk_usage(shard_root).free
    if free < est["crop_bytes"] + est["frame_bytes"]:
        log(f"{dataset}: WARNING only {_human(free)} free on {shard_root}")
    todo = [i for i in range(len(shards)) if i not in done]
    total = sum(len(g.sequences[0].frames) for i in todo for g in shards[i])
    with tqdm(total=total, desc=f"prepare {dataset}", unit="frame", disable=not progress) as bar:
        if workers == 1:
            for i in todo:
                _write_shard(shard_root / _shard_name(i), i, shards[i], params, bar)
        else:
            with ProcessPoolExecutor(workers) as pool:
                jobs = {pool.submit(_write_shard, shard_root / _shard_name(i), i, shards[i], params, None): i
                        for i in todo}
                for job in as_completed(jobs):
                    job.result()
                    bar.update(sum(len(g.sequences[0].frames) for g in shards[jobs[job]]))
    index = pd.concat([_read_csv(shard_root / _shard_name(i) / "index.csv") for i in range(len(shards))],
                      ignore_index=True)
    seq_table = pd.concat([_read_csv(shard_root / _shard_name(i) / "sequences.csv") for i in range(len(shards))],
                          ignore_index=True)
    atomic_write_bytes(root / "index.csv", index.to_csv(index=False).encode())
    atomic_write_bytes(root / "sequences.csv", seq_table.to_csv(index=False).encode())
    crop_bytes = sum((shard_root / _shard_name(i) / "crops.npy").stat().st_size for i in range(len(shards)))
    write_json(root / "manifest.json", {"params": params, "shards": len(shards), "sequences": len(seq_table),
                                        "frames": len(index), "crops": int((index["nbytes"] > 0).sum()),
                                        "crop_bytes": crop_bytes, "complete": True})
    store = CuratedStore(root)
    log(f"{dataset}: {store.manifest['crops']} crops, {_human(crop_bytes)} of shards in {root}")
    return store


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"sequence": str, "path": str, "group": str}, keep_default_na=False,
                           na_values=[""])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise CurationError(f"{path}: cannot read the curated index ({e})") from None


# --------------------------------------------------------------------------- reading a store
class CuratedStore:
    """A finished curation: ``params``, the ``index`` table, the ``sequences`` it holds, and its crops.

    Shards are memory-mapped on first use in each process (a pickled store, e.g. in a DataLoader worker,
    opens its own).  ``crop(row)`` decodes the ground-truth record of index row ``row``; per index row,
    ``nbytes`` is its record's length (0: none) and ``gt_boxes`` its ground truth in curated-frame px.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        manifest_path = self.root / "manifest.json"
        if not manifest_path.is_file():
            raise CurationError(f"{self.root}: not a finished curated store (no manifest.json)")
        self.manifest = read_json(manifest_path)
        self.params = self.manifest["params"]
        self.side = crop_side(self.params)
        self.index = _read_csv(self.root / "index.csv")
        self.table = _read_csv(self.root / "sequences.csv")
        missing = [c for c in INDEX_COLUMNS if c not in self.index.columns]
        if missing:
            raise CurationError(f"{self.root / 'index.csv'}: missing columns {missing}")
        self._offset = self.index["offset"].to_numpy(np.int64)
        self.nbytes = self.index["nbytes"].to_numpy(np.int64)
        self._shard = self.index["shard"].to_numpy(np.int64)
        self._border = self.index[["border_r", "border_g", "border_b"]].to_numpy(np.float64)
        self._scale = self.index["crop_scale"].to_numpy(np.float64)
        self.gt_boxes = self.index[["x", "y", "w", "h"]].to_numpy(np.float64)
        self._maps: dict[int, np.ndarray] = {}

    @classmethod
    def open(cls, cfg, dataset: str, source: str | os.PathLike) -> "CuratedStore":
        """The store of ``cfg`` for ``dataset`` at ``source``, or a ``CurationError`` naming the command."""
        root = store_dir(cfg, dataset, source)
        how = f"run `{prepare_command(dataset, cfg.profile)}`"
        if not (root / "manifest.json").is_file():
            done = len(list((root / "shards").glob("[0-9]*/index.csv"))) if (root / "shards").is_dir() else 0
            state = f"incomplete ({done} shards finished)" if done else "missing"
            raise CurationError(f"{root}: the curated crops of {dataset} ({source}) for profile {cfg.profile!r} "
                                f"are {state}; training on this profile reads only curated crops: {how}")
        store = cls(root)
        if store.params != curation_params(cfg, dataset, source):
            raise CurationError(f"{root}: curated with other parameters than profile {cfg.profile!r} asks; {how}")
        return store

    def __getstate__(self):
        return {**self.__dict__, "_maps": {}}

    def shard(self, i: int) -> np.ndarray:
        arr = self._maps.get(i)
        if arr is None:
            path = self.root / "shards" / _shard_name(i) / "crops.npy"
            try:
                arr = self._maps[i] = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise CurationError(f"{path}: unreadable shard ({e}); delete its folder and re-run "
                                    f"`pulkit prepare {self.params['dataset']}`") from None
        return arr

    def crop(self, row: int) -> np.ndarray:
        """The ground-truth record of index row ``row`` (side ``self.side``, RGB uint8)."""
        if self.nbytes[row] <= 0:
            raise CurationError(f"{self.root}: index row {row} has no ground-truth crop (absent target)")
        o, n = self._offset[row], self.nbytes[row]
        rec = self.shard(int(self._shard[row]))[o:o + n]
        return decode(rec, self.params["codec"], self.side, f"{self.root} row {row}")

    def window(self, row: int, side: int, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        """``side`` x ``side`` pixels of row ``row``'s record centred ``(dx, dy)`` crop px off the box centre."""
        return window(self.crop(row), side, dx, dy, self._border[row])

    def offset_px(self, row: int, box: np.ndarray) -> tuple[float, float]:
        """Crop px from row ``row``'s ground-truth centre to the centre of ``box`` (curated-frame px)."""
        d = (crops.xywh_to_cxcywh(box)[0, :2] - crops.xywh_to_cxcywh(self.gt_boxes[row])[0, :2]) * self._scale[row]
        return float(d[0]), float(d[1])

    def sequences(self) -> list[Sequence]:
        """The curated videos as ``Sequence`` objects: curated frames, boxes in curated-frame px."""
        out = []
        for s, rows in self.index.groupby("sequence", sort=False).indices.items():
            rows = rows[np.argsort(self.index["frame"].to_numpy()[rows], kind="stable")]
            meta = self.table[self.table["sequence"] == s].iloc[0]
            frames = [self.root / "shards" / p for p in self.index["path"].to_numpy()[rows]]
            boxes = self.index.loc[rows, ["x", "y", "w", "h"]].to_numpy(np.float64)
            attrs = {"dataset": self.params["dataset"], "resolution": (int(meta["width"]), int(meta["height"])),
                     "curated": str(self.root), "frame_scale": float(self.index["frame_scale"].to_numpy()[rows[0]])}
            if self.params["dataset"] == "vid":
                attrs["snippet"] = str(meta["group"])
            out.append(Sequence(str(s), frames, boxes, None, attrs))
        return out

    def rows_by_frame(self) -> dict[str, list[int]]:
        """Curated frame path -> the index rows (one per track) that hold a ground-truth crop of it."""
        out: dict[str, list[int]] = {}
        paths_ = self.index["path"].to_numpy()
        for r in np.flatnonzero(self.nbytes > 0):
            out.setdefault(str(self.root / "shards" / paths_[r]), []).append(int(r))
        return out

    def check_geometry(self, exemplar_sz: int, instance_sz: int, context: float, margin: int, profile: str) -> None:
        p = self.params
        same = (p["exemplar_sz"], p["instance_sz"], p["context"]) == (exemplar_sz, instance_sz, context)
        if not same or margin > p["margin"]:
            raise CurationError(
                f"{self.root}: curated for crops {p['exemplar_sz']} / {p['instance_sz']} (context {p['context']}, "
                f"margin {p['margin']} px), training asks {exemplar_sz} / {instance_sz} (context {context}, margin "
                f"{margin} px); run `{prepare_command(p['dataset'], profile)}`")


def open_store(root: str | os.PathLike) -> CuratedStore:
    """The store at ``root``, opened once per process (again when its manifest is rewritten)."""
    manifest = Path(root) / "manifest.json"
    try:
        stamp = manifest.stat().st_mtime_ns
    except OSError:
        raise CurationError(f"{root}: not a finished curated store (no manifest.json)") from None
    return _open_store(str(root), stamp)


@lru_cache(maxsize=16)
def _open_store(root: str, stamp: int) -> CuratedStore:
    return CuratedStore(root)


def curated_sequences(cfg, dataset: str, source: str | os.PathLike) -> list[Sequence]:
    """``dataset``'s training video from its curated store (``CurationError`` naming the command when missing)."""
    return CuratedStore.open(cfg, dataset, source).sequences()


# --------------------------------------------------------------------------- pair datasets' crop source
class CuratedCache:
    """The crop source of ground-truth pair datasets over curated sequences (``get_many`` as ``CropCache``).

    An item ``(frame path, box)`` whose box has the size of a ground-truth box of that frame (the true box, or
    a noisy one: noise moves centres only) is served from that record, shifted by the centres' difference;
    any other item goes to ``fallback`` (which cuts it from the curated frame).  ``stats`` counts both.
    """

    def __init__(self, stores: Seq[CuratedStore], fallback, profile: str = "paper"):
        self.stores = list(stores)
        self.fallback = fallback
        self.profile = profile
        self.rows: dict[str, list[tuple[CuratedStore, int]]] = {}
        for st in self.stores:
            for path, rows in st.rows_by_frame().items():
                self.rows.setdefault(path, []).extend((st, r) for r in rows)
        self.stats = {"curated": 0, "fallback": 0}
        self._checked: set[tuple] = set()

    def _match(self, path: str, box: np.ndarray) -> tuple[CuratedStore, int] | None:
        best, best_d = None, math.inf
        for st, r in self.rows.get(path, ()):
            gt = st.gt_boxes[r]
            if abs(gt[2] - box[2]) <= 1e-6 and abs(gt[3] - box[3]) <= 1e-6:
                d = float(np.hypot(*(gt[:2] - box[:2])))
                if d < best_d:
                    best, best_d = (st, r), d
        return best

    def get_many(self, geometry, items: Seq[tuple[Path, np.ndarray]]) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(items)
        rest = []
        for i, (path, box) in enumerate(items):
            box = crops.as_boxes(box)[0]
            hit = self._match(str(path), box)
            if hit is None:
                rest.append(i)
                continue
            st, r = hit
            key = (id(st), geometry)
            if key not in self._checked:
                st.check_geometry(geometry.exemplar_sz, geometry.instance_sz, geometry.context, geometry.margin,
                                  self.profile)
                self._checked.add(key)
            out[i] = st.window(r, geometry.side, *st.offset_px(r, box))
            self.stats["curated"] += 1
        if rest:
            for i, entry in zip(rest, self.fallback.get_many(geometry, [items[i] for i in rest])):
                out[i] = entry
            self.stats["fallback"] += len(rest)
        return out  # type: ignore[return-value]


def curated_cache(sequences: Seq, fallback, profile: str = "paper"):
    """A ``CuratedCache`` over the stores that ``sequences`` come from, or ``fallback`` when none is curated."""
    roots = sorted({str(s.attributes["curated"]) for s in sequences if s.attributes.get("curated")})
    if not roots:
        return fallback
    return CuratedCache([open_store(r) for r in roots], fallback, profile)
