"""``folder``: ``root/images`` and ``root/masks`` with matching file stems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from segkit_plugins.datasets.lists import IMAGE_SUFFIXES, MASK_SUFFIXES, few, read_split_list

from segkit import DataError
from segkit.data import (
    FileDataset,
    as_palette,
    read_mask,
    select_split,
)


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


def _largest_label(masks: list[Path], palette: np.ndarray) -> int:
    largest = 0
    for path in masks:
        labels = np.unique(read_mask(path, palette))
        labels = labels[labels != 255]
        if labels.size:
            largest = max(largest, int(labels.max()))
    return largest


def build_folder(
    split: str,
    root: str,
    class_names: list[str] | None = None,
    num_classes: int | None = None,
    palette: list[list[int]] | None = None,
    splits_dir: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> FileDataset:
    """``root/images`` + ``root/masks`` (index PNGs), split by lists or a seeded shuffle."""
    root_path = Path(root).expanduser()
    image_dir, mask_dir = root_path / "images", root_path / "masks"
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(
                f"folder: {folder} does not exist; expected {root_path}/{{images,masks}}/ "
                f"with matching file stems (a.jpg <-> a.png)"
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
        raise DataError(
            f"folder: {len(unmatched_images)} images in {image_dir} have no mask in {mask_dir} "
            f"({few(unmatched_images)}); add the masks or remove the images"
        )
    if unmatched_masks:
        raise DataError(
            f"folder: {len(unmatched_masks)} masks in {mask_dir} have no image in {image_dir} "
            f"({few(unmatched_masks)}); add the images or remove the masks"
        )

    colours = as_palette(palette)
    if class_names is None:
        if num_classes is None:
            num_classes = _largest_label(list(masks.values()), colours) + 1
        class_names = [f"class{i}" for i in range(max(num_classes, 2))]
    elif num_classes is not None and num_classes != len(class_names):
        raise DataError(
            f"folder: num_classes = {num_classes} but class_names has {len(class_names)} "
            f"names; give one of them"
        )

    where = f"folder ({root_path})"
    if splits_dir is not None:
        lists = Path(splits_dir).expanduser()
        if not lists.is_absolute() and not lists.exists():
            lists = root_path / lists
        list_files = sorted(lists.glob("*.txt")) if lists.is_dir() else []
        if not list_files:
            raise DataError(
                f"folder: splits_dir {lists} holds no <split>.txt lists; write one file stem "
                f"per line in e.g. train.txt and val.txt"
            )
        by_split = {p.stem: read_split_list(p) for p in list_files}
        chosen = list(select_split(where, split, by_split))
        unknown = [stem for stem in chosen if stem not in images]
        if unknown:
            raise DataError(
                f"folder: {len(unknown)} names in {lists / (split + '.txt')} have no image in "
                f"{image_dir} ({few(unknown)}); fix the list"
            )
    else:
        if not 0 <= val_fraction < 1:
            raise DataError(f"folder: val_fraction must be in [0, 1), got {val_fraction}")
        stems = sorted(images)
        order = [stems[i] for i in np.random.default_rng(seed).permutation(len(stems))]
        val_count = round(len(stems) * val_fraction)
        if val_fraction > 0 and len(stems) > 1:
            val_count = max(1, val_count)
        by_split = {"train": order[val_count:], "val": order[:val_count], "all": order}
        chosen = list(select_split(where, split, by_split))
    return FileDataset(
        [images[s] for s in chosen],
        [masks[s] for s in chosen],
        class_names,
        colours,
        split=split,
        splits=list(by_split),
    )
