"""Training throughput: ``python -m pulkit.tools.bench train [--batch 8] [--precision fp32,bf16] [--profile cpu]``.

Times supervised training steps (AlexNet and CIResNet-22, BCE vs NR, per precision), the share of a step spent
assembling its data, and BD's two-view step with its augmentation; ends with one JSON line.
What is measured and how: docs/modules.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from pulkit.core.config import PRECISIONS, AugmentConfig, ModelConfig, NRConfig, load_config
from pulkit.core.results import cpu_model
from pulkit.data import augment as aug
from pulkit.data.sequences import read_got10k
from pulkit.data.synthetic import generate_split
from pulkit.losses import infonce
from pulkit.method.pairs import CropCache, CropStore, GroundTruthPairs
from pulkit.method.supervised import BACKBONES, LOSSES, build_initial_net, response_loss
from pulkit.models.net import resolve_device
from pulkit.models.precision import PrecisionError, bf16_backbones, resolve_precision
from pulkit.models.projection import Embedder, ProjectionHead

DATA_SOURCES = ("store", "cache")
AUGMENT_PATHS = ("auto", "batch")   # TwoViews as training runs it (per crop on the CPU) | per_crop=False


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m pulkit.tools.bench train", description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8, help="pairs per step")
    p.add_argument("--reps", type=int, default=6, help="timed repetitions of every configuration")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration first")
    p.add_argument("--loss-reps", type=int, default=50, help="timed calls of each loss alone")
    p.add_argument("--videos", type=int, default=4, help="synthetic training videos")
    p.add_argument("--frames", type=int, default=20, help="frames per video")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the steps run")
    p.add_argument("--data", default="store", choices=DATA_SOURCES,
                   help="store: every crop held as one uint8 tensor on the device (CropStore); "
                        "cache: the host crop cache, batches moved to the device")
    p.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated, of " + ", ".join(BACKBONES))
    p.add_argument("--views-batch", type=int, default=64,
                   help="crops per BD two-view step (2x views through AlexNet, InfoNCE); 0 skips it")
    p.add_argument("--compare-augment", action="store_true",
                   help="also time the two-view augmentation alone: pulkit's executions, torchvision v2 "
                        "per crop, kornia.augmentation batched (when installed)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="paper", help="crop sizes of this profile (paper: 127 / 255, cpu: 103 / 199)")
    p.add_argument("--precision", default="fp32",
                   help=f"comma-separated, of {', '.join(PRECISIONS)}: every resolved precision is timed, interleaved")
    a = p.parse_args(argv)
    a.backbones = [x.strip() for x in a.backbones.split(",") if x.strip()]
    if not a.backbones or any(x not in BACKBONES for x in a.backbones):
        p.error(f"--backbones takes a comma-separated list of {', '.join(BACKBONES)}; got {a.backbones!r}")
    a.precisions = [x.strip() for x in a.precision.split(",") if x.strip()]
    if not a.precisions or any(x not in PRECISIONS for x in a.precisions):
        p.error(f"--precision takes a comma-separated list of {', '.join(PRECISIONS)}; got {a.precision!r}")
    try:
        a.model = load_config(a.profile).model
    except ValueError as e:
        p.error(str(e))
    return a


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """One (backbone, loss, precision) configuration: its net, optimiser, and a timed step on a given batch.

    ``precision`` is resolved (fp32 | bf16); bf16 runs the forward and loss as ``pulkit.method.loop.train`` does.
    """

    def __init__(self, backbone: str, loss: str, device: torch.device, seed: int, precision: str = "fp32",
                 model_cfg: ModelConfig | None = None):
        self.backbone, self.loss, self.device, self.precision = backbone, loss, device, precision
        self.key = (backbone, loss, precision)
        mcfg = dataclasses.replace(model_cfg or ModelConfig(), backbone=backbone)
        self.net = build_initial_net(mcfg, seed).to(device).train()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=1e-2, momentum=0.9, weight_decay=5e-4)
        self.nr = NRConfig()

    def step(self, pairs: GroundTruthPairs, batch_size: int, generator: torch.Generator) -> tuple[float, float]:
        """(seconds of the whole step, seconds of the data assembly alone)."""
        _sync(self.device)
        t0 = time.perf_counter()
        b = pairs.sample_batch(batch_size, generator)
        z, x, c = b["z"].to(self.device), b["x"].to(self.device), b["centers"].to(self.device)
        _sync(self.device)                     # the step waits for its data until here
        t_data = time.perf_counter() - t0
        with bf16_backbones(self.net, self.precision, self.device):
            value, _ = response_loss(self.net(z, x), c, self.loss, self.nr, self.net.stride)
        self.opt.zero_grad(set_to_none=True)
        value.backward()
        self.opt.step()
        _sync(self.device)
        return time.perf_counter() - t0, t_data


def _share(data: list[float], step: list[float]) -> float:
    """Median over steps of the fraction of the step spent assembling (and moving) its data."""
    return statistics.median(d / s for d, s in zip(data, step))


def _bd_crops(pairs: GroundTruthPairs, n: int, seed: int) -> torch.Tensor:
    """``n`` exemplar crops of the pairs (N x S x S x 3 uint8, host): stand-ins for BD's candidate crops."""
    z = pairs.sample_batch(n, torch.Generator().manual_seed(seed))["z"]
    return z.cpu().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _views(pairs: GroundTruthPairs, a, device: torch.device) -> dict[str, dict[str, list[float]]]:
    """BD's step on ``a.views_batch`` crops, per augmentation path: (step, data) seconds per repetition.

    Data: crops from a uint8 ``CropStore`` on the device (``--data store``) or from host memory as
    ``CandidateCrops.batch`` gives them (``cache``), then ``TwoViews``; the step: AlexNet + projection
    head over both views, InfoNCE, backward, SGD.  The paths alternate in order every repetition.
    """
    host = _bd_crops(pairs, max(256, 2 * a.views_batch), a.seed)
    store = CropStore(host, device) if a.data == "store" else None
    net = build_initial_net(dataclasses.replace(a.model, backbone="alexnet"), a.seed)
    emb = Embedder(net.backbone, ProjectionHead(net.backbone.out_channels, 256, 128)).to(device).train()
    opt = torch.optim.SGD(emb.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    views = {"auto": aug.TwoViews(AugmentConfig()), "batch": aug.TwoViews(AugmentConfig(), per_crop=False)}
    out = {path: {"step": [], "data": []} for path in AUGMENT_PATHS}
    for rep in range(a.warmup + a.reps):
        for path in (AUGMENT_PATHS if rep % 2 == 0 else AUGMENT_PATHS[::-1]):
            g = torch.Generator().manual_seed(rep)
            _sync(device)
            t0 = time.perf_counter()
            idx = torch.randint(len(host), (a.views_batch,), generator=g)
            x = store.batch(idx) if store is not None else host[idx].permute(0, 3, 1, 2).float()
            v1, v2 = views[path](x, g)
            v = torch.cat([v1, v2]).to(device)
            _sync(device)
            t_data = time.perf_counter() - t0
            z1, z2 = emb(v).chunk(2)
            loss = infonce(z1, z2, 0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _sync(device)
            if rep >= a.warmup:
                out[path]["step"].append(time.perf_counter() - t0)
                out[path]["data"].append(t_data)
    return out


def _augmenters(cfg: AugmentConfig, side: int) -> dict:
    """Two-view augmenters to compare, each ``f(batch uint8 B x 3 x S x S, generator) -> 2B views in [0, 1]``.

    torchvision v2 draws one set of parameters per call, so it runs crop by crop; kornia draws per crop in
    one batched call, from the global RNG (seeded from the generator here), and draws one ColorJitter order
    per batch where pulkit draws one per crop.
    """
    import torchvision.transforms.v2 as v2

    k = aug.blur_kernel_size(side, cfg.blur_kernel)
    tv = v2.Compose([aug.RandomStretch(cfg.stretch), v2.RandomHorizontalFlip(cfg.flip_p),
                     v2.RandomApply([v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)],
                                    cfg.jitter_p),
                     v2.RandomGrayscale(cfg.grayscale_p),
                     v2.RandomApply([v2.GaussianBlur(k, sigma=cfg.blur_sigma)], cfg.blur_p)])

    def seeded(f):
        def run(batch, g):
            with torch.random.fork_rng(devices=[batch.device] if batch.device.type == "cuda" else []):
                torch.manual_seed(int(torch.randint(2**31, (1,), generator=g)))
                x = torch.cat([batch, batch]).float() / 255
                return f(x)
        return run

    out = {"pulkit": lambda b, g: torch.cat(aug.TwoViews(cfg)(b, g)) / 255,
           "pulkit_batch": lambda b, g: torch.cat(aug.TwoViews(cfg, per_crop=False)(b, g)) / 255,
           "torchvision_v2_per_crop": seeded(lambda x: torch.stack([tv(c) for c in x]))}
    try:
        import kornia.augmentation as K
    except ImportError:
        return out
    s = cfg.stretch
    kn = K.AugmentationSequential(
        K.RandomAffine(degrees=0.0, scale=(1 - s, 1 + s, 1 - s, 1 + s), p=1.0),
        K.RandomHorizontalFlip(p=cfg.flip_p),
        K.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=cfg.jitter_p),
        K.RandomGrayscale(p=cfg.grayscale_p),
        K.RandomGaussianBlur((k, k), cfg.blur_sigma, p=cfg.blur_p))
    out["kornia"] = seeded(kn)
    return out


