"""Mini-batch samplers: RSS, AHM and the embedding bank (supplementary A, C)."""
import numpy as np
import pytest
import torch

from pulkit.method.sampling import EmbeddingBank, ahm_batch, batch_hardness, rss_batch


def _bank(n=60, d=8, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _reference(emb, anchor, batch_size, exclude=()):
    """Brute force: cosine similarity in float64, sort, skip the anchor and excluded rows."""
    e = emb.double() / emb.double().norm(dim=1, keepdim=True)
    sims = (e @ e[anchor]).tolist()
    order = sorted(range(len(sims)), key=lambda i: -sims[i])
    banned = set(int(i) for i in exclude) | {anchor}
    return [anchor] + [i for i in order if i not in banned][:batch_size - 1]


# --------------------------------------------------------------------------- RSS
def test_rss_distinct_in_range_excluding_and_deterministic():
    ex = torch.arange(0, 40)
    b = rss_batch(50, 10, generator=torch.Generator().manual_seed(3), exclude=ex)
    assert len(b) == 10 and len(set(b.tolist())) == 10 and all(40 <= i < 50 for i in b.tolist())
    again = rss_batch(50, 10, generator=torch.Generator().manual_seed(3), exclude=ex)
    assert torch.equal(b, again)
    assert sorted(rss_batch(10, 10, generator=torch.Generator().manual_seed(0)).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="only 10"):
        rss_batch(50, 11, exclude=ex)
    with pytest.raises(ValueError, match="outside"):
        rss_batch(50, 4, exclude=[50])


# --------------------------------------------------------------------------- AHM
def test_ahm_matches_brute_force_ordering_and_exclusion():
    emb = _bank()
    g = torch.Generator().manual_seed(1)
    for anchor in (0, 17, 59):
        exclude = torch.randperm(60, generator=g)[:15]
        got = ahm_batch(emb, 12, anchor=anchor, exclude=exclude)
        assert got.dtype == torch.long and got.tolist() == _reference(emb, anchor, 12, exclude.tolist())
        assert not set(got[1:].tolist()) & set(exclude.tolist()) and got.tolist().count(anchor) == 1
    assert ahm_batch(emb, 60, anchor=5).tolist() == _reference(emb, 5, 60)   # the whole bank, sorted


def test_ahm_errors_when_too_few_eligible():
    emb = _bank(20)
    with pytest.raises(ValueError, match="only 9"):
        ahm_batch(emb, 11, anchor=0, exclude=torch.arange(10, 20))
    assert len(ahm_batch(emb, 10, anchor=0, exclude=torch.arange(10, 20))) == 10
    with pytest.raises(ValueError):
        ahm_batch(emb, 4, anchor=20)


def test_ahm_deterministic_and_tensor_equals_bank():
    emb = _bank(200, 16, seed=2)
    bank = EmbeddingBank(emb)
    exclude = torch.arange(50)
    runs = [ahm_batch(b, 16, exclude=exclude, generator=torch.Generator().manual_seed(7)) for b in (emb, bank, bank)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[1], runs[2])
    assert runs[0][0] >= 50                                     # a random anchor is never excluded
    anchors = {int(ahm_batch(bank, 4, generator=torch.Generator().manual_seed(s))[0]) for s in range(20)}
    assert len(anchors) > 10


def test_ahm_batches_harder_than_rss_on_clustered_data():
    g = torch.Generator().manual_seed(4)
    centres = torch.randn(20, 32, generator=g)
    emb = centres.repeat_interleave(30, dim=0) + 0.3 * torch.randn(600, 32, generator=g)
    bank = EmbeddingBank(emb)
    ahm, rss = [], []
    for _ in range(20):
        a = ahm_batch(bank, 16, generator=g)
        r = rss_batch(len(bank), 16, generator=g)
        ahm.append(batch_hardness(bank, a))
        rss.append(batch_hardness(bank, r))
        assert len(set((a[1:] // 30).tolist()) - {int(a[0]) // 30}) == 0   # neighbours share the cluster
    assert np.mean(ahm) > 0.8 and np.mean(rss) < 0.2


# --------------------------------------------------------------------------- bank
def test_bank_normalises_once_and_bookkeeping():
    emb = _bank(30, 4) * 5
    bank = EmbeddingBank(emb, step=10)
    assert torch.allclose(bank.embeddings.norm(dim=1), torch.ones(30))
    assert bank.embeddings.dtype == torch.float32 and bank.embeddings.is_contiguous()
    assert len(bank) == 30 and bank.dim == 4 and bank.age(25) == 15
    bank.update([3], torch.tensor([[0.0, 2.0, 0.0, 0.0]]))
    assert torch.equal(bank.embeddings[3], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    assert bank.similarities(3)[3] == pytest.approx(1.0)        # the fast path sees the update
    bank.refresh(_bank(30, 4, seed=9), step=40)
    assert bank.step_built == 40 and bank.age(40) == 0
    with pytest.raises(ValueError):
        bank.refresh(_bank(31, 4))
    with pytest.raises(ValueError):
        EmbeddingBank(emb, video=np.zeros(29))


def test_exclusion_same_video_within_T_frames():
    video = np.array(["a"] * 10 + ["b"] * 10 + ["a"] * 5)
    frame = np.concatenate([np.arange(10), np.arange(10), np.arange(20, 25)])
    bank = EmbeddingBank(_bank(25, 4), video=video, frame=frame)
    ex = bank.exclusion(4, 3)
    assert sorted(ex.tolist()) == [1, 2, 3, 4, 5, 6, 7]
    assert sorted(bank.exclusion(9, 12).tolist()) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 20, 21]
    batch = ahm_batch(bank, 10, anchor=4, exclude=ex)
    assert batch[0] == 4 and not set(batch[1:].tolist()) & set(ex.tolist())
    with pytest.raises(ValueError, match="video and frame"):
        EmbeddingBank(_bank(25, 4)).exclusion(0, 3)


def test_batch_hardness_is_mean_anchor_similarity():
    emb = _bank(10, 3)
    e = emb / emb.norm(dim=1, keepdim=True)
    idx = [4, 1, 7]
    assert batch_hardness(emb, idx) == pytest.approx(float((e[[1, 7]] @ e[4]).mean()), abs=1e-6)


def test_rss_is_uniform():
    g = torch.Generator().manual_seed(5)
    counts = np.zeros(40)
    for _ in range(2000):                                       # large pool: the rejection path
        counts[rss_batch(40, 5, generator=g, exclude=[0, 1]).numpy()] += 1
    assert counts[:2].sum() == 0
    expected = 2000 * 5 / 38
    assert np.abs(counts[2:] - expected).max() < 5 * np.sqrt(expected)


# --------------------------------------------------------------------------- AHM with separation
def _separated_reference(emb, video, frame, anchor, batch_size, s, exclude=()):
    """Brute force: walk the full similarity order, keep a row only when no chosen member shares its video within s frames."""
    e = emb.double() / emb.double().norm(dim=1, keepdim=True)
    sims = (e @ e[anchor]).tolist()
    order = sorted(range(len(sims)), key=lambda i: -sims[i])
    banned = set(int(i) for i in exclude) | {anchor}
    out = [anchor]
    for i in order:
        if i in banned:
            continue
        if all(not (video[i] == video[j] and abs(frame[i] - frame[j]) <= s) for j in out):
            out.append(i)
        if len(out) == batch_size:
            break
    return out


def test_ahm_separation_keeps_members_apart_and_matches_brute_force():
    n = 400
    g = torch.Generator().manual_seed(5)
    # 8 videos x 50 frames; neighbouring frames of one video have near-identical embeddings
    video = np.repeat(np.arange(8), 50)
    frame = np.tile(np.arange(50), 8)
    base = torch.randn(8, 16, generator=g)
    drift = torch.randn(8, 16, generator=g) * 0.02
    emb = base[video] + torch.as_tensor(frame, dtype=torch.float32)[:, None] * drift[video] \
        + 0.01 * torch.randn(n, 16, generator=g)
    bank = EmbeddingBank(emb, video=video, frame=frame)
    for anchor, s in ((0, 3), (123, 5), (399, 0)):
        ex = bank.exclusion(anchor, 10)
        got = ahm_batch(bank, 24, anchor=anchor, exclude=ex, separation=s).tolist()
        assert got == _separated_reference(emb, video, frame, anchor, 24, s, ex.tolist())
        for a in range(len(got)):
            for b in range(a + 1, len(got)):
                i, j = got[a], got[b]
                assert not (video[i] == video[j] and abs(frame[i] - frame[j]) <= s)
    # without separation the plain nearest neighbours crowd into the anchor's neighbouring frames
    plain = ahm_batch(bank, 24, anchor=123, exclude=bank.exclusion(123, 10)).tolist()
    sep = ahm_batch(bank, 24, anchor=123, exclude=bank.exclusion(123, 10), separation=5).tolist()
    close = lambda idx: sum(video[i] == video[j] and abs(frame[i] - frame[j]) <= 5
                            for a, i in enumerate(idx) for j in idx[a + 1:])
    assert close(plain) > 0 and close(sep) == 0


def test_ahm_separation_errors():
    video = np.repeat(np.arange(2), 10)
    frame = np.tile(np.arange(10), 2)
    bank = EmbeddingBank(torch.randn(20, 4, generator=torch.Generator().manual_seed(0)), video=video, frame=frame)
    # 2 videos x 10 frames, separation 4: at most 2 members per video
    assert len(ahm_batch(bank, 4, anchor=0, separation=4)) == 4
    with pytest.raises(ValueError, match="separation 4 frames finds only 3"):
        ahm_batch(bank, 5, anchor=0, separation=4)
    with pytest.raises(ValueError, match="video and frame"):
        ahm_batch(torch.randn(20, 4), 4, anchor=0, separation=2)
    with pytest.raises(ValueError, match=">= 0"):
        ahm_batch(bank, 4, anchor=0, separation=-1)
