"""AHM batch selection time: ``python -m pulkit.tools.bench ahm [--n 200000 --dim 128 --batch 64]``.

Times ``ahm_batch`` on a random clustered ``EmbeddingBank`` against baselines in the same loop and
ends with one JSON line.  What is measured: docs/modules.md.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from pulkit.method.sampling import EmbeddingBank, ahm_batch, batch_hardness, rss_batch


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m pulkit.tools.bench ahm", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000, help="bank rows (candidates)")
    p.add_argument("--dim", type=int, default=128, help="embedding dimension")
    p.add_argument("--batch", type=int, default=64, help="AHM batch size")
    p.add_argument("--calls", type=int, default=200, help="timed batches")
    p.add_argument("--frames", type=int, default=1000, help="frames per synthetic video")
    p.add_argument("--T", type=int, default=50, help="same-video exclusion, +-frames")
    p.add_argument("--separation", type=int, default=10, help="AHM separation within a video, +-frames")
    p.add_argument("--clusters", type=int, default=2000, help="clusters in the synthetic embeddings")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _quantiles(ts):
    ms = np.asarray(ts) * 1e3
    return float(np.median(ms)), float(np.quantile(ms, 0.1)), float(np.quantile(ms, 0.9))


def main(argv=None) -> int:
    a = _parse(argv)
    g = torch.Generator().manual_seed(a.seed)
    centres = torch.randn(a.clusters, a.dim, generator=g)
    raw = centres[torch.randint(a.clusters, (a.n,), generator=g)] + 0.5 * torch.randn(a.n, a.dim, generator=g)
    video, frame = np.arange(a.n) // a.frames, np.arange(a.n) % a.frames

    t0 = time.perf_counter()
    bank = EmbeddingBank(raw, video=video, frame=frame)
    build_s = time.perf_counter() - t0
    print(f"bank {a.n} x {a.dim} float32 ({bank.embeddings.numel() * 4 / 2**20:.0f} MiB): built in {build_s:.3f} s")

    ahm_t, excl_t, rss_t, mv_t, sep_t, n_ex, hard_ahm, hard_rss = [], [], [], [], [], [], [], []
    emb = bank.embeddings.numpy()
    for i in range(a.calls + 5):                                    # 5 warm-up calls
        anchor = int(torch.randint(a.n, (1,), generator=g))
        tb = time.perf_counter()
        emb @ emb[(anchor + 1) % a.n]                               # baseline: the bare matrix-vector product
        t0 = time.perf_counter()
        ex = bank.exclusion(anchor, a.T)
        t1 = time.perf_counter()
        batch = ahm_batch(bank, a.batch, anchor=anchor, exclude=ex)
        t2 = time.perf_counter()
        rnd = rss_batch(a.n, a.batch, generator=g, exclude=ex)
        t3 = time.perf_counter()
        ahm_batch(bank, a.batch, anchor=anchor, exclude=ex, separation=a.separation)
        t4 = time.perf_counter()
        if i >= 5:
            mv_t.append(t0 - tb)
            excl_t.append(t1 - t0)
            ahm_t.append(t2 - t1)
            rss_t.append(t3 - t2)
            sep_t.append(t4 - t3)
            n_ex.append(len(ex))
            hard_ahm.append(batch_hardness(bank, batch))
            hard_rss.append(batch_hardness(bank, torch.cat([batch[:1], rnd[rnd != batch[0]][:a.batch - 1]])))

    ahm_ms, ahm_p10, ahm_p90 = _quantiles(ahm_t)
    excl_ms, rss_ms, mv_ms = _quantiles(excl_t)[0], _quantiles(rss_t)[0], _quantiles(mv_t)[0]
    ratio = float(np.median(np.asarray(ahm_t) / np.asarray(mv_t)))
    sep_ms = _quantiles(sep_t)[0]
    sep_ratio = float(np.median(np.asarray(sep_t) / np.asarray(ahm_t)))
    print(f"ahm_batch (batch {a.batch}, exclude {np.mean(n_ex):.0f} indices): median {ahm_ms:.2f} ms "
          f"(10-90 %: {ahm_p10:.2f}-{ahm_p90:.2f} ms) over {a.calls} calls, torch threads {torch.get_num_threads()}")
    print(f"baseline, one bare {a.n} x {a.dim} sgemv (a single pass over the bank, memory bound): median "
          f"{mv_ms:.2f} ms; ahm_batch / sgemv in the same iteration: median {ratio:.2f}")
    print(f"ahm_batch with separation {a.separation} frames: median {sep_ms:.2f} ms; with / without, same anchor: "
          f"median {sep_ratio:.2f}")
    print(f"exclusion(anchor, T={a.T}): median {excl_ms:.3f} ms; rss_batch: median {rss_ms:.2f} ms")
    print(f"hardness (mean anchor cosine): AHM {np.mean(hard_ahm):.3f}, RSS {np.mean(hard_rss):.3f}")
    print(json.dumps({
        "ahm_batch_ms": round(ahm_ms, 3), "ahm_batch_ms_p10": round(ahm_p10, 3), "ahm_batch_ms_p90": round(ahm_p90, 3),
        "bank_build_s": round(build_s, 4), "exclusion_ms": round(excl_ms, 4), "rss_batch_ms": round(rss_ms, 3),
        "sgemv_ms": round(mv_ms, 3), "ahm_over_sgemv": round(ratio, 3),
        "ahm_separated_ms": round(sep_ms, 3), "separated_over_plain": round(sep_ratio, 3), "separation": a.separation,
        "exclude_size": float(np.mean(n_ex)), "hardness_ahm": round(float(np.mean(hard_ahm)), 4),
        "hardness_rss": round(float(np.mean(hard_rss)), 4), "n": a.n, "dim": a.dim, "batch": a.batch,
        "calls": a.calls, "threads": torch.get_num_threads(),
    }, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
