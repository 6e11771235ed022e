"""The data of a profile: which sequences train, which evaluate, and checks that they are sound.

``profile_sequences`` gives the ``train`` (used without labels) and ``eval`` sequences, and
``inventory`` validates them into a JSON-able record.  Splits, checks and roots: docs/modules.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pulkit.core import paths
from pulkit.core.provenance import config_hash
from pulkit.data.curate import curated_sequences
from pulkit.data.images import image_size
from pulkit.data.sequences import DataError, Sequence, load_shared, read_got10k, read_otb, read_vid, read_vot
from pulkit.data.synthetic import ensure_synthetic, synthetic_params

SPLITS = ("train", "eval")
_REAL = ("otb", "vot", "got10k", "vid")


def dataset_root(name: str, data_root: str | Path | None = None) -> Path:
    """Root of real dataset ``name``: ``data_root/name`` if ``data_root`` is given, else its variable."""
    var = {"otb": "PULKIT_OTB", "vot": "PULKIT_VOT", "got10k": "PULKIT_GOT10K", "vid": "PULKIT_VID"}[name]
    if data_root is not None:
        root = Path(data_root).expanduser() / name
        if not root.is_dir():
            raise DataError(f"{root}: missing folder; DATA_ROOT must hold {name}/ (see data/README.md)")
        return root
    root = paths.dataset_root(name)
    if root is None:
        raise DataError(f"dataset {name!r} is needed by this profile: set {var} to its root or pass a DATA_ROOT "
                        f"holding {name}/ (layouts in data/README.md)")
    return root


def profile_sequences(cfg, data_root: str | Path | None = None) -> dict[str, list[Sequence]]:
    """``{"train": [...], "eval": [...]}``: every sequence of ``cfg.data``'s sources (see module doc).

    Each Sequence gets ``attributes["source"]`` (synthetic | shared | otb | vot | got10k | vid).
    Training video is truncated to ``max_frames`` frames taken every ``frame_stride``-th, evaluation
    video to ``max_frames``; ``attributes["frames_on_disk"]`` keeps the full count.  With ``data.curated``,
    GOT-10k / VID training video comes from ``pulkit prepare``'s store (``pulkit.data.curate``) and a missing
    store is a ``DataError`` naming the command.
    """
    d = cfg.data
    for kind, sources, valid in (("train", d.train_sources, ("synthetic", "shared", "got10k", "vid")),
                                 ("eval", d.eval_sources, ("synthetic", "shared", "otb", "vot", "got10k"))):
        bad = [s for s in sources if s not in valid]
        if bad:
            raise DataError(f"data.{kind}_sources: unknown source(s) {bad}; valid: {', '.join(valid)}")
    out: dict[str, list[Sequence]] = {"train": [], "eval": []}
    if "synthetic" in d.train_sources or "synthetic" in d.eval_sources:
        splits = ensure_synthetic(d)
        if "synthetic" in d.train_sources:
            out["train"] += _tag(read_got10k(splits["train"], subset="train"), "synthetic")
        if "synthetic" in d.eval_sources:
            out["eval"] += _tag(read_got10k(splits["val"], subset="val"), "synthetic")
    if "shared" in d.train_sources:
        out["train"] += _tag(load_shared(list(d.shared_train)), "shared")
    if "shared" in d.eval_sources:
        out["eval"] += _tag(load_shared(list(d.shared_eval)), "shared")
    if "got10k" in d.train_sources:
        out["train"] += _tag(_training_source(cfg, "got10k", data_root), "got10k")
    if "vid" in d.train_sources:
        out["train"] += _tag(_training_source(cfg, "vid", data_root), "vid")
    if "otb" in d.eval_sources:
        out["eval"] += _tag(read_otb(dataset_root("otb", data_root)), "otb")
    if "vot" in d.eval_sources:
        out["eval"] += _tag(read_vot(dataset_root("vot", data_root)), "vot")
    if "got10k" in d.eval_sources:
        out["eval"] += _tag(read_got10k(dataset_root("got10k", data_root), subset="val"), "got10k")
    out["train"] = [_limit(s, d.max_frames, d.frame_stride) for s in out["train"]]
    out["eval"] = [_limit(s, d.max_frames, 1) for s in out["eval"]]
    return out


def inventory(cfg, sequences: dict[str, list[Sequence]] | None = None, data_root: str | Path | None = None,
              check_images: bool = True) -> dict[str, Any]:
    """Validate the profile's data and describe it (JSON-able; no absolute paths, no timings).

    ``sequences`` defaults to ``profile_sequences(cfg, data_root)``.  ``check_images`` decodes the
    first frame of every sequence and compares its size with the recorded resolution.
    """
    seqs = profile_sequences(cfg, data_root) if sequences is None else sequences
    missing = [k for k in SPLITS if k not in seqs]
    if missing:
        raise DataError(f"sequences: missing split(s) {missing}; expected keys {SPLITS}")
    validate(cfg, seqs, check_images=check_images)
    rows = [_describe(s, split) for split in SPLITS for s in seqs[split]]
    per_split = {split: {"sequences": sum(r["split"] == split for r in rows),
                         "frames": sum(r["frames"] for r in rows if r["split"] == split),
                         "absent_frames": sum(r["absent_frames"] for r in rows if r["split"] == split),
                         "sources": sorted({r["source"] for r in rows if r["split"] == split})}
                 for split in SPLITS}
    summary = {"train_sequences": per_split["train"]["sequences"], "train_frames": per_split["train"]["frames"],
               "eval_sequences": per_split["eval"]["sequences"], "eval_frames": per_split["eval"]["frames"],
               "eval_absent_frames": per_split["eval"]["absent_frames"]}
    return {"sequences": rows, "splits": per_split,
            "membership": {split: [r["name"] for r in rows if r["split"] == split] for split in SPLITS},
            "synthetic": _synthetic_record(cfg), "summary": summary}



def training_video(cfg, data_root=None) -> list[Sequence]:
    """The profile's training video (``profile_sequences``' ``train`` split); BD and TC use it without labels."""
    return profile_sequences(cfg, data_root)["train"]

def samples(seqs: dict[str, list[Sequence]], per_source: int = 1) -> list[Sequence]:
    """The first ``per_source`` sequences of each (split, source), train first: for a sample figure."""
    out, seen = [], {}
    for split in SPLITS:
        for s in seqs.get(split, []):
            key = (split, s.attributes.get("source"))
            if seen.get(key, 0) < per_source:
                seen[key] = seen.get(key, 0) + 1
                out.append(s)
    return out


def validate(cfg, seqs: dict[str, list[Sequence]], check_images: bool = True) -> None:
    """Raise ``DataError`` on anything that would make later stages wrong (see module doc)."""
    from tqdm.auto import tqdm

    d = cfg.data
    names = {split: [s.name for s in seqs[split]] for split in SPLITS}
    for split in SPLITS:
        dupes = sorted({n for n in names[split] if names[split].count(n) > 1})
        if dupes:
            raise DataError(f"{split} split: sequence names appear twice: {dupes[:5]}")
    both = sorted(set(names["train"]) & set(names["eval"]))
    if both:
        raise DataError(f"sequences in both the training and the evaluation split: {both[:5]}")
    leaked = sorted(set(d.shared_eval) & set(names["train"]))
    if leaked:
        raise DataError(f"evaluation-only bundled sequences among training video: {leaked} (data.shared_eval)")
    for split, source, expected in (("train", "synthetic", d.synthetic_train_videos),
                                    ("eval", "synthetic", d.synthetic_val_videos)):
        if source in (d.train_sources if split == "train" else d.eval_sources):
            n = sum(s.attributes.get("source") == source for s in seqs[split])
            if n != expected:
                raise DataError(f"synthetic {split} split: {n} videos, the config asks for {expected}")
    want_frames = d.synthetic_frames if d.max_frames is None else min(d.synthetic_frames, d.max_frames)
    for split in SPLITS:
        for s in tqdm(seqs[split], desc=f"checking {split} sequences", unit="seq", leave=False):
            if len(s) == 0:
                raise DataError(f"{s.name}: no frames")
            if s.boxes is not None and len(s.boxes) != len(s):
                raise DataError(f"{s.name}: {len(s.boxes)} boxes for {len(s)} frames")
            if s.attributes.get("source") == "synthetic" and split == "eval" and len(s) != want_frames:
                raise DataError(f"{s.name}: {len(s)} frames, the config asks for {want_frames}")
            if check_images:
                h, w = s.image(0).shape[:2]
                res = s.attributes.get("resolution")
                if res is not None and tuple(res) != (w, h):
                    raise DataError(f"{s.frames[0]}: frame is {w} x {h}, the sequence says {res[0]} x {res[1]}")


# --------------------------------------------------------------------------- internals
def _training_source(cfg, name: str, data_root) -> list[Sequence]:
    """GOT-10k's or VID's training split: read in place, or (``data.curated``) from its curated store only."""
    root = dataset_root(name, data_root)
    if cfg.data.curated:
        return curated_sequences(cfg, name, root)
    return read_got10k(root, subset="train") if name == "got10k" else read_vid(root, subset="train")


def _tag(seqs: list[Sequence], source: str) -> list[Sequence]:
    for s in seqs:
        s.attributes["source"] = source
        s.attributes["frames_on_disk"] = len(s)
    return seqs


def _limit(s: Sequence, max_frames: int | None, stride: int) -> Sequence:
    out = s.limit(max_frames, stride)
    out.attributes = {**out.attributes, "frames_on_disk": s.attributes.get("frames_on_disk", len(s))}
    return out


def _describe(s: Sequence, split: str) -> dict[str, Any]:
    absent = int(np.isnan(s.boxes).any(axis=1).sum()) if s.boxes is not None else None
    res = s.attributes.get("resolution") or image_size(s.frames[0])
    return {"name": s.name, "split": split, "source": s.attributes.get("source"),
            "frames": len(s), "frames_on_disk": int(s.attributes.get("frames_on_disk", len(s))),
            "absent_frames": absent if absent is not None else 0,
            "unusable_boxes": int(s.attributes.get("unusable_boxes", 0) or 0),
            "resolution": [int(res[0]), int(res[1])],
            "role": "unlabeled training video" if split == "train" else "evaluation only"}


def _synthetic_record(cfg) -> dict[str, Any] | None:
    d = cfg.data
    if "synthetic" not in d.train_sources and "synthetic" not in d.eval_sources:
        return None

    params = synthetic_params(d)
    return {"params": params, "cache_key": config_hash(params)}  # folder synthetic_dir()/<cache_key>
