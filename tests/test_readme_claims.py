"""The README's claims block is generated from claims.json (``pulkit.tools.readme``)."""
from __future__ import annotations

import pytest

from pulkit.core.io import write_json
from pulkit.tools import readme

CLAIMS = {"claims": [
    {"claim": "rounds", "metric": "localisation accuracy", "unit": "fraction", "treatment": "AlexPUL",
     "control": "no re-mining", "diff": 0.012, "se": 0.005, "n": 2000, "seeds": [0], "verdict": "holds"},
    {"claim": "rounds", "metric": "mining error at k=10", "unit": "px", "treatment": "AlexPUL",
     "control": "no re-mining", "diff": -1.5, "se": 1.0, "n": 40, "seeds": [0], "verdict": "not resolved"}],
    "provenance": {"commit": "abcdef1234567", "seed": 0}, "cpu_model": "Some CPU", "missing": ["04_noise_robustness"]}


def test_block_has_one_row_per_record_with_its_interval_and_verdict():
    md = readme.claims_markdown(CLAIMS)
    lines = [ln for ln in md.splitlines() if ln.startswith("| `rounds`")]
    assert len(lines) == 2
    assert "+0.012 (+0.002 to +0.022)" in lines[0] and "**holds**" in lines[0]
    assert "-1.5 (-3.5 to +0.5)" in lines[1] and "**not resolved**" in lines[1]
    assert "Some CPU" in md and "abcdef1234" in md and "04_noise_robustness" in md
    assert "figures/cpu/claims_forest.png" in md


def test_rewrite_replaces_only_the_block_and_is_idempotent(tmp_path, monkeypatch):
    text = f"# t\nbefore\n{readme.START}\nold\n{readme.END}\nafter\n"
    once = readme.rewrite(text, "new")
    assert once == f"# t\nbefore\n{readme.START}\nnew\n{readme.END}\nafter\n"
    assert readme.rewrite(once, "new") == once
    with pytest.raises(ValueError, match="block"):
        readme.rewrite("no markers", "x")
    monkeypatch.setenv("PULKIT_RESULTS", str(tmp_path / "results"))
    write_json(tmp_path / "results" / "cpu" / "claims.json", CLAIMS)
    path = tmp_path / "README.md"
    path.write_text(text)
    assert readme.main(["--profile", "cpu", "--readme", str(path)]) == 0
    assert "**holds**" in path.read_text() and "\nold\n" not in path.read_text()
