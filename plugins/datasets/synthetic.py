"""``synthetic``: generated shapes, drawn from a seed when asked for (no download)."""

from __future__ import annotations

import zlib
from collections import OrderedDict

import numpy as np
from segkit_plugins.datasets import SHAPES
from segkit_plugins.datasets.shapes import render_shapes

from segkit import DataError
from segkit.data import (
    Sample,
    SegmentationDataset,
    select_split,
    voc_palette,
)


class SyntheticShapes(SegmentationDataset):
    """Generated shapes: sample ``i`` of a split is drawn from ``(seed, split, i)`` alone.

    Nothing is generated up front; samples are drawn when asked for and the latest
    ones are kept in a small per-process cache, so DataLoader workers only ever draw
    the indices they serve.
    """

    cache_size = 512

    def __init__(
        self,
        split: str,
        size: int,
        seed: int,
        num_classes: int,
        min_size: int,
        max_size: int,
        max_objects: int,
        splits: tuple[str, ...],
    ) -> None:
        names = ["background", *SHAPES[: num_classes - 1]]
        super().__init__(names, voc_palette(256), split=split, splits=splits)
        self.size = size
        self.seed = seed
        self.shape_args = (num_classes, min_size, max_size, max_objects)
        self._split_key = zlib.crc32(split.encode())
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} samples")
        if index in self._cache:
            self._cache.move_to_end(index)
            image, mask = self._cache[index]
        else:
            rng = np.random.default_rng((self.seed, self._split_key, index))
            image, mask = render_shapes(rng, *self.shape_args)
            self._cache[index] = (image, mask)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return Sample(image.copy(), mask.copy(), f"{self.split}_{index:05d}")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # workers start empty instead of copying arrays
        return state


def build_synthetic(
    split: str,
    seed: int = 0,
    num_classes: int = 5,
    train_size: int = 2000,
    val_size: int = 200,
    min_size: int = 97,
    max_size: int = 161,
    max_objects: int = 4,
) -> SyntheticShapes:
    """Shapes on textured clutter; ``train`` and ``val`` are drawn independently."""
    if not 2 <= num_classes <= len(SHAPES) + 1:
        raise DataError(
            f"synthetic: num_classes must be 2..{len(SHAPES) + 1} (background + "
            f"{', '.join(SHAPES)}), got {num_classes}"
        )
    if not 48 <= min_size <= max_size:
        raise DataError(
            f"synthetic: need 48 <= min_size <= max_size, got min_size {min_size}, "
            f"max_size {max_size}"
        )
    if max_objects < 1 or train_size < 0 or val_size < 0:
        raise DataError("synthetic: max_objects must be >= 1 and the split sizes >= 0")
    sizes = {"train": train_size, "val": val_size}
    splits = {name: range(size) for name, size in sizes.items()}
    count = len(select_split(f"synthetic (seed {seed})", split, splits))
    return SyntheticShapes(
        split, count, seed, num_classes, min_size, max_size, max_objects, tuple(sizes)
    )
