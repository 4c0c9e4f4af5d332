"""What the training and evaluation loops iterate: transformed datasets, samplers, loaders.

:class:`TrainingSet` draws each sample's augmentation from a seed, so a run is
reproducible whatever the number of workers; :class:`ShardSampler` gives each
``torchrun`` process its share; :func:`collate_eval` batches full-size images of
different sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from segkit.core.interrupts import ignore_stop_signals
from segkit.data.dataset import IGNORE_INDEX, SegmentationDataset
from segkit.data.transforms import EvalTransform, TrainTransform, sample_seed


class TrainingSet(Dataset):
    """A dataset seen through a :class:`TrainTransform`: ``ts[i] -> (image, mask)``.

    Sample ``i`` of epoch ``e`` is transformed with the seed ``sample_seed(seed, e,
    i)``, so a run is reproducible whatever the number of workers, and every sample
    and epoch draws differently.  Call :meth:`set_epoch` before creating each
    epoch's DataLoader iterator (workers copy the dataset when they start, so with
    ``persistent_workers=True`` the epoch would not reach them).
    """

    def __init__(self, dataset: SegmentationDataset, transform: TrainTransform, seed: int = 0):
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        seed = sample_seed(self.seed, self.epoch, index)
        return self.transform(self.dataset[index], seed)


@dataclass
class EvalItem:
    """One evaluation item: the transformed tensors plus what is needed to show them."""

    image: Tensor  # 3×H×W float32, normalised
    mask: Tensor | None  # H×W int64, 255 = ignore
    original: np.ndarray  # H×W×3 uint8 RGB
    name: str
    path: str | None


class EvalSet(Dataset):
    """A dataset seen through an :class:`EvalTransform`: ``es[i] -> EvalItem``."""

    def __init__(self, dataset: SegmentationDataset, transform: EvalTransform) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> EvalItem:
        sample = self.dataset[index]
        image, mask = self.transform(sample)
        return EvalItem(image, mask, sample.image, sample.name, sample.path)


def collate_eval(batch: Sequence[EvalItem]) -> dict[str, Any]:
    """Batch full-size items of different sizes, padded at the bottom and right.

    Returns a dict: ``"image"`` N×3×H×W float32 (padding 0, i.e. the mean colour),
    ``"mask"`` N×H×W int64 (padding and missing masks 255), ``"original"``
    N×3×H×W uint8 (padding 0), ``"size"`` the list of each item's (height, width) —
    item ``i`` occupies ``[:h, :w]`` —, ``"name"`` and ``"path"`` lists, and
    ``"has_mask"`` a list of bools.
    """
    height = max(item.image.shape[1] for item in batch)
    width = max(item.image.shape[2] for item in batch)
    count = len(batch)
    images = torch.zeros(count, 3, height, width, dtype=torch.float32)
    masks = torch.full((count, height, width), IGNORE_INDEX, dtype=torch.int64)
    originals = torch.zeros(count, 3, height, width, dtype=torch.uint8)
    sizes = []
    for i, item in enumerate(batch):
        h, w = item.image.shape[1:]
        images[i, :, :h, :w] = item.image
        if item.mask is not None:
            masks[i, :h, :w] = item.mask
        originals[i, :, :h, :w] = torch.as_tensor(item.original).permute(2, 0, 1)
        sizes.append((h, w))
    return {
        "image": images,
        "mask": masks,
        "original": originals,
        "size": sizes,
        "name": [item.name for item in batch],
        "path": [item.path for item in batch],
        "has_mask": [item.mask is not None for item in batch],
    }


class ShardSampler(Sampler[int]):
    """Indices for one process: a seeded shuffle per epoch, split across processes.

    Training pads the permutation so every process takes the same number of steps
    (DDP needs that); evaluation (``pad=False``) gives each image to exactly one
    process so summed confusion matrices count every pixel once.  ``skip`` resumes
    an epoch in the middle, without reading the skipped batches.
    """

    def __init__(
        self,
        size: int,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        pad: bool = True,
    ) -> None:
        self.size, self.rank, self.world, self.seed = size, rank, world, seed
        self.shuffle, self.pad = shuffle, pad
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        world = self.world
        if self.pad and self.size % world:
            order += order[: world - self.size % world]
        return order[self.rank :: world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.skip :])

    def __len__(self) -> int:
        return max(0, len(self._indices()) - self.skip)


def to_device(
    images: Tensor, masks: Tensor, device: torch.device, channels_last: bool
) -> tuple[Tensor, Tensor]:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
    return images, masks.to(device, non_blocking=True)


def make_loader(
    dataset: Any,
    sampler: Sampler[int],
    batch_size: int,
    workers: int,
    device: torch.device,
    collate_fn: Callable[..., Any] | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader that leaves the global random state alone and the stop signals to
    the main process.

    By default a DataLoader draws its workers' base seed from torch's global generator
    each time it is iterated; its own generator keeps the global sequence (dropout ...)
    the same whether an epoch starts afresh or is resumed from a checkpoint in its middle.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        collate_fn=collate_fn,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(0),
        worker_init_fn=ignore_stop_signals,
    )
