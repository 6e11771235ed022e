"""The GOT-10k protocol: average overlap (AO) and success rates at 0.5 / 0.75 on a GOT-10k-layout
root, through got10k's ExperimentGOT10k (with pulkit's stored outputs)."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np

from pulkit.data.sequences import DataError, Sequence
from pulkit.evaluation import got10k_compat as compat
from pulkit.evaluation.outputs import _base_dir, _progress, _repetitions, run_sequence, tracker_key

GOT10K_IOU_THRESHOLDS = np.linspace(0, 1, 101)


def evaluate_got10k(tracker, root, subset: str = "val", *, names=None, key: str | None = None, result_dir=None,
                    profile: str | None = None, frame_format: str = "rgb", repetitions: int | None = None,
                    max_frames: int | None = None, progress: bool = True) -> dict[str, Any]:
    """GOT-10k evaluation through got10k's ``ExperimentGOT10k`` (``compat.ExperimentGOT10kLocal``).

    ``root`` holds ``<subset>/list.txt`` (or is a split folder holding ``list.txt``, e.g. a
    synthetic split).  Frames, boxes and meta come from got10k's dataset class, unchanged (GOT-10k
    boxes are 0-based, pulkit's convention).  As ``ExperimentGOT10k.report``: the first frame is
    left out, only frames with ``cover > 0`` count, IoU is computed with boxes clipped to the
    ``resolution``, and IoUs of all repetitions and sequences are pooled frame by frame (the
    overall AO is a frame-weighted mean).  ``ao`` = mean IoU, ``sr50`` = got10k's ``sr`` (IoU >
    0.5), ``sr75`` = ``succ_curve[75]`` (IoU > 0.75).  A deterministic tracker runs once, another
    three times (``repetitions`` overrides).  The test split withholds its ground truth: only
    ``val`` can be scored here.
    """
    if subset != "val":
        raise ValueError(f"GOT-10k subset {subset!r} has no public ground truth; only 'val' can be scored "
                         "(run_sequence(..., layout='got10k') stores test results for submission)")
    exp = compat.ExperimentGOT10kLocal(root, subset=subset)
    ds = exp.dataset
    ds.return_meta = True
    seq_names = list(ds.seq_names)
    if names is not None:
        wanted = [names] if isinstance(names, str) else list(names)
        missing = [n for n in wanted if n not in seq_names]
        if missing:
            raise DataError(f"{root}: no GOT-10k sequence named {', '.join(missing)}")
        seq_names = wanted
    key = key or tracker_key(tracker)
    base = _base_dir(result_dir, profile, key)
    out_dir = base / "GOT-10k" if base is not None else None
    n_rep = _repetitions(tracker, repetitions, exp.repetitions)

    items = []
    for name in seq_names:
        try:
            img_files, anno, meta = ds[name]
        except AssertionError:
            raise DataError(f"{Path(ds.seq_dirs[ds.seq_names.index(name)])}: frame count differs from "
                            "groundtruth.txt rows") from None
        anno = np.asarray(anno, dtype=np.float64).reshape(-1, 4)
        cover = np.asarray(meta["cover"])
        if max_frames is not None:
            img_files, anno, cover = img_files[:max_frames], anno[:max_frames], cover[:max_frames]
        items.append((Sequence(name, [Path(p) for p in img_files], anno), cover,
                      ast.literal_eval(meta["resolution"])))

    rows: dict[str, dict] = {}
    all_ious, all_times = [], []
    with _progress(sum(len(s) for s, _, _ in items) * n_rep, f"GOT-10k {tracker.name}", progress) as bar:
        for seq, cover, bound in items:
            runs = []
            for r in range(1, n_rep + 1):
                runs.append(run_sequence(tracker, seq, out_dir, key=key, frame_format=frame_format,
                                         layout="got10k", repetition=r, progress=bar))
                if r == 3 and n_rep > 3 and all(np.array_equal(runs[0][0], b) for b, _ in runs):
                    break  # got10k: a tracker that gave three identical runs is deterministic
            visible = cover[1:] > 0
            seq_ious = np.concatenate([compat.rect_iou_bounded(b[1:], seq.boxes[1:], bound)[visible] for b, _ in runs])
            seq_times = np.concatenate([t for _, t in runs])
            seq_times = seq_times[np.isfinite(seq_times) & (seq_times > 0)]
            ao, sr, speed, curve = exp._evaluate(seq_ious, seq_times)
            rows[seq.name] = {"ao": float(ao), "sr50": float(sr), "sr75": float(curve[75]), "speed_fps": float(speed),
                              "frames": len(seq) - 1, "scored_frames": int(visible.sum()), "repetitions": len(runs)}
            all_ious.append(seq_ious)
            all_times.append(seq_times)
    ao, sr, speed, curve = exp._evaluate(np.concatenate(all_ious), np.concatenate(all_times))
    return {
        "benchmark": "got10k", "subset": subset, "tracker": tracker.name, "result_key": key,
        "frame_format": frame_format, "ao": float(ao), "sr50": float(sr), "sr75": float(curve[75]),
        "speed_fps": float(speed), "frames": int(sum(r["frames"] for r in rows.values())),
        "curves": {"iou_thresholds": GOT10K_IOU_THRESHOLDS.tolist(), "success": curve.tolist()},
        "sequences": rows,
    }


