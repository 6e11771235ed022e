"""Image decoding with clear errors: every frame read in pulkit goes through ``read_rgb``.

A truncated, empty or undecodable file raises ``ImageError`` naming the file.
Why the container is checked: docs/modules.md.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_JPEG_SOI = b"\xff\xd8"
_JPEG_SOS = b"\xff\xda"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


class ImageError(ValueError):
    """An image file that cannot be decoded (the message names it)."""


def _read_bytes(path: Path) -> np.ndarray:
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, expected an image file")
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise ImageError(f"{path}: cannot read image file ({e.strerror or e})") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty (zero-byte) image file")
    return data


def check_complete(data: bytes | np.ndarray, path: str | Path = "<bytes>") -> None:
    """Raise ``ImageError`` when JPEG or PNG bytes are visibly truncated.

    JPEG: the last ``EOI`` must come after the last start-of-scan (an EXIF thumbnail carries
    its own SOS/EOI near the start, so "some EOI somewhere" is not enough).  Entropy-coded
    data never contains ``FF DA`` / ``FF D9`` (0xFF is stuffed as ``FF 00``), so the rule is exact.
    PNG: an ``IEND`` chunk must be present.  Other formats are left to the decoder.
    """
    b = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    if b[:2] == _JPEG_SOI:
        sos, eoi = b.rfind(_JPEG_SOS), b.rfind(_JPEG_EOI)
        if sos < 0 or eoi < sos:
            raise ImageError(f"{path}: truncated JPEG (no end-of-image marker after the last scan)")
    elif b[:8] == _PNG_SIG and b.rfind(b"IEND") < 0:
        raise ImageError(f"{path}: truncated PNG (no IEND chunk)")


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode ``path`` to an RGB uint8 array H x W x 3 (grayscale, RGBA and 16-bit are converted)."""
    path = Path(path)
    data = _read_bytes(path)
    check_complete(data, path)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageError(f"{path}: cannot decode image (corrupt or unsupported format)")
    return to_rgb(img, bgr=True)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header alone (fast; no pixel decoding)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _read_bytes(path)
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageError(f"{path}: not a readable image ({e})") from None


def to_rgb(img, bgr: bool = False) -> np.ndarray:
    """Any PIL image or array (gray, RGB, RGBA, BGR) to an RGB uint8 H x W x 3 array.

    uint16 input (16-bit PNG) is scaled by 255 / 65535; float input in [0, 1] is scaled by 255.
    """
    if not isinstance(img, np.ndarray):
        if not hasattr(img, "convert"):
            raise ImageError(f"expected a PIL image or a numpy array, got {type(img).__name__}")
        # PIL's convert("RGB") clips 16-bit images at 255: take their values and scale them like arrays
        img = np.asarray(img).astype(np.uint16) if img.mode.startswith("I;16") else np.asarray(img.convert("RGB"))
        bgr = False
    if img.size == 0:
        raise ImageError(f"empty image (shape {img.shape})")
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img.astype(np.uint32) * 255 + 32767) // 65535
            img = img.astype(np.uint8)
        elif np.issubdtype(img.dtype, np.floating):
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
