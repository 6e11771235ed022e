"""Box conventions and SiamFC crops: the one place that knows about coordinates.

Boxes are 0-based ``[x, y, w, h]`` everywhere in pulkit, and every stage cuts its exemplar and
search crops here.  The conventions in full and the crop geometry: docs/modules.md.
"""
from __future__ import annotations

import math
from typing import Sequence as Seq

import cv2
import numpy as np


# --------------------------------------------------------------------------- conversions
def as_boxes(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return b.reshape(-1, 4) if b.ndim == 1 else b


def from_one_based(boxes) -> np.ndarray:
    """1-based (OTB/VOT files) ``[x, y, w, h]`` to pulkit's 0-based."""
    b = as_boxes(boxes).copy()
    b[:, :2] -= 1.0
    return b


def to_one_based(boxes) -> np.ndarray:
    b = as_boxes(boxes).copy()
    b[:, :2] += 1.0
    return b


def xywh_to_cxcywh(boxes) -> np.ndarray:
    b = as_boxes(boxes)
    return np.stack([b[:, 0] + (b[:, 2] - 1) / 2, b[:, 1] + (b[:, 3] - 1) / 2, b[:, 2], b[:, 3]], axis=1)


def cxcywh_to_xywh(boxes) -> np.ndarray:
    b = as_boxes(boxes)
    return np.stack([b[:, 0] - (b[:, 2] - 1) / 2, b[:, 1] - (b[:, 3] - 1) / 2, b[:, 2], b[:, 3]], axis=1)


def box_center(box) -> np.ndarray:
    """Centre ``(cx, cy)`` of one box."""
    return xywh_to_cxcywh(box)[0, :2]


def polygon_to_xywh(polys) -> np.ndarray:
    """Axis-aligned bounds of N polygons given as N x 2k corner coordinates (VOT toolkit rule)."""
    p = np.asarray(polys, dtype=np.float64)
    p = p.reshape(-1, p.shape[-1])
    xs, ys = p[:, 0::2], p[:, 1::2]
    x0, y0 = xs.min(axis=1), ys.min(axis=1)
    return np.stack([x0, y0, xs.max(axis=1) - x0, ys.max(axis=1) - y0], axis=1)


def valid_boxes(boxes) -> np.ndarray:
    """Mask of boxes that are finite with positive width and height."""
    b = as_boxes(boxes)
    return np.isfinite(b).all(axis=1) & (b[:, 2] > 0) & (b[:, 3] > 0)


def iou(a, b) -> np.ndarray:
    """Row-wise IoU of two N x 4 (or broadcastable) box arrays in pulkit's convention."""
    a, b = as_boxes(a), as_boxes(b)
    ix0 = np.maximum(a[:, 0], b[:, 0])
    iy0 = np.maximum(a[:, 1], b[:, 1])
    ix1 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    iy1 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def center_error(a, b) -> np.ndarray:
    """Row-wise distance between box centres, in pixels."""
    return np.linalg.norm(xywh_to_cxcywh(a)[:, :2] - xywh_to_cxcywh(b)[:, :2], axis=1)


# --------------------------------------------------------------------------- crop geometry
def context_size(w: float, h: float, context: float = 0.5) -> float:
    """SiamFC exemplar side in the frame: ``sqrt((w + p)(h + p))``, ``p = context (w + h)``."""
    p = context * (w + h)
    return math.sqrt((w + p) * (h + p))


def crop_sizes(w: float, h: float, exemplar_sz: int = 127, instance_sz: int = 255,
               context: float = 0.5) -> tuple[float, float]:
    """Side in frame pixels of the exemplar and search regions around a ``w`` x ``h`` target."""
    z = context_size(w, h, context)
    return z, z * instance_sz / exemplar_sz


def mean_color(img: np.ndarray) -> tuple[float, ...]:
    m = img.reshape(-1, img.shape[-1]).mean(axis=0) if img.ndim == 3 else (float(img.mean()),)
    return tuple(float(v) for v in np.atleast_1d(m))


def crop(img: np.ndarray, center: Seq[float], size: float, out_size: int,
         border: Seq[float] | None = None, interp: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Square crop of side ``size`` (frame pixels) centred at ``(cx, cy)``, resized to ``out_size``.

    Areas outside the frame are filled with ``border`` (default: the frame's mean colour).
    Output pixel ``(u, v)`` samples the frame at ``c + (u - (out_size - 1) / 2) * size / out_size``,
    so the target centre lands exactly on the output centre ``(out_size - 1) / 2``.
    """
    if size <= 0 or not np.isfinite(size):
        raise ValueError(f"crop size must be positive and finite, got {size}")
    cx, cy = float(center[0]), float(center[1])
    s = size / out_size
    c_out = (out_size - 1) / 2
    M = np.array([[1 / s, 0, c_out - cx / s], [0, 1 / s, c_out - cy / s]], dtype=np.float64)
    if border is None:
        border = mean_color(img)
    return cv2.warpAffine(img, M, (out_size, out_size), flags=interp,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(border))


def crop_scales(img: np.ndarray, center: Seq[float], sizes: Seq[float], out_size: int,
                border: Seq[float] | None = None) -> np.ndarray:
    """Crops of several sizes at one centre: S x out x out x C (the tracker's scale pyramid)."""
    if border is None:
        border = mean_color(img)
    return np.stack([crop(img, center, s, out_size, border) for s in sizes])


def exemplar_crop(img: np.ndarray, box, exemplar_sz: int = 127, context: float = 0.5,
                  border=None) -> np.ndarray:
    """The SiamFC exemplar ``z`` around a 0-based ``[x, y, w, h]`` box."""
    cx, cy, w, h = xywh_to_cxcywh(box)[0]
    return crop(img, (cx, cy), context_size(w, h, context), exemplar_sz, border)


def search_crop(img: np.ndarray, box, exemplar_sz: int = 127, instance_sz: int = 255,
                context: float = 0.5, shift=(0.0, 0.0), border=None) -> tuple[np.ndarray, float]:
    """The SiamFC search region ``x`` around a box, optionally centred ``shift`` frame pixels off.

    Returns the crop and its scale (crop pixels per frame pixel).  With a shift, the target
    centre sits at ``(instance_sz - 1) / 2 - shift * scale`` in the crop.
    """
    cx, cy, w, h = xywh_to_cxcywh(box)[0]
    _, x_sz = crop_sizes(w, h, exemplar_sz, instance_sz, context)
    out = crop(img, (cx + shift[0], cy + shift[1]), x_sz, instance_sz, border)
    return out, instance_sz / x_sz
