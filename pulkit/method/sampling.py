"""Mini-batch selection for contrastive learning: RSS and AHM (supplementary A, C).

Picks the members of each BD (and TC) mini-batch from an ``EmbeddingBank``, reproducibly from a
``torch.Generator``.  The rules and an example: docs/modules.md.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _as_index(x, n: int, what: str) -> torch.Tensor:
    """A 1-D LongTensor of indices in [0, n) (empty for None)."""
    if x is None:
        return torch.empty(0, dtype=torch.long)
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).reshape(-1)
    if t.numel() and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool):
        raise ValueError(f"{what} must hold integer indices, got dtype {t.dtype}")
    t = t.to(device="cpu", dtype=torch.long)
    if t.numel() and (t.min() < 0 or t.max() >= n):
        raise ValueError(f"{what} holds indices outside [0, {n}): min {int(t.min())}, max {int(t.max())}")
    return t


def _eligible(n: int, exclude: torch.Tensor) -> torch.Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[exclude] = False
    return mask


def rss_batch(n: int, batch_size: int, generator: torch.Generator | None = None, exclude=None) -> torch.Tensor:
    """``batch_size`` distinct indices drawn uniformly from ``range(n)`` minus ``exclude``."""
    n, batch_size = int(n), int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ex = torch.unique(_as_index(exclude, n, "exclude"))
    n_ok = n - len(ex)
    if n_ok < batch_size:
        raise ValueError(f"RSS needs {batch_size} candidates but only {n_ok} of {n} are not excluded")
    if n_ok >= 4 * batch_size:
        # sequential uniform draws, rejecting excluded and repeated rows: each accepted row is
        # uniform over the rest, i.e. uniform without replacement, in O(batch) not O(n)
        banned, chosen = set(ex.tolist()), []
        while len(chosen) < batch_size:
            for i in torch.randint(n, (2 * (batch_size - len(chosen)) + 8,), generator=generator).tolist():
                if i not in banned:
                    banned.add(i)
                    chosen.append(i)
                    if len(chosen) == batch_size:
                        break
        return torch.tensor(chosen, dtype=torch.long)
    pool = torch.nonzero(_eligible(n, ex)).squeeze(1)
    return pool[torch.randperm(len(pool), generator=generator)[:batch_size]]


class EmbeddingBank:
    """N x D embeddings of every candidate, l2-normalised once per build / refresh.

    ``video`` and ``frame`` (optional, one per row) say where each candidate comes from;
    ``video`` may hold ints or strings.  ``step_built`` records the training step of the last
    refresh, so ``age(step)`` tells how stale the bank is.  The embeddings are stored as a
    float32 contiguous tensor (``embeddings``) and never copied by the samplers.
    """

    def __init__(self, embeddings: torch.Tensor, video=None, frame=None, step: int = 0):
        self.refresh(embeddings, step)
        n = len(self)
        self.video = None if video is None else np.asarray(video)
        self.frame = None if frame is None else np.asarray(frame, dtype=np.int64)
        for name, arr in (("video", self.video), ("frame", self.frame)):
            if arr is not None and arr.shape != (n,):
                raise ValueError(f"EmbeddingBank {name} must have one entry per row ({n}), got shape {arr.shape}")
        # rows sorted by (video, frame) and each video's slice of them: exclusion is two binary searches
        self._order = self._starts = self._code = None
        if self.video is not None and self.frame is not None:
            self._code = np.unique(self.video, return_inverse=True)[1].reshape(-1)
            self._order = np.lexsort((self.frame, self._code))
            self._starts = np.searchsorted(self._code[self._order], np.arange(self._code.max() + 2))

    def refresh(self, embeddings: torch.Tensor, step: int | None = None) -> "EmbeddingBank":
        """Replace every embedding (the current model re-embedded all candidates)."""
        e = torch.as_tensor(embeddings).detach()
        if e.dim() != 2 or e.shape[0] < 1 or e.shape[1] < 1:
            raise ValueError(f"EmbeddingBank expects an N x D tensor, got shape {tuple(e.shape)}")
        if hasattr(self, "embeddings") and e.shape[0] != len(self):
            raise ValueError(f"refresh must keep the bank's {len(self)} rows, got {e.shape[0]}")
        if not torch.isfinite(e).all():
            raise ValueError("EmbeddingBank embeddings contain NaN or inf")
        self.embeddings = F.normalize(e.float(), dim=1).contiguous()
        self._np = self.embeddings.numpy() if self.embeddings.device.type == "cpu" else None   # shares memory
        self.step_built = int(step) if step is not None else getattr(self, "step_built", 0)
        return self

    def update(self, indices, embeddings: torch.Tensor) -> None:
        """Overwrite some rows (normalised here), e.g. candidates just embedded in a training step."""
        idx = _as_index(indices, len(self), "indices")
        e = torch.as_tensor(embeddings).detach().float().reshape(len(idx), -1)
        if e.shape[1] != self.dim:
            raise ValueError(f"update embeddings have dimension {e.shape[1]}, the bank {self.dim}")
        self.embeddings[idx] = F.normalize(e, dim=1).to(self.embeddings.device)

    def age(self, step: int) -> int:
        """Training steps since the last refresh."""
        return int(step) - self.step_built

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    def similarities(self, anchor: int) -> torch.Tensor:
        """Cosine similarity of every row to row ``anchor`` (a fresh float32 N-vector on the CPU)."""
        if self._np is not None:          # OpenBLAS sgemv: ~3x faster than torch.mv on this CPU
            return torch.from_numpy(self._np @ self._np[anchor])
        return torch.mv(self.embeddings, self.embeddings[anchor]).cpu()

    def exclusion(self, anchor: int, T: int) -> torch.Tensor:
        """Indices of the anchor's own video within +-``T`` frames (the anchor included)."""
        if self._order is None:
            raise ValueError("EmbeddingBank.exclusion needs the video and frame of every row (pass video=, frame=)")
        a = int(_as_index(anchor, len(self), "anchor")[0])
        v, f = self._code[a], self.frame[a]
        rows = self._order[self._starts[v]:self._starts[v + 1]]          # the video's rows by frame
        frames = self.frame[rows]
        lo, hi = np.searchsorted(frames, f - int(T), "left"), np.searchsorted(frames, f + int(T), "right")
        return torch.from_numpy(rows[lo:hi].astype(np.int64))


