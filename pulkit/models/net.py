"""``Net(backbone, head)``: the Siamese network, its device, its checkpoints, its inference form.

Every training stage writes this network's checkpoints and the tracker loads them (``load_net``).
Input and response conventions and the checkpoint format: docs/modules.md.
"""
from __future__ import annotations

import copy
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from pulkit.core.config import ModelConfig, check_crop_size
from pulkit.core.io import torch_save_atomic
from pulkit.core.provenance import provenance
from pulkit.models.backbones import build_backbone
from pulkit.models.heads import XCorr, build_head

CHECKPOINT_FORMAT = "pulkit-checkpoint-v1"
_RESERVED = ("format", "arch", "model", "config")


class Net(nn.Module):
    """A Siamese tracker network: shared ``backbone`` (phi) and a cross-correlation ``head``.

    ``exemplar_sz``, ``instance_sz`` and ``context`` record the crop geometry the weights
    belong to; they travel in checkpoints (``arch``) and the tracker uses them.
    """

    def __init__(self, backbone: nn.Module, head: XCorr, exemplar_sz: int = 127, instance_sz: int = 255,
                 context: float = 0.5):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.exemplar_sz = check_crop_size(int(exemplar_sz), "exemplar")
        self.instance_sz = check_crop_size(int(instance_sz), "instance")
        self.context = float(context)

    @property
    def stride(self) -> int:
        return self.backbone.stride

    @property
    def arch(self) -> dict[str, Any]:
        """Everything needed to rebuild this network (stored in checkpoints)."""
        return {"backbone": getattr(self.backbone, "name", type(self.backbone).__name__),
                "head_scale": float(self.head.scale), "head_bias": self.head.bias is not None,
                "exemplar_sz": self.exemplar_sz, "instance_sz": self.instance_sz, "context": self.context}

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """phi(img): B x 3 x H x W raw pixels -> B x C x h x w features (stride 8)."""
        return self.backbone(img)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Response logits B x 1 x R x R for exemplars ``z`` and search crops ``x`` (see ``xcorr``)."""
        return self.head(self.backbone(z), self.backbone(x))

    def response_size(self, exemplar_sz: int | None = None, instance_sz: int | None = None) -> int:
        """R for these crop sizes (default: the net's own), from the backbone's arithmetic."""
        zs = self.backbone.output_size(self.exemplar_sz if exemplar_sz is None else exemplar_sz)
        xs = self.backbone.output_size(self.instance_sz if instance_sz is None else instance_sz)
        if xs < zs:
            raise ValueError(f"search crop {instance_sz} gives a smaller feature map ({xs}) than the exemplar ({zs})")
        return xs - zs + 1


def build_net(model_cfg: ModelConfig | None = None) -> Net:
    """A freshly initialised ``Net`` for ``model_cfg`` (head scale / bias None: the backbone's default)."""
    cfg = model_cfg or ModelConfig()
    return Net(build_backbone(cfg.backbone), build_head(cfg.backbone, cfg.head_scale, cfg.head_bias),
               cfg.exemplar_sz, cfg.instance_sz, cfg.context)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU.  An unavailable CUDA request is a clear error."""
    if isinstance(device, torch.device):
        dev = device
    elif device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as e:
            raise ValueError(f"invalid device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def fuse_bn(module: nn.Module) -> nn.Module:
    """An eval-mode copy of ``module`` with every (Conv2d, BatchNorm2d) pair folded into one conv.

    Pairs are found inside ``nn.Sequential`` containers (how the backbones are written); the
    BN is replaced by ``nn.Identity``, so the copy computes the same function with fewer passes
    over memory.  Inference only: the folded conv uses the running statistics.
    """
    fused = copy.deepcopy(module).eval()
    for seq in fused.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
    return fused


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | os.PathLike, net: Net, cfg=None, **state: Any) -> Path:
    """Write ``net`` (and optional training ``state``: optimizer, scheduler, step, rng, stage, ...) atomically.

    ``cfg`` is the run's ``Config`` (stored as ``cfg.to_dict()`` with its provenance); None stores
    no config and a provenance without profile or seed.
    """
    clash = [k for k in state if k in _RESERVED]
    if clash:
        raise ValueError(f"save_checkpoint: {', '.join(clash)} are reserved checkpoint keys")
    if cfg is not None:
        prov = provenance(cfg.profile, cfg.seed, cfg)
    else:
        prov = {**provenance("unspecified", 0), "profile": None, "seed": None}
    ckpt = {"format": CHECKPOINT_FORMAT, "arch": net.arch, "model": net.state_dict(),
            "config": cfg.to_dict() if cfg is not None else None, "provenance": prov}
    ckpt.update(state)
    return torch_save_atomic(ckpt, path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    """Read a pulkit checkpoint; a missing, corrupt or foreign file is a ``ValueError`` naming it.

    Checkpoints hold training state (numpy RNG states, optimizer dicts), so they are unpickled
    in full (``weights_only=False``): load only checkpoints you (or pulkit) wrote.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if zipfile.is_zipfile(path):         # torch.load does not check the records' CRCs: bit rot loads silently
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except Exception as e:  # a damaged zip structure
            bad = f"{type(e).__name__}: {e}"
        if bad is not None:
            raise ValueError(f"{path}: corrupt checkpoint (CRC check failed: {bad})")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated zip, garbage bytes, pickle errors
        raise ValueError(f"{path}: cannot read checkpoint (corrupt or not a torch file): {e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a pulkit checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r})")
    for key in ("arch", "model"):
        if key not in ckpt:
            raise ValueError(f"{path}: pulkit checkpoint lacks its {key!r} entry")
    return ckpt


def load_net(path_or_ckpt, device: str | torch.device = "auto", expect_backbone: str | None = None) -> Net:
    """Rebuild a ``Net`` from a checkpoint's ``arch`` and load its weights (eval mode, on ``device``).

    ``expect_backbone``: raise a ``ValueError`` naming both architectures when the checkpoint's differs.
    """
    if isinstance(path_or_ckpt, dict):
        ckpt, where = path_or_ckpt, "checkpoint"
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a pulkit checkpoint (format {ckpt.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")
    else:
        ckpt, where = load_checkpoint(path_or_ckpt, map_location="cpu"), str(path_or_ckpt)
    arch = ckpt["arch"]
    if expect_backbone is not None and arch.get("backbone") != expect_backbone:
        raise ValueError(f"{where}: checkpoint holds a {arch.get('backbone')!r} network, "
                         f"but a {expect_backbone!r} network was expected")
    net = build_net(ModelConfig(backbone=arch["backbone"], exemplar_sz=arch["exemplar_sz"],
                                instance_sz=arch["instance_sz"], context=arch["context"],
                                head_scale=arch["head_scale"], head_bias=arch["head_bias"]))
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise ValueError(f"{where}: weights do not fit the {arch['backbone']!r} architecture its arch names: "
                         f"{str(e).splitlines()[0]}") from None
    return net.to(resolve_device(device)).eval()
