"""Config, paths, provenance and atomic IO: the foundation every stage stands on."""
from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

from pulkit.core import io as pio
from pulkit.core import paths, provenance
from pulkit.core.config import PROFILES, Config, ConfigError, load_config, tracker_defaults


# --------------------------------------------------------------------------- config
def test_unknown_stage_names_key_and_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'bogus' in Config; valid keys: profile, seed, device, data"):
        load_config("cpu", {"bogus": {"steps": 1}})


def test_unknown_key_in_stage_names_key_and_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'stepz' in bd; valid keys: steps, batch_size"):
        load_config("cpu", {"bd": {"stepz": 1}})
    with pytest.raises(ConfigError, match=r"unknown key 'stepz' in bd"):
        load_config("cpu", {"bd.stepz": 1})


def test_unknown_profile_and_backbone():
    with pytest.raises(ConfigError, match="valid profiles: smoke, cpu, "):
        load_config("tpu")
    with pytest.raises(ConfigError, match="alexnet"):
        tracker_defaults("vgg")


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_profiles_load_and_apply_their_overrides(profile):
    cfg = load_config(profile)
    assert cfg.profile == profile
    for stage, values in PROFILES[profile].items():
        if not isinstance(values, dict):                 # a top-level override (smoke's precision)
            assert getattr(cfg, stage) == values, f"{profile}: {stage}"
            continue
        for key, value in values.items():
            assert getattr(getattr(cfg, stage), key) == value, f"{profile}: {stage}.{key}"


def test_overrides_nested_dotted_and_top_level():
    cfg = load_config("smoke", {"bd": {"steps": 5}, "tc.lam": 0.5, "data.shared_train": ["otb/Skating1"]}, seed=3)
    assert cfg.bd.steps == 5 and cfg.tc.lam == 0.5 and cfg.seed == 3
    assert cfg.data.shared_train == ("otb/Skating1",)                  # lists become tuples
    assert cfg.bd.batch_size == PROFILES["smoke"]["bd"]["batch_size"]  # siblings kept
    assert load_config("cpu", {"nr": {"sigma_px": 4}}).nr.sigma_px == 4.0 and \
        isinstance(load_config("cpu", {"nr": {"sigma_px": 4}}).nr.sigma_px, float)


def test_override_does_not_mutate_its_argument():
    ov = {"bd": {"steps": 5}, "bd.lr": 0.1}
    load_config("cpu", ov)
    assert ov == {"bd": {"steps": 5}, "bd.lr": 0.1}


def test_bad_value_kinds():
    with pytest.raises(ConfigError, match="bool"):
        load_config("cpu", {"bd": {"texture_prior": 1}})
    with pytest.raises(ConfigError, match="stage"):
        load_config("cpu", {"bd": 3})


def test_config_is_frozen_and_override_returns_new():
    cfg = load_config("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.bd.steps = 1
    new = cfg.override({"bd.steps": 7})
    assert new.bd.steps == 7 and cfg.bd.steps != 7 and new.hash != cfg.hash


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_from_dict_round_trip_through_json(profile):
    cfg = load_config(profile, seed=5)
    back = Config.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.hash == cfg.hash


# --------------------------------------------------------------------------- paths
def test_paths_honour_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_ROOT", str(tmp_path / "proj"))
    for var in ("PULKIT_DATA", "PULKIT_RESULTS", "PULKIT_CHECKPOINTS", "PULKIT_RUNS", "PULKIT_FIGURES", "PULKIT_SHARED"):
        monkeypatch.delenv(var, raising=False)
    root = (tmp_path / "proj").resolve()
    assert paths.project_root() == root
    assert paths.data_dir() == root / "data" and paths.synthetic_dir() == root / "data" / "synthetic"
    assert paths.results_dir("smoke") == root / "results" / "smoke"
    assert paths.shared_sequences() == root.parent / "shared" / "data" / "sequences"
    overrides = {"PULKIT_DATA": "d", "PULKIT_RESULTS": "r", "PULKIT_CHECKPOINTS": "c", "PULKIT_RUNS": "n",
                 "PULKIT_FIGURES": "f", "PULKIT_SHARED": "s"}
    for var, sub in overrides.items():
        monkeypatch.setenv(var, str(tmp_path / sub))
    assert paths.data_dir() == tmp_path / "d" and paths.cache_dir() == tmp_path / "d" / "cache"
    assert paths.results_dir("cpu") == tmp_path / "r" / "cpu"
    assert paths.checkpoints_dir("cpu") == tmp_path / "c" / "cpu"
    assert paths.runs_dir("cpu") == tmp_path / "n" / "cpu"
    assert paths.figures_dir() == tmp_path / "f" and paths.shared_sequences() == tmp_path / "s"


@pytest.mark.parametrize("name,var", [("otb", "PULKIT_OTB"), ("vot", "PULKIT_VOT"), ("got10k", "PULKIT_GOT10K"),
                                      ("vid", "PULKIT_VID")])
def test_dataset_roots(tmp_path, monkeypatch, name, var):
    monkeypatch.delenv(var, raising=False)
    assert paths.dataset_root(name) is None
    monkeypatch.setenv(var, str(tmp_path))
    assert paths.dataset_root(name) == tmp_path.resolve()


# --------------------------------------------------------------------------- provenance
def test_seed_everything_reproduces_draws():
    import torch

    def draws(seed):
        g = provenance.seed_everything(seed)
        return (random.random(), float(np.random.rand()), float(torch.rand(1)),
                float(torch.rand(1, generator=g)))

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)


