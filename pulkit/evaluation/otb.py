"""The OTB protocol (one-pass evaluation): success over 21 IoU thresholds (AUC) and precision at 20 px,
as got10k's ExperimentOTB computes them."""
from __future__ import annotations

from typing import Any

import numpy as np

from pulkit.data.sequences import read_otb
from pulkit.evaluation import got10k_compat as compat
from pulkit.evaluation.outputs import _base_dir, _progress, _sequences, _speed, run_sequence, tracker_key

OTB_IOU_THRESHOLDS = np.linspace(0, 1, 21)  # got10k ExperimentOTB.nbins_iou
OTB_ERROR_THRESHOLDS = np.arange(0, 51)     # got10k ExperimentOTB.nbins_ce (pixels)


def otb_metrics(boxes, anno) -> dict[str, Any]:
    """got10k ``ExperimentOTB`` scores of one sequence.

    The first box is replaced by the ground truth (as ``ExperimentOTB.report`` does); success
    curve over 21 IoU thresholds ``linspace(0, 1, 21)`` with a strict ``IoU > t`` (a perfect
    tracker scores 20/21), precision curve over centre errors ``<= 0..50`` px.  A NaN
    ground-truth row (absent target) fails every threshold, as in got10k.
    """
    boxes = np.array(boxes, dtype=np.float64)
    anno = np.asarray(anno, dtype=np.float64)
    if boxes.shape != anno.shape:
        raise ValueError(f"{boxes.shape[0]} boxes for {anno.shape[0]} ground-truth rows")
    boxes[0] = anno[0]
    exp = compat.ExperimentOTBLocal()
    with np.errstate(invalid="ignore"):
        ious, errors = exp._calc_metrics(boxes, anno)
        succ, prec = exp._calc_curves(ious, errors)
    return {"success_curve": succ, "precision_curve": prec, "success_auc": float(np.mean(succ)),
            "precision": float(prec[20]), "success_rate": float(succ[exp.nbins_iou // 2]),
            "ious": ious, "center_errors": errors}


def evaluate_otb(tracker, sequences_or_root, *, names=None, key: str | None = None, result_dir=None,
                 profile: str | None = None, frame_format: str = "rgb", max_frames: int | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """One-pass evaluation (OTB protocol) of ``tracker`` on OTB-layout sequences.

    ``sequences_or_root``: a folder read with ``read_otb`` (any sequence names, no download) or
    ``Sequence`` objects (``names`` selects some).  Scores follow got10k's ``ExperimentOTB``
    (``otb_metrics``); overall curves are the mean of the per-sequence curves, ``success_auc`` their
    mean over thresholds, ``precision`` the curve at 20 px, ``success_rate`` the curve at IoU 0.5,
    ``speed_fps`` the mean of per-sequence speeds.  Returns a JSON-able dict; ``to_table`` makes
    its DataFrame.
    """
    seqs = _sequences(sequences_or_root, read_otb, names, max_frames)
    key = key or tracker_key(tracker)
    base = _base_dir(result_dir, profile, key)
    out_dir = base / "OTB" if base is not None else None
    rows: dict[str, dict] = {}
    succ, prec, speeds = [], [], []
    with _progress(sum(len(s) for s in seqs), f"OTB {tracker.name}", progress) as bar:
        for seq in seqs:
            boxes, times = run_sequence(tracker, seq, out_dir, key=key, frame_format=frame_format,
                                        layout="otb", progress=bar)
            m = otb_metrics(boxes, seq.boxes)
            speed = _speed(times)
            succ.append(m["success_curve"])
            prec.append(m["precision_curve"])
            speeds.append(max(speed, 0.0))
            rows[seq.name] = {"success_auc": m["success_auc"], "precision": m["precision"],
                              "success_rate": m["success_rate"], "speed_fps": speed, "frames": len(seq),
                              "success_curve": m["success_curve"].tolist(),
                              "precision_curve": m["precision_curve"].tolist()}
    succ_curve, prec_curve = np.mean(succ, axis=0), np.mean(prec, axis=0)
    nz = np.count_nonzero(speeds)
    return {
        "benchmark": "otb", "tracker": tracker.name, "result_key": key, "frame_format": frame_format,
        "success_auc": float(np.mean(succ_curve)), "precision": float(prec_curve[20]),
        "success_rate": float(succ_curve[len(succ_curve) // 2]),
        "speed_fps": float(np.sum(speeds) / nz) if nz else -1.0,
        "frames": int(sum(len(s) for s in seqs)),
        "curves": {"iou_thresholds": OTB_IOU_THRESHOLDS.tolist(), "success": succ_curve.tolist(),
                   "error_thresholds": OTB_ERROR_THRESHOLDS.tolist(), "precision": prec_curve.tolist()},
        "sequences": rows,
    }


