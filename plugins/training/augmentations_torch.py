"""The augmentation steps of :mod:`segkit_plugins.training.augmentations`, on
torchvision.transforms.v2; their settings arrive checked.

Only the scale step is written here: v2's own resizing steps set an absolute size,
while segmentation recipes rescale each image by a random factor of its own size.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

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


def random_scale(data: AugmentData, range: list[float]) -> RandomScale:
    return RandomScale(float(range[0]), float(range[1]))


def random_crop(data: AugmentData, size: int | None) -> v2.RandomCrop:
    size = data.crop_size if size is None else size
    # Smaller images are padded: the image with the mean colour (zero once
    # normalised), the mask with the ignore label, so padding never counts.
    return v2.RandomCrop(
        size,
        pad_if_needed=True,
        fill={tv_tensors.Image: list(data.fill), tv_tensors.Mask: data.ignore_index},
    )


def hflip(data: AugmentData, p: float) -> v2.RandomHorizontalFlip:
    return v2.RandomHorizontalFlip(p)


def vflip(data: AugmentData, p: float) -> v2.RandomVerticalFlip:
    return v2.RandomVerticalFlip(p)


def color_jitter(
    data: AugmentData, brightness: float, contrast: float, saturation: float, hue: float
) -> v2.ColorJitter:
    return v2.ColorJitter(brightness, contrast, saturation, hue)


def rotation(data: AugmentData, degrees: float) -> v2.RandomRotation:
    return v2.RandomRotation(
        degrees,
        interpolation=v2.InterpolationMode.BILINEAR,
        fill={tv_tensors.Image: list(data.fill), tv_tensors.Mask: data.ignore_index},
    )


def gaussian_blur(
    data: AugmentData, kernel_size: int, sigma: list[float], p: float
) -> v2.RandomApply:
    blur = v2.GaussianBlur(kernel_size, (float(sigma[0]), float(sigma[1])))
    return v2.RandomApply([blur], p)
