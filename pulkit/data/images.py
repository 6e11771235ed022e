"""Image decoding with clear errors: every frame read in pulkit goes through ``read_rgb``."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class ImageError(ValueError):
    """An image file that cannot be decoded (the message names it)."""


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode ``path`` to an RGB uint8 array H x W x 3 (grayscale and RGBA are converted)."""
    path = Path(path)
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise ImageError(f"{path}: no such image file")
    if data.size == 0:
        raise ImageError(f"{path}: empty (zero-byte) image file")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"{path}: cannot decode image (corrupt or unsupported format)")
    return to_rgb(img, bgr=True)


def to_rgb(img, bgr: bool = False) -> np.ndarray:
    """Any PIL image or array (gray, RGB, RGBA, BGR) to an RGB uint8 H x W x 3 array."""
    if not isinstance(img, np.ndarray):
        img = np.asarray(img.convert("RGB"))
        bgr = False
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating):
            img = np.clip(img * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        else:
            img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ImageError(f"unsupported image shape {img.shape}")
    if img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if bgr:
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)
