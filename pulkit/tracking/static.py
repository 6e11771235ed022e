"""The smallest tracker: the initial box in every frame, what any learned tracker must beat.
It stands beside ``SiamFCTracker`` as got10k's ``IdentityTracker`` stands beside ``Tracker``."""
from __future__ import annotations

import numpy as np
from got10k.trackers import Tracker

STATIC = "Static (initial box)"


class StaticTracker(Tracker):
    """got10k's tracker contract (``init(image, box)``, ``update(image) -> box``) at its simplest."""

    def __init__(self, name: str = STATIC):
        super().__init__(name, is_deterministic=True)
        self.box = None

    def init(self, image, box) -> None:
        self.box = np.asarray(box, dtype=np.float64).reshape(4).copy()

    def update(self, image) -> np.ndarray:
        if self.box is None:
            raise RuntimeError("StaticTracker.update called before init")
        return self.box.copy()
