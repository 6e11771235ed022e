"""``SiamFCTracker``: SiamFC inference with any pulkit ``Net`` (AlexPUL, ResPUL, their baselines).

A got10k ``Tracker`` (``init(image, box)``, then ``update(image) -> box`` per frame), the tracker
every evaluation protocol runs.  Per-frame steps and speed levers: docs/modules.md.
"""
from __future__ import annotations

import copy
import dataclasses
import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from got10k.trackers import Tracker

from pulkit.core.config import Config, ModelConfig, TrackerConfig, tracker_defaults
from pulkit.data.crops import crop, mean_color, xywh_to_cxcywh
from pulkit.data.images import to_rgb
from pulkit.models.backbones import BACKBONES, build_backbone
from pulkit.models.net import Net, fuse_bn, load_checkpoint, load_net, resolve_device
from pulkit.models.precision import bf16_weights, infer, resolve_precision

_DEFAULTED = ("scale_step", "scale_penalty", "scale_lr", "window_influence")


def resolve_tracker_config(tracker_cfg: TrackerConfig | None, backbone: str) -> TrackerConfig:
    """``tracker_cfg`` with every None field replaced by ``backbone``'s published value."""
    cfg = tracker_cfg or TrackerConfig()
    missing = [f for f in _DEFAULTED if getattr(cfg, f) is None]
    if missing:
        defaults = tracker_defaults(backbone)
        cfg = dataclasses.replace(cfg, **{f: defaults[f] for f in missing})
    if cfg.scale_num < 1 or cfg.scale_num % 2 == 0:
        raise ValueError(f"TrackerConfig.scale_num must be odd and positive, got {cfg.scale_num}")
    if cfg.crop_backend not in ("auto", "cv2", "torch"):
        raise ValueError(f"TrackerConfig.crop_backend must be auto, cv2 or torch, got {cfg.crop_backend!r}")
    if not 0 < cfg.min_size_factor <= 1 <= cfg.max_size_factor:
        raise ValueError("TrackerConfig needs 0 < min_size_factor <= 1 <= max_size_factor, got "
                         f"{cfg.min_size_factor}, {cfg.max_size_factor}")
    return cfg


def grid_crops(frame: torch.Tensor, center, sizes, out_size: int, border: torch.Tensor) -> torch.Tensor:
    """``pulkit.data.crops.crop`` on a device: square crops of ``sizes`` (frame px) at one centre.

    ``frame`` is 1 x 3 x H x W float, ``border`` a 3-vector fill colour.  Output pixel ``u`` samples
    the frame at ``c + (u - (out_size - 1) / 2) * size / out_size`` (bilinear), as cv2's crop does.
    Returns S x 3 x out_size x out_size.
    """
    _, _, H, W = frame.shape
    sizes = torch.as_tensor(np.asarray(sizes, dtype=np.float64), dtype=frame.dtype, device=frame.device)
    u = torch.arange(out_size, dtype=frame.dtype, device=frame.device) - (out_size - 1) / 2
    steps = u[None, :] * (sizes[:, None] / out_size)                          # S x out, frame px offsets
    gx = (2 * (float(center[0]) + steps) + 1) / W - 1                         # align_corners=False
    gy = (2 * (float(center[1]) + steps) + 1) / H - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # S x out x out x 2
    b = border.view(1, 3, 1, 1)
    src = (frame - b).expand(len(sizes), -1, -1, -1)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + b


