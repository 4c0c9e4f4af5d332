"""Datasets: the sample and dataset types every dataset plugin returns, and building one.

A dataset plugin registers a factory through the ``register_datasets`` hook; it is
called as ``factory(split, **params)`` and returns a :class:`SegmentationDataset`,
whose items are :class:`Sample` objects (uint8 RGB image, uint8 class-index mask
with 255 = ignore, a name).  :func:`build_dataset` is the one place that calls such
a factory and checks what it returns; :func:`build_splits` builds the training and
evaluation splits a config names and reconciles their class count with the model's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from torch.utils.data import Dataset

from segkit.core.errors import ConfigError, DataError, PluginError, did_you_mean, unprintable
from segkit.data.files import read_image, read_image_header, read_mask_file
from segkit.data.label_maps import LabelMap

if TYPE_CHECKING:
    from segkit.core.config import Config
    from segkit.core.registry import Registry

#: The mask value of pixels that are neither scored nor trained on.
IGNORE_INDEX = 255

T = TypeVar("T")


@dataclass
class Sample:
    """One dataset item.

    ``image`` is H×W×3 uint8 RGB; ``mask`` is H×W uint8 class indices with 255 =
    ignore, or None when the split has no annotation; ``name`` is the file stem
    (or a generated name); ``path`` is the image file when read from disk and
    ``mask_path`` the mask file.
    """

    image: np.ndarray
    mask: np.ndarray | None
    name: str
    path: str | None = None
    mask_path: str | None = None


@dataclass
class SampleInfo:
    """What the data checks need of an item, read without decoding the image when the
    dataset can: its size and mode, the mask and how the mask file stores it.

    ``mask_mode`` and ``mask_palette`` describe the mask file (image mode, and the
    palette of a palette PNG); ``notes`` are what the dataset left out of the mask
    and should be said (``"2 line shapes without area not painted"``).
    """

    name: str
    height: int
    width: int
    image_mode: str
    mask: np.ndarray | None
    mask_path: str | None = None
    mask_mode: str | None = None
    mask_palette: np.ndarray | None = None
    notes: tuple[str, ...] = ()


class SegmentationDataset(Dataset):
    """A split of a segmentation dataset: ``len(ds)`` samples, ``ds[i] -> Sample``.

    Attributes: ``class_names`` (index ``i`` names label ``i``), ``palette`` (K×3
    uint8 colours, K >= ``num_classes``; row ``i`` draws label ``i``), ``split``
    (this split's name), ``splits`` (the names of every split the dataset offers)
    and ``ignore_index`` (255).  Subclasses implement ``__len__`` and ``__getitem__``.
    """

    ignore_index: int = IGNORE_INDEX

    def __init__(
        self,
        class_names: Sequence[str],
        palette: np.ndarray | Sequence[Sequence[int]] | None = None,
        *,
        split: str = "",
        splits: Sequence[str] = (),
    ) -> None:
        self.class_names = list(class_names)
        for name in self.class_names:
            if not isinstance(name, str) or unprintable(name):
                shown = f"holds {unprintable(name)}" if isinstance(name, str) else "is no string"
                raise DataError(
                    f"the class name {name!r:.60} {shown}; class names are one line of "
                    f"printable text"
                )
        if len(self.class_names) < 2:
            raise DataError(
                f"a dataset needs at least 2 classes, got {self.class_names}; "
                f"list the background class too"
            )
        self.palette = as_palette(palette, len(self.class_names))
        self.split = split
        self.splits = tuple(splits)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        raise NotImplementedError

    def source_files(self) -> list[Path]:
        """Every file this split reads: images, masks, annotation files.

        Commands that write files refuse to write over any of them (``segkit eval
        --json`` onto a mask of the split it evaluates).  Empty by default, which is
        right for a generated dataset; a dataset that reads files lists them all.
        """
        return []

    def describe(self, index: int) -> SampleInfo:
        """Item ``index`` for the data checks (``segkit data check``, and ``segkit run``
        before training).  The default reads the sample; a file-based dataset reads
        only the image's header and the mask."""
        sample = self[index]
        height, width = sample.image.shape[:2]
        return SampleInfo(sample.name, height, width, "RGB", sample.mask, sample.mask_path)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, {len(self)} samples, "
            f"{self.num_classes} classes)"
        )


