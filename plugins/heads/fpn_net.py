"""The FPN head (Kirillov, Girshick, He & Dollár, CVPR 2019: Panoptic FPN's semantic
branch) for small objects and from-scratch training on one's own data.

The DeepLab and FCN heads score the deepest maps and leave the detail to the
upsampling; on small objects (a few pixels of the stride-8 grid) that detail is the
object.  This head builds a feature pyramid over every map the backbone gives (for a
ResNet: layer1..layer4, strides 4 to 32): a 1x1 lateral convolution brings each to
``channels``, and from the deepest down each level adds its coarser neighbour
upsampled (the top-down path).  Each level then goes through 3x3 conv - batch norm -
ReLU blocks, one per factor of 2, each followed by a 2x bilinear upsampling, until
it reaches the finest map's stride; the levels are summed, and a 1x1 convolution
scores the classes at that stride (4 on a ResNet).

The finest map's grid is the head's (``stride``, ``offset``); coarser levels are
resized onto it by size, as the paper does, so they may lie a fraction of their
own stride off.  Batch norm rather than the paper's group norm: it is several times
faster on a CPU and the batches here are of several images.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch.nn.functional as F
from torch import Tensor, nn

from segkit import BackboneInfo, ConfigError, IncompatiblePartsError


class FPNHead(nn.Module):
    """Top-down feature pyramid over the backbone's maps, merged at the finest stride."""

    def __init__(
        self,
        backbone: BackboneInfo,
        num_classes: int,
        *,
        pyramid_channels: int,
        channels: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if min(pyramid_channels, channels) < 1 or not 0.0 <= dropout < 1.0:
            raise ConfigError(
                "head 'fpn': pyramid_channels and channels must be >= 1 and dropout in "
                "[0, 1); fix them in the config"
            )
        levels = sorted(backbone.features.items(), key=lambda item: item[1].stride)
        strides = [info.stride for _, info in levels]
        if len(set(strides)) != len(strides) or any(
            coarse % fine for fine, coarse in pairwise(strides)
        ):
            raise IncompatiblePartsError(
                f"head 'fpn' needs feature maps at distinct strides, each a multiple of the "
                f"previous, but backbone '{backbone.name}' gives {backbone.describe()}; "
                f"choose another head"
            )
        self.names = [name for name, _ in levels]
        finest = levels[0][1]
        self.stride, self.offset = finest.stride, finest.offset
        self.lateral = nn.ModuleList(
            nn.Conv2d(info.channels, pyramid_channels, 1) for _, info in levels
        )
        self.merge = nn.ModuleList(
            _upsampling_blocks(pyramid_channels, channels, info.stride // finest.stride)
            for _, info in levels
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        nn.init.normal_(self.classifier.weight, std=0.01)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        laterals = [
            conv(features[name]) for conv, name in zip(self.lateral, self.names, strict=True)
        ]
        # top-down: from the deepest level, each adds its coarser neighbour
        for index in range(len(laterals) - 2, -1, -1):
            coarser = laterals[index + 1]
            laterals[index] = laterals[index] + F.interpolate(
                coarser, size=laterals[index].shape[-2:], mode="nearest"
            )
        size = laterals[0].shape[-2:]
        merged = None
        for blocks, level in zip(self.merge, laterals, strict=True):
            x = blocks(level)
            if x.shape[-2:] != size:  # odd sizes: the 2x steps land a pixel off
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            merged = x if merged is None else merged + x
        return self.classifier(self.dropout(merged))


def _upsampling_blocks(inputs: int, channels: int, factor: int) -> nn.Sequential:
    """3x3 conv - BN - ReLU, then 2x upsampling, once per factor of 2 (one block at 1x)."""
    steps = max(int(math.log2(factor)), 1) if factor > 1 else 1
    layers: list[nn.Module] = []
    for step in range(steps):
        layers += [
            nn.Conv2d(inputs if step == 0 else channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        ]
        if factor > 1:
            layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return nn.Sequential(*layers)


def build_fpn(
    backbone: BackboneInfo,
    num_classes: int,
    pyramid_channels: int,
    channels: int,
    dropout: float,
) -> FPNHead:
    return FPNHead(
        backbone,
        num_classes,
        pyramid_channels=pyramid_channels,
        channels=channels,
        dropout=dropout,
    )