class SiamFCTracker(Tracker):
    """SiamFC tracking with ``net``; ``tracker_cfg`` None fields take the backbone's defaults.

    ``model_cfg`` sets the crop geometry (exemplar / instance size, context); None: the net's own.
    The tracker runs an inference copy of ``net`` (BN folded, channels_last): training ``net``
    afterwards does not change this tracker.  ``precision`` (``fp32 | bf16 | auto``, resolved with
    ``pulkit.models.precision.resolve_precision`` into ``self.precision``): bf16 runs the backbone of
    the inference copy in bf16 (``bf16_weights``); the cross-correlation and everything after it stay fp32.

    After each ``update``: ``last_responses`` (S x R x R raw logits, every scale),
    ``last_scale_id`` (index of the chosen scale), ``last_scale`` (its factor ``step^k``) and
    ``last_response`` (the chosen scale's response upsampled x ``response_up``, raw logits).
    """

    def __init__(self, net: Net, tracker_cfg: TrackerConfig | None = None, model_cfg: ModelConfig | None = None,
                 device="auto", name: str | None = None, precision: str = "fp32"):
        arch = net.arch
        backbone = arch["backbone"]
        if model_cfg is not None and model_cfg.backbone != backbone:
            raise ValueError(f"model_cfg names a {model_cfg.backbone!r} network but net is {backbone!r}")
        self.cfg = resolve_tracker_config(tracker_cfg, backbone)
        self.exemplar_sz = model_cfg.exemplar_sz if model_cfg else arch["exemplar_sz"]
        self.instance_sz = model_cfg.instance_sz if model_cfg else arch["instance_sz"]
        self.context = model_cfg.context if model_cfg else arch["context"]
        self.device = resolve_device(self.cfg.device if device in (None, "auto") else device)
        self.precision = resolve_precision(precision, self.device)
        self.crop_backend = self.cfg.crop_backend
        if self.crop_backend == "auto":
            self.crop_backend = "torch" if self.device.type == "cuda" else "cv2"
        self.stride = net.stride
        self.response_sz = net.response_size(self.exemplar_sz, self.instance_sz)
        self.net = self._inference_net(net)
        default_name = {"alexnet": "SiamFC", "ciresnet22": "SiamDW"}.get(backbone, "Siamese") + f"-{backbone}"
        super().__init__(name=name or default_name, is_deterministic=True)

        n, up = self.cfg.scale_num, self.cfg.response_up
        self.scale_factors = self.cfg.scale_step ** np.linspace(-(n // 2), n // 2, n)
        self.upscale_sz = up * self.response_sz
        hann = np.hanning(self.upscale_sz)
        self.window = np.outer(hann, hann) / np.outer(hann, hann).sum()
        self.kernel = None
        self.last_responses = self.last_response = self.last_scale_id = self.last_scale = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device="auto", precision: str = "fp32",
                        **tracker_overrides) -> "SiamFCTracker":
        """A tracker for a pulkit checkpoint: network from its ``arch``, tracker config from its
        ``config`` (defaults when it has none), then ``tracker_overrides`` (unknown keys: ConfigError)."""
        dev = resolve_device(device)
        ckpt = load_checkpoint(path, map_location=dev)
        net = _tracking_net(ckpt, path, dev)
        stored = (ckpt.get("config") or {}).get("tracker", {})
        tcfg = Config().override({"tracker": {**stored, **tracker_overrides}}).tracker
        arch = ckpt["arch"]
        mcfg = ModelConfig(backbone=arch["backbone"], exemplar_sz=arch["exemplar_sz"],
                           instance_sz=arch["instance_sz"], context=arch["context"],
                           head_scale=arch["head_scale"], head_bias=arch["head_bias"])
        return cls(net, tcfg, mcfg, device=dev, precision=precision)

    def _inference_net(self, net: Net) -> Net:
        inf = fuse_bn(net) if self.cfg.fuse_bn else copy.deepcopy(net).eval()
        inf = inf.to(self.device)
        if self.cfg.channels_last:
            inf = inf.to(memory_format=torch.channels_last)
        if self.precision == "bf16":
            bf16_weights(inf.backbone)
        return inf

    # ------------------------------------------------------------------ got10k interface
    @torch.inference_mode()
    def init(self, image, box) -> None:
        """Start tracking the target ``box`` = ``[x, y, w, h]`` (0-based) in ``image``."""
        img = to_rgb(image)
        H, W = img.shape[:2]
        box = _check_box(box, W, H)
        cx, cy, w, h = xywh_to_cxcywh(box)[0]
        self.center = np.array([cx, cy])
        self.init_target_sz = np.array([w, h])
        p = self.context * (w + h)
        self.init_z_sz = float(np.sqrt((w + p) * (h + p)))
        self.init_x_sz = self.init_z_sz * self.instance_sz / self.exemplar_sz
        self.size_factor = 1.0
        self.avg_color = mean_color(img)
        self._border = torch.tensor(self.avg_color, dtype=torch.float32, device=self.device)
        z = self._crops(img, [self.init_z_sz], self.exemplar_sz)
        self.kernel = self._features(z)
        self.last_responses = self.last_response = self.last_scale_id = self.last_scale = None

    @torch.inference_mode()
    def update(self, image) -> np.ndarray:
        """Locate the target in ``image``; returns its box ``[x, y, w, h]`` (0-based, float64)."""
        if self.kernel is None:
            raise RuntimeError("SiamFCTracker.update called before init")
        img = to_rgb(image)
        H, W = img.shape[:2]
        x_sz = self.init_x_sz * self.size_factor
        x = self._crops(img, x_sz * self.scale_factors, self.instance_sz)
        responses = self.net.head(self.kernel, self._features(x))[:, 0].float().cpu().numpy()

        up = self.upscale_sz
        upsampled = np.stack([cv2.resize(r, (up, up), interpolation=cv2.INTER_CUBIC) for r in responses])
        scale_id = self._best_scale(upsampled)
        response = upsampled[scale_id] - upsampled[scale_id].min()
        response /= response.sum() + 1e-16
        response = (1 - self.cfg.window_influence) * response + self.cfg.window_influence * self.window
        row, col = np.unravel_index(int(np.argmax(response)), response.shape)

        # upsampled px -> map cells -> search-crop px -> frame px; (dx, dy) = (column, row)
        disp_up = np.array([col, row], dtype=np.float64) - (up - 1) / 2
        disp_crop = disp_up / self.cfg.response_up * self.stride
        disp_frame = disp_crop * x_sz * self.scale_factors[scale_id] / self.instance_sz
        self.center = np.clip(self.center + disp_frame, 0, [W - 1, H - 1])

        lr = self.cfg.scale_lr
        scale = (1 - lr) + lr * self.scale_factors[scale_id]
        self.size_factor = float(np.clip(self.size_factor * scale, self.cfg.min_size_factor,
                                         self.cfg.max_size_factor))

        self.last_responses = responses
        self.last_response = upsampled[scale_id]
        self.last_scale_id = int(scale_id)
        self.last_scale = float(self.scale_factors[scale_id])
        w, h = self.init_target_sz * self.size_factor
        return np.array([self.center[0] - (w - 1) / 2, self.center[1] - (h - 1) / 2, w, h])

    # ------------------------------------------------------------------ internals
    def _features(self, crops: torch.Tensor) -> torch.Tensor:
        """phi(crops) of the inference net in ``self.precision``, as float32 (fp32: the plain call)."""
        return infer(self.net.features, crops, self.precision)

    def _best_scale(self, upsampled: np.ndarray) -> int:
        """Index of the best scale after penalising every changed scale's peak.

        The penalty moves a peak towards "worse" whatever its sign (logits can be negative:
        multiplying a negative peak by 0.97 would favour it).
        """
        peaks = upsampled.reshape(len(upsampled), -1).max(axis=1).astype(np.float64)
        pen = self.cfg.scale_penalty
        mid = len(peaks) // 2
        penalised = np.where(peaks >= 0, peaks * pen, peaks / pen)
        penalised[mid] = peaks[mid]
        return int(np.argmax(penalised))

    def _crops(self, img: np.ndarray, sizes, out_size: int) -> torch.Tensor:
        """S x 3 x out x out float32 crops (raw pixels) at the current centre, on the device."""
        if self.crop_backend == "torch":
            frame = torch.from_numpy(img).to(self.device).permute(2, 0, 1)[None].float()
            out = grid_crops(frame, self.center, sizes, out_size, self._border)
        else:
            batch = np.stack([crop(img, self.center, s, out_size, self.avg_color) for s in sizes])
            # S x H x W x 3 uint8 viewed as S x 3 x H x W: already channels_last in memory
            out = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device).float()
        fmt = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        return out.contiguous(memory_format=fmt)


