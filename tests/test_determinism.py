"""Same numbers twice: ``pulkit.tools.determinism.compare_trees`` on hand-made trees, and two real runs.

The last test runs a tiny pipeline (synthetic data, supervised training with checkpoints and log,
a results JSON, an exported figure) twice in fresh processes with different hash seeds and
compares the two trees: everything but the timings must be identical.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch

from pulkit.core.io import write_json
from pulkit.figures.style import new_figure, save_figure
from pulkit.tools.determinism import compare_trees, main, value_diffs


def _figure(value: float):
    fig, axes = new_figure(1, 1, width=2.0)
    axes[0, 0].plot([0, 1, 2], [0, value, 1])
    return fig


@pytest.fixture
def twin(tmp_path):
    """Two identical small result trees a/ and b/ (JSON, figure, arrays, log, checkpoint, timings)."""
    roots = []
    for name in ("a", "b"):
        root = tmp_path / name
        write_json(root / "results" / "00_x.json", {"auc": 0.1 + 0.2, "nan": float("nan"), "rows": [1, 2, 3]})
        write_json(root / "results" / "timings" / "00.json", {"seconds": {"all": 1.0 if name == "a" else 2.0}})
        save_figure(_figure(0.5), "fig", "smoke", 0, root / "figures")
        np.savez(root / "results" / "00_arrays.npz", x=np.arange(4.0), m=np.eye(2))
        log = [{"step": 1, "loss": 0.5, "elapsed": 0.1 if name == "a" else 0.3, "pairs_per_s": 10.0}]
        (root / "checkpoints").mkdir()
        (root / "checkpoints" / "run.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
        torch.save({"model": {"w": torch.arange(3.0)}, "step": 2, "elapsed": 1.0 if name == "a" else 5.0},
                   root / "checkpoints" / "run.pt")
        t = "0.1" if name == "a" else "0.2"          # tracker times, OTB and GOT-10k layouts
        for f in ("tracking/k/OTB/times/seq_time.txt", "tracking/k/GOT-10k/seq/seq_time.txt"):
            (root / "results" / f).parent.mkdir(parents=True, exist_ok=True)
            (root / "results" / f).write_text(t + "\n")
        (root / "results" / ".00_x.json.abc.tmp").write_text("left by a killed write" if name == "a" else "")
        roots.append(root)
    return roots


def test_identical_trees_compare_equal(twin):
    a, b = twin
    report = compare_trees(a, b)
    assert report.ok, report.format()
    assert "results/00_x.json" in report.compared and "figures/fig.png" in report.compared
    assert not any("timings" in f or "time" in f or f.startswith(".") for f in report.compared)
    assert "identical" in report.format()


def test_json_value_differences_name_the_key(twin):
    a, b = twin
    write_json(b / "results" / "00_x.json", {"auc": 0.3, "nan": float("nan"), "rows": [1, 2, 4]})
    report = compare_trees(a, b)
    assert not report.ok
    (d,) = report.differences
    assert d.path == "results/00_x.json" and d.kind == "json"
    assert "auc: 0.30000000000000004 != 0.3" in d.detail and "rows[2]: 3 != 4" in d.detail


def test_json_formatting_alone_is_no_difference(twin):
    a, b = twin
    (b / "results" / "00_x.json").write_text('{"rows": [1, 2, 3.0], "nan": NaN, "auc": 0.30000000000000004}')
    assert compare_trees(a, b).ok


def test_png_metadata_alone_is_no_difference_but_one_pixel_is(twin):
    a, b = twin
    save_figure(_figure(0.5), "fig", "smoke", 123, b / "figures")     # other seed in the metadata only
    assert (a / "figures" / "fig.png").read_bytes() != (b / "figures" / "fig.png").read_bytes()
    report = compare_trees(a, b, skip_dirs=("timings",))
    assert [d.path for d in report.differences] == ["figures/fig.pdf"]  # PDFs compare as bytes
    png = b / "figures" / "fig.png"
    img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    img[5, 7, 0] ^= 1
    cv2.imwrite(str(png), img)
    d = {d.path: d for d in compare_trees(a, b).differences}["figures/fig.png"]
    assert d.kind == "pixels" and "1 of" in d.detail and "max abs 1" in d.detail


def test_missing_files_on_either_side(twin):
    a, b = twin
    (a / "results" / "00_arrays.npz").unlink()
    write_json(a / "results" / "00_extra.json", {})
    kinds = {d.path: d.kind for d in compare_trees(a, b).differences}
    assert kinds == {"results/00_extra.json": "only-in-a", "results/00_arrays.npz": "only-in-b"}


def test_arrays_logs_and_checkpoints(twin):
    a, b = twin
    np.savez(b / "results" / "00_arrays.npz", x=np.arange(4.0) + [0, 0, 1e-12, 0], m=np.eye(2))
    (b / "checkpoints" / "run.jsonl").write_text(json.dumps({"step": 1, "loss": 0.25, "elapsed": 9,
                                                             "pairs_per_s": 1.0}) + "\n")
    torch.save({"model": {"w": torch.tensor([0.0, 1.0, 2.5])}, "step": 2, "elapsed": 1.0},
               b / "checkpoints" / "run.pt")
    got = {d.path: d for d in compare_trees(a, b).differences}
    assert set(got) == {"results/00_arrays.npz", "checkpoints/run.jsonl", "checkpoints/run.pt"}
    assert "x: 1 of 4 elements differ" in got["results/00_arrays.npz"].detail
    assert "line 1: loss: 0.5 != 0.25" == got["checkpoints/run.jsonl"].detail
    assert "model.w: 1 of 3 elements differ (max abs 0.5)" == got["checkpoints/run.pt"].detail


def test_unparseable_file_is_reported_not_raised(twin):
    a, b = twin
    (b / "results" / "00_x.json").write_text("{not json")
    (d,) = compare_trees(a, b).differences
    assert d.kind == "unreadable" and "JSONDecodeError" in d.detail


def test_ignore_keys_and_skip_dirs(twin):
    a, b = twin
    write_json(b / "results" / "00_x.json", {"auc": 0.1 + 0.2, "nan": float("nan"), "rows": [1, 2, 3],
                                             "provenance": {"dirty": True}})
    write_json(a / "results" / "00_x.json", {"auc": 0.1 + 0.2, "nan": float("nan"), "rows": [1, 2, 3],
                                             "provenance": {"dirty": False}})
    assert not compare_trees(a, b).ok
    assert compare_trees(a, b, ignore_keys=["provenance.dirty"]).ok
    kinds = {d.path for d in compare_trees(a, b, ignore_keys=["provenance.dirty"], skip_dirs=(),
                                           skip_files=()).differences}
    assert kinds == {"results/timings/00.json", "results/tracking/k/OTB/times/seq_time.txt",
                     "results/tracking/k/GOT-10k/seq/seq_time.txt"}     # compared when not skipped


def test_value_diffs_types():
    assert value_diffs({"a": 1}, {"a": 1.0}) == []                       # JSON: 1 == 1.0
    assert value_diffs([1, 2], [1, 2, 3]) == ["<top>: length 2 != 3"]
    assert value_diffs(torch.zeros(2), torch.zeros(2, dtype=torch.float64)) == [
        "<top>: array float32[2] != float64[2]"]
    assert value_diffs("x", 1) == ["<top>: 'x' != 1"]
    assert value_diffs(np.array([np.nan, 1.0]), np.array([np.nan, 1.0])) == []


def test_cli_exit_codes(twin, tmp_path, capsys):
    a, b = twin
    assert main([str(a), str(b)]) == 0
    write_json(b / "results" / "00_x.json", {})
    assert main([str(a), str(b)]) == 1
    assert "results/00_x.json" in capsys.readouterr().out
    assert main([str(a), str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- two real runs
PIPELINE = textwrap.dedent('''
    """A tiny pipeline: data, supervised training (checkpoints + log), results JSON, figure."""
    import json, sys
    from pathlib import Path
    out = Path(sys.argv[1])
    from pulkit.core.config import load_config
    from pulkit.data.sequences import read_got10k
    from pulkit.data.synthetic import generate_split
    from pulkit.figures.style import new_figure, save_figure
    from pulkit.models.net import load_net
    from pulkit.core.results import save_results
    from pulkit.method.supervised import log_path, train_supervised

    cfg = load_config("smoke", {"model": dict(exemplar_sz=95, instance_sz=127),
                                "supervised": dict(steps=3, batch_size=2, checkpoint_every=2, log_every=1,
                                                   max_gap=3)}, device="cpu")
    seqs = read_got10k(generate_split(out / "synthetic" / "train", n_videos=2, n_frames=6, width=96, height=72,
                                      seed=7, n_distractors=0), subset="train")
    ckpt = train_supervised(cfg, seqs, out / "checkpoints" / "sup_nr.pt", loss="nr", noise_px=4, progress=False)
    log = [json.loads(line) for line in log_path(ckpt).read_text().splitlines()]
    weights = {k: float(v.double().sum()) for k, v in load_net(ckpt, device="cpu").state_dict().items()}
    save_results("smoke", "03_training", {"loss": [r["loss"] for r in log], "weight_sums": weights,
                                      "summary": {"final_loss": log[-1]["loss"]}}, cfg=cfg)
    fig, axes = new_figure(1, 1, width=3.0)
    axes[0, 0].plot([r["step"] for r in log], [r["loss"] for r in log], marker="o")
    axes[0, 0].set_title(f"final loss {log[-1]['loss']:.6f}")
    save_figure(fig, "tiny_loss", "smoke", cfg.seed)
''')


def test_two_fresh_runs_give_identical_trees(tmp_path):
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    from pulkit.core.provenance import git_commit

    commit = git_commit()     # one commit for both runs, even if someone commits in between (shared checkouts)
    for run, hashseed in (("a", "1"), ("b", "2")):
        out = tmp_path / run
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PULKIT_DATA": str(tmp_path / f"cache_{run}"), "PULKIT_RESULTS": str(out / "results"),
               "PULKIT_FIGURES": str(out / "figures"), "PULKIT_CHECKPOINTS": str(out / "checkpoints"),
               "MPLCONFIGDIR": str(tmp_path / "mpl"), "PULKIT_COMMIT": commit}
        done = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "checkpoints" / "sup_nr.pt").is_file() and (a / "figures" / "smoke" / "tiny_loss.png").is_file()
    report = compare_trees(a, b)
    assert report.ok, report.format()
    assert len(report.compared) > 10          # data frames, checkpoint, log, results, figures
    # the crop cache (PULKIT_DATA) is keyed by frame paths and mtimes: a cache, not a result, so not compared