class FileDataset(SegmentationDataset):
    """Images (and masks) read from disk, one pair per item.

    ``masks`` is a list of mask paths aligned with ``images`` (None entries for
    images without annotation), or None when the split has no masks at all.  RGB
    masks are mapped to class indices through the dataset palette; ``label_map``,
    when given, turns the values the mask files store into labels (Cityscapes' ids,
    a binary 0/255 mask).  Every sample is checked with :func:`check_sample` as it is
    read.
    """

    def __init__(
        self,
        images: Sequence[str | Path],
        masks: Sequence[str | Path | None] | None,
        class_names: Sequence[str],
        palette: np.ndarray | Sequence[Sequence[int]] | None = None,
        *,
        split: str = "",
        splits: Sequence[str] = (),
        label_map: LabelMap | None = None,
    ) -> None:
        super().__init__(class_names, palette, split=split, splits=splits)
        self.label_map = label_map
        self.images = [Path(p) for p in images]
        if masks is None:
            masks = [None] * len(self.images)
        if len(masks) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(masks)} masks")
        self.masks = [None if m is None else Path(m) for m in masks]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        image_path, mask_path = self.images[index], self.masks[index]
        mask = None
        if mask_path is not None:
            mask = read_mask_file(mask_path, self.palette, self.label_map).labels
        sample = Sample(
            read_image(image_path),
            mask,
            image_path.stem,
            str(image_path),
            None if mask_path is None else str(mask_path),
        )
        check_sample(sample, self.num_classes)
        return sample

    def source_files(self) -> list[Path]:
        return [*self.images, *(m for m in self.masks if m is not None)]

    def describe(self, index: int) -> SampleInfo:
        image_path, mask_path = self.images[index], self.masks[index]
        height, width, mode = read_image_header(image_path)
        if mask_path is None:
            return SampleInfo(image_path.stem, height, width, mode, None)
        read = read_mask_file(mask_path, self.palette, self.label_map)
        check_mask(read.labels, (height, width), self.num_classes, str(mask_path), str(image_path))
        return SampleInfo(
            image_path.stem,
            height,
            width,
            mode,
            read.labels,
            str(mask_path),
            read.mode,
            read.palette,
        )


def select_split(dataset: str, split: str, splits: Mapping[str, Sequence[T]]) -> Sequence[T]:
    """The items of ``split``; an unknown or empty split is a :class:`DataError`.

    ``dataset`` names the dataset in the message, e.g. ``"voc (root /data/VOCdevkit)"``.
    """
    if split not in splits:
        listing = ", ".join(sorted(splits)) or "none"
        raise DataError(
            f"dataset {dataset} has no split '{split}'{did_you_mean(split, splits)} "
            f"(available: {listing}); set data.train_split / data.val_split to one of them"
        )
    items = splits[split]
    if len(items) == 0:
        raise DataError(
            f"split '{split}' of dataset {dataset} is empty; add images to it or pick "
            f"another split ({', '.join(sorted(splits))})"
        )
    return items


def check_sample(sample: Sample, num_classes: int) -> None:
    """Raise :class:`DataError` if the mask does not fit the image or the classes.

    The mask must have the image's height and width, and hold only labels below
    ``num_classes`` or 255 (ignore).
    """
    if sample.mask is not None:
        where = sample.mask_path or sample.path or sample.name
        image = sample.path or sample.name
        check_mask(sample.mask, sample.image.shape[:2], num_classes, where, image)


