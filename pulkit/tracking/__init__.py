"""Trackers behind got10k's interface: SiamFCTracker, StaticTracker, the VOT TraX server."""
