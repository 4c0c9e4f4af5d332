"""What the file-based datasets share: the suffixes they read, split lists and the
seeded train/val division, and the reason a mask is not where it was expected."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segkit import DataError
from segkit.data import LOSSY_MASKS, select_split

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
MASK_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm"}
#: Suffixes of lossily compressed files: never a mask.
LOSSY_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif"}

_SUFFIX = "|".join(s.lstrip(".") for s in sorted(IMAGE_SUFFIXES | MASK_SUFFIXES))
#: DeepLab's list lines: "/JPEGImages/x.jpg /SegmentationClassAug/x.png".
_PAIR_LINE = re.compile(rf"^(\S+\.(?:{_SUFFIX}))\s+\S+\.(?:{_SUFFIX})$", re.IGNORECASE)


def few(names: Sequence[str], count: int = 3) -> str:
    shown = ", ".join(names[:count])
    return shown + (f" and {len(names) - count} more" if len(names) > count else "")


def read_split_list(path: Path) -> list[str]:
    """Stems listed in a split file: one name per line (spaces are part of the name), or
    DeepLab's ``/JPEGImages/x.jpg /SegmentationClassAug/x.png`` pairs."""
    stems = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pair = _PAIR_LINE.match(line)
        name = Path(pair.group(1) if pair else line)
        known_suffix = name.suffix.lower() in IMAGE_SUFFIXES | MASK_SUFFIXES
        stems.append(name.stem if known_suffix else name.name)
    return stems


def split_stems(
    dataset: str,
    split: str,
    stems: Sequence[str],
    root: Path,
    splits_dir: str | None,
    val_fraction: float,
    seed: int,
) -> tuple[list[str], list[str]]:
    """The stems of ``split`` and the names of every split: from ``<split>.txt`` lists in
    ``splits_dir``, or a seeded shuffle holding ``val_fraction`` of them out as "val"."""
    known, name, where = set(stems), dataset, f"{dataset} ({root})"
    if splits_dir is not None:
        lists = Path(splits_dir).expanduser()
        if not lists.is_absolute() and not lists.exists():
            lists = root / lists
        list_files = sorted(lists.glob("*.txt")) if lists.is_dir() else []
        if not list_files:
            raise DataError(
                f"{name}: splits_dir {lists} holds no <split>.txt lists; write one file stem "
                f"per line in e.g. train.txt and val.txt"
            )
        by_split = {p.stem: read_split_list(p) for p in list_files}
        chosen = list(select_split(where, split, by_split))
        unknown = [stem for stem in chosen if stem not in known]
        if unknown:
            raise DataError(
                f"{name}: {len(unknown)} names in {lists / (split + '.txt')} have no image in "
                f"{root} ({few(unknown)}); fix the list"
            )
        return chosen, list(by_split)
    if not 0 <= val_fraction < 1:
        raise DataError(f"{name}: val_fraction must be in [0, 1), got {val_fraction}")
    ordered = sorted(stems)
    order = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    val_count = round(len(ordered) * val_fraction)
    if val_fraction > 0 and len(ordered) > 1:
        val_count = max(1, val_count)
    by_split = {"train": order[val_count:], "val": order[:val_count], "all": order}
    return list(select_split(where, split, by_split)), list(by_split)


def lossy_twin(expected: Path) -> Path | None:
    """A JPEG beside ``expected`` (a mask's path) with its stem: the mask, saved lossily."""
    for suffix in sorted(LOSSY_SUFFIXES):
        for candidate in (expected.with_suffix(suffix), expected.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def missing_masks_message(dataset: str, missing: Sequence[Path], fix: str) -> str:
    """The line for masks that are not where expected, saying why when they are JPEGs."""
    jpegs = [twin for path in missing if (twin := lossy_twin(path)) is not None]
    if jpegs:
        return (
            f"{dataset}: {len(jpegs)} masks are JPEG files ({few([p.name for p in jpegs])} "
            f"in {jpegs[0].parent}); {LOSSY_MASKS}; export them again as PNG"
        )
    folder = missing[0].parent
    return (
        f"{dataset}: {len(missing)} masks are missing from {folder} "
        f"({few([p.name for p in missing])}); {fix}"
    )