def _compare_augment(pairs: GroundTruthPairs, a, device: torch.device) -> dict[str, float]:
    """Median ms of two views of ``a.views_batch`` crops (on the device) per augmenter, interleaved."""
    host = _bd_crops(pairs, a.views_batch, a.seed)
    batch = host.permute(0, 3, 1, 2).contiguous().to(device)
    fs = _augmenters(AugmentConfig(), batch.shape[-1])
    times: dict[str, list[float]] = {name: [] for name in fs}
    for rep in range(1 + a.reps):
        for name in (list(fs) if rep % 2 == 0 else list(fs)[::-1]):
            _sync(device)
            t0 = time.perf_counter()
            fs[name](batch, torch.Generator().manual_seed(rep))
            _sync(device)
            if rep:
                times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def _loss_alone(batch: int, reps: int, device: torch.device) -> dict[str, float]:
    """Median ms of forward + backward of each loss on a fixed 17 x 17 map (interleaved)."""
    nr_cfg, g = NRConfig(), torch.Generator().manual_seed(1)
    logits = torch.randn(batch, 1, 17, 17, generator=g).to(device).requires_grad_(True)
    centers = (torch.randint(-8, 9, (batch, 2), generator=g).float() / 8).to(device)
    times: dict[str, list[float]] = {loss: [] for loss in LOSSES}
    for i in range(reps + 3):
        for loss in (LOSSES if i % 2 == 0 else LOSSES[::-1]):
            _sync(device)
            t0 = time.perf_counter()
            value, _ = response_loss(logits, centers, loss, nr_cfg, 8)
            value.backward()
            _sync(device)
            if i >= 3:
                times[loss].append(time.perf_counter() - t0)
            logits.grad = None
    return {loss: 1e3 * statistics.median(t) for loss, t in times.items()}


