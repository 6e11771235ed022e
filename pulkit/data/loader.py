"""A DataLoader over curated shards: step ``t``'s batch of ground-truth pairs, prepared by worker processes.

Batches are a pure function of the seed and the step (any worker count, any resume point: the same batches);
uint8 crops decoded from ``pulkit.data.curate``'s stores.  Design and throughput: docs/modules.md.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping
from typing import Sequence as Seq

import numpy as np
import torch

from pulkit.data import crops
from pulkit.data.curate import CuratedStore
from pulkit.data.sequences import DataError


class CuratedPairs(torch.utils.data.Dataset):
    """Item ``t``: training step ``t``'s batch of ground-truth pairs, a pure function of ``(seed, t)``.

    Pairs follow ``GroundTruthPairs``' rules (a sequence uniform over those with a usable box, frame ``a``
    uniform over its usable frames, ``b`` within ``max_gap`` of it, a search shift U{-M..M}^2 px with
    M = floor(shift_px)); ``boxes`` (sequence name -> N x 4, curated px) replaces the ground truth, e.g. by
    noisy annotations.  ``sequences``: draw from these curated ``Sequence``s only, their frames (a run's
    ``max_frames`` / ``frame_stride`` cut) matched to the stores' records by path, ``boxes[name]`` row i for
    frame i; None: every sequence of the stores, every frame.  A batch: ``z`` B x 3 x Ez x Ez and ``x``
    B x 3 x Ix x Ix uint8, ``centers`` B x 2 float32 (label offsets in cells), ``shift``, ``index``
    (sequence), ``frames`` (B x 2), ``step``.
    """

    def __init__(self, stores: Seq[CuratedStore], exemplar_sz: int, instance_sz: int, batch_size: int,
                 steps: int, max_gap: int, shift_px: float, seed: int = 0, stride: int = 8,
                 boxes: Mapping[str, np.ndarray] | None = None, sequences: Seq | None = None):
        self.stores = list(stores)
        if not self.stores:
            raise ValueError("CuratedPairs needs at least one curated store")
        for st in self.stores:
            st.check_geometry(int(exemplar_sz), int(instance_sz), st.params["context"], int(math.floor(shift_px)),
                              "paper")
        if batch_size < 1 or steps < 1 or max_gap < 0:
            raise ValueError(f"batch_size and steps must be >= 1, max_gap >= 0; got {batch_size}, {steps}, {max_gap}")
        self.ez, self.ix = int(exemplar_sz), int(instance_sz)
        self.batch_size, self.steps, self.max_gap = int(batch_size), int(steps), int(max_gap)
        self.margin, self.seed, self.stride = int(math.floor(shift_px)), int(seed), int(stride)
        self.names: list[str] = []
        self.rows: list[np.ndarray] = []            # per sequence: index rows by frame
        self.valid: list[np.ndarray] = []           # per sequence: frames with a record
        self.owner: list[int] = []                  # per sequence: its store
        self.boxes: list[np.ndarray | None] = []
        for k, name, rows in (self._whole_stores() if sequences is None else self._of(sequences)):
            self.names.append(name)
            self.rows.append(rows)
            self.valid.append(np.flatnonzero(self.stores[k].nbytes[rows] > 0))
            self.owner.append(k)
            self.boxes.append(None if boxes is None or name not in boxes else crops.as_boxes(boxes[name]))
            if self.boxes[-1] is not None and len(self.boxes[-1]) != len(rows):
                raise DataError(f"CuratedPairs: {len(self.boxes[-1])} boxes for the {len(rows)} frames of {name}")
        self.usable = np.array([i for i, v in enumerate(self.valid) if len(v)], dtype=np.int64)
        if not len(self.usable):
            raise DataError("CuratedPairs: no curated sequence has a ground-truth crop")

    def _whole_stores(self) -> list[tuple[int, str, np.ndarray]]:
        out = []
        for k, st in enumerate(self.stores):
            for name, rows in st.index.groupby("sequence", sort=False).indices.items():
                out.append((k, str(name), rows[np.argsort(st.index["frame"].to_numpy()[rows], kind="stable")]))
        return out

    def _of(self, sequences: Seq) -> list[tuple[int, str, np.ndarray]]:
        where = {Path(st.root): k for k, st in enumerate(self.stores)}
        lookup: dict[int, dict[tuple[str, str], int]] = {}
        out = []
        for s in sequences:
            root = s.attributes.get("curated")
            k = where.get(Path(root)) if root else None
            if k is None:
                raise DataError(f"CuratedPairs: sequence {s.name} does not come from the given curated stores "
                                f"({s.attributes.get('curated') or 'not curated'})")
            if k not in lookup:
                st = self.stores[k]
                lookup[k] = {(str(q), str(st.root / "shards" / p)): r for r, (q, p)
                             in enumerate(zip(st.index["sequence"].to_numpy(), st.index["path"].to_numpy()))}
            try:
                rows = np.array([lookup[k][(str(s.name), str(f))] for f in s.frames], np.int64)
            except KeyError as e:
                raise DataError(f"{self.stores[k].root}: frame {e.args[0][1]} of {s.name} is not in this curated "
                                "store") from None
            out.append((k, str(s.name), rows))
        return out

    def __len__(self) -> int:
        return self.steps

    def _view(self, s: int, f: int, side: int, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
        st, row = self.stores[self.owner[s]], int(self.rows[s][f])
        dx, dy = (0.0, 0.0) if self.boxes[s] is None else st.offset_px(row, self.boxes[s][f])
        return st.window(row, side, dx + shift[0], dy + shift[1])

    def pair(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int, int, int, np.ndarray]:
        s = int(self.usable[rng.integers(len(self.usable))])
        v = self.valid[s]
        ia = int(rng.integers(len(v)))
        lo = int(np.searchsorted(v, v[ia] - self.max_gap, "left"))
        hi = int(np.searchsorted(v, v[ia] + self.max_gap, "right"))
        ib = ia
        if hi - lo > 1:
            r = lo + int(rng.integers(hi - lo - 1))
            ib = r + 1 if r >= ia else r
        shift = rng.integers(-self.margin, self.margin + 1, 2)
        z = self._view(s, int(v[ia]), self.ez)
        x = self._view(s, int(v[ib]), self.ix, (int(shift[0]), int(shift[1])))
        return z, x, s, int(v[ia]), int(v[ib]), shift

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(step)]))
        zs, xs, idx, fr, shifts = [], [], [], [], []
        for _ in range(self.batch_size):
            z, x, s, a, b, shift = self.pair(rng)
            zs.append(z)
            xs.append(x)
            idx.append(s)
            fr.append((a, b))
            shifts.append(shift)
        shift = np.stack(shifts).astype(np.int64)
        return {"z": torch.from_numpy(np.stack(zs)).permute(0, 3, 1, 2).contiguous(),
                "x": torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous(),
                "centers": torch.from_numpy(-shift.astype(np.float32) / self.stride),
                "shift": torch.from_numpy(shift), "index": torch.tensor(idx, dtype=torch.int64),
                "frames": torch.tensor(fr, dtype=torch.int64), "step": torch.tensor(int(step))}


def curated_loader(dataset: CuratedPairs, workers: int, prefetch: int, device: str | torch.device = "cpu",
                   start: int = 0) -> torch.utils.data.DataLoader:
    """Steps ``start..len(dataset)-1`` of ``dataset`` in order, prepared by ``workers`` persistent processes
    (``prefetch`` batches ahead each), pinned for a CUDA ``device``; the same batches whatever ``workers``."""
    if workers < 0 or prefetch < 1:
        raise ValueError(f"workers must be >= 0 and prefetch >= 1, got {workers}, {prefetch}")
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=range(int(start), len(dataset)), num_workers=int(workers),
        persistent_workers=workers > 0, prefetch_factor=int(prefetch) if workers > 0 else None,
        pin_memory=torch.device(device).type == "cuda")


class LoaderBatches:
    """A training loop's ``batch_fn(step, generator)`` over ``curated_loader``: batch ``step`` of the loader
    (the generator is not drawn from: a batch is a function of the seed and the step, so resuming at any
    step gives the same batches); ``z`` and ``x`` as float32 raw pixels on ``device``."""

    def __init__(self, dataset: CuratedPairs, workers: int, prefetch: int, device: str | torch.device = "cpu"):
        self.dataset, self.workers, self.prefetch = dataset, int(workers), int(prefetch)
        self.device = torch.device(device)
        self._it = None
        self._next = None

    def __call__(self, step: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        if self._it is None or step != self._next:
            self._it = iter(curated_loader(self.dataset, self.workers, self.prefetch, self.device, start=step))
        batch = next(self._it)
        self._next = step + 1
        nb = self.device.type == "cuda"
        out = {k: v.to(self.device, non_blocking=nb) for k, v in batch.items()}
        out["z"], out["x"] = out["z"].float(), out["x"].float()
        return out


def supervised_batches(cfg, stores: Seq[CuratedStore], device: str | torch.device = "cpu",
                       boxes: Mapping[str, np.ndarray] | None = None, sequences: Seq | None = None) -> LoaderBatches:
    """A supervised run's ``batch_fn`` over curated ``stores`` (``sequences``, ``boxes``: ``CuratedPairs``):
    ``cfg.model``'s crops, ``cfg.supervised``'s batch, steps, gap and shift, ``cfg.seed``;
    ``cfg.data.loader_workers`` / ``loader_prefetch``."""
    s, m = cfg.supervised, cfg.model
    pairs = CuratedPairs(stores, m.exemplar_sz, m.instance_sz, s.batch_size, s.steps, s.max_gap, s.search_shift_px,
                         seed=cfg.seed, boxes=boxes, sequences=sequences)
    return LoaderBatches(pairs, cfg.data.loader_workers, cfg.data.loader_prefetch, device)
