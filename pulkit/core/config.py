"""Every default of pulkit in one documented place.

One frozen dataclass per stage; a profile (``smoke``, ``cpu``, ``paper``) is a small dict of
overrides on top of these defaults (``PROFILES``).  Override rules and an example: docs/modules.md.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from pulkit.core.provenance import config_dict, config_hash


class ConfigError(ValueError):
    """An unknown stage, unknown key, or invalid value in a config override."""


HOLD_CROPS = ("auto", "always", "never")


@dataclass(frozen=True)
class DataConfig:
    """Where training and evaluation video comes from."""
    train_sources: tuple[str, ...] = ("synthetic", "shared")   # synthetic | shared | got10k | vid
    eval_sources: tuple[str, ...] = ("synthetic", "shared")     # synthetic | shared | otb | vot | got10k
    # Of the bundled real sequences, these may serve as *unlabeled* training video ...
    shared_train: tuple[str, ...] = ("otb/Skating1", "vot/ball1")
    # ... and these are for evaluation only (never trained on, labelled or not).
    shared_eval: tuple[str, ...] = ("otb/Crossing", "otb/Deer", "vot/bag")
    synthetic_train_videos: int = 40
    synthetic_val_videos: int = 10
    synthetic_frames: int = 60
    synthetic_width: int = 320
    synthetic_height: int = 240
    synthetic_distractors: int = 2
    synthetic_train_seed: int = 1000          # train and val come from different seeds: disjoint
    synthetic_val_seed: int = 2000
    max_frames: int | None = None             # truncate every sequence (None: all frames)
    frame_stride: int = 1                     # use every k-th frame of unlabeled training video
    crop_cache_disk_mb: int | None = 4096     # on-disk cache of training crops (data/cache/pairs); None: no limit
    # Curation (`pulkit prepare got10k|vid`, pulkit.data.curate): cut once, then training reads only the store.
    curated: bool = False                     # got10k / vid training video comes from the curated store only
    curate_margin: int = 32                   # ground-truth crops: the search crop plus this many px on every side
    curate_frame_side: int | None = None      # whole frames: long side at most this (None: as recorded, linked)
    curate_codec: str = "jpeg"                # crops in the shards: jpeg | raw (uint8 pixels)
    curate_quality: int = 90                  # JPEG quality of curated crops and resized frames
    curate_shard_videos: int = 16             # videos per shard (the unit a re-run skips when finished)
    curate_workers: int = 1                   # processes cutting shards in parallel (`pulkit prepare --workers`)
    loader_workers: int = 4                   # DataLoader worker processes over curated shards (0: main process)
    loader_prefetch: int = 4                  # batches each worker prepares ahead (prefetch_factor)
    # Pair datasets' crops held as one uint8 tensor on the training device (pulkit.method.pairs.hold_decision):
    # auto: on a CUDA device when the store fits hold_crops_mb | always | never (the crop cache, per batch)
    hold_crops: str = "auto"
    hold_crops_mb: int = 4096

    def __post_init__(self):
        if self.hold_crops not in HOLD_CROPS:
            raise ConfigError(f"data.hold_crops must be one of {', '.join(HOLD_CROPS)}, got {self.hold_crops!r}")
        if isinstance(self.hold_crops_mb, bool) or not isinstance(self.hold_crops_mb, int) or self.hold_crops_mb < 0:
            raise ConfigError(f"data.hold_crops_mb must be an integer >= 0 (MB), got {self.hold_crops_mb!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Network and crop geometry (SiamFC conventions)."""
    backbone: str = "alexnet"                 # alexnet (SiamFC) | ciresnet22 (SiamDW)
    exemplar_sz: int = 127                    # z crop; sizes must be 127 + 8k
    instance_sz: int = 255                    # x crop; sizes must be 127 + 8k
    context: float = 0.5                      # SiamFC context amount
    head_scale: float | None = None           # None: 0.001 (SiamFC) / 0.1 (SiamDW)
    head_bias: bool | None = None             # None: learned bias for SiamFC, none for SiamDW
    bn_batches: int = 100                     # random_bn and banks: batches of label-free crops that estimate BN statistics
    bn_batch_size: int = 32                   # crops per such batch


