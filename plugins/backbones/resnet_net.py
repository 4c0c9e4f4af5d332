"""ResNet backbones (torchvision's ResNet-18/34/50/101, ResNeXt-50 32x4d and Wide
ResNet-50-2) for FCN and DeepLab heads.

The architectures are torchvision's, built without weights; the state dict is
loaded here so that ``"imagenet"`` reads torchvision's file (``ResNet*_Weights.
IMAGENET1K_V1``) from the torch hub cache and never reaches for the network, and a
path reads any state dict in torchvision's format (``segkit.read_torchvision_weights``).
The classifier (``fc``) is dropped; the module keeps torchvision's key names, so its
state dict is torchvision's minus ``fc.*``.

It gives ``layer1`` (stride 4), ``layer2`` (8), ``layer3`` (16) and ``layer4`` (32).  With
``output_stride`` 16 or 8 the last one or two stages trade their stride for
dilation, as torchvision's ``replace_stride_with_dilation`` does: the first block
of a dilated stage keeps the previous dilation, the later blocks double it.  The
conversion is done on the built modules because torchvision's BasicBlock (ResNet-
18/34) refuses dilation; a 3x3 convolution with padding equal to its dilation
stays centred, so the strides change and every offset stays 0 (derived from the
layer arithmetic by ``segkit.grid_after`` rather than assumed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor, nn
from torchvision import models
from torchvision.models import (
    ResNet18_Weights,
    ResNet34_Weights,
    ResNet50_Weights,
    ResNet101_Weights,
    ResNeXt50_32X4D_Weights,
    WeightsEnum,
    Wide_ResNet50_2_Weights,
)

from segkit import (
    FeatureInfo,
    check_torchvision_keys,
    grid_after,
    read_torchvision_weights,
    resolve_weights,
)

ARCHITECTURES: dict[str, tuple[Callable[..., models.ResNet], WeightsEnum]] = {
    "resnet18": (models.resnet18, ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (models.resnet34, ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (models.resnet50, ResNet50_Weights.IMAGENET1K_V1),
    "resnet101": (models.resnet101, ResNet101_Weights.IMAGENET1K_V1),
    # Same stages with grouped (ResNeXt) or twice as wide (Wide ResNet) 3x3 convolutions;
    # the 101-layer ones are in timm (backbone "timm", model "resnext101_32x8d.tv_in1k").
    "resnext50_32x4d": (models.resnext50_32x4d, ResNeXt50_32X4D_Weights.IMAGENET1K_V1),
    "wide_resnet50_2": (models.wide_resnet50_2, Wide_ResNet50_2_Weights.IMAGENET1K_V1),
}
STAGES = ("layer1", "layer2", "layer3", "layer4")
EXPOSED = ("layer1", "layer2", "layer3", "layer4")


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its classifier, returning layer1 to layer4."""

    def __init__(self, net: models.ResNet) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (getattr(net, s) for s in STAGES)
        self.feature_info = _feature_info(self)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        maps = {}
        for stage in STAGES:
            x = getattr(self, stage)(x)
            if stage in EXPOSED:
                maps[stage] = x
        return maps


def build_resnet(name: str, weights: str | None, output_stride: int) -> ResNetBackbone:
    constructor, imagenet = ARCHITECTURES[name]
    weights = resolve_weights(weights)
    # Read first, so that a missing file fails before anything is built.
    state = None if weights is None else read_torchvision_weights(weights, imagenet.url, name, name)
    backbone = ResNetBackbone(constructor(weights=None))
    dilate_stages(backbone, output_stride)
    if state is not None:
        load_checked(backbone, state, f"{name}: {weights}", name)
    return backbone


def dilate_stages(backbone: ResNetBackbone, output_stride: int) -> None:
    """Replace the stride of layer4 (16) or layer3 and layer4 (8) by dilation."""
    dilated = {32: (), 16: ("layer4",), 8: ("layer3", "layer4")}[output_stride]
    dilation = 1
    for stage in dilated:
        previous, dilation = dilation, dilation * 2
        for index, block in enumerate(getattr(backbone, stage)):
            rate = previous if index == 0 else dilation
            for conv in _main_path_convs(block):
                if conv.kernel_size == (3, 3):
                    conv.stride, conv.dilation, conv.padding = (1, 1), (rate, rate), (rate, rate)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
    backbone.feature_info = _feature_info(backbone)


def _main_path_convs(block: nn.Module) -> list[nn.Conv2d]:
    # Block children in order: conv1, bn1, conv2, ...; the shortcut is a Sequential.
    return [m for m in block.children() if isinstance(m, nn.Conv2d)]


def _feature_info(backbone: ResNetBackbone) -> dict[str, FeatureInfo]:
    stride, offset = grid_after(backbone.maxpool, *grid_after(backbone.conv1, 1, 0.0))
    info = {}
    for stage in STAGES:
        for block in getattr(backbone, stage):
            convs = _main_path_convs(block)
            for conv in convs:
                stride, offset = grid_after(conv, stride, offset)
        if stage in EXPOSED:
            info[stage] = FeatureInfo(convs[-1].out_channels, stride, offset)
    return info


# -- pretrained weights ------------------------------------------------------------


def load_checked(module: nn.Module, state: Mapping[str, Tensor], where: str, name: str) -> None:
    """Load ``state`` (torchvision's keys; ``fc.*`` ignored) or say in one line why not."""
    expected = module.state_dict()
    shapes = {k: v.shape for k, v in expected.items()}
    check_torchvision_keys(state, shapes, where, name, unused_prefix="fc.")
    module.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def _builder(name: str) -> Callable[..., ResNetBackbone]:
    def build(weights: str | None, output_stride: int) -> ResNetBackbone:
        return build_resnet(name, weights, output_stride)

    build.__name__ = build.__qualname__ = f"build_{name}"
    return build


# One factory per architecture, each named by the registration's import path.
build_resnet18 = _builder("resnet18")
build_resnet34 = _builder("resnet34")
build_resnet50 = _builder("resnet50")
build_resnet101 = _builder("resnet101")
build_resnext50_32x4d = _builder("resnext50_32x4d")
build_wide_resnet50_2 = _builder("wide_resnet50_2")
