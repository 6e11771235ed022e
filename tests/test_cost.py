"""The cost estimate (pulkit.tools.cost): FLOPs from layer shapes against closed forms, totals that scale
with the steps, and the gpu profile it sizes (valid, read by every notebook's config code, within budget)."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

from pulkit.core import paths
from pulkit.core.config import PROFILES, Config, check_crop_size, load_config
from pulkit.experiments import background_discrimination as bdx
from pulkit.experiments import noise_robustness as nzx
from pulkit.experiments.temporal_correspondence import tc_run_config
from pulkit.method.mining import MinerGeometry
from pulkit.tools import cost


def test_single_conv_matches_the_closed_form():
    conv = nn.Conv2d(3, 96, 11, 2)
    out = (127 - 11) // 2 + 1                                  # 59
    want = 96 * out * out * 3 * 11 * 11
    assert cost.count_macs(conv, torch.empty(1, 3, 127, 127, device="meta")) == want
    grouped = nn.Conv2d(96, 256, 5, 1, groups=2)
    assert cost.count_macs(grouped, torch.empty(2, 96, 27, 27, device="meta")) == 2 * 256 * 23 * 23 * 48 * 25


def test_meta_and_real_forwards_count_alike():
    def net():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))

    real = cost.count_macs(net(), torch.zeros(2, 3, 6, 6))
    with torch.device("meta"):
        meta = net()
    assert real == cost.count_macs(meta, torch.empty(2, 3, 6, 6, device="meta"))
    assert real == 2 * (8 * 36 * 3 * 9 + 5 * 8 * 36)


def test_alexnet_flops_are_its_layer_table():
    # SiamFC's AlexNet on a 127 crop: conv1 59^2, pool 29, conv2 25^2 (groups 2), pool 12, conv3 10^2, conv4 8^2, conv5 6^2
    macs = (96 * 59**2 * 3 * 121 + 256 * 25**2 * 48 * 25 + 384 * 10**2 * 256 * 9 + 384 * 8**2 * 192 * 9
            + 256 * 6**2 * 192 * 9)
    assert cost.backbone_flops("alexnet", 127) == 2 * macs
    assert cost.xcorr_flops("alexnet", 127, 255) == 2 * 256 * 6 * 6 * 17 * 17
    assert cost.frame_flops("alexnet", 127, 255, 3) == 3 * (cost.backbone_flops("alexnet", 255)
                                                         + cost.xcorr_flops("alexnet", 127, 255))


def _stage(stages, name):
    hits = [s for s in stages if s.name == name]
    assert len(hits) == 1, f"no single stage {name!r}"
    return hits[0]


def test_training_totals_scale_with_steps():
    cfg = load_config("smoke")
    twice = cfg.override({"supervised": {"steps": 2 * cfg.supervised.steps},
                          "tc": {"steps_per_round": 2 * cfg.tc.steps_per_round}})
    a, b = cost.stages(cfg), cost.stages(twice)
    for name in ("supervised SiamFC", "supervised SiamDW"):
        assert _stage(b, name).flops == pytest.approx(2 * _stage(a, name).flops)
        assert _stage(b, name).steps == 2 * _stage(a, name).steps
    tc1, tc2 = _stage(a, "AlexPUL round 1: TC"), _stage(b, "AlexPUL round 1: TC")
    assert tc2.steps == 2 * tc1.steps and tc2.flops > 1.9 * tc1.flops
    assert cost.summary(twice)["total"]["tflop"] > cost.summary(cfg)["total"]["tflop"]


def test_stage_time_is_flops_over_throughput_with_floors_and_ddp():
    a = cost.Assumptions(peak_tflops=100, utilisation=0.5, step_ms=1.0, frame_ms=2.0, gpus=4, ddp_efficiency=0.5)
    big = cost.Stage("nb", "x", flops=1e15, steps=10, ddp=True)
    assert big.seconds(a) == pytest.approx(20.0)                      # 1e15 / 5e13
    assert big.seconds(a, 4) == pytest.approx(10.0)                   # x 4 ranks x 0.5
    tiny = cost.Stage("nb", "y", flops=1e9, steps=1000, frames=500, ddp=True)
    assert tiny.seconds(a, 4) == tiny.seconds(a) == pytest.approx(1.0 + 1.0)   # floors: every rank takes every step
    assert cost.Stage("nb", "z", flops=1e15).seconds(a, 4) == pytest.approx(20.0)   # not under torchrun: one GPU
    with pytest.raises(ValueError, match="utilisation"):
        cost.Assumptions(utilisation=1.5)


def test_cpu_profile_data_are_counted_from_config_and_bundled_sequences():
    cfg = load_config("cpu")
    ds = cost.data_sizes(cfg)
    shared = cost._shared(cfg.data.shared_train, cfg.data.max_frames)
    assert ds.labelled == cost.Videos(16, 16 * 60)
    assert ds.train == cost.Videos(16 + len(cfg.data.shared_train), 16 * 60 + shared.frames)
    assert ds.heldout == cost.Videos(cfg.eval.heldout_videos, cfg.eval.heldout_videos * cfg.eval.heldout_frames)


def test_crop_disk_is_counts_times_uint8_crops():
    cfg = load_config("paper")
    disk = cost.crop_disk(cfg)
    gt = disk["ground-truth crops"]
    assert gt["side"] == cfg.model.instance_sz + 2 * cfg.data.curate_margin
    assert gt["bytes"] == gt["crops"] * gt["side"] ** 2 * 3
    assert disk["BD candidate crops"]["crops"] == cfg.bd.max_candidates


def test_cli_prints_a_table_and_a_json_line(capsys):
    assert cost.main(["--profile", "smoke", "--stages"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["profile"] == "smoke" and set(summary["notebooks"]) >= {"01_background_discrimination"}
    assert any(line.startswith("| **total**") for line in out)
    assert cost.main(["--profile", "nope"]) == 2
    assert cost.main(["--profile", "smoke", "--utilisation", "0"]) == 2


# --------------------------------------------------------------------------- the gpu profile
def test_gpu_profile_loads_and_applies_its_overrides():
    cfg = load_config("gpu")
    for stage, values in PROFILES["gpu"].items():
        if not isinstance(values, dict):                        # a top-level field (e.g. precision)
            assert getattr(cfg, stage) == values
            continue
        for key, value in values.items():
            assert getattr(getattr(cfg, stage), key) == value, f"gpu: {stage}.{key}"
    assert Config.from_dict(json.loads(json.dumps(cfg.to_dict()))).to_dict() == cfg.to_dict()
    assert set(cfg.data.train_sources) | set(cfg.data.eval_sources) <= {"synthetic", "shared"}   # nothing to download


def test_gpu_profile_is_the_cpu_design_at_50_to_100x_steps_with_more_seeds():
    cpu, gpu = load_config("cpu"), load_config("gpu")
    ratios = {"bd": gpu.bd.steps / cpu.bd.steps, "bd_ciresnet22": gpu.bd.steps_ciresnet22 / cpu.bd.steps_ciresnet22,
              "tc": gpu.tc.steps_per_round / cpu.tc.steps_per_round,
              "supervised": gpu.supervised.steps / cpu.supervised.steps,
              "noise": nzx.train_steps(gpu) / nzx.train_steps(cpu)}
    assert all(50 <= r <= 100 for r in ratios.values()), ratios
    assert len(gpu.noise.seeds) > len(cpu.noise.seeds)
    assert (gpu.model.exemplar_sz, gpu.model.instance_sz, gpu.tc.rounds) == (cpu.model.exemplar_sz,
                                                                              cpu.model.instance_sz, cpu.tc.rounds)
    assert cost.summary(gpu)["total"]["minutes_1"] <= 10.0


def test_every_notebooks_config_reads_work_for_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_CHECKPOINTS", str(tmp_path))
    cfg = load_config("gpu", seed=1, device="cuda")
    for size in (cfg.model.exemplar_sz, cfg.model.instance_sz, cfg.bd.crop_sz):
        assert check_crop_size(size) == size
    for name in bdx.RUNS:                                                     # 01
        assert bdx.run_config(cfg, name).bd.steps in (cfg.bd.steps, cfg.bd.steps_ciresnet22)
    plan = bdx.claim_plan(cfg)
    assert set(plan["seed"]) == set(cfg.bd.claim_seeds) | {cfg.seed} and not plan["checkpoint"].isna().any()
    for loss, backbone in (("nr", "alexnet"), ("nr", "ciresnet22"), ("bce", "alexnet")):   # 02, 03
        rc = tc_run_config(cfg, loss, backbone)
        MinerGeometry.from_configs(rc.mining, rc.model)
        assert len(rc.mining.spans) >= rc.tc.rounds
    nzx.check_noise_config(cfg)                                                # 04
    for loss, level in nzx.grid(cfg):
        for seed in cfg.noise.seeds:
            assert nzx.noise_run_config(cfg, loss, level, seed).supervised.steps == nzx.train_steps(cfg)
    assert cfg.noise.eval_pairs <= cfg.eval.heldout_pairs
    assert load_config("gpu").profile == "gpu" and paths.results_dir("gpu").name == "gpu"


@pytest.mark.parametrize("profile", ["paper", "gpu"])
def test_readme_cost_table_is_the_tools_output(profile):
    text = (paths.project_root() / "README.md").read_text()
    table = cost.markdown(load_config(profile))
    assert table in text, (f"README.md's cost table of `{profile}` is stale: paste the output of "
                           f"`python -m pulkit.tools.cost --profile {profile} --markdown`")
    assert math.isfinite(cost.summary(load_config(profile))["total"]["hours_1"])