@dataclass(frozen=True)
class TrackerConfig:
    """SiamFC inference rules; None takes the backbone's published value (see ``tracker_defaults``)."""
    scale_num: int = 3
    scale_step: float | None = None           # SiamFC 1.0375 / SiamDW 1.1897
    scale_penalty: float | None = None        # SiamFC 0.9745 / SiamDW 0.9370
    scale_lr: float | None = None             # SiamFC 0.59 / SiamDW 0.2226
    window_influence: float | None = None     # SiamFC 0.176 / SiamDW 0.2897
    response_up: int = 16                     # bicubic upsampling of the response
    device: str = "auto"
    min_size_factor: float = 0.2              # target size clamped to [min, max] x its initial size
    max_size_factor: float = 5.0
    crop_backend: str = "auto"                # cv2 (CPU warpAffine) | torch (grid_sample on the device) | auto: torch on CUDA
    fuse_bn: bool = True                      # fold BatchNorm into convs for inference (same function, faster)
    channels_last: bool = True                # NHWC activations for inference (faster oneDNN/cuDNN convs)


TRACKER_DEFAULTS: dict[str, dict[str, float]] = {
    "alexnet": dict(scale_step=1.0375, scale_penalty=0.9745, scale_lr=0.59, window_influence=0.176),
    "ciresnet22": dict(scale_step=1.1897, scale_penalty=0.9370, scale_lr=0.2226, window_influence=0.2897),
}


@dataclass(frozen=True)
class NRConfig:
    """The noise-robust loss (METHOD.md, "The NR loss")."""
    sigma_px: float = 8.0                     # label-noise std in search-crop pixels; fixed for a run
    r_pos: float = 16.0                       # positive radius in search-crop pixels (SiamFC)
    norm: str = "l1"                          # l1: SiamFC's diamond; l2: a disc
    form: str = "taylor"                      # taylor | exact


@dataclass(frozen=True)
class AugmentConfig:
    """Two-view augmentation (supplementary F) for BD and TC's InfoNCE; SimCLR's strengths."""
    stretch: float = 0.05                     # SiamFC random stretch: each axis x (1 +- stretch), centre crop/pad back
    flip_p: float = 0.5                       # horizontal flip probability
    jitter_p: float = 0.8                     # colour distortion probability (SimCLR)
    brightness: float = 0.4                   # ColorJitter strengths (SimCLR)
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2                  # random grayscale probability
    blur_p: float = 0.5                       # Gaussian blur probability
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # blur sigma range in crop pixels (SimCLR)
    blur_kernel: float = 0.1                  # blur kernel side as a fraction of the crop side (made odd, >= 3)


@dataclass(frozen=True)
class BDConfig:
    """Background discrimination: contrastive learning on candidate patches."""
    steps: int = 2000
    batch_size: int = 64
    steps_ciresnet22: int | None = None       # steps of the CIResNet-22 BD run (ResPUL's backbone; its step costs ~2.3x AlexNet's on CPU); None: steps
    temperature: float = 0.1
    proj_hidden: int = 256                    # projection MLP: features -> 256 -> 128
    proj_out: int = 128
    lr: float = 0.05                          # cosine schedule to 0
    warmup: float = 0.0                       # linear warm-up, as a fraction of the steps, before the cosine
    momentum: float = 0.9
    weight_decay: float = 5e-4
    sampler: str = "ahm"                      # ahm | rss
    bank_refresh: int = 200                   # AHM: re-embed all candidates every N steps
    bank_batch: int = 256                     # crops per forward pass when (re)computing the bank
    exclude_frames: int = 50                  # AHM: drop the anchor's video within +-T frames
    separation_frames: int | None = 10        # AHM: also no two batch members from one video within +-this many frames (near-duplicates: false negatives); None: the anchor rule only
    candidates_per_frame: int = 2
    min_side: float = 0.1                     # candidate side as a fraction of the frame
    max_side: float = 0.5
    min_aspect: float = 0.5
    max_aspect: float = 2.0
    texture_prior: bool = True                # reject flat candidates (sky, walls)
    texture_min: float = 2.0                  # texture prior: min mean gradient magnitude (grey levels/px) of a kept patch
    texture_tries: int = 10                   # texture prior: proposals drawn per wanted candidate in a frame
    crop_sz: int = 127                        # candidate exemplar crop side in pixels (SiamFC z)
    max_candidates: int = 20000
    checkpoint_every: int = 200
    log_every: int = 10
    # Notebook 01's claim "AHM helps small batches" (docs/modules.md): an AHM and an RSS AlexNet run per (B, seed)
    claim_batches: tuple[int, ...] = (16, 64)   # batch sizes B compared; steps and schedule are the main runs'
    claim_seeds: tuple[int, ...] = (0, 1, 2)    # seeds at every claim B other than batch_size
    claim_seeds_main: tuple[int, ...] | None = None  # seeds at B = batch_size; None: the main runs' seed only (their checkpoints)

    def __post_init__(self):
        if isinstance(self.claim_seeds_main, list):             # an optional tuple: a JSON list comes back a tuple
            object.__setattr__(self, "claim_seeds_main", tuple(self.claim_seeds_main))


