"""Where feature maps lie on the input image, and the helpers that align them.

Every feature map declares a stride ``s`` and an offset ``o``: its pixel ``i`` is
centred on input pixel ``s * i + o``.  A torchvision ResNet has offset 0; the FCN
paper's VGG16, whose first convolution pads by 100, has fractional negative offsets.
Knowing the offsets lets a head crop a skip connection exactly as the FCN paper's
Caffe crop layers do, for any input size, and lets an upsampler place its output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segkit.core.errors import IncompatiblePartsError


@dataclass(frozen=True)
class FeatureInfo:
    """Channels, stride and offset of one feature map (see the module docstring)."""

    channels: int
    stride: int
    offset: float = 0.0


@dataclass(frozen=True)
class BackboneInfo:
    """What a head may know about the backbone it sits on."""

    name: str
    features: Mapping[str, FeatureInfo]
    spare_weights: Mapping[str, Tensor] = field(default_factory=dict)

    @property
    def deepest(self) -> str:
        """The name of the last (deepest) feature map."""
        return list(self.features)[-1]

    def at_stride(self, stride: int, wanted_by: str) -> str:
        """The deepest feature map at ``stride``, or an error that names what exists."""
        names = [name for name, info in self.features.items() if info.stride == stride]
        if not names:
            raise IncompatiblePartsError(
                f"{wanted_by} needs a feature map at stride {stride}, but backbone "
                f"'{self.name}' gives {self.describe()}; choose a backbone (or output_stride) "
                f"that provides it"
            )
        return names[-1]

    def describe(self) -> str:
        return ", ".join(f"{n} (stride {i.stride})" for n, i in self.features.items())


def grid_after(layer: nn.Module, stride: int, offset: float) -> tuple[int, float]:
    """Stride and offset of ``layer``'s output, given those of its input.

    A convolution or max pool with kernel k, stride s, padding p and dilation d
    centres its output pixel 0 on input position ``d * (k - 1) / 2 - p``, so a map of
    stride S and offset O becomes one of stride ``S * s`` and offset
    ``O + S * (d * (k - 1) / 2 - p)``.  Other layers keep the grid.
    """
    if not isinstance(layer, nn.Conv2d | nn.MaxPool2d):
        return stride, offset
    k, s, p, d = (
        _first(value) for value in (layer.kernel_size, layer.stride, layer.padding, layer.dilation)
    )
    return stride * s, offset + stride * (d * (k - 1) / 2 - p)


def _first(value: int | tuple[int, ...]) -> int:
    return value[0] if isinstance(value, tuple) else value


def round_half_up(value: float) -> int:
    """``value`` rounded to the nearest integer, halves upwards (-1.5 -> -1, 7.5 -> 8)."""
    return math.floor(value + 0.5)


def crop_start(source_offset: float, target_offset: float, stride: float) -> int:
    """The pixel of a source map that lies on pixel 0 of a target map on the same grid.

    Both maps have ``stride``; the result is ``(target_offset - source_offset) / stride``,
    rounded half up where the two grids are not a whole number of pixels apart (the
    source then lies up to half a pixel off).  Pass it to :func:`crop_or_pad` as ``top``
    and ``left``: a negative start pads.
    """
    return round_half_up((target_offset - source_offset) / stride)


def crop_or_pad(x: Tensor, top: int, left: int, height: int, width: int) -> Tensor:
    """Take the window ``[top:top+height, left:left+width]`` of ``x`` (N×C×h×w).

    Parts of the window outside ``x`` are filled by replicating its border, so the
    result is always exactly ``height × width``.
    """
    h, w = x.shape[-2:]
    if (top, left, height, width) == (0, 0, h, w):
        return x
    pad_top, pad_left = max(0, -top), max(0, -left)
    pad_bottom, pad_right = max(0, top + height - h), max(0, left + width - w)
    if pad_top or pad_left or pad_bottom or pad_right:
        x = F.pad(x, (pad_left, pad_right, pad_top, pad_bottom), mode="replicate")
        top, left = top + pad_top, left + pad_left
    return x[..., top : top + height, left : left + width]


def bilinear_kernel(channels: int, size: int) -> Tensor:
    """The FCN paper's bilinear upsampling filter, on the channel diagonal.

    A ConvTranspose2d with this ``channels × channels × size × size`` weight, kernel
    ``size = 2s`` and stride ``s``, performs bilinear interpolation by a factor ``s``.
    """
    factor = (size + 1) // 2
    ramp = 1 - (torch.arange(size, dtype=torch.float64) - kernel_center(size)).abs() / factor
    kernel = (ramp[:, None] * ramp[None, :]).float()
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = kernel
    return weight


def kernel_center(size: int) -> float:
    """Where, in a transposed convolution's output, its input pixel 0 lands."""
    factor = (size + 1) // 2
    return factor - 1 if size % 2 == 1 else factor - 0.5