def check_mask(
    mask: np.ndarray, image_size: tuple[int, int], num_classes: int, where: str, image: str
) -> None:
    """:func:`check_sample` for a mask (``where``) and its image's (H, W) (``image``)."""
    mask_size = mask.shape[:2]
    if tuple(image_size) != mask_size:
        raise DataError(
            f"mask {where} is {mask_size[0]}×{mask_size[1]} (H×W) but its image "
            f"{image} is {image_size[0]}×{image_size[1]}; re-export the mask at the image size"
        )
    if int(mask.max(initial=0)) < num_classes:
        return
    values = np.unique(mask)
    bad = [int(v) for v in values if num_classes <= v != IGNORE_INDEX]
    if bad:
        shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
        raise DataError(
            f"mask {where} has label values {shown} but the dataset has {num_classes} classes "
            f"(labels 0..{num_classes - 1}, 255 = ignore); declare more classes or set those "
            f"pixels to 255"
        )


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: ``n``×3 uint8 (label 1 is (128, 0, 0), 255 is (224, 224, 192))."""
    labels = np.arange(n)
    palette = np.zeros((n, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            palette[:, channel] |= ((labels >> (3 * bit + channel)) & 1) << (7 - bit)
    return palette.astype(np.uint8)


def as_palette(
    palette: np.ndarray | Sequence[Sequence[int]] | None, num_classes: int = 0
) -> np.ndarray:
    """A K×3 uint8 palette from ``palette`` (None: the VOC palette), K >= ``num_classes``."""
    if palette is None:
        return voc_palette(256)
    array = np.asarray(palette)
    if (
        array.ndim != 2
        or array.shape[1] != 3
        or array.size == 0
        or array.min() < 0
        or array.max() > 255
    ):
        raise DataError(
            f"a palette must be a list of [r, g, b] colours with values 0..255, got shape "
            f"{array.shape}; fix the dataset's palette"
        )
    if len(array) < num_classes:
        raise DataError(
            f"the palette has {len(array)} colours but the dataset has {num_classes} classes; "
            f"give one colour per class"
        )
    return array.astype(np.uint8)


def build_dataset(
    name: str,
    split: str,
    params: Mapping[str, Any] | None,
    registry: Registry,
) -> SegmentationDataset:
    """Build the registered dataset ``name`` for ``split`` with validated ``params``."""
    if not isinstance(split, str):
        raise ConfigError(f"dataset '{name}': split must be a name such as 'val', got {split!r}")
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError(
            f"dataset '{name}': params must be a mapping of parameter names to values, "
            f"got {type(params).__name__}"
        )
    component = registry.get("dataset", name)
    dataset = component.build(split, params=params)
    if not isinstance(dataset, SegmentationDataset):
        raise PluginError(
            f"dataset '{name}' (plugin '{component.plugin}') returned "
            f"{type(dataset).__name__}, not a segkit.SegmentationDataset; fix the plugin"
        )
    return dataset


@dataclass
class Splits:
    """The training and evaluation splits of a config, and the class count they agree on."""

    train: SegmentationDataset | None
    val: SegmentationDataset

    @property
    def reference(self) -> SegmentationDataset:
        return self.train if self.train is not None else self.val

    @property
    def num_classes(self) -> int:
        return self.reference.num_classes


def build_splits(config: Config, registry: Registry, train: bool = True) -> Splits:
    """The splits ``config.data`` names (the training split only when ``train``).

    The dataset decides the number of classes; a ``model.num_classes`` that disagrees
    is an error naming both numbers.
    """
    part, data = config.data.dataset, config.data
    train_set = build_dataset(part.name, data.train_split, part.params, registry) if train else None
    splits = Splits(train_set, build_dataset(part.name, data.val_split, part.params, registry))
    if config.model.num_classes not in (None, splits.num_classes):
        raise ConfigError(
            f"model.num_classes is {config.model.num_classes} but dataset '{part.name}' has "
            f"{splits.num_classes} classes; remove model.num_classes"
        )
    return splits
