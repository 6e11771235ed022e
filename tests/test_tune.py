"""Learning rates are chosen on the tuning split: ``pulkit.tools.tune`` trains, scores and records."""
from __future__ import annotations

import pytest

from pulkit.core import artifacts
from pulkit.core.io import read_json
from pulkit.tools import tune


def test_tune_scores_each_rate_on_tuning_pairs_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.setattr(artifacts, "tuning_path", lambda profile: tmp_path / "docs" / f"{profile}.json")
    records = tune.tune("smoke", "supervised", [0.01, 0.001], pairs=16, progress=False, device="cpu")
    assert [r["lr"] for r in records] == [0.01, 0.001]
    for r in records:
        assert r["n"] == 16 and 0 <= r["accuracy"] <= 1 and r["random_bn"]["n"] == 16
        assert r["schedule"]["lr"] == r["lr"] and r["schedule"]["schedule"] == "cosine"
    saved = read_json(tmp_path / "docs" / "smoke.json")
    assert saved["split"] == "tune" and len(saved["records"]) == 2 and saved["provenance"]["profile"] == "smoke"
    tune.tune("smoke", "supervised", [0.01], pairs=16, progress=False, device="cpu")   # replaces, keeps the other
    assert sorted(r["lr"] for r in read_json(tmp_path / "docs" / "smoke.json")["records"]) == [0.001, 0.01]
    with pytest.raises(ValueError, match="unknown stage"):
        tune.tune("smoke", "mining", [0.01])
    with pytest.raises(artifacts.MissingResultsError, match="01_background_discrimination"):
        tune.tune("smoke", "tc", [0.01], pairs=16, progress=False, device="cpu")   # needs the run's BD model
