"""Compatibility re-export: the tracker lives in ``pulkit.tracking.siamfc``."""
from pulkit.tracking.siamfc import SiamFCTracker  # noqa: F401