@dataclass(frozen=True)
class MiningConfig:
    """Temporal-correspondence mining with the current model."""
    spans: tuple[int, ...] = (5, 15, 40)      # S_r for rounds r = 1..R
    fb_iou: float = 0.5                       # forward-backward consistency threshold
    min_response: float = 0.5                 # peak sigmoid response to keep a step
    candidates_per_video: int = 8
    start_stride: int = 10                    # start a track every k frames
    eval_k: tuple[int, ...] = (1, 5, 10, 20)  # mining quality measured at these offsets
    quality_videos: int | None = 50           # mining quality: at most this many labelled training videos, evenly spaced (None: all)
    max_pairs: int = 50000
    scale_num: int = 3                        # tracker scales while mining (1: fixed box size, 3x faster)
    search_sz: int | None = None              # search crop while mining, 127 + 8k (None: model.instance_sz; smaller is faster)
    response_up: int = 16                     # bicubic upsampling of the response (SiamFC)
    confidence: str = "sigmoid"               # peak score: sigmoid (of the head's logit) | cosine (normalised feature xcorr)
    emit_every: int = 1                       # emit a pair every k-th step of a kept track (and at its last step)
    forward_batch: int = 48                   # search crops per network forward (memory bound)
    frame_cache_mb: int = 1024                # decoded frames kept for the backward pass (beyond: decode again)
    min_tracks: int = 0                       # when fewer tracks pass FB, keep the best-FB-IoU ones up to this (0: off)


