"""``folder``: ``root/images`` and ``root/masks`` with matching file stems."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
from segkit_plugins.datasets.layouts import layout_hint
from segkit_plugins.datasets.lists import (
    IMAGE_SUFFIXES,
    MASK_SUFFIXES,
    few,
    lossy_twin,
    missing_masks_message,
    split_stems,
)

from segkit import DataError
from segkit.data import FileDataset, LabelMap, as_palette, mask_values_map, read_mask

#: More never-seen labels below the largest than this (and than the labels seen) means
#: the class count read from the largest label would be mostly classes that do not exist.
_UNSEEN_LIMIT = 8


def _files_by_stem(folder: Path, suffixes: set[str], what: str) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in suffixes:
            continue
        if path.stem in files:
            raise DataError(
                f"folder: two {what} share the stem '{path.stem}' ({files[path.stem].name}, "
                f"{path.name}); keep one"
            )
        files[path.stem] = path
    return files


#: The label counts of the last folder scanned, by what they depend on: building the
#: train and the val split of one folder scans its masks once.
_scanned: dict[tuple, tuple[dict[int, int], dict[int, list[str]]]] = {}


def _label_counts(
    masks: list[Path], palette: np.ndarray, binary: bool, mask_values: dict | None
) -> tuple[dict[int, int], dict[int, list[str]]]:
    """Pixels per label over all ``masks``, and the masks holding each label."""
    stats = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in masks)
    values = tuple(sorted((str(k), v) for k, v in (mask_values or {}).items()))
    key = (stats, palette.tobytes(), binary, values)
    if key not in _scanned:
        label_map = _label_map(binary, mask_values)
        totals = np.zeros(256, np.int64)
        holders: dict[int, list[str]] = {}
        for path in masks:
            counts = np.bincount(read_mask(path, palette, label_map).ravel(), minlength=256)
            totals += counts
            for label in np.flatnonzero(counts[:255]).tolist():
                holders.setdefault(label, []).append(path.name)
        _scanned.clear()
        _scanned[key] = ({v: int(totals[v]) for v in holders}, holders)
    return _scanned[key]


def _class_count(
    masks: list[Path], palette: np.ndarray, binary: bool, mask_values: dict | None
) -> int:
    """The class count the masks' labels imply: the largest label + 1, unless that label
    stands far above the others (a stray value would make a class per missing label)."""
    pixels, holders = _label_counts(masks, palette, binary, mask_values)
    present = sorted(pixels)
    if not present:
        return 2
    largest = present[-1]
    unseen = largest + 1 - len(present)
    if unseen > max(_UNSEEN_LIMIT, len(present)):
        gaps = [b - a for a, b in pairwise(present)]
        cut = present[int(np.argmax(gaps)) + 1] if gaps else largest
        far = [v for v in present if v >= cut]
        below = [v for v in present if v < cut]
        described = "; ".join(
            f"{v} in {len(holders[v])} mask{'s' if len(holders[v]) > 1 else ''} "
            f"({few(holders[v], 2)}, {pixels[v]} pixels)"
            for v in far[:3]
        )
        held = f"labels {few([str(v) for v in below], 6)} and, far above them, " if below else ""
        raise DataError(
            f"folder: the masks hold {held}{described}: reading the class count from the "
            f"largest label would make {largest + 1} classes, {unseen} of which never "
            f"appear; set those pixels to 255 (ignore), map the values with mask_values, or "
            f"give class_names"
        )
    return largest + 1


def _label_map(binary: bool, mask_values: dict | None) -> LabelMap | None:
    if binary and mask_values is not None:
        raise DataError("folder: give binary = true or mask_values, not both")
    if binary:
        return LabelMap.binary()
    return None if mask_values is None else mask_values_map(mask_values)


def _pair_up(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    image_dir, mask_dir = root / "images", root / "masks"
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(
                f"folder: {folder} does not exist; expected {root}/{{images,masks}}/ "
                f"with matching file stems (a.jpg <-> a.png){layout_hint(root)}"
            )
    images = _files_by_stem(image_dir, IMAGE_SUFFIXES, "images")
    masks = _files_by_stem(mask_dir, MASK_SUFFIXES, "masks")
    if not images:
        raise DataError(
            f"folder: {image_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    unmatched_images = sorted(set(images) - set(masks))
    unmatched_masks = sorted(set(masks) - set(images))
    if unmatched_images:
        expected = [mask_dir / f"{s}.png" for s in unmatched_images]
        if any(lossy_twin(path) for path in expected):
            raise DataError(missing_masks_message("folder", expected, ""))
        raise DataError(
            f"folder: {len(unmatched_images)} images in {image_dir} have no mask in {mask_dir} "
            f"({few(unmatched_images)}); add the masks or remove the images"
        )
    if unmatched_masks:
        raise DataError(
            f"folder: {len(unmatched_masks)} masks in {mask_dir} have no image in {image_dir} "
            f"({few(unmatched_masks)}); add the images or remove the masks"
        )
    return images, masks


def build_folder(
    split: str,
    root: str,
    class_names: list[str] | None = None,
    num_classes: int | None = None,
    palette: list[list[int]] | None = None,
    splits_dir: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    binary: bool = False,
    mask_values: dict | None = None,
) -> FileDataset:
    """``root/images`` + ``root/masks`` (index PNGs), split by lists or a seeded shuffle."""
    root_path = Path(root).expanduser()
    images, masks = _pair_up(root_path)
    label_map = _label_map(binary, mask_values)
    colours = as_palette(palette)
    if binary and class_names is None:
        class_names = ["background", "foreground"]
    if class_names is None:
        if num_classes is None:
            num_classes = _class_count(list(masks.values()), colours, binary, mask_values)
        class_names = [f"class{i}" for i in range(max(num_classes, 2))]
    elif num_classes is not None and num_classes != len(class_names):
        raise DataError(
            f"folder: num_classes = {num_classes} but class_names has {len(class_names)} "
            f"names; give one of them"
        )
    if binary and len(class_names) != 2:
        raise DataError(
            f"folder: binary = true makes two classes (background, foreground) but "
            f"class_names has {len(class_names)}; give two names"
        )
    chosen, splits = split_stems(
        "folder", split, list(images), root_path, splits_dir, val_fraction, seed
    )
    return FileDataset(
        [images[s] for s in chosen],
        [masks[s] for s in chosen],
        class_names,
        colours,
        split=split,
        splits=splits,
        label_map=label_map,
    )
