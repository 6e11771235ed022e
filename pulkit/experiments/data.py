"""Notebook 00, data: locate or generate the profile's sequences, validate them (counts, disjoint
splits, boxes inside frames), pick samples to show, and write the inventory."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pulkit.core.results import save_results
from pulkit.data.inventory import inventory, profile_sequences, samples

NOTEBOOK = "00_data"


def write_results(cfg, record: Mapping[str, Any]) -> Path:
    """``00_data.json``: the inventory (provenance added)."""
    return save_results(cfg.profile, NOTEBOOK, dict(record), cfg=cfg)


__all__ = ["profile_sequences", "inventory", "samples", "write_results"]