@dataclass(frozen=True)
class TCConfig:
    """Temporal-correspondence learning, progressive rounds."""
    rounds: int = 3
    steps_per_round: int = 2000
    batch_size: int = 8
    lam: float = 0.1                          # weight of InfoNCE beside the NR loss
    search_shift_px: float = 8.0              # random shift of the search crop (moves the label)
    loss: str = "nr"                          # nr | bce
    sampler: str = "ahm"                      # ahm | rss (mini-batch selection of pairs)
    lr: float = 1e-2
    lr_end: float = 1e-5
    schedule: str = "exp"                     # exp: SiamFC's decay lr -> lr_end | cosine: warm-up, cosine to lr_end | constant
    warmup: float = 0.0                       # linear warm-up as a fraction of the schedule's steps (cosine / constant)
    restart: bool = True                      # each round restarts the schedule; False: one schedule over all rounds
    momentum: float = 0.9
    weight_decay: float = 5e-4
    checkpoint_every: int = 200
    log_every: int = 10
    head_calibration: float | None = 0.5      # round 1: rescale the head so logits start with this std (mean 0 with a bias); None: off
    # Seeds of notebook 02's rounds claim, "R rounds vs the same steps without re-mining": a whole pipeline per seed,
    # from the BD model of that seed (each in bd.claim_seeds_main); None: the main run's seed alone (its checkpoints).
    # Not part of a TC run's config (without_claims).
    claim_seeds: tuple[int, ...] | None = None

    def __post_init__(self):
        seeds = self.claim_seeds
        if seeds is None:
            return
        if isinstance(seeds, list):                             # an optional tuple: a JSON list comes back a tuple
            seeds = tuple(seeds)
            object.__setattr__(self, "claim_seeds", seeds)
        if (not isinstance(seeds, tuple) or not seeds
                or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)):
            raise ConfigError(f"tc.claim_seeds must be a non-empty tuple of integer seeds or None, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"tc.claim_seeds must be distinct seeds, got {seeds!r}")


@dataclass(frozen=True)
class SupervisedConfig:
    """Supervised SiamFC / SiamDW baselines and the noisy-annotation runs."""
    steps: int = 3000
    batch_size: int = 8
    max_gap: int = 100                        # exemplar/search frame gap (SiamFC's T)
    loss: str = "bce"                         # bce | nr
    lr: float = 1e-2
    lr_end: float = 1e-5
    schedule: str = "exp"                     # exp (SiamFC) | cosine | constant, as tc.schedule
    warmup: float = 0.0                       # warm-up fraction, as tc.warmup
    momentum: float = 0.9
    weight_decay: float = 5e-4
    checkpoint_every: int = 200
    log_every: int = 10
    search_shift_px: float = 8.0              # random shift of the search crop, search-crop px (moves the label)
    noise_px: float = 0.0                     # annotation noise n of the run: centres + U[-n, n] frame px per axis
    head_calibration: float | None = 0.5      # rescale the fresh xcorr head so initial logits have this std (None: off)


@dataclass(frozen=True)
class NoiseConfig:
    """The noise experiment (paper 4.2.2, supplementary D); design and budget: docs/modules.md."""
    unit: str = "px"                                     # px: levels in frame px | size: fractions f, n = f * sqrt(w h) of each box
    levels: tuple[float, ...] = (0, 10, 20, 30, 40, 50)  # n: each annotation's centre + U[-n, n] per axis
    seeds: tuple[int, ...] = (0, 1, 2)
    nr_levels: tuple[float, ...] | None = None           # levels with an NR (sigma matched) run (None: every level)
    nr_fixed_levels: tuple[float, ...] | None = None     # levels with an NR (sigma = nr.sigma_px) run (None: every level)
    train_pairs: int | None = None                       # fixed noisy set: pairs drawn once per seed, one noisy label each (None: fresh pairs every step)
    epochs: int | None = None                            # passes over the fixed set: steps = ceil(train_pairs * epochs / batch_size)
    train_shift_px: float | None = None                  # fixed set: search-crop shift ~ U[-s, s] px, drawn once per pair (None: the eval pairs')
    sigma_floor_px: float = 1.0                          # NR (sigma matched): sigma = max(floor, n * scale / sqrt(3)) search-crop px
    eval_pairs: int | None = None                        # of the shared held-out pairs (eval.heldout_pairs), this many evenly spaced score each model (None: all)
    display_levels: tuple[float, ...] = (0, 20, 50)      # Fig. 3 columns (each must be in levels)
    fig4_level: float = 50                               # Fig. 4's noise level (must be in levels)
    display_sequences: tuple[str, ...] = ("otb/Deer", "otb/Crossing")  # Figs. 3/4 rows (else the first eval sequences)
    display_frame: int = 40                              # Figs. 3/4: frame shown (clipped to the last evaluated one)
    steps: int | None = None                             # fresh pairs: training steps per run (None: supervised.steps)
    lr: float | None = None                              # the runs' initial rate (None: supervised.lr); a fixed set must be memorisable
    eval_max_frames: int | None = None                   # Figs. 3/4: frames per display sequence (None: data.max_frames)
    eval_sources: tuple[str, ...] = ("synthetic", "shared", "otb")  # Figs. 3/4: display sequences' sources

    def __post_init__(self):
        for name in ("nr_levels", "nr_fixed_levels"):          # optional tuples: a JSON list comes back a tuple
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True)
class EvalConfig:
    """Benchmark protocols."""
    vot_eao_interval: tuple[int, int] = (108, 371)      # VOT2016; VOT2017/18: (100, 356)
    vot_skip_after_failure: int = 5
    vot_burnin: int = 10
    drift_iou: float = 0.1                               # Fig. 7: IoU below this ...
    drift_frames: int = 10                               # ... for this many consecutive frames
    fig5_sequences: tuple[str, ...] = ("basketball", "blanket", "butterfly", "dinosaur", "fernando", "glove",
                                       "racing", "soldier", "motocross1", "motocross2")  # Fig. 5's VOT2016 sequences (used when PULKIT_VOT holds them)
    fig7_sequences: tuple[str, ...] = ("graduate", "fish1")  # Fig. 7's VOT2016 sequences (used when PULKIT_VOT holds them)
    fig5_frames: int = 4                                 # Fig. 5: frames shown per sequence, evenly spaced after the first
    fig5_max_sequences: int = 10                         # Fig. 5 rows at most (real sequences first, then synthetic)
    fig7_max_panels: int = 12                            # Fig. 7: drift panels at most (sequence order, then frame)
    heldout_videos: int = 40                             # powered measures: held-out labelled synthetic videos (seed 3000)
    heldout_frames: int | None = 40                      # frames per held-out video (None: data.synthetic_frames)
    heldout_pairs: int = 2000                            # clean ground-truth pairs for localisation accuracy


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Config:
    profile: str = "cpu"
    seed: int = 0
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    nr: NRConfig = field(default_factory=NRConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    bd: BDConfig = field(default_factory=BDConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    tc: TCConfig = field(default_factory=TCConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # tracking and training (pulkit.models.precision): fp32 | bf16 (backbones under autocast; the xcorr head,
    # losses, weights and optimiser stay fp32; needs native bf16) | auto: bf16 where native and measured faster
    precision: str = "auto"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"Config.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def override(self, overrides: Mapping[str, Any] | None = None, **top: Any) -> "Config":
        """A new Config with ``overrides`` (``{"bd": {"steps": 5}}`` or ``{"bd.steps": 5}``) applied."""
        return _apply(self, _nest(dict(overrides or {}), **top), "Config")

    def to_dict(self) -> dict[str, Any]:
        return config_dict(self)

    @property
    def hash(self) -> str:
        return config_hash(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        """Rebuild a Config saved with ``to_dict`` (e.g. from a checkpoint)."""
        return Config().override(d)


# The three profiles, as small overrides on the defaults above.
PROFILES: dict[str, dict[str, Any]] = {
    # CI: minutes on 2 CPU cores; proves every code path runs, says nothing about accuracy.
    "smoke": {
        "precision": "fp32",                  # CI's refactor check compares fp32 numbers
        "data": dict(synthetic_train_videos=4, synthetic_val_videos=2, synthetic_frames=24,
                     synthetic_width=192, synthetic_height=144, max_frames=30),
        "model": dict(exemplar_sz=103, instance_sz=207, bn_batches=2, bn_batch_size=8),
        "bd": dict(steps=6, batch_size=8, bank_refresh=3, warmup=0.1, checkpoint_every=3, max_candidates=400,
                   candidates_per_frame=1, log_every=1, crop_sz=103, claim_batches=(4, 8), claim_seeds=(0, 1),
                   claim_seeds_main=(0, 1)),
        "mining": dict(spans=(2, 4), candidates_per_video=2, start_stride=8, max_pairs=200, min_tracks=4,
                       quality_videos=2),
        "tc": dict(rounds=2, steps_per_round=4, batch_size=4, checkpoint_every=2, schedule="cosine", warmup=0.05,
                   restart=False, lr_end=0.0, claim_seeds=(0, 1)),
        "supervised": dict(steps=4, batch_size=4, checkpoint_every=2, schedule="cosine", warmup=0.05, lr_end=0.0),
        "noise": dict(unit="size", levels=(0, 1.0), seeds=(0, 1), nr_levels=(1.0,), nr_fixed_levels=(1.0,),
                      train_pairs=4, epochs=2, eval_pairs=16, display_levels=(0, 1.0), fig4_level=1.0,
                      eval_max_frames=6, display_frame=5),
        "eval": dict(heldout_videos=4, heldout_frames=12, heldout_pairs=64),
    },
    # A laptop-scale reproduction on 2 cores: synthetic + bundled real sequences. Budget: under 90
    # minutes; the claims experiments put it at about 95-100 in fp32 (BENCHMARKS.md, "The cpu profile end to end").
    "cpu": {
        "data": dict(synthetic_train_videos=16, synthetic_val_videos=6, synthetic_frames=60, max_frames=120),
        "model": dict(exemplar_sz=103, instance_sz=199, bn_batches=20),  # ~0.6x the compute of 127/255
        # schedules sized to the step counts, chosen on the tuning split (README, "Schedules")
        "bd": dict(steps=120, steps_ciresnet22=60, batch_size=64, bank_refresh=40, max_candidates=2000,
                   crop_sz=103, lr=0.003, warmup=0.1, claim_batches=(16, 64), claim_seeds=(0, 1, 2),
                   claim_seeds_main=(0, 1, 2)),
        "mining": dict(spans=(5, 15, 40), scale_num=1),           # single-scale mining: ~3x cheaper
        "tc": dict(rounds=3, steps_per_round=80, schedule="cosine", warmup=0.05, restart=False, lr=1e-2, lr_end=0.0,
                   claim_seeds=(0, 1, 2)),
        "supervised": dict(steps=200, schedule="cosine", warmup=0.05, lr=3e-3, lr_end=0.0),   # tuned: docs/tuning/cpu.json
        # noise: a fixed noisy set BCE can memorise; grid, sizes and the 14-minute budget: docs/modules.md
        "noise": dict(unit="size", levels=(0, 0.25, 0.5, 1.0), seeds=(0, 1, 2), nr_levels=(1.0,), lr=1e-2,
                      nr_fixed_levels=(1.0,), train_pairs=18, epochs=32, eval_pairs=500,
                      display_levels=(0, 0.5, 1.0), fig4_level=1.0, eval_max_frames=30, display_frame=20),
    },
    # The cpu profile's experiments on one GPU: 50x its training steps, a fourth noise seed, twice the held-out
    # pairs; synthetic + bundled video only.  Sized to <= 10 minutes on one H100 by `python -m pulkit.tools.cost
    # --profile gpu` (README, "Cost"); never run on a GPU yet.  Learning rates are the cpu profile's, not re-tuned.
    # The claims' extra seeds at B = 64 and for the rounds (cpu: 0, 1, 2) would put it at ~14 min: main seed only.
    "gpu": {
        "data": dict(synthetic_train_videos=16, synthetic_val_videos=4, synthetic_frames=60, max_frames=120),
        "model": dict(exemplar_sz=103, instance_sz=199, bn_batches=20),
        "bd": dict(steps=6000, steps_ciresnet22=3000, batch_size=64, bank_refresh=200, max_candidates=20000,
                   crop_sz=103, lr=0.003, warmup=0.1, claim_batches=(16, 64), claim_seeds=(0, 1, 2)),
        "mining": dict(spans=(5, 15, 40), scale_num=1, quality_videos=8),   # the error report: 8 videos
        "tc": dict(rounds=3, steps_per_round=4000, schedule="cosine", warmup=0.05, restart=False, lr=1e-2, lr_end=0.0),
        "supervised": dict(steps=10000, schedule="cosine", warmup=0.05, lr=1e-2, lr_end=0.0),
        # 90 pairs x 320 epochs = 3,600 steps a run (50x); f = 0.25 (no claim reads it) gives way to a 4th seed
        "noise": dict(unit="size", levels=(0, 0.5, 1.0), seeds=(0, 1, 2, 3), nr_levels=(1.0,),
                      nr_fixed_levels=(1.0,), train_pairs=90, epochs=320, eval_pairs=2000,
                      display_levels=(0, 0.5, 1.0), fig4_level=1.0, eval_max_frames=30, display_frame=20),
        "eval": dict(heldout_pairs=4000),
    },
    # The paper's schedule on a GPU with real datasets.
    "paper": {
        "data": dict(train_sources=("got10k", "vid"), eval_sources=("otb", "vot", "got10k"),
                     max_frames=None, curated=True),       # training reads `pulkit prepare got10k|vid`'s store
        "bd": dict(steps=50000, max_candidates=200000),
        "tc": dict(steps_per_round=50000),
        "supervised": dict(steps=50 * 6650, batch_size=8),
    },
    # CI (`make paper-dryrun`): the paper profile's code paths (127 / 255 crops, 3-scale mining, got10k + vid
    # through curation, the otb / vot / got10k readers and protocols) on generated datasets at real resolutions
    # (pulkit.data.fake_datasets), with tiny step counts: proves the paper path runs, says nothing about accuracy.
    "paper-dryrun": {
        "data": dict(train_sources=("got10k", "vid"), eval_sources=("otb", "vot", "got10k"), curated=True,
                     max_frames=12, synthetic_val_videos=2, synthetic_frames=12),
        "model": dict(bn_batches=2, bn_batch_size=8),
        "bd": dict(steps=3, batch_size=8, bank_refresh=2, checkpoint_every=2, max_candidates=120, log_every=1,
                   candidates_per_frame=1, warmup=0.1, claim_batches=(8,), claim_seeds=(0,), exclude_frames=4,
                   separation_frames=2, texture_min=0.3), # AHM's rules scaled to 6 videos of 12 frames; the
                                                          # generated HD frames are smooth (gradients ~0.4 / px)
        "mining": dict(spans=(2, 4), candidates_per_video=1, start_stride=6, max_pairs=100, min_tracks=4,
                       quality_videos=1, eval_k=(1, 10)),
        "tc": dict(rounds=2, steps_per_round=2, batch_size=4, checkpoint_every=2, log_every=1),
        "supervised": dict(steps=2, batch_size=4, checkpoint_every=2, log_every=1),
        "noise": dict(levels=(0, 20), seeds=(0,), nr_levels=(20,), nr_fixed_levels=(20,), steps=2, eval_pairs=16,
                      display_levels=(0, 20), fig4_level=20, eval_max_frames=6, display_frame=5,
                      eval_sources=("otb",)),
        "eval": dict(heldout_videos=2, heldout_frames=12, heldout_pairs=16, fig5_max_sequences=2, fig7_max_panels=2),
    },
}


# Which runs a claim compares, not how any run trains: reset in the config a training run records and is reused by.
CLAIM_FIELDS: dict[str, tuple[str, ...]] = {"bd": ("claim_batches", "claim_seeds", "claim_seeds_main"),
                                            "tc": ("claim_seeds",)}


def without_claims(cfg: Config) -> Config:
    """``cfg`` with the ``CLAIM_FIELDS`` at their defaults: changing a claim's seeds retrains no run."""
    return cfg.override({sec: {k: getattr(type(getattr(cfg, sec))(), k) for k in keys}
                         for sec, keys in CLAIM_FIELDS.items()})


def load_config(profile: str = "cpu", overrides: Mapping[str, Any] | None = None, **top: Any) -> Config:
    """Defaults, then the profile's overrides, then ``overrides`` / keyword overrides."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    cfg = Config(profile=profile).override(PROFILES[profile])
    return cfg.override(overrides, **top)


def tracker_defaults(backbone: str) -> dict[str, float]:
    if backbone not in TRACKER_DEFAULTS:
        raise ConfigError(f"unknown backbone {backbone!r}; valid backbones: {', '.join(TRACKER_DEFAULTS)}")
    return dict(TRACKER_DEFAULTS[backbone])


def check_crop_size(sz: int, what: str = "crop") -> int:
    if sz < 127 - 8 * 15 or (sz - 127) % 8:
        raise ConfigError(f"{what} size {sz} is not of the form 127 + 8k (feature maps would not be integral)")
    return sz


# --------------------------------------------------------------------------- internals
def _nest(flat: dict[str, Any], **top: Any) -> dict[str, Any]:
    """Turn ``{"bd.steps": 5}`` into ``{"bd": {"steps": 5}}`` and merge with nested dicts."""
    out: dict[str, Any] = {}
    for key, value in {**flat, **top}.items():
        parts = str(key).split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with a non-stage value")
        if isinstance(value, Mapping) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(value)
        else:
            node[parts[-1]] = dict(value) if isinstance(value, Mapping) else value  # never mutate the caller's dict
    return out


def _coerce(value: Any, current: Any, where: str) -> Any:
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ConfigError(f"{where} expects a bool, got {value!r}")
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _apply(obj: Any, overrides: Mapping[str, Any], where: str) -> Any:
    valid = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in valid:
            raise ConfigError(f"unknown key {key!r} in {where}; valid keys: {', '.join(valid)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                if dataclasses.is_dataclass(value) and type(value) is type(current):
                    changes[key] = value
                    continue
                raise ConfigError(f"{where}.{key} is a stage; give it a mapping of keys, got {value!r}")
            changes[key] = _apply(current, value, f"{where}.{key}" if where != "Config" else key)
        else:
            changes[key] = _coerce(value, current, f"{where}.{key}")
    return dataclasses.replace(obj, **changes) if changes else obj