def main(argv=None) -> int:
    a = _parse(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    try:
        precisions = list(dict.fromkeys(resolve_precision(x, device) for x in a.precisions))
    except PrecisionError as e:
        raise SystemExit(f"python -m pulkit.tools.bench train: {e}") from None
    sizes = f"{a.model.exemplar_sz}/{a.model.instance_sz}"
    print(f"device {device} ({cpu_model()}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {a.batch}, crops {sizes}, precision {', '.join(a.precisions)} -> {', '.join(precisions)}, "
          f"{a.reps} repetitions (median)")
    with tempfile.TemporaryDirectory(prefix="pulkit-bench-train-") as tmp:
        root = generate_split(Path(tmp) / "train", a.videos, a.frames, 320, 240, seed=a.seed)
        seqs = read_got10k(root, subset="train")
        pairs = GroundTruthPairs(seqs, a.model, max_gap=100, shift_px=8.0,
                                 seed=a.seed, cache=CropCache(root=None, memory_mb=1024))
        t0 = time.perf_counter()
        entries = pairs.precache(progress=False)
        print(f"crop cache: {entries} entries of {pairs.geometry.side}^2 px cut in {time.perf_counter() - t0:.1f} s "
              "(warm: memory hits only while timing)")
        if a.data == "store":
            store = pairs.hold(device, progress=False)
            print(f"data: a uint8 CropStore of {len(store)} crops ({store.nbytes / 2**20:.0f} MB) on {store.device}")
        else:
            print("data: the host crop cache, each batch converted to float32 and moved to the device")
        views = _views(pairs, a, device) if a.views_batch > 0 else {}
        augment_ms = _compare_augment(pairs, a, device) if a.compare_augment and a.views_batch > 0 else {}

        runners = [Runner(bb, loss, device, a.seed, p, a.model) for bb in a.backbones for loss in LOSSES
                   for p in precisions]
        for r in runners:
            for w in range(a.warmup):
                r.step(pairs, a.batch, torch.Generator().manual_seed(10_000 + w))
        step: dict[tuple[str, str, str], list[float]] = {r.key: [] for r in runners}
        data: dict[tuple[str, str, str], list[float]] = {r.key: [] for r in runners}
        ratios: dict[str, list[float]] = {bb: [] for bb in a.backbones}
        bf16: dict[str, list[float]] = {bb: [] for bb in a.backbones}    # fp32 / bf16 step time, same batch
        misses = pairs.cache.stats["miss"]
        for rep in range(a.reps):
            order = runners[rep % len(runners):] + runners[:rep % len(runners)]
            this: dict[tuple[str, str, str], float] = {}
            for r in order:
                s, d = r.step(pairs, a.batch, torch.Generator().manual_seed(rep))   # same batch for every config
                step[r.key].append(s)
                data[r.key].append(d)
                this[r.key] = s
            for bb in a.backbones:
                ratios[bb].append(this[(bb, "nr", precisions[0])] / this[(bb, "bce", precisions[0])])
                if {"fp32", "bf16"} <= set(precisions):
                    bf16[bb] += [this[(bb, loss, "fp32")] / this[(bb, loss, "bf16")] for loss in LOSSES]
        if pairs.cache.stats["miss"] != misses:
            raise RuntimeError("the crop cache missed while timing: the measurement is not from a warm cache")
        loss_ms = _loss_alone(a.batch, a.loss_reps, device)

    med = {k: statistics.median(v) for k, v in step.items()}
    med_data = {k: statistics.median(v) for k, v in data.items()}
    first = precisions[0]
    for bb in a.backbones:
        for loss in LOSSES:
            for p in precisions:
                k = (bb, loss, p)
                print(f"  {bb:10s} {loss:3s} {p}: {1e3 * med[k]:7.1f} ms/step median "
                      f"(min {1e3 * min(step[k]):.1f}, max {1e3 * max(step[k]):.1f}), "
                      f"{a.batch / med[k]:5.2f} pairs/s; data assembly {1e3 * med_data[k]:.1f} ms "
                      f"({100 * _share(data[k], step[k]):.2f} % of the step)")
        print(f"  {bb:10s} NR / BCE step time ({first}): {statistics.median(ratios[bb]):.3f} median of adjacent pairs "
              f"(range {min(ratios[bb]):.3f}-{max(ratios[bb]):.3f})")
        if bf16[bb]:
            print(f"  {bb:10s} fp32 / bf16 step time: x{statistics.median(bf16[bb]):.2f} median of adjacent pairs "
                  f"(range {min(bf16[bb]):.2f}-{max(bf16[bb]):.2f}, BCE and NR)")
    print(f"  loss alone (forward + backward, {a.batch} x 1 x 17 x 17): BCE {loss_ms['bce']:.2f} ms, "
          f"NR {loss_ms['nr']:.2f} ms: NR adds {loss_ms['nr'] - loss_ms['bce']:.2f} ms = "
          f"{100 * (loss_ms['nr'] - loss_ms['bce']) / (1e3 * med[(a.backbones[0], 'bce', first)]):.2f} % of "
          f"a {a.backbones[0]} BCE step")
    for path, v in views.items():
        print(f"  BD two-view step, {a.views_batch} crops of {a.model.exemplar_sz} px (augmentation: {path}): "
              f"{1e3 * statistics.median(v['step']):.1f} ms/step median, "
              f"{a.views_batch / statistics.median(v['step']):.1f} crops/s; data {1e3 * statistics.median(v['data']):.1f} ms ({100 * _share(v['data'], v['step']):.2f} % "
              "of the step)")
    for name, ms in augment_ms.items():
        print(f"  two views of {a.views_batch} crops alone, {name}: {ms:.1f} ms")
    all_ratios = [r for bb in a.backbones for r in ratios[bb]]
    summary = {
        "device": str(device), "threads": torch.get_num_threads(), "batch": a.batch, "reps": a.reps,
        "cpu_model": cpu_model(), "crops": [a.model.exemplar_sz, a.model.instance_sz], "precisions": precisions,
        "data": a.data, "backbones": a.backbones,
        **{f"pairs_per_s_{bb}": a.batch / med[(bb, "bce", first)] for bb in a.backbones},
        **{f"pairs_per_s_{bb}_nr": a.batch / med[(bb, "nr", first)] for bb in a.backbones},
        **{f"pairs_per_s_{bb}_{p}": a.batch / med[(bb, "bce", p)] for bb in a.backbones for p in precisions},
        **{f"bf16_speedup_{bb}": statistics.median(v) for bb, v in bf16.items() if v},
        "nr_over_bce_step_time": statistics.median(all_ratios),
        **{f"nr_over_bce_step_time_{bb}": statistics.median(ratios[bb]) for bb in a.backbones},
        "data_ms_per_step": 1e3 * statistics.median(v for vs in data.values() for v in vs),
        # the share of step time spent waiting for data (assembly + transfer), median over the steps
        **{f"data_share_{bb}": _share([d for k in data if k[0] == bb for d in data[k]],
                                      [s_ for k in step if k[0] == bb for s_ in step[k]]) for bb in a.backbones},
        **{f"views_{k}_{path}": f(v) for path, v in views.items() for k, f in (
            ("crops_per_s", lambda v: a.views_batch / statistics.median(v["step"])),
            ("data_share", lambda v: _share(v["data"], v["step"])),
            ("data_ms", lambda v: 1e3 * statistics.median(v["data"])))},
        **{f"augment_ms_{name}": ms for name, ms in augment_ms.items()},
        "loss_ms_bce": loss_ms["bce"], "loss_ms_nr": loss_ms["nr"],
        # the step with NR's extra loss cost added: robust to load swings between adjacent steps
        f"nr_over_bce_implied_{a.backbones[0]}":
            1 + (loss_ms["nr"] - loss_ms["bce"]) / (1e3 * med[(a.backbones[0], "bce", first)]),
    }
    print(json.dumps(summary, sort_keys=True, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
