"""Upsamplers: bring a head's scores back to exactly the input's H x W.

A head's score pixel ``i`` lies on input pixel ``stride * i + offset``.  Both
upsamplers interpolate by ``stride`` and then take the window whose pixel ``y`` is
input pixel ``y`` (``segkit.crop_or_pad``; the border is replicated where the scores
do not reach), so the output has the requested size for any input size, odd ones
included.

``transposed_bilinear`` is the FCN paper's final layer: a ConvTranspose2d with
kernel ``2s``, stride ``s`` and no bias, holding the bilinear filter on the channel
diagonal (``segkit.bilinear_kernel``); frozen by default, as in FCN.  Its input
pixel ``i`` lands on output index ``s * i + (2s - 1) / 2``, so the crop is
``(2s - 1) / 2 - offset``: 19, 27 and 31 for FCN-32s, -16s and -8s on the padded
VGG16, the offsets of the paper's Caffe crop layers.  On the usual grid (offset
``(s - 1) / 2``) that is a crop of ``s / 2``, the same as a padding of ``s / 2``, and
the result equals bilinear interpolation with ``align_corners=False`` away from
the border.

``interpolate`` uses ``F.interpolate``.  With ``align_corners=False`` it scales by
``s`` (score pixel ``i`` lands on output index ``s * i + (s - 1) / 2``); with
``align_corners=True`` it interpolates to ``(h - 1) * s + 1`` pixels so that output
pixel ``y`` samples score ``(y - offset) / s`` exactly, as DeepLab's Caffe Interp
layer does (score pixel ``i`` lands on index ``s * i``).

When the crop is not a whole number of pixels (for example an even kernel over a
grid with integer offsets, such as ResNet's) it is rounded half up, so the output
is then up to half a pixel off; ``crop`` holds the value used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from segkit import (
    ConfigError,
    bilinear_kernel,
    crop_or_pad,
    crop_start,
    kernel_center,
)


class TransposedBilinear(nn.Module):
    """FCN's final upsampling: a bilinear-initialised ConvTranspose2d, then an exact crop."""

    def __init__(self, num_classes: int, stride: int, offset: float, trainable: bool) -> None:
        super().__init__()
        self.stride = stride
        if stride > 1:
            size = 2 * stride
            # A Parameter even when frozen: it is a layer of the model, as in FCN's Caffe nets.
            self.weight = nn.Parameter(bilinear_kernel(num_classes, size), requires_grad=trainable)
            first = kernel_center(size)  # where score pixel 0 lands
        else:
            self.weight = None
            first = 0.0
        self.crop = output_crop(offset, first)

    def forward(self, scores: Tensor, size: Sequence[int]) -> Tensor:
        if self.weight is not None:
            scores = F.conv_transpose2d(scores, self.weight.to(scores.dtype), stride=self.stride)
        return crop_or_pad(scores, self.crop, self.crop, size[0], size[1])


class Interpolate(nn.Module):
    """Bilinear interpolation by ``stride``, then an exact crop (see the module docstring)."""

    def __init__(self, stride: int, offset: float, align_corners: bool) -> None:
        super().__init__()
        self.stride = stride
        self.align_corners = align_corners
        first = 0.0 if align_corners else (stride - 1) / 2  # where score pixel 0 lands
        self.crop = output_crop(offset, first)

    def forward(self, scores: Tensor, size: Sequence[int]) -> Tensor:
        if self.stride > 1:
            h, w = scores.shape[-2:]
            s = self.stride
            grown = ((h - 1) * s + 1, (w - 1) * s + 1) if self.align_corners else (h * s, w * s)
            scores = F.interpolate(
                scores, size=grown, mode="bilinear", align_corners=self.align_corners
            )
        return crop_or_pad(scores, self.crop, self.crop, size[0], size[1])


def output_crop(offset: float, first: float) -> int:
    """Where the input-sized window starts in upsampled scores whose pixel ``first`` is score 0.

    Upsampled pixel ``j`` lies on input pixel ``j - first + offset``: a stride-1 map with
    offset ``offset - first``, cropped onto the input's own grid (offset 0).
    """
    return crop_start(offset - first, 0.0, 1)


def _check_stride(name: str, stride: int) -> None:
    if stride < 1:
        raise ConfigError(f"upsampler '{name}': the head's stride must be >= 1, got {stride}")


def build_transposed_bilinear(
    num_classes: int, stride: int, offset: float, trainable: bool
) -> TransposedBilinear:
    _check_stride("transposed_bilinear", stride)
    return TransposedBilinear(num_classes, stride, offset, trainable)


def build_interpolate(
    num_classes: int, stride: int, offset: float, align_corners: bool
) -> Interpolate:
    _check_stride("interpolate", stride)
    return Interpolate(stride, offset, align_corners)
