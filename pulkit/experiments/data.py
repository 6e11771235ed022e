"""Notebook 00, data: curate real training video (profiles with ``data.curated``), locate or generate the
profile's sequences, validate them (counts, disjoint splits, boxes inside frames), pick samples to show,
and write the inventory."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pulkit.core.artifacts import CURATED_DATASETS
from pulkit.core.results import save_results
from pulkit.data import curate
from pulkit.data.inventory import dataset_root, inventory, profile_sequences, samples

NOTEBOOK = "00_data"


def prepare_curated(cfg, data_root=None, progress: bool = True) -> dict[str, str]:
    """``pulkit prepare``'s work for every real training source of a profile with ``data.curated`` (paper):
    ``{dataset: store folder}``, finished shards skipped (a re-run costs seconds).  Other profiles read
    their video directly: ``{}``."""
    if not cfg.data.curated:
        return {}
    return {ds: str(curate.prepare(cfg, ds, dataset_root(ds, data_root), progress=progress).root)
            for ds in cfg.data.train_sources if ds in CURATED_DATASETS}


def write_results(cfg, record: Mapping[str, Any]) -> Path:
    """``00_data.json``: the inventory (provenance added)."""
    return save_results(cfg.profile, NOTEBOOK, dict(record), cfg=cfg)


__all__ = ["prepare_curated", "profile_sequences", "inventory", "samples", "write_results"]
