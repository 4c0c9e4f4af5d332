"""Training augmentations: steps on torchvision.transforms.v2, listed in ``[[data.augment]]``.

v2 transforms an image and its ``tv_tensors.Mask`` together: geometric steps move
the mask with nearest-neighbour sampling and fill it with the ignore label where
pixels are padded or rotated in; photometric steps (colour, blur) leave it alone.
Every step draws from torch's generator, which segkit seeds per sample and epoch,
so a run is reproducible whatever the number of data-loading workers.

Only the scale step is written here: v2's own resizing steps set an absolute size,
while segmentation recipes rescale each image by a random factor of its own size.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from segkit import ConfigError, Param, hookimpl
from segkit.data import AugmentData


class RandomScale:
    """Rescale image and mask by a factor drawn uniformly from ``[low, high]``.

    The image is resized bilinearly (antialiased when shrinking), the mask by
    nearest neighbour, so labels stay labels.
    """

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def __call__(self, image: Any, mask: Any) -> tuple[Any, Any]:
        factor = self.low + (self.high - self.low) * float(torch.rand(()))
        height, width = mask.shape[-2:]
        size = [max(1, round(height * factor)), max(1, round(width * factor))]
        if size == [height, width]:
            return image, mask
        # Antialiasing only matters when shrinking, and its kernel is slower.
        return F.resize(image, size, antialias=factor < 1), F.resize(mask, size)

    def __repr__(self) -> str:
        return f"RandomScale({self.low}, {self.high})"


def random_scale(data: AugmentData, range: list[float] = [0.5, 1.5]) -> RandomScale:  # noqa: B006
    if len(range) != 2 or not 0 < range[0] <= range[1]:
        raise ConfigError(
            f"augmentation 'random_scale': range must be [low, high] with 0 < low <= high, "
            f"got {range}"
        )
    return RandomScale(float(range[0]), float(range[1]))


def random_crop(data: AugmentData, size: int | None = None) -> v2.RandomCrop:
    size = data.crop_size if size is None else size
    if size < 1:
        raise ConfigError(f"augmentation 'random_crop': size must be positive, got {size}")
    # Smaller images are padded: the image with the mean colour (zero once
    # normalised), the mask with the ignore label, so padding never counts.
    return v2.RandomCrop(
        size,
        pad_if_needed=True,
        fill={tv_tensors.Image: list(data.fill), tv_tensors.Mask: data.ignore_index},
    )


def _probability(name: str, p: float) -> float:
    if not 0 <= p <= 1:
        raise ConfigError(f"augmentation '{name}': p must be in [0, 1], got {p}")
    return p


def hflip(data: AugmentData, p: float = 0.5) -> v2.RandomHorizontalFlip:
    return v2.RandomHorizontalFlip(_probability("hflip", p))


def vflip(data: AugmentData, p: float = 0.5) -> v2.RandomVerticalFlip:
    return v2.RandomVerticalFlip(_probability("vflip", p))


def color_jitter(
    data: AugmentData,
    brightness: float = 0.25,
    contrast: float = 0.25,
    saturation: float = 0.25,
    hue: float = 0.0,
) -> v2.ColorJitter:
    for key, value in (
        ("brightness", brightness),
        ("contrast", contrast),
        ("saturation", saturation),
    ):
        if value < 0:
            raise ConfigError(f"augmentation 'color_jitter': {key} must be >= 0, got {value}")
    if not 0 <= hue <= 0.5:
        raise ConfigError(f"augmentation 'color_jitter': hue must be in [0, 0.5], got {hue}")
    return v2.ColorJitter(brightness, contrast, saturation, hue)


def rotation(data: AugmentData, degrees: float = 10.0) -> v2.RandomRotation:
    if not 0 <= degrees <= 180:
        raise ConfigError(f"augmentation 'rotation': degrees must be in [0, 180], got {degrees}")
    return v2.RandomRotation(
        degrees,
        interpolation=v2.InterpolationMode.BILINEAR,
        fill={tv_tensors.Image: list(data.fill), tv_tensors.Mask: data.ignore_index},
    )


def gaussian_blur(
    data: AugmentData,
    kernel_size: int = 5,
    sigma: list[float] = [0.1, 1.5],  # noqa: B006
    p: float = 0.5,
) -> v2.RandomApply:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(
            f"augmentation 'gaussian_blur': kernel_size must be odd and positive, got {kernel_size}"
        )
    if len(sigma) != 2 or not 0 < sigma[0] <= sigma[1]:
        raise ConfigError(
            f"augmentation 'gaussian_blur': sigma must be [low, high] with 0 < low <= high, "
            f"got {sigma}"
        )
    blur = v2.GaussianBlur(kernel_size, (float(sigma[0]), float(sigma[1])))
    return v2.RandomApply([blur], _probability("gaussian_blur", p))


@hookimpl
def register_augmentations(register):
    probability = Param("p", float, help="probability of applying the step")
    register(
        "random_scale",
        random_scale,
        params=[Param("range", list[float], help="[low, high] factor of the image's own size")],
        help="rescale by a random factor (bilinear image, nearest mask)",
    )
    register(
        "random_crop",
        random_crop,
        params=[Param("size", int | None, help="square crop; default data.crop_size")],
        help="random square crop; smaller images padded with the mean colour and ignore",
    )
    register("hflip", hflip, params=[probability], help="mirror left-right")
    register("vflip", vflip, params=[probability], help="mirror top-bottom (aerial, medical)")
    register(
        "color_jitter",
        color_jitter,
        params=[
            Param("brightness", float, help="brightness factor drawn from [1-b, 1+b]"),
            Param("contrast", float, help="contrast factor drawn from [1-c, 1+c]"),
            Param("saturation", float, help="saturation factor drawn from [1-s, 1+s]"),
            Param("hue", float, help="hue shift drawn from [-h, h], h <= 0.5"),
        ],
        help="random brightness, contrast, saturation and hue (image only)",
    )
    register(
        "rotation",
        rotation,
        params=[Param("degrees", float, help="angle drawn from [-degrees, degrees]")],
        help="random rotation; corners filled with the mean colour and ignore",
    )
    register(
        "gaussian_blur",
        gaussian_blur,
        params=[
            Param("kernel_size", int, help="odd kernel size in pixels"),
            Param("sigma", list[float], help="[low, high] range of the blur's sigma"),
            probability,
        ],
        help="Gaussian blur with a random sigma, applied with probability p (image only)",
    )
