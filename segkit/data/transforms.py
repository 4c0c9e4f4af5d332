"""The joint image/mask transforms: training augmentation and full-size evaluation input.

Training augmentation is a list of steps on ``torchvision.transforms.v2`` (which moves
an image and its ``tv_tensors.Mask`` together: nearest-neighbour for the mask, the
ignore value where pixels are padded or rotated in), registered by plugins and named
in the config's ``[[data.augment]]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

from segkit.core.config import DataConfig
from segkit.core.errors import ConfigError, DataError
from segkit.core.registry import Registry
from segkit.data.dataset import IGNORE_INDEX, Sample

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _stats(values: Sequence[float] | None, name: str) -> Tensor:
    # Unset statistics (a config whose model has not filled them in) are ImageNet's.
    if values is None:
        values = IMAGENET_MEAN if name == "mean" else IMAGENET_STD
    stats = torch.as_tensor(values, dtype=torch.float32)
    if stats.shape != (3,):
        raise DataError(f"data.{name} must have 3 values (R, G, B), got {list(values)}")
    return stats.view(3, 1, 1)


def normalize(
    image: np.ndarray,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
) -> Tensor:
    """H×W×3 uint8 RGB -> 3×H×W float32 tensor ``(image / 255 - mean) / std``."""
    mean, std = _stats(mean, "mean").flatten().tolist(), _stats(std, "std").flatten().tolist()
    # numpy, not torch: small per-sample tensors would pay torch's thread-pool overhead
    scale = 1 / (255 * np.asarray(std, dtype=np.float32))
    shift = np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)
    pixels = np.asarray(image, dtype=np.float32) * scale - shift
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def denormalize(
    tensor: Tensor,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
) -> Tensor:
    """Undo :func:`normalize`: 3×H×W or N×3×H×W float -> uint8 tensor of the same layout."""
    mean_, std_ = _stats(mean, "mean").to(tensor.device), _stats(std, "std").to(tensor.device)
    pixels = (tensor.float() * std_ + mean_) * 255
    return pixels.round_().clamp_(0, 255).to(torch.uint8)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Per-sample work on one thread: a crop is too small to share, and on a busy CPU
    waking a second thread for each small op costs more than the op (6x slower)."""
    threads = torch.get_num_threads()
    if threads == 1:  # data-loading workers already run on one
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class AugmentData:
    """What an augmentation factory knows of the data: the crop and the fill values.

    ``fill`` is the mean colour as uint8 RGB (padding that normalises to zero) and
    ``ignore_index`` the mask value of padded or rotated-in pixels.
    """

    crop_size: int
    fill: tuple[int, int, int]
    ignore_index: int = IGNORE_INDEX


def sample_seed(*parts: int) -> int:
    """One 63-bit seed from integers (run seed, epoch, index), the same in every process."""
    return int(np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(1)[0])


class TrainTransform:
    """A training pipeline of joint image/mask steps, then normalisation.

    ``pipeline`` is called with a ``tv_tensors.Image`` (3×H×W uint8) and a
    ``tv_tensors.Mask`` (H×W uint8) and returns both at the crop size.  Called as
    ``transform(sample, seed)``: the steps draw from torch's generator seeded with
    ``seed`` inside :func:`torch.random.fork_rng`, so the same seed gives the same
    output in any process and the caller's random state is left as it was.
    Returns a 3×H×W float32 normalised image and an H×W int64 mask.
    """

    def __init__(
        self,
        pipeline: Callable[[Any, Any], tuple[Any, Any]],
        crop_size: int,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
    ) -> None:
        self.pipeline = pipeline
        self.crop_size = crop_size
        mean_, std_ = _stats(mean, "mean"), _stats(std, "std")
        if bool((std_ <= 0).any()):
            raise DataError(f"data.std must be positive, got {list(std)}")
        # (x / 255 - mean) / std as one multiply and one subtract per pixel
        self._scale = 1 / (255 * std_)
        self._shift = mean_ / std_

    def __call__(self, sample: Sample, seed: int) -> tuple[Tensor, Tensor]:
        if sample.mask is None:
            raise DataError(
                f"training needs masks but {sample.path or sample.name} has none; train on a "
                f"split with annotations"
            )
        image = tv_tensors.Image(
            torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1)
        )
        mask = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(sample.mask)))
        with torch.random.fork_rng(devices=[]), _one_thread():
            # The CPU generator only: torch.manual_seed also queues a CUDA seeding,
            # recording a stack trace each call (a third of the step's time).
            torch.default_generator.manual_seed(seed)
            image, mask = self.pipeline(image, mask)
            if tuple(mask.shape) != (self.crop_size, self.crop_size):
                raise DataError(
                    f"the augmentation steps give {mask.shape[0]}x{mask.shape[1]} crops, not "
                    f"data.crop_size {self.crop_size}: put random_crop after every step that "
                    f"changes the size, with the size of data.crop_size"
                )
            # The crop is usually a strided view of the decoded H×W×3 array: copying
            # its bytes first makes the float arithmetic run on contiguous memory (2x).
            pixels = image.as_subclass(Tensor).contiguous().to(torch.float32)
            pixels = pixels.mul_(self._scale).sub_(self._shift)
        return pixels, mask.as_subclass(Tensor).to(torch.int64)


def build_train_transform(data: DataConfig, registry: Registry) -> TrainTransform:
    """The config's ``[[data.augment]]`` steps, ending in a crop to ``data.crop_size``.

    Every image of a batch must have one size, so a ``random_crop`` is appended when
    the list has none.
    """
    if data.crop_size < 1:
        raise ConfigError(f"data.crop_size must be positive, got {data.crop_size}")
    mean = _stats(data.mean, "mean").flatten()
    std = _stats(data.std, "std").flatten()
    fill = tuple(int(v) for v in (mean * 255).round().clamp(0, 255).tolist())
    context = AugmentData(data.crop_size, fill)  # type: ignore[arg-type]
    steps = [
        registry.get("augmentation", step.name).build(context, params=step.params)
        for step in data.augment
    ]
    if not any(step.name == "random_crop" for step in data.augment):
        steps.append(registry.get("augmentation", "random_crop").build(context))
    return TrainTransform(v2.Compose(steps), data.crop_size, mean.tolist(), std.tolist())


class EvalTransform:
    """Full-size evaluation input: ``transform(sample) -> (image, mask)``.

    ``image`` is the 3×H×W float32 normalised tensor, ``mask`` the H×W int64 tensor
    (None when the sample has no mask).
    """

    def __init__(
        self,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
    ) -> None:
        # fail early on a malformed config
        self.mean = tuple(_stats(mean, "mean").flatten().tolist())
        self.std = tuple(_stats(std, "std").flatten().tolist())

    def __call__(self, sample: Sample) -> tuple[Tensor, Tensor | None]:
        mask = None if sample.mask is None else torch.from_numpy(sample.mask.astype(np.int64))
        return normalize(sample.image, self.mean, self.std), mask
