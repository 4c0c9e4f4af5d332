"""DeepLab v1 heads (Chen, Papandreou, Kokkinos, Murphy & Yuille, ICLR 2015).

The head sits on the backbone's deepest map (``pool5`` of ``deeplab_vgg16``, stride
8) and is DeepLab's fully connected part as convolutions:

    fc6  kernel k, dilation d, padding d(k-1)/2   -> ReLU -> dropout
    fc7  1x1                                       -> ReLU -> dropout
    fc8  1x1 to the classes, initialised N(0, 0.01)

``deeplab_largefov`` is DeepLab-LargeFOV: fc6 3x3 with dilation 12 and 1024
channels.  ``deeplab_msc`` is DeepLab-MSc: the original fc6, 4x4 with dilation 4
and 4096 channels, plus multi-scale features (MSc); ``deeplab_msc_largefov``
combines the two.  ``deeplab`` exposes every knob.

MSc: a two-layer MLP (128 3x3 filters, then 128 1x1 filters, each followed by ReLU
and dropout) reads the input image and each of pool1..pool4.  The 3x3 convolution's
stride brings each map to the head's stride (8, 4, 2, 1, 1 on ``deeplab_vgg16``);
the results are aligned on fc7's grid from the declared offsets (rounded half up
where not whole, border replicated) and concatenated with fc7, so fc8 reads
5 x 128 = 640 more channels.

Initialisation.  When the backbone offers torchvision's ImageNet classifier
(``spare_weights``, as ``deeplab_vgg16`` with weights does), fc6 and fc7 are
subsampled from it as the paper does (``segkit.decimate``): fc6's 4096 x 512 x 7 x 7
weights keep evenly spaced filters (every 4th for 1024) and evenly spaced kernel
taps (7 -> 3 keeps taps 0, 3, 6; 7 -> 4 keeps 0, 2, 4, 6), and fc7 keeps the same
rows and columns.  Otherwise fc6, fc7 and the MSc layers are He-initialised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from segkit import (
    BackboneInfo,
    ConfigError,
    FeatureInfo,
    IncompatiblePartsError,
    copy_decimated,
    crop_or_pad,
    crop_start,
    grid_after,
)

#: Where MSc reads, with the input image first.
MSC_SOURCES = ("image", "pool1", "pool2", "pool3", "pool4")
#: torchvision's VGG16 classifier fc6/fc7, as a backbone offers them in ``spare_weights``.
FC6_WEIGHT, FC6_BIAS = "classifier.0.weight", "classifier.0.bias"
FC7_WEIGHT, FC7_BIAS = "classifier.3.weight", "classifier.3.bias"
IMAGENET_FILTERS, IMAGENET_KERNEL, IMAGENET_INPUTS = 4096, 7, 512


class DeepLabHead(nn.Module):
    """fc6 -> fc7 (-> concatenated with MSc features) -> fc8, at the deepest map's stride."""

    def __init__(
        self,
        backbone: BackboneInfo,
        num_classes: int,
        *,
        fc6_kernel: int,
        fc6_dilation: int,
        fc_channels: int,
        msc: bool,
        msc_channels: int,
        dropout: float,
        name: str,
    ) -> None:
        super().__init__()
        _check_params(name, fc6_kernel, fc6_dilation, fc_channels, msc_channels, dropout)
        self.deepest = backbone.deepest
        deepest = backbone.features[self.deepest]
        imagenet = FC6_WEIGHT in backbone.spare_weights
        if imagenet:
            _check_imagenet_fit(fc_channels, deepest.channels, fc6_kernel, name)
        padding = fc6_dilation * (fc6_kernel - 1) // 2
        self.fc6 = nn.Conv2d(
            deepest.channels, fc_channels, fc6_kernel, padding=padding, dilation=fc6_dilation
        )
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.relu = nn.ReLU(inplace=True)  # in place, as DeepLab's Caffe relu6 / relu7
        self.dropout = nn.Dropout(dropout)
        self.stride, self.offset = grid_after(self.fc6, deepest.stride, deepest.offset)

        self.msc = nn.ModuleDict()
        self.msc_crops: dict[str, int] = {}
        if msc:
            for source, info in _msc_sources(backbone, name).items():
                if self.stride % info.stride:
                    raise IncompatiblePartsError(
                        f"head '{name}': MSc cannot bring {source} (stride {info.stride}) to "
                        f"stride {self.stride}; use deeplab_vgg16 or set msc = false"
                    )
                self.msc[source] = _msc_branch(
                    info.channels, msc_channels, self.stride // info.stride, dropout
                )
                # The 3x3 convolution with padding 1 is centred: the offset is kept.
                self.msc_crops[source] = crop_start(info.offset, self.offset, self.stride)
        self.fc8 = nn.Conv2d(fc_channels + len(self.msc) * msc_channels, num_classes, 1)

        for layer in [self.fc6, self.fc7, *self.msc.modules()]:
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        nn.init.normal_(self.fc8.weight, std=0.01)
        nn.init.zeros_(self.fc8.bias)
        if imagenet:
            init_from_imagenet(self.fc6, self.fc7, backbone.spare_weights)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        x = self.dropout(self.relu(self.fc6(features[self.deepest])))
        x = self.dropout(self.relu(self.fc7(x)))
        if self.msc:
            h, w = x.shape[-2:]
            maps = [x]
            for source, branch in self.msc.items():
                crop = self.msc_crops[source]
                maps.append(crop_or_pad(branch(features[source]), crop, crop, h, w))
            x = torch.cat(maps, dim=1)
        return self.fc8(x)