def _bank(bank) -> EmbeddingBank:
    if isinstance(bank, EmbeddingBank):
        return bank
    if isinstance(bank, (torch.Tensor, np.ndarray)):
        return EmbeddingBank(torch.as_tensor(bank))     # normalised here: O(N D) per call
    raise TypeError(f"bank must be an N x D tensor or an EmbeddingBank, got {type(bank).__name__}")


def ahm_batch(bank, batch_size: int, anchor: int | None = None, exclude=None,
              generator: torch.Generator | None = None, separation: int | None = None) -> torch.Tensor:
    """AHM mini-batch: ``[anchor, its batch_size - 1 nearest neighbours]``, most similar first.

    ``bank``: an ``EmbeddingBank`` (fast path, already normalised) or an N x D tensor
    (normalised here).  ``anchor``: a row index, or None to draw one uniformly among the rows
    not in ``exclude`` with ``generator``.  ``exclude``: indices never returned as neighbours
    (typically ``bank.exclusion(anchor, T)``, which contains the anchor itself; an explicit
    anchor is always returned first).  Neighbours are ranked by cosine similarity, excluded
    rows and the anchor are masked with -inf; raises ``ValueError`` when fewer than
    ``batch_size - 1`` rows remain.

    ``separation``: ``None`` keeps the plain nearest neighbours.  An int ``s`` applies the
    same-object rule to every pair of the batch, not only to the anchor: neighbours are taken
    in similarity order, skipping any row from the video of an already chosen member (anchor
    included) within +-``s`` frames of it, so no two members are near-duplicates of one
    object (InfoNCE would push them apart as negatives).  Needs a bank built with ``video`` and
    ``frame``; raises ``ValueError`` when the rule leaves fewer than ``batch_size - 1`` rows.
    """
    b = _bank(bank)
    n, batch_size = len(b), int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ex = _as_index(exclude, n, "exclude")
    if anchor is None:
        pool = torch.nonzero(_eligible(n, ex)).squeeze(1) if ex.numel() else None
        size = n if pool is None else len(pool)
        if size == 0:
            raise ValueError(f"AHM cannot draw an anchor: all {n} rows are excluded")
        k = int(torch.randint(size, (1,), generator=generator))
        anchor = k if pool is None else int(pool[k])
    anchor = int(_as_index(anchor, n, "anchor")[0])
    banned = torch.unique(torch.cat([ex, torch.tensor([anchor])]))
    if n - len(banned) < batch_size - 1:
        raise ValueError(f"AHM needs {batch_size - 1} neighbours of anchor {anchor} but only "
                         f"{n - len(banned)} of {n} rows are neither the anchor nor excluded")
    sims = b.similarities(anchor)
    sims[banned] = float("-inf")
    if separation is None:
        neighbours = torch.topk(sims, batch_size - 1, sorted=True).indices
    else:
        neighbours = _separated_neighbours(b, sims, anchor, batch_size - 1, int(separation), n - len(banned))
    return torch.cat([torch.tensor([anchor]), neighbours])


