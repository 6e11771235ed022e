"""``make device-check`` (pulkit.tools.device_check): a clear refusal without CUDA, the plan of steps, running
them as subprocesses, and the summary assembled from (mocked) step records."""
from __future__ import annotations

import json
import sys

from pulkit.tools import device_check as dc


def test_without_cuda_it_refuses_clearly_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dc, "cuda_info", lambda: None)
    out = tmp_path / "check"
    assert dc.main(["--out", str(out)]) == dc.EXIT_NO_CUDA != 0
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "nothing was run" in err
    assert not out.exists()


def test_plan_runs_smoke_and_benchmarks_on_cuda_into_their_own_folders(tmp_path):
    steps = dc.plan(tmp_path, full=False, python="py")
    assert [s.name for s in steps] == ["smoke", "bench_tracker", "bench_train", "cost"]
    smoke = steps[0]
    assert smoke.argv[:6] == ["py", "-m", "pulkit", "reproduce", "--profile", "smoke"]
    assert smoke.argv[-3:] == ["-p", "DEVICE", "cuda"] and "--force" in smoke.argv
    assert smoke.env == {"PULKIT_RESULTS": str(tmp_path / "smoke" / "results"),
                         "PULKIT_CHECKPOINTS": str(tmp_path / "smoke" / "checkpoints"),
                         "PULKIT_RUNS": str(tmp_path / "smoke" / "runs"),
                         "PULKIT_FIGURES": str(tmp_path / "smoke" / "figures")}
    for s in steps[1:3]:
        assert s.argv[3] in ("tracker", "train") and s.argv[-2:] == ["--device", "cuda"]
    full = dc.plan(tmp_path, full=True, python="py")
    assert full[-1].name == "gpu" and full[-1].argv[5] == "gpu" and full[-1].env["PULKIT_RUNS"].endswith("gpu/runs")


def test_last_json_line():
    assert dc.last_json('progress\n{"a": 1}\n{"b": 2}\n') == {"b": 2}
    assert dc.last_json("no json here\n") is None
    assert dc.last_json('{"a": 1}\n{broken\n') is None


def test_run_step_records_status_result_and_log(tmp_path):
    ok = dc.Step("ok", [sys.executable, "-c", "print('working'); print('{\"fps\": 300.5}')"], timeout_s=60)
    rec = dc.run_step(ok, tmp_path / "ok.log")
    assert rec["status"] == "ok" and rec["returncode"] == 0 and rec["result"] == {"fps": 300.5}
    assert "tail" not in rec and "working" in (tmp_path / "ok.log").read_text()
    bad = dc.Step("bad", [sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(4)"],
                  env={"PULKIT_X": "1"}, timeout_s=60)
    rec = dc.run_step(bad, tmp_path / "bad.log")
    assert rec["status"] == "failed" and rec["returncode"] == 4 and "boom" in rec["tail"] and rec["result"] is None
    slow = dc.Step("slow", [sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5)
    assert dc.run_step(slow, tmp_path / "slow.log")["status"] == "timeout"


def _fake(records):
    def runner(step, log):
        return {"name": step.name, "seconds": 60.0, "log": log.name, **records.get(step.name, {"status": "ok",
                                                                                            "result": None})}
    return runner


def test_summary_from_mocked_steps(tmp_path):
    info = {"device": "NVIDIA H100 80GB HBM3", "torch": "2.x", "cuda": "12.x"}
    records = dc.run_checks(dc.plan(tmp_path, full=True, python="py"), tmp_path, progress=lambda _: None,
                            runner=_fake({"bench_tracker": {"status": "ok", "result": {"fps": 310.0}},
                                          "cost": {"status": "ok", "result": {"total": {"minutes_1": 8.0}}},
                                          "gpu": {"status": "ok", "result": None}}))
    s = dc.summarize(info, records, full=True)
    assert s["ok"] and s["device"] == info["device"] and s["cpu_model"]
    assert [r["name"] for r in s["steps"]] == ["smoke", "bench_tracker", "bench_train", "cost", "gpu"]
    assert s["steps"][1]["result"] == {"fps": 310.0}
    assert s["gpu_profile_estimate_min"] == 8.0 and s["gpu_profile_measured_min"] == 1.0
    assert s["gpu_profile_measured_over_estimate"] == 0.125
    failed = dc.summarize(info, [*records[:-1], {**records[-1], "status": "failed"}], full=True)
    assert not failed["ok"] and "gpu_profile_measured_min" not in failed


def test_main_with_a_mocked_device_writes_one_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dc, "cuda_info", lambda: {"device": "fake GPU", "torch": "t", "cuda": "c"})
    monkeypatch.setattr(dc, "run_step", _fake({"bench_train": {"status": "failed", "result": None}}))
    out = tmp_path / "check"
    assert dc.main(["--out", str(out)]) == dc.EXIT_FAILED
    summary = json.loads((out / "summary.json").read_text())
    assert summary["device"] == "fake GPU" and not summary["full"] and not summary["ok"]
    assert {r["name"]: r["status"] for r in summary["steps"]}["bench_train"] == "failed"
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["device"] == "fake GPU"
