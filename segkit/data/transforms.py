"""The joint image/mask transforms: training augmentation and full-size evaluation input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from segkit.core.errors import DataError
from segkit.data.dataset import IGNORE_INDEX, Sample

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _stats(values: Sequence[float], name: str) -> Tensor:
    stats = torch.as_tensor(values, dtype=torch.float32)
    if stats.shape != (3,):
        raise DataError(f"data.{name} must have 3 values (R, G, B), got {list(values)}")
    return stats.view(3, 1, 1)


def normalize(
    image: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """H×W×3 uint8 RGB -> 3×H×W float32 tensor ``(image / 255 - mean) / std``."""
    _stats(mean, "mean")
    _stats(std, "std")
    # numpy, not torch: small per-sample tensors would pay torch's thread-pool overhead
    scale = 1 / (255 * np.asarray(std, dtype=np.float32))
    shift = np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)
    pixels = np.asarray(image, dtype=np.float32) * scale - shift
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def denormalize(
    tensor: Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """Undo :func:`normalize`: 3×H×W or N×3×H×W float -> uint8 tensor of the same layout."""
    mean_, std_ = _stats(mean, "mean").to(tensor.device), _stats(std, "std").to(tensor.device)
    pixels = (tensor.float() * std_ + mean_) * 255
    return pixels.round_().clamp_(0, 255).to(torch.uint8)


def _resize(array: np.ndarray, height: int, width: int, resample: Image.Resampling) -> np.ndarray:
    return np.array(Image.fromarray(array).resize((width, height), resample))


class TrainTransform:
    """Random scale, pad, crop and flip of an image and its mask, in that order.

    Called as ``transform(sample, rng)`` with a ``numpy.random.Generator``; returns
    ``(image, mask)``: a 3×crop×crop float32 normalised tensor and a crop×crop int64
    tensor.  The image is rescaled bilinearly and the mask by nearest neighbour by a
    factor drawn from ``scale_range``; where the result is smaller than the crop it
    is padded (bottom and right) with the mean colour and with 255 (ignored by the
    loss); then a random crop_size window is taken and, with ``flip``, mirrored
    left-right with probability 1/2.  The same ``rng`` state gives the same output.
    """

    def __init__(
        self,
        crop_size: int,
        scale_range: Sequence[float] = (0.5, 1.5),
        flip: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if crop_size < 1:
            raise DataError(f"data.crop_size must be positive, got {crop_size}")
        low, high = (float(s) for s in scale_range)
        if not 0 < low <= high:
            raise DataError(
                f"data.scale_range must be [low, high] with 0 < low <= high, got "
                f"{list(scale_range)}"
            )
        self.crop_size = crop_size
        self.scale_range = (low, high)
        self.flip = flip
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        _stats(self.mean, "mean")  # fail early on a malformed config
        _stats(self.std, "std")
        self._fill = np.array([round(255 * m) for m in self.mean], dtype=np.uint8)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        if sample.mask is None:
            raise DataError(
                f"training needs masks but {sample.path or sample.name} has none; train on a "
                f"split with annotations"
            )
        image, mask = sample.image, sample.mask
        height, width = mask.shape
        scale = rng.uniform(*self.scale_range)
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        if (new_h, new_w) != (height, width):
            image = _resize(image, new_h, new_w, Image.Resampling.BILINEAR)
            mask = _resize(mask, new_h, new_w, Image.Resampling.NEAREST)

        crop = self.crop_size
        if new_h < crop or new_w < crop:
            padded_h, padded_w = max(new_h, crop), max(new_w, crop)
            padded_image = np.empty((padded_h, padded_w, 3), dtype=np.uint8)
            padded_image[:] = self._fill
            padded_image[:new_h, :new_w] = image
            padded_mask = np.full((padded_h, padded_w), IGNORE_INDEX, dtype=np.uint8)
            padded_mask[:new_h, :new_w] = mask
            image, mask = padded_image, padded_mask

        top = int(rng.integers(0, mask.shape[0] - crop + 1))
        left = int(rng.integers(0, mask.shape[1] - crop + 1))
        image = image[top : top + crop, left : left + crop]
        mask = mask[top : top + crop, left : left + crop]
        if self.flip and rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        return (
            normalize(image, self.mean, self.std),
            torch.from_numpy(mask.astype(np.int64)),
        )


class EvalTransform:
    """Full-size evaluation input: ``transform(sample) -> (image, mask)``.

    ``image`` is the 3×H×W float32 normalised tensor, ``mask`` the H×W int64 tensor
    (None when the sample has no mask).
    """

    def __init__(
        self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        _stats(self.mean, "mean")  # fail early on a malformed config
        _stats(self.std, "std")

    def __call__(self, sample: Sample) -> tuple[Tensor, Tensor | None]:
        mask = None if sample.mask is None else torch.from_numpy(sample.mask.astype(np.int64))
        return normalize(sample.image, self.mean, self.std), mask