def _check_box(box, W: int, H: int) -> np.ndarray:
    """The initial box as a float64 4-vector, or a ValueError saying what is wrong with it."""
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"initial box must be 4 numbers [x, y, w, h], got {box!r}") from None
    if b.size != 4:
        raise ValueError(f"initial box must be 4 numbers [x, y, w, h], got {b.size} values")
    if not np.isfinite(b).all():
        raise ValueError(f"initial box has non-finite values: {b.tolist()}")
    if b[2] <= 0 or b[3] <= 0:
        raise ValueError(f"initial box must have positive width and height, got {b.tolist()}")
    if b[0] >= W or b[1] >= H or b[0] + b[2] <= 0 or b[1] + b[3] <= 0:
        raise ValueError(f"initial box {b.tolist()} lies outside the {W} x {H} image")
    return b


_ARCH_KEYS = ("backbone", "exemplar_sz", "instance_sz", "context", "head_scale", "head_bias")


def _tracking_net(ckpt: dict, path, device) -> Net:
    """``load_net(ckpt)`` with errors naming the file; weights that do not fit the ``arch`` name both
    architectures (the one ``arch`` names and the one the weights fit, if any)."""
    arch = ckpt.get("arch")
    if not isinstance(arch, dict):
        raise ValueError(f"{path}: checkpoint of stage {ckpt.get('stage')!r} holds no Siamese tracking network "
                         "(arch is None: a BD embedder?); track with a TC or supervised checkpoint")
    missing = [k for k in _ARCH_KEYS if k not in arch]
    if missing:
        raise ValueError(f"{path}: checkpoint arch lacks {missing} (it has {sorted(arch)})")
    try:
        return load_net(ckpt, device=device)
    except (ValueError, TypeError, AttributeError):   # unknown backbone, weights that do not fit it

        model = ckpt["model"] if isinstance(ckpt["model"], dict) else {}
        shapes = {k[len("backbone."):]: tuple(getattr(v, "shape", ())) for k, v in model.items()
                  if k.startswith("backbone.")}
        fits = [b for b in BACKBONES
                if {k: tuple(v.shape) for k, v in build_backbone(b).state_dict().items()} == shapes]
        named = arch["backbone"] if arch["backbone"] in BACKBONES else f"{arch['backbone']} (unknown to pulkit)"
        if fits == [arch["backbone"]]:
            held = (f"its head weights {sorted(k for k in model if not k.startswith('backbone.'))} do not fit "
                    f"the arch's head (head_bias={arch['head_bias']})")
        elif fits:
            held = f"its weights are a {fits[0]} network's"
        else:
            held = f"its weights fit no pulkit backbone ({', '.join(BACKBONES)})"
        raise ValueError(f"{path}: checkpoint arch names a {named} network but {held}") from None


def load_tracker(name: str, checkpoint: str | os.PathLike, device: str = "auto",
                 precision: str = "fp32") -> SiamFCTracker:
    """A ``SiamFCTracker`` for ``checkpoint`` named ``name`` (the name is part of its result key)."""
    tracker = SiamFCTracker.from_checkpoint(checkpoint, device=device, precision=precision)
    tracker.name = name
    return tracker
