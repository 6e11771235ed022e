"""The ``Sequence`` type and the readers of every benchmark layout pulkit supports."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class DataError(ValueError):
    """A dataset file or folder that cannot be read as its layout requires (the message names it)."""


@dataclass
class Sequence:
    """One video with (optional) ground truth.

    ``boxes`` is N x 4 float64, 0-based ``[x, y, w, h]`` (see ``pulkit.data.crops``), a NaN row
    where the target is absent or its annotation is unusable; None for unlabeled video.
    ``polygons`` keeps VOT's N x 8 rotated boxes (0-based) for VOT overlap, else None.
    """
    name: str
    frames: list[Path]
    boxes: np.ndarray | None = None
    polygons: np.ndarray | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    def image(self, i: int) -> np.ndarray:
        """Frame ``i`` as an RGB uint8 array (H x W x 3)."""
        from .images import read_rgb
        return read_rgb(self.frames[i])
