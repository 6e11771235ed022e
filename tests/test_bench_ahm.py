"""The AHM selection benchmark runs at a tiny size and ends with its JSON line (timings are printed, never asserted)."""
import json

from pulkit.tools import bench


def test_ahm_bench_prints_plain_and_separated_timings(capsys):
    assert bench.main(["ahm", "--n", "3000", "--dim", "16", "--calls", "3", "--frames", "100",
                       "--clusters", "30", "--batch", "16", "--separation", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    last = json.loads(lines[-1])
    for key in ("ahm_batch_ms", "ahm_separated_ms", "separated_over_plain", "sgemv_ms"):
        assert last[key] > 0, key                      # timings and their ratio: measured, so positive
    # hardness is a mean cosine.  Rows are centre + 0.5 noise, |centre|^2 ~ dim, |0.5 noise|^2 ~ dim / 4: two
    # rows of one cluster have cosine ~ 1 / 1.25 = 0.8 and AHM's nearest neighbours (100 rows per cluster for
    # a batch of 16) come from the anchor's cluster; RSS pairs are from other clusters (29 in 30): cosine ~ 0
    assert 0.7 < last["hardness_ahm"] <= 1.0, last["hardness_ahm"]
    assert -0.2 < last["hardness_rss"] < 0.2, last["hardness_rss"]
    assert last["separation"] == 5 and last["n"] == 3000 and last["calls"] == 3
    assert last["hardness_ahm"] > last["hardness_rss"]
    assert any("separation 5 frames" in line for line in lines)


def test_bench_usage_on_unknown_name(capsys):
    assert bench.main(["nope"]) == 2
    assert "usage" in capsys.readouterr().err
