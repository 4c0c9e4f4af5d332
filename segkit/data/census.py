"""What the items of a split hold, read as a run reads them: pixels per label, sizes,
modes, files that cannot be read.  :mod:`segkit.data.checks` judges the counts.

Items are read through :meth:`SegmentationDataset.describe`, which for file-based
datasets reads the image's header and the mask only, so that looking at a thousand
items costs a thousand mask decodes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from segkit.core.errors import DataError
from segkit.data.dataset import IGNORE_INDEX, SampleInfo, SegmentationDataset

#: Palette-PNG masks whose palettes are compared with the dataset's (they repeat).
_PALETTES_COMPARED = 16


@dataclass
class SplitCensus:
    """The counts of one split over the items looked at (all, or an even spread)."""

    split: str
    size: int
    looked_at: int = 0
    annotated: int = 0
    #: Pixels per stored label, 0..255 (255 = ignore).
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    #: Masks holding each label.
    masks_with: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    #: The first mask (or item name) holding each label, to name in messages.
    first_seen: dict[int, str] = field(default_factory=dict)
    sizes: Counter = field(default_factory=Counter)
    image_modes: Counter = field(default_factory=Counter)
    mask_modes: Counter = field(default_factory=Counter)
    #: One line per item that could not be read.
    failures: list[str] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)
    #: (label, the colour the mask's palette gives it, the other label the dataset
    #: draws in that colour) -> the first mask seen with it.
    palette_swaps: dict[tuple[int, tuple[int, int, int], int], str] = field(default_factory=dict)
    decoded_bytes: int = 0

    @property
    def complete(self) -> bool:
        """Whether every item of the split was looked at."""
        return self.looked_at == self.size

    @property
    def labelled(self) -> int:
        return int(self.pixels.sum() - self.pixels[IGNORE_INDEX])

    def labels_present(self) -> list[int]:
        return [v for v in range(256) if v != IGNORE_INDEX and self.pixels[v] > 0]

    def estimated_bytes(self) -> int:
        """Decoded images and masks of the whole split (8-bit RGB image + 8-bit mask)."""
        read = self.looked_at - len(self.failures)
        return round(self.decoded_bytes * self.size / read) if read > 0 else 0


def spread(count: int, limit: int | None) -> list[int]:
    """``limit`` indices evenly spread over ``range(count)`` (all of them without one)."""
    if limit is None or count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / max(1, limit - 1)) for i in range(limit)})


def take_census(dataset: SegmentationDataset, limit: int | None = None) -> SplitCensus:
    """Read the items of ``dataset`` (an even spread of ``limit`` of them) and count."""
    census = SplitCensus(dataset.split, len(dataset))
    for index in spread(len(dataset), limit):
        census.looked_at += 1
        try:
            info = dataset.describe(index)
        except DataError as exc:
            census.failures.append(str(exc))
            continue
        _count(census, info, dataset)
    return census


def _count(census: SplitCensus, info: SampleInfo, dataset: SegmentationDataset) -> None:
    census.sizes[(info.height, info.width)] += 1
    census.image_modes[info.image_mode] += 1
    census.decoded_bytes += info.height * info.width * 4
    census.notes.update(info.notes)
    if info.mask is None:
        return
    census.annotated += 1
    census.mask_modes[info.mask_mode or "generated"] += 1
    counts = np.bincount(info.mask.ravel(), minlength=256)
    census.pixels += counts
    present = np.flatnonzero(counts)
    census.masks_with[present] += 1
    where = info.mask_path or info.name
    for label in present:
        census.first_seen.setdefault(int(label), where)
    if info.mask_palette is not None and census.annotated <= _PALETTES_COMPARED:
        _compare_palettes(census, info.mask_palette, present, dataset, where)


def _compare_palettes(
    census: SplitCensus,
    own: np.ndarray,
    present: np.ndarray,
    dataset: SegmentationDataset,
    where: str,
) -> None:
    """Note labels the mask's own palette draws in the colour of another class.

    Masks are read by index, so a palette that merely differs is harmless; one whose
    colour for label 1 is the dataset's colour for label 2 says that the tool that
    drew the masks numbered the classes in another order than the config names them.
    """
    palette = dataset.palette[: dataset.num_classes]
    colours = {tuple(int(c) for c in row): label for label, row in enumerate(palette)}
    for label in present:
        if label in (0, IGNORE_INDEX) or label >= min(len(own), dataset.num_classes):
            continue
        colour = tuple(int(c) for c in own[label])
        other = colours.get(colour)
        if other is not None and other != label:
            census.palette_swaps.setdefault((int(label), colour, other), where)