def _separated_neighbours(b: EmbeddingBank, sims: torch.Tensor, anchor: int, k: int, s: int,
                          n_ok: int) -> torch.Tensor:
    """Greedy: the ``k`` most similar rows, no two (nor one and the anchor) from one video within +-s frames."""
    if b._code is None:
        raise ValueError("ahm_batch(separation=...) needs the video and frame of every row (pass video=, frame=)")
    if s < 0:
        raise ValueError(f"separation must be >= 0 frames, got {s}")
    code, frame = b._code, b.frame
    taken: dict[int, list[int]] = {int(code[anchor]): [int(frame[anchor])]}
    out: list[int] = []
    scanned, width = 0, min(n_ok, 4 * k + 16)
    while len(out) < k and scanned < n_ok:
        # rank only as many rows as needed: widen the window when the rule rejects many
        ranked = torch.topk(sims, width, sorted=True).indices.tolist()
        for j in ranked[scanned:]:
            frames = taken.setdefault(int(code[j]), [])
            f = int(frame[j])
            if all(abs(f - x) > s for x in frames):
                frames.append(f)
                out.append(j)
                if len(out) == k:
                    break
        scanned, width = width, min(n_ok, 2 * width)
    if len(out) < k:
        raise ValueError(f"AHM with separation {s} frames finds only {len(out)} of the {k} neighbours of anchor "
                         f"{anchor} it needs ({n_ok} rows eligible): lower the separation or the batch size")
    return torch.tensor(out, dtype=torch.int64)


def batch_hardness(bank, indices) -> float:
    """Mean cosine similarity of the anchor (first index) to the rest of the batch.

    The "how hard are the negatives" number: high for AHM batches, near the bank's average
    similarity for RSS batches.
    """
    b = _bank(bank)
    idx = _as_index(indices, len(b), "indices")
    if len(idx) < 2:
        raise ValueError(f"batch_hardness needs an anchor and at least one other index, got {len(idx)}")
    e = b.embeddings[idx.to(b.embeddings.device)]
    return float((e[1:] @ e[0]).mean())


class BankState:
    """An ``EmbeddingBank`` as training state (BD and TC): refreshed by the current model at steps
    that are multiples of ``every``, saved and restored by the training loop (``extra_state``).

    ``bank_factory(embeddings, step)`` builds the bank the first time (with the candidates' video and
    frame ids); ``embed_fn()`` returns the model's N x D output for every candidate.  The checkpoint
    keeps that raw output (``raw``) and a restore rebuilds the bank from it through the same
    ``EmbeddingBank.refresh``, so the restored bank is bitwise the saved one (re-normalising saved
    unit vectors would not be) and a resumed run samples the same batches.
    """

    def __init__(self, bank_factory, embed_fn, every: int):
        if every < 1:
            raise ValueError(f"bank refresh interval (bd.bank_refresh) must be >= 1, got {every}")
        self._factory, self._embed, self.every = bank_factory, embed_fn, int(every)
        self.bank: EmbeddingBank | None = None
        self.raw: torch.Tensor | None = None
        self.step = -1                      # step at which the bank was last computed

    def at(self, step: int) -> EmbeddingBank:
        """The bank to use at ``step``, refreshing it first when ``step`` is a refresh step."""
        if self.bank is None or (step % self.every == 0 and step != self.step):
            self._set(self._embed(), step)
        return self.bank

    def _set(self, embeddings: torch.Tensor, step: int) -> None:
        self.raw = embeddings.detach().cpu()
        if self.bank is None:
            self.bank = self._factory(self.raw, step)
        else:
            self.bank.refresh(self.raw, step)
        self.step = int(step)

    def state_dict(self) -> dict[str, Any]:
        if self.raw is None:
            return {"step": -1, "embeddings": torch.zeros(0)}
        return {"step": self.step, "embeddings": self.raw.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["step"]) >= 0:
            self._set(state["embeddings"], int(state["step"]))