def test_provenance_record(monkeypatch):
    cfg = load_config("smoke", seed=2)
    rec = provenance.provenance("smoke", 2, cfg)
    assert {"commit", "dirty", "profile", "seed", "config_hash", "config", "versions"} <= set(rec)
    assert rec["profile"] == "smoke" and rec["seed"] == 2 and rec["config_hash"] == cfg.hash
    assert isinstance(rec["dirty"], bool) and rec["commit"]
    assert {"python", "torch", "numpy"} <= set(rec["versions"])
    json.dumps(rec)  # JSON-able as written into every result
    assert provenance.config_hash({"a": 1, "b": (1, 2)}) == provenance.config_hash({"b": [1, 2], "a": 1})


def test_commit_override_from_environment(monkeypatch):
    provenance.git_commit.cache_clear()
    monkeypatch.setenv("PULKIT_COMMIT", "abc123")
    try:
        assert provenance.git_commit() == "abc123"
    finally:
        provenance.git_commit.cache_clear()


# --------------------------------------------------------------------------- atomic IO
def test_write_json_atomic_exact_and_no_temp(tmp_path):
    obj = {"b": np.float32(1.5), "a": [np.int64(2), 3], "p": Path("x/y"), "arr": np.arange(3)}
    path = pio.write_json(tmp_path / "sub" / "r.json", obj)
    assert path.read_text() == pio.to_json(obj)
    assert pio.read_json(path) == {"a": [2, 3], "arr": [0, 1, 2], "b": 1.5, "p": "x/y"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = pio.write_json(tmp_path / "r.json", {"v": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        pio.write_json(path, {"v": 2})
    assert pio.read_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        pio.read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        pio.read_json(tmp_path / "bad.json")


def test_torch_save_atomic_round_trip(tmp_path):
    import torch

    path = pio.torch_save_atomic({"w": torch.arange(4)}, tmp_path / "c.pt")
    assert torch.equal(torch.load(path, map_location="cpu")["w"], torch.arange(4))


def test_atomic_writes_get_ordinary_file_permissions(tmp_path):
    """mkstemp creates 0600 files; results and figures must be readable like any other file."""
    import os

    from pulkit.core.io import write_json

    mask = os.umask(0o022)
    try:
        p = write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(mask)
    assert (p.stat().st_mode & 0o777) == 0o644


def test_claim_seeds_are_not_part_of_a_training_run():
    """Every claim field is reset by ``without_claims`` (BD's ``run_config`` and TC's ``tc_run_config`` use it),
    so a run trained before ``bd.claim_seeds_main`` or ``tc.claim_seeds`` changed is still reused."""
    from pulkit.core.config import CLAIM_FIELDS, without_claims
    from pulkit.experiments import background_discrimination as bd_report
    from pulkit.experiments import temporal_correspondence as tc_report
    cpu = load_config("cpu")
    moved = cpu.override({"bd": {"claim_seeds_main": [5], "claim_seeds": [7, 8], "claim_batches": [32]},
                          "tc": {"claim_seeds": [4]}})
    assert moved.to_dict() != cpu.to_dict()
    assert without_claims(moved).to_dict() == without_claims(cpu).to_dict() == without_claims(load_config()).to_dict()
    assert all(getattr(getattr(without_claims(moved), s), k) == getattr(getattr(load_config("smoke"), s).__class__(), k)
               for s, ks in CLAIM_FIELDS.items() for k in ks)
    assert bd_report.run_config(moved, "ahm_alexnet").to_dict() == bd_report.run_config(cpu, "ahm_alexnet").to_dict()
    assert (tc_report.tc_run_config(moved, "nr", "alexnet").to_dict()
            == tc_report.tc_run_config(cpu, "nr", "alexnet").to_dict())
