"""VGG16 backbones as the FCN and DeepLab v1 papers use them.

``vgg16`` follows FCN (Long, Shelhamer & Darrell, CVPR 2015): conv1_1 pads by 100
so that the unpadded 7x7 fc6 still sees small images and the score map covers the
whole input; the 2x2 max pools round up, as Caffe's do; fc6 (7x7, 512 -> 4096) and
fc7 (1x1, 4096 -> 4096) are convolutions, each followed by ReLU and dropout, so the
net runs on images of any size.  It gives ``pool3`` (stride 8), ``pool4`` (stride
16) and ``fc7`` (stride 32): the maps FCN-8s, -16s and -32s read.

``deeplab_vgg16`` follows DeepLab v1 (Chen et al., ICLR 2015): 3x3 max pools with
stride 2 for pool1-3 and stride 1 for pool4-5, and conv5 dilated by 2 (the "hole"
algorithm), so ``pool5`` keeps stride 8.  Its fully connected layers belong to the
DeepLab head: with ImageNet weights, torchvision's classifier fc6/fc7 travel to the
head as ``spare_weights`` (torchvision's key names) and the head subsamples them.

Offsets are derived from the layer arithmetic (``segkit.grid_after``), not written
down: a layer with kernel k, stride s, padding p and dilation d centres its output
pixel 0 on input position ``d * (k - 1) / 2 - p``, so a map of stride S and offset O
becomes one of stride ``S * s`` and offset ``O + S * (d * (k - 1) / 2 - p)``.  With
the FCN padding of 100 this gives pool3 -95.5, pool4 -91.5 and fc7 +12.5.

Weights: ``"imagenet"`` reads torchvision's ImageNet file (VGG16_Weights.IMAGENET1K_V1,
or VGG16_BN_Weights with ``batch_norm``) from the torch hub cache, never from the
network; a path reads a state dict in torchvision's format (both through
``segkit.read_torchvision_weights``).  The classifier's Linear fc6 (4096 x 25088)
and fc7 are convolutionalized exactly as FCN does: reshaped to 4096 x 512 x 7 x 7
and 4096 x 4096 x 1 x 1.  If fc6/fc7 are made smaller (``fc6_kernel``, ``fc_channels``)
they are subsampled as DeepLab does (``segkit.decimate``): evenly spaced filters and
kernel taps (a 1x1 fc6 keeps the centre tap).  ``width`` scales every channel count
for small CPU models, which take no pretrained weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn
from torchvision.models import VGG16_BN_Weights, VGG16_Weights

from segkit import (
    ConfigError,
    FeatureInfo,
    check_torchvision_keys,
    copy_decimated,
    grid_after,
    read_torchvision_weights,
    resolve_weights,
)

#: VGG16's conv blocks ("configuration D"); a pool closes each block.
BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
#: Shapes of torchvision's classifier fc6 and fc7 (Linear layers on a 512 x 7 x 7 pool5).
CLASSIFIER_SHAPES = {
    "classifier.0.weight": (4096, 512 * 7 * 7),
    "classifier.0.bias": (4096,),
    "classifier.3.weight": (4096, 4096),
    "classifier.3.bias": (4096,),
}


class VGGBackbone(nn.Module):
    """VGG16 conv layers in torchvision's layout, plus optionally fc6/fc7 as convolutions.

    ``features`` has torchvision's module indices, so its state dict loads directly;
    ``classifier[0]`` is fc6 and ``classifier[3]`` is fc7, as in torchvision.
    """

    def __init__(
        self,
        features: nn.Sequential,
        pool_indices: Mapping[int, str],
        exposed: Sequence[str],
        classifier: nn.Sequential | None = None,
    ) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier
        self.taps = {index: name for index, name in pool_indices.items() if name in exposed}
        self.feature_info = _feature_info(features, self.taps, classifier)
        self.spare_weights: dict[str, Tensor] = {}

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        maps = {}
        x = images
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                maps[self.taps[index]] = x
        if self.classifier is not None:
            maps["fc7"] = self.classifier(x)
        return maps


def build_vgg16(
    weights: str | None,
    first_padding: int,
    fc6_kernel: int,
    fc_channels: int,
    batch_norm: bool,
    width: float,
    dropout: float,
) -> VGGBackbone:
    weights = resolve_weights(weights)
    _check_common("vgg16", weights, width)
    if first_padding < 0 or fc6_kernel < 1 or fc_channels < 1:
        raise ConfigError(
            "backbone 'vgg16': first_padding must be >= 0, fc6_kernel and fc_channels >= 1; "
            "fix them in the config"
        )
    _check_dropout("vgg16", dropout)
    state = read_weights(weights, "vgg16", batch_norm)
    pools = [nn.MaxPool2d(2, stride=2, ceil_mode=True) for _ in BLOCKS]
    features, pool_indices = make_features(pools, first_padding, 1, batch_norm, width)
    pool5_channels = _scaled(512, width)
    fc = _scaled(fc_channels, width)
    classifier = nn.Sequential(
        nn.Conv2d(pool5_channels, fc, fc6_kernel),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Conv2d(fc, fc, 1),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )
    backbone = VGGBackbone(features, pool_indices, ("pool3", "pool4"), classifier)
    _init_fresh(backbone)
    if state is not None:
        load_features(backbone, state, "vgg16", weights, batch_norm)
        _load_classifier(classifier, state, fc6_kernel, fc, weights)
    return backbone


def build_deeplab_vgg16(weights: str | None, batch_norm: bool, width: float) -> VGGBackbone:
    weights = resolve_weights(weights)
    _check_common("deeplab_vgg16", weights, width)
    state = read_weights(weights, "deeplab_vgg16", batch_norm)
    pools = [nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True) for _ in range(3)]
    pools += [nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True) for _ in range(2)]
    features, pool_indices = make_features(pools, 1, 2, batch_norm, width)
    exposed = ("pool1", "pool2", "pool3", "pool4", "pool5")
    backbone = VGGBackbone(features, pool_indices, exposed)
    _init_fresh(backbone)
    if state is not None:
        load_features(backbone, state, "deeplab_vgg16", weights, batch_norm)
        backbone.spare_weights = {key: state[key] for key in CLASSIFIER_SHAPES}
    return backbone


def make_features(
    pools: Sequence[nn.Module],
    first_padding: int,
    conv5_dilation: int,
    batch_norm: bool,
    width: float,
) -> tuple[nn.Sequential, dict[int, str]]:
    """VGG16's conv layers (torchvision's indices) and the index of each pool."""
    layers: list[nn.Module] = []
    pool_indices = {}
    in_channels = 3
    for block_index, (block, pool) in enumerate(zip(BLOCKS, pools, strict=True)):
        dilation = conv5_dilation if block_index == 4 else 1
        for conv_index, channels in enumerate(block):
            out_channels = _scaled(channels, width)
            padding = first_padding if block_index == conv_index == 0 else dilation
            layers.append(
                nn.Conv2d(in_channels, out_channels, 3, padding=padding, dilation=dilation)
            )
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            in_channels = out_channels
        layers.append(pool)
        pool_indices[len(layers) - 1] = f"pool{block_index + 1}"
    return nn.Sequential(*layers), pool_indices


def _feature_info(
    features: nn.Sequential, taps: Mapping[int, str], classifier: nn.Sequential | None
) -> dict[str, FeatureInfo]:
    info = {}
    stride, offset, channels = 1, 0.0, 3
    for index, layer in enumerate(features):
        stride, offset = grid_after(layer, stride, offset)
        channels = getattr(layer, "out_channels", channels)
        if index in taps:
            info[taps[index]] = FeatureInfo(channels, stride, offset)
    if classifier is not None:
        for layer in classifier:
            stride, offset = grid_after(layer, stride, offset)
            channels = getattr(layer, "out_channels", channels)
        info["fc7"] = FeatureInfo(channels, stride, offset)
    return info


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _init_fresh(module: nn.Module) -> None:
    # torchvision's VGG initialisation, which also suits fc6/fc7 as convolutions.
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def _check_common(name: str, weights: str | None, width: float) -> None:
    if width <= 0:
        raise ConfigError(f"backbone '{name}': width must be > 0, got {width}")
    if weights is not None and width != 1.0:
        raise ConfigError(
            f"backbone '{name}': pretrained weights need width = 1.0 (got {width}); "
            f"drop the weights or the width"
        )


def _check_dropout(name: str, dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"backbone '{name}': dropout must be in [0, 1), got {dropout}")


# -- pretrained weights ------------------------------------------------------------


def read_weights(weights: str | None, what: str, batch_norm: bool) -> dict[str, Tensor] | None:
    """A torchvision VGG16 state dict: ``"imagenet"`` from the torch hub cache, or a path.

    Read before the model is built, so that a missing file fails at once.
    """
    if weights is None:
        return None
    enum = VGG16_BN_Weights.IMAGENET1K_V1 if batch_norm else VGG16_Weights.IMAGENET1K_V1
    return read_torchvision_weights(weights, enum.url, what, _layout(batch_norm))


def _layout(batch_norm: bool) -> str:
    return "vgg16_bn" if batch_norm else "vgg16"


def load_features(
    backbone: VGGBackbone, state: Mapping[str, Tensor], what: str, weights: str, batch_norm: bool
) -> None:
    """Check a torchvision VGG16 state dict against the backbone and load its conv layers."""
    # With width 1 the conv layers have torchvision's shapes (dilation and pools hold no weights).
    own = backbone.features.state_dict()
    expected = {f"features.{k}": v.shape for k, v in own.items()}
    expected.update(CLASSIFIER_SHAPES)
    # fc8 (classifier.6) is not used.
    check_torchvision_keys(
        state, expected, f"{what}: {weights}", _layout(batch_norm), unused_prefix="classifier.6."
    )
    prefix = "features."
    features = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    backbone.features.load_state_dict(features, strict=False)


def _load_classifier(
    classifier: nn.Sequential,
    state: Mapping[str, Tensor],
    fc6_kernel: int,
    fc_channels: int,
    source: str,
) -> None:
    """fc6/fc7 from torchvision's Linear layers: reshaped (FCN), or subsampled (DeepLab)."""
    if fc6_kernel > 7 or fc_channels > 4096:
        raise ConfigError(
            f"vgg16: the ImageNet fc6/fc7 ({source}) cannot fill fc6_kernel {fc6_kernel} / "
            f"fc_channels {fc_channels}; use fc6_kernel <= 7 and fc_channels <= 4096"
        )
    # Convolutionalized as in FCN, then decimated to the layers' shapes as in DeepLab.
    fc6 = state["classifier.0.weight"].reshape(4096, 512, 7, 7)
    fc7 = state["classifier.3.weight"].reshape(4096, 4096, 1, 1)
    copy_decimated(classifier[0], fc6, state["classifier.0.bias"])
    copy_decimated(classifier[3], fc7, state["classifier.3.bias"])
