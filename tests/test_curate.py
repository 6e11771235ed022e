"""Curation (``pulkit prepare``, ``pulkit.data.curate``) and its DataLoader (``pulkit.data.loader``): shards match
the index, a killed run resumes, a re-run changes nothing, batches are deterministic, and training on a curated
profile without a store names the command."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pulkit.__main__ import main as cli
from pulkit.core.config import load_config
from pulkit.data import crops, curate, loader
from pulkit.data.fake_datasets import write_got10k, write_vid
from pulkit.data.images import read_rgb
from pulkit.data.inventory import profile_sequences
from pulkit.data.sequences import DataError, read_got10k
from pulkit.method import supervised
from pulkit.method.pairs import CropCache, GroundTruthPairs, PairGeometry, noisy_boxes
from pulkit.models.net import load_checkpoint

FRAMES = 3


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_got10k(tmp_path_factory.mktemp("got10k"), videos=3, val_videos=1, frames=FRAMES, seed=21)


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("PULKIT_CURATED", str(tmp_path / "curated"))
    monkeypatch.setenv("PULKIT_DATA", str(tmp_path / "data"))                     # BD's candidate crops
    return load_config("paper-dryrun", {"data": {"curate_shard_videos": 1}})       # 3 videos: 3 shards


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_index_matches_the_shards(cfg, source):
    store = curate.prepare(cfg, "got10k", source, progress=False, log=lambda m: None)
    originals = {s.name: s for s in read_got10k(source, subset="train")}
    assert store.manifest["shards"] == 3 and store.manifest["crops"] == 3 * FRAMES == len(store.index)
    for shard, rows in store.index.groupby("shard"):
        size = (store.root / "shards" / f"{shard:05d}" / "crops.npy").stat().st_size
        assert rows["nbytes"].sum() + 128 == size                                  # records back to back
        np.testing.assert_array_equal(rows["offset"].to_numpy(), np.r_[0, np.cumsum(rows["nbytes"])[:-1]])
    for r, row in store.index.iterrows():
        seq = originals[row["sequence"]]
        img = read_rgb(seq.frames[row["frame"]])
        cx, cy, w, h = crops.xywh_to_cxcywh(seq.boxes[row["frame"]])[0]
        x_sz = crops.crop_sizes(w, h, 127, 255, 0.5)[1]
        want = crops.crop(img, (cx, cy), x_sz * store.side / 255, store.side)
        got = store.crop(r)
        assert got.shape == (319, 319, 3) and got.dtype == np.uint8
        assert np.abs(got.astype(float) - want).mean() < 3                        # JPEG q90
    for s in store.sequences():
        np.testing.assert_array_equal(s.boxes, originals[s.name].boxes)           # frames kept as recorded
        assert s.attributes["resolution"] == originals[s.name].attributes["resolution"]
        assert all(f.is_file() for f in s.frames)


def test_prepare_resumes_after_a_kill_and_is_idempotent(cfg, source, monkeypatch):
    real, calls = curate._write_shard, []

    def killed(final, shard, *args):
        if shard == 1:
            raise KeyboardInterrupt
        calls.append(shard)
        return real(final, shard, *args)

    root = curate.store_dir(cfg, "got10k", source)
    (root / "shards").mkdir(parents=True)
    (root / "shards" / ".00002.tmp-999999999-x").mkdir()                      # a dead run's temporary shard
    monkeypatch.setattr(curate, "_write_shard", killed)
    with pytest.raises(KeyboardInterrupt):
        curate.prepare(cfg, "got10k", source, progress=False)
    assert calls == [0] and not (root / "manifest.json").exists()
    assert sorted(p.name for p in (root / "shards").iterdir()) == ["00000"]      # no half shard, no dead temp
    with pytest.raises(curate.CurationError, match=r"incomplete \(1 shards finished\).*pulkit prepare got10k"):
        curate.CuratedStore.open(cfg, "got10k", source)

    monkeypatch.setattr(curate, "_write_shard", lambda final, shard, *a: (calls.append(shard), real(final, shard, *a)))
    log = []
    curate.prepare(cfg, "got10k", source, progress=False, log=lambda m: log.append((m, list(calls))))
    assert calls == [0, 1, 2]
    assert "about" in log[0][0] and "1 shards already done" in log[0][0] and log[0][1] == [0]   # estimate first
    first = _files(root)

    shutil.rmtree(root / "shards" / "00001")                                  # a lost shard
    (root / "manifest.json").unlink()
    calls.clear()
    curate.prepare(cfg, "got10k", source, progress=False, log=lambda m: None)
    assert calls == [1] and _files(root) == first                             # only it is cut again, same bytes
    calls.clear()
    curate.prepare(cfg, "got10k", source, progress=False, log=lambda m: None)
    assert calls == [] and _files(root) == first                              # complete: nothing to do


def test_loader_is_deterministic_per_seed(cfg, source):
    store = curate.prepare(cfg, "got10k", source, progress=False, log=lambda m: None)

    def pairs(seed):
        return loader.CuratedPairs([store], 127, 255, batch_size=3, steps=4, max_gap=100, shift_px=8, seed=seed)

    b = pairs(0)[2]
    assert b["z"].shape == (3, 3, 127, 127) and b["x"].shape == (3, 3, 255, 255)
    assert b["z"].dtype == b["x"].dtype == torch.uint8 and b["centers"].dtype == torch.float32
    torch.testing.assert_close(b["centers"], -b["shift"].float() / 8)
    assert (b["shift"].abs() <= 8).all()
    again = pairs(0)[2]
    assert all(torch.equal(b[k], again[k]) for k in b)
    assert not torch.equal(pairs(1)[2]["x"], b["x"])
    # workers or not, resumed or not: the same batches
    main = [batch for batch in loader.curated_loader(pairs(0), workers=0, prefetch=2)]
    worker = [batch for batch in loader.curated_loader(pairs(0), workers=1, prefetch=2)]
    assert all(torch.equal(m[k], w[k]) for m, w in zip(main, worker) for k in m)
    one = cfg.override({"data": {"loader_workers": 1}})
    run = loader.supervised_batches(one, [store])                             # the run's sizes, cfg.data's workers
    assert run(0)["z"].shape == (one.supervised.batch_size, 3, 127, 127) and run.workers == 1
    fn = loader.LoaderBatches(pairs(0), workers=0, prefetch=2)
    got = [fn(s) for s in (0, 1, 2)] + [fn(1)]
    assert got[1]["x"].dtype == torch.float32
    assert torch.equal(got[3]["x"], got[1]["x"]) and torch.equal(got[2]["x"], main[2]["x"].float())


def test_loader_draws_from_the_given_sequences_only(cfg, source, tmp_path):
    """A run's curated sequences, cut to ``max_frames``, keep the loader to those frames; a sequence from
    another store is refused."""
    store = curate.prepare(cfg, "got10k", source, progress=False, log=lambda m: None)
    seqs = [s.limit(2) for s in store.sequences()[:2]]
    ds = loader.CuratedPairs([store], 127, 255, batch_size=16, steps=2, max_gap=100, shift_px=8, sequences=seqs)
    assert ds.names == [s.name for s in seqs]
    b = ds[0]
    assert set(b["index"].tolist()) <= {0, 1} and int(b["frames"].max()) <= 1
    noisy = {s.name: noisy_boxes(s.boxes, 20, 3, s.name) for s in seqs}
    with pytest.raises(DataError, match="3 boxes for the 2 frames"):
        loader.CuratedPairs([store], 127, 255, 2, 2, 100, 8, boxes={seqs[0].name: np.zeros((3, 4)) + 9},
                            sequences=seqs)
    assert loader.CuratedPairs([store], 127, 255, 2, 2, 100, 8, boxes=noisy, sequences=seqs).boxes[1].shape == (2, 4)
    stranger = read_got10k(source, subset="train")[0]
    with pytest.raises(DataError, match="not curated"):
        loader.CuratedPairs([store], 127, 255, 2, 2, 100, 8, sequences=[stranger])


def test_supervised_training_on_curated_video_reads_the_loader(cfg, source, tmp_path, monkeypatch):
    """Every training sequence curated and ``loader_workers`` > 0: batches come from the curated loader (the
    same weights with 1 and 2 workers; the noisy boxes when there is noise); 0 workers: the in-process path."""
    store = curate.prepare(cfg, "got10k", source, progress=False, log=lambda m: None)
    seqs, made = store.sequences(), []
    real = loader.supervised_batches

    def spy(*a, **k):
        made.append(real(*a, **k))
        return made[-1]

    monkeypatch.setattr(loader, "supervised_batches", spy)
    c = cfg.override({"supervised": {"batch_size": 2, "head_calibration": None}}, precision="fp32")

    def run(workers, noise=0):
        ckpt = supervised.train_supervised(c.override({"data": {"loader_workers": workers}}), seqs,
                                           tmp_path / f"w{workers}_n{noise}.pt", noise_px=noise, device="cpu",
                                           progress=False)
        return load_checkpoint(ckpt)["model"]

    one, two = run(1), run(2)
    assert [fn.workers for fn in made] == [1, 2] and made[0].dataset.boxes == [None] * len(seqs)
    assert all(torch.equal(one[k], two[k]) for k in one)
    in_process = run(0)
    assert len(made) == 2 and not all(torch.equal(one[k], in_process[k]) for k in one)
    run(1, noise=20)
    clean, noisy = made[0], made[-1]
    for name, boxes in zip(noisy.dataset.names, noisy.dataset.boxes):
        s = next(s for s in seqs if s.name == name)
        np.testing.assert_array_equal(boxes, noisy_boxes(s.boxes, 20, c.seed, name))
    a, b = clean(0), noisy(0)
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["shift"], b["shift"])   # the same draws ...
    assert not torch.equal(a["x"], b["x"]) and not torch.equal(a["z"], b["z"])             # ... around other boxes


def test_ground_truth_pairs_read_curated_crops_noisy_too(cfg, source):
    store = curate.prepare(cfg, "got10k", source, progress=False, log=lambda m: None)
    seqs, originals = store.sequences(), read_got10k(source, subset="train")
    pairs = GroundTruthPairs(seqs, cfg.model, max_gap=100, shift_px=8, noise_px=20, seed=3,
                             cache=CropCache(root=None))
    assert isinstance(pairs.cache, curate.CuratedCache)
    batch = pairs.sample_batch(4, torch.Generator().manual_seed(0))
    assert batch["z"].shape == (4, 3, 127, 127) and pairs.cache.stats == {"curated": 8, "fallback": 0}
    geo, direct = PairGeometry(127, 255, 0.5, 8), CropCache(root=None)
    for s, o in zip(seqs, originals):                                          # a noisy box: the record, shifted
        nb, nbo = noisy_boxes(s.boxes, 20, 3, s.name), noisy_boxes(o.boxes, 20, 3, o.name)
        got = pairs.cache.get_many(geo, [(s.frames[1], nb[1])])[0]
        want = direct.get_many(geo, [(o.frames[1], nbo[1])])[0]
        assert np.abs(got.astype(float) - want).mean() < 3
    with pytest.raises(curate.CurationError, match="199.*pulkit prepare got10k"):
        pairs.cache.get_many(PairGeometry(103, 199, 0.5, 8), [(seqs[0].frames[0], seqs[0].boxes[0])])


def test_curated_profile_without_a_store_names_the_command(cfg, source, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PULKIT_GOT10K", str(source))
    monkeypatch.setenv("PULKIT_VID", str(write_vid(tmp_path / "vid", snippets=1, frames=2, seed=22)))
    monkeypatch.setenv("PULKIT_OTB", str(tmp_path / "none"))
    c = load_config("paper-dryrun", {"data": {"eval_sources": ()}})             # the profile as the CLI cuts it
    with pytest.raises(DataError, match=r"missing; .*run `pulkit prepare got10k --profile paper-dryrun`"):
        profile_sequences(c)
    curate.prepare(c, "got10k", source, progress=False, log=lambda m: None)
    with pytest.raises(DataError, match=r"pulkit prepare vid --profile paper-dryrun"):
        profile_sequences(c)
    assert cli(["prepare", "vid", "--profile", "paper-dryrun", "--no-progress"]) == 0     # PULKIT_VID
    assert "BD's candidate crops (seed 0)" in capsys.readouterr().out          # every source curated: cut them
    assert list((tmp_path / "data" / "cache" / "candidates").glob("bd_crops_*.npy"))
    train = profile_sequences(c)["train"]
    assert {s.attributes["source"] for s in train} == {"got10k", "vid"}
    assert all(s.attributes["curated"] for s in train)
    with pytest.raises(DataError, match="curated with other parameters|missing"):
        profile_sequences(c.override({"model": {"instance_sz": 247}}))


def test_paper_dryrun_keeps_the_paper_code_paths():
    paper, dry = load_config("paper"), load_config("paper-dryrun")
    assert dry.data.curated and paper.data.curated
    assert (dry.data.train_sources, dry.data.eval_sources) == (paper.data.train_sources, paper.data.eval_sources)
    assert (dry.model.exemplar_sz, dry.model.instance_sz, dry.model.context) == (127, 255, paper.model.context)
    assert dry.mining.scale_num == paper.mining.scale_num == 3 and dry.mining.search_sz == paper.mining.search_sz
    assert (dry.noise.unit, dry.noise.train_pairs) == (paper.noise.unit, paper.noise.train_pairs)   # fresh pairs
    assert dry.bd.steps < 10 and dry.tc.steps_per_round < 10 and dry.supervised.steps < 10


def test_records_and_windows():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (41, 41, 3), dtype=np.uint8)
    raw = np.frombuffer(curate.encode(crop, "raw", 90), np.uint8)
    np.testing.assert_array_equal(curate.decode(raw, "raw", 41), crop)                       # raw: exact
    jpg = np.frombuffer(curate.encode(crop, "jpeg", 90), np.uint8)
    assert curate.decode(jpg, "jpeg", 41).shape == (41, 41, 3)
    with pytest.raises(curate.CurationError, match="not a 40 x 40 JPEG"):
        curate.decode(jpg, "jpeg", 40)
    np.testing.assert_array_equal(curate.window(crop, 21, 3, -2, (0, 0, 0)), crop[8:29, 13:34])  # whole px: a slice
    half = curate.window(crop, 21, 0.5, 0, (0, 0, 0)).astype(float)
    np.testing.assert_allclose(half, (crop[10:31, 10:31].astype(float) + crop[10:31, 11:32]) / 2, atol=1)
    assert (curate.window(crop, 21, 15, 0, (7, 8, 9))[:, -5:] == (7, 8, 9)).all()            # beyond: the border


def test_parallel_shards_give_the_same_store(cfg, source, tmp_path, monkeypatch):
    one = curate.prepare(cfg, "got10k", source, progress=False, log=lambda m: None, workers=1)
    monkeypatch.setenv("PULKIT_CURATED", str(tmp_path / "parallel"))
    two = curate.prepare(cfg, "got10k", source, progress=False, log=lambda m: None, workers=2)
    assert two.root != one.root and _files(two.root) == _files(one.root)


def test_notebook_00_curates_every_real_training_source(cfg, tmp_path):
    """Notebook 00's cell (``experiments.data.prepare_curated``): the curated profile gets a store per
    training source, a second call reuses them (same folders, shards skipped), synthetic profiles cut nothing."""
    from pulkit.experiments import data as nb00

    root = tmp_path / "datasets"
    write_got10k(root / "got10k", videos=2, val_videos=1, frames=FRAMES, seed=31)
    write_vid(root / "vid", snippets=1, frames=FRAMES, seed=32)
    assert set(cfg.data.train_sources) == {"got10k", "vid"}
    stores = nb00.prepare_curated(cfg, root, progress=False)
    assert set(stores) == {"got10k", "vid"}
    for ds, folder in stores.items():
        assert curate.CuratedStore(folder).sequences()                    # a finished store with video in it
    mtimes = {p: p.stat().st_mtime_ns for f in stores.values() for p in sorted(Path(f).rglob("*.npy"))}
    assert mtimes and nb00.prepare_curated(cfg, root, progress=False) == stores
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes               # nothing re-cut
    assert nb00.prepare_curated(load_config("smoke"), root) == {}
