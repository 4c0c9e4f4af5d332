"""FCN heads (Long, Shelhamer & Darrell, CVPR 2015): FCN-32s, FCN-16s and FCN-8s.

``score_fr``, a 1x1 convolution, turns the backbone's deepest map into class
scores.  FCN-32s stops there.  FCN-16s upsamples those scores by 2 (``upscore[0]``,
the paper's ``upscore2``), adds 1x1 scores of the map at half the stride
(``score_skip[0]``, the paper's ``score_pool4``), and FCN-8s repeats the step once
more with the map at a quarter of the stride (``upscore[1]`` = ``upscore_pool4``,
``score_skip[1]`` = ``score_pool3``).  The skip maps are found by stride
(``BackboneInfo.at_stride``), so the heads sit on any backbone that has them;
FCN-8s on an output-stride-8 ResNet, which has no stride-2 map, is refused.

As in the paper, the score layers start at zero and the 2x upsamplings are
ConvTranspose2d(C, C, 4, stride 2, no bias) initialised to bilinear interpolation
and learned (``learnable_upsampling``).

Alignment.  The 2x upsampling puts its input pixel ``i`` on output index
``2 i + 1.5``, so scores of stride ``S`` and offset ``O`` become scores of stride
``S / 2`` and offset ``O - 1.5 S / 2``.  The skip's scores are then cropped to start
at the pixel lying on that offset: ``(offset - skip offset) / (S / 2)``.  On the
FCN paper's VGG16 (conv1_1 padded by 100) this gives 5 for pool4 and 9 for pool3,
the offsets of the paper's Caffe crop layers, for any input size.  Where the
difference is not a whole number of pixels (ResNet's strided convolutions are
centred on even pixels, which FCN's even 4x4 kernel does not match) the crop is
rounded half up, so that skip lies half a pixel off (``segkit.crop_start``); where
the window leaves the skip map its border is replicated (``segkit.crop_or_pad``).
The head's ``stride`` and ``offset`` describe its last, finest scores.
"""

from __future__ import annotations

from torch import Tensor, nn

from segkit import (
    BackboneInfo,
    IncompatiblePartsError,
    bilinear_kernel,
    crop_or_pad,
    crop_start,
    kernel_center,
)

#: Kernel of the 2x upsamplings inside the head (the paper's upscore2 / upscore_pool4).
UPSCORE_KERNEL = 4


class FCNHead(nn.Module):
    """Scores on the deepest map, refined by ``len(skip_names)`` upsample-and-add steps."""

    def __init__(
        self,
        backbone: BackboneInfo,
        num_classes: int,
        skips: int,
        learnable_upsampling: bool,
        name: str,
    ) -> None:
        super().__init__()
        self.deepest = backbone.deepest
        deepest = backbone.features[self.deepest]
        self.score_fr = _score_layer(deepest.channels, num_classes)
        self.upscore = nn.ModuleList()
        self.score_skip = nn.ModuleList()
        self.skip_names: list[str] = []
        self.skip_crops: list[int] = []
        stride, offset = deepest.stride, deepest.offset
        for _ in range(skips):
            if stride % 2:
                raise IncompatiblePartsError(
                    f"head '{name}' upsamples by 2, but backbone '{backbone.name}' ends at "
                    f"odd stride {stride}; choose another backbone or fcn32s"
                )
            skip_name = backbone.at_stride(stride // 2, wanted_by=f"head '{name}'")
            skip = backbone.features[skip_name]
            offset -= stride * kernel_center(UPSCORE_KERNEL) / 2
            stride //= 2
            self.upscore.append(_upscore(num_classes, learnable_upsampling))
            self.score_skip.append(_score_layer(skip.channels, num_classes))
            self.skip_names.append(skip_name)
            self.skip_crops.append(crop_start(skip.offset, offset, stride))
        self.stride = stride
        self.offset = offset

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        scores = self.score_fr(features[self.deepest])
        for upscore, score_skip, skip_name, crop in zip(
            self.upscore, self.score_skip, self.skip_names, self.skip_crops, strict=True
        ):
            scores = upscore(scores)
            skip = score_skip(features[skip_name])
            scores = scores + crop_or_pad(skip, crop, crop, *scores.shape[-2:])
        return scores


def _score_layer(channels: int, num_classes: int) -> nn.Conv2d:
    # FCN zero-initialises its class scoring layers.
    layer = nn.Conv2d(channels, num_classes, 1)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _upscore(num_classes: int, learnable: bool) -> nn.ConvTranspose2d:
    layer = nn.ConvTranspose2d(num_classes, num_classes, UPSCORE_KERNEL, stride=2, bias=False)
    layer.weight.data.copy_(bilinear_kernel(num_classes, UPSCORE_KERNEL))
    layer.weight.requires_grad_(learnable)
    return layer


def build_fcn32s(backbone: BackboneInfo, num_classes: int) -> FCNHead:
    return FCNHead(backbone, num_classes, 0, False, "fcn32s")


def build_fcn16s(backbone: BackboneInfo, num_classes: int, learnable_upsampling: bool) -> FCNHead:
    return FCNHead(backbone, num_classes, 1, learnable_upsampling, "fcn16s")


def build_fcn8s(backbone: BackboneInfo, num_classes: int, learnable_upsampling: bool) -> FCNHead:
    return FCNHead(backbone, num_classes, 2, learnable_upsampling, "fcn8s")
