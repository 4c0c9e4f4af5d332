"""``voc``: VOCdevkit/VOC2012 with its split lists, optionally the SBD-augmented
SegmentationClassAug masks and train_aug list used by DeepLab."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from segkit_plugins.datasets.lists import few, read_split_list

from segkit import DataError
from segkit.data import (
    FileDataset,
    select_split,
    voc_palette,
)

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
VOC_LAYOUT = "VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/train.txt}"


def _voc_base(root: Path) -> Path:
    for base in (root / "VOC2012", root):
        if (base / "JPEGImages").is_dir() and (base / "ImageSets" / "Segmentation").is_dir():
            return base
    if not root.is_dir():
        problem = "does not exist"
    else:
        base = root / "VOC2012" if (root / "VOC2012").is_dir() else root
        missing = [p for p in ("JPEGImages", "ImageSets/Segmentation") if not (base / p).is_dir()]
        problem = f"has no {' or '.join(missing)}"
    raise DataError(
        f"voc: root {root} {problem}; expected {VOC_LAYOUT} "
        f"(set root to the VOCdevkit or VOC2012 folder)"
    )


def build_voc(split: str, root: str, augmented: bool | Literal["auto"] = "auto") -> FileDataset:
    """PASCAL VOC 2012 segmentation; with the SBD masks, ``train`` means ``train_aug``."""
    base = _voc_base(Path(root).expanduser())
    lists = base / "ImageSets" / "Segmentation"
    plain_masks, aug_masks = base / "SegmentationClass", base / "SegmentationClassAug"
    has_aug = aug_masks.is_dir() and (lists / "train_aug.txt").is_file()
    if augmented is True and not has_aug:
        raise DataError(
            f"voc: augmented = true but {base} lacks SegmentationClassAug/ or "
            f"ImageSets/Segmentation/train_aug.txt; add the SBD masks or set augmented = false"
        )
    use_aug = has_aug and augmented is not False
    if not use_aug and not plain_masks.is_dir():
        raise DataError(f"voc: {base} has no SegmentationClass folder; expected {VOC_LAYOUT}")
    # Each split's list file and mask folder; with the SBD masks, "train" is train_aug.
    default_masks = plain_masks if plain_masks.is_dir() else aug_masks
    sources = {p.stem: (p, default_masks) for p in sorted(lists.glob("*.txt"))}
    sources.pop("train_aug", None)
    if use_aug:
        sources["train"] = sources["train_aug"] = (lists / "train_aug.txt", aug_masks)
    stems_by_split = {name: read_split_list(list_file) for name, (list_file, _) in sources.items()}
    stems = select_split(f"voc ({base})", split, stems_by_split)
    mask_dir = sources[split][1]

    images = [base / "JPEGImages" / f"{stem}.jpg" for stem in stems]
    missing = [p.name for p in images if not p.is_file()]
    if missing:
        raise DataError(
            f"voc: {len(missing)} images of split '{split}' are missing from "
            f"{base / 'JPEGImages'} ({few(missing)}); re-extract the VOC archive"
        )
    masks: list[Path] | None = [mask_dir / f"{stem}.png" for stem in stems]
    absent = [p.name for p in masks if not p.is_file()]
    if len(absent) == len(masks):
        masks = None  # an unannotated split such as test: images only
    elif absent:
        raise DataError(
            f"voc: {len(absent)} masks of split '{split}' are missing from {mask_dir} "
            f"({few(absent)}); re-extract the annotations"
        )
    return FileDataset(
        images, masks, VOC_CLASSES, voc_palette(256), split=split, splits=sorted(sources)
    )