def _msc_sources(backbone: BackboneInfo, name: str) -> dict[str, FeatureInfo]:
    missing = [s for s in MSC_SOURCES[1:] if s not in backbone.features]
    if missing:
        raise IncompatiblePartsError(
            f"head '{name}' (MSc) reads pool1..pool4, but backbone '{backbone.name}' gives "
            f"{backbone.describe()}; use deeplab_vgg16 or a head without MSc"
        )
    image = FeatureInfo(channels=3, stride=1, offset=0.0)
    return {"image": image, **{s: backbone.features[s] for s in MSC_SOURCES[1:]}}


def _msc_branch(channels: int, width: int, stride: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, stride=stride, padding=1),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Conv2d(width, width, 1),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )


def _check_imagenet_fit(filters: int, inputs: int, kernel: int, name: str) -> None:
    if filters > IMAGENET_FILTERS or kernel > IMAGENET_KERNEL or inputs != IMAGENET_INPUTS:
        raise ConfigError(
            f"head '{name}': the backbone's ImageNet fc6/fc7 (4096 filters, 512 x 7 x 7) cannot "
            f"fill fc6 of {filters} x {inputs} x {kernel} x {kernel}; use fc_channels <= 4096 "
            f"and fc6_kernel <= 7, or a backbone without weights"
        )


def init_from_imagenet(fc6: nn.Conv2d, fc7: nn.Conv2d, spare: Mapping[str, Tensor]) -> None:
    """Subsample torchvision's VGG16 classifier fc6/fc7 into ``fc6``/``fc7`` (DeepLab's way)."""
    weight6 = spare[FC6_WEIGHT].reshape(
        IMAGENET_FILTERS, IMAGENET_INPUTS, IMAGENET_KERNEL, IMAGENET_KERNEL
    )
    weight7 = spare[FC7_WEIGHT].reshape(IMAGENET_FILTERS, IMAGENET_FILTERS, 1, 1)
    copy_decimated(fc6, weight6, spare[FC6_BIAS])
    copy_decimated(fc7, weight7, spare[FC7_BIAS])


def _check_params(
    name: str, kernel: int, dilation: int, channels: int, msc_channels: int, dropout: float
) -> None:
    if min(kernel, dilation, channels, msc_channels) < 1 or not 0.0 <= dropout < 1.0:
        raise ConfigError(
            f"head '{name}': fc6_kernel, fc6_dilation, fc_channels and msc_channels must be "
            f">= 1 and dropout in [0, 1); fix them in the config"
        )


def _preset(name: str, fc6_kernel: int, fc6_dilation: int, msc: bool) -> Callable[..., DeepLabHead]:
    def build(
        backbone: BackboneInfo,
        num_classes: int,
        fc_channels: int,
        dropout: float,
        msc_channels: int = 128,
    ) -> DeepLabHead:
        return DeepLabHead(
            backbone,
            num_classes,
            fc6_kernel=fc6_kernel,
            fc6_dilation=fc6_dilation,
            fc_channels=fc_channels,
            msc=msc,
            msc_channels=msc_channels,
            dropout=dropout,
            name=name,
        )

    build.__name__ = build.__qualname__ = f"build_{name}"
    return build


build_deeplab_largefov = _preset("deeplab_largefov", 3, 12, msc=False)
build_deeplab_msc_largefov = _preset("deeplab_msc_largefov", 3, 12, msc=True)
build_deeplab_msc = _preset("deeplab_msc", 4, 4, msc=True)


def build_deeplab(backbone: BackboneInfo, num_classes: int, **params: object) -> DeepLabHead:
    return DeepLabHead(backbone, num_classes, name="deeplab", **params)
