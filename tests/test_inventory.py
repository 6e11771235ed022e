"""The profile's data: sources per split, validation, the JSON record notebook 00 writes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pulkit.core import paths
from pulkit.core.config import load_config
from pulkit.data.inventory import dataset_root, inventory, profile_sequences, samples, validate
from pulkit.data.sequences import DataError


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke profile's sequences, synthetic data generated into a temporary PULKIT_DATA."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PULKIT_DATA", str(tmp_path_factory.mktemp("data")))
        cfg = load_config("smoke")
        yield cfg, profile_sequences(cfg)


def test_smoke_profile_sources_and_splits(smoke, shared_root):
    cfg, seqs = smoke
    d = cfg.data
    train = {s.name: s for s in seqs["train"]}
    evals = {s.name: s for s in seqs["eval"]}
    assert set(d.shared_train) <= set(train) and set(d.shared_eval) <= set(evals)
    assert sum(s.attributes["source"] == "synthetic" for s in train.values()) == d.synthetic_train_videos
    assert sum(s.attributes["source"] == "synthetic" for s in evals.values()) == d.synthetic_val_videos
    assert not set(train) & set(evals)
    assert all(len(s) <= d.max_frames for s in [*train.values(), *evals.values()])
    assert evals["vot/bag"].attributes["frames_on_disk"] == 196 and len(evals["vot/bag"]) == d.max_frames


def test_inventory_record(smoke, shared_root):
    cfg, seqs = smoke
    record = inventory(cfg, seqs)
    rows = {r["name"]: r for r in record["sequences"]}
    assert rows["otb/Skating1"]["split"] == "train" and rows["otb/Deer"]["role"] == "evaluation only"
    assert record["membership"]["eval"] == [s.name for s in seqs["eval"]]
    s = record["summary"]
    assert s["train_sequences"] == len(seqs["train"]) and s["eval_frames"] == sum(len(q) for q in seqs["eval"])
    assert s["eval_absent_frames"] == sum(int(np.isnan(q.boxes).any(axis=1).sum()) for q in seqs["eval"])
    assert rows["vot/bag"]["resolution"] == [480, 360]
    text = json.dumps(record)
    assert str(paths.shared_sequences()) not in text and str(paths.data_dir()) not in text  # no machine paths
    assert record["synthetic"]["params"]["train_videos"] == cfg.data.synthetic_train_videos


def test_validation_catches_leaks_and_miscounts(smoke, shared_root):
    cfg, seqs = smoke
    deer = next(s for s in seqs["eval"] if s.name == "otb/Deer")
    with pytest.raises(DataError, match="both"):
        validate(cfg, {"train": [*seqs["train"], deer], "eval": seqs["eval"]}, check_images=False)
    with pytest.raises(DataError, match="evaluation-only.*otb/Deer"):
        validate(cfg, {"train": [*seqs["train"], deer], "eval": [s for s in seqs["eval"] if s is not deer]},
                 check_images=False)
    with pytest.raises(DataError, match="synthetic train split: 3 videos, the config asks for 4"):
        validate(cfg, {"train": seqs["train"][1:], "eval": seqs["eval"]}, check_images=False)
    short = seqs["eval"][0].sub(0, 5)
    with pytest.raises(DataError, match="5 frames, the config asks for"):
        validate(cfg, {"train": seqs["train"], "eval": [short, *seqs["eval"][1:]]}, check_images=False)
    with pytest.raises(DataError, match="missing split"):
        inventory(cfg, {"train": seqs["train"]})


def test_samples_one_per_split_and_source(smoke, shared_root):
    cfg, seqs = smoke
    picked = samples(seqs)
    assert [(s.attributes["source"]) for s in picked] == ["synthetic", "shared", "synthetic", "shared"]
    assert picked[0] is seqs["train"][0]


def test_real_datasets_need_a_root(tmp_path, monkeypatch):
    for var in ("PULKIT_OTB", "PULKIT_VOT", "PULKIT_GOT10K", "PULKIT_VID"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(DataError, match="PULKIT_GOT10K"):
        profile_sequences(load_config("paper"))
    with pytest.raises(DataError, match="DATA_ROOT must hold otb/"):
        dataset_root("otb", tmp_path)
    (tmp_path / "otb").mkdir()
    assert dataset_root("otb", tmp_path) == tmp_path / "otb"
    with pytest.raises(DataError, match="unknown source"):
        profile_sequences(load_config("smoke", {"data.train_sources": ("youtube",)}))
