"""``coco``: a COCO-format annotation file (polygons and RLE) with its images,
rasterised into semantic masks by pycocotools.

The masks: label 0 is the background (pixels no annotation covers); category ids,
sorted, become labels 1..K.  Crowd regions (``iscrowd = 1``) are painted 255 (ignore)
first; the other annotations are then painted over them from the largest to the
smallest, so that an object lying on another one (a cup on a table) stays visible
whatever order the tool exported them in; of two with the same area, the later wins.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from segkit_plugins.datasets.coco_json import CocoImage, categories_of, parse_coco, read_coco
from segkit_plugins.datasets.layouts import layout_hint
from segkit_plugins.datasets.lists import few, split_stems

from segkit import DataError
from segkit.data import (
    Sample,
    SampleInfo,
    SegmentationDataset,
    check_sample,
    read_image,
    read_image_header,
)

#: Roboflow's split folders, and the split each is.
ROBOFLOW_SPLITS = {"train": "train", "valid": "val", "test": "test"}
ROBOFLOW_FILE = "_annotations.coco.json"


def _mask_api() -> Any:
    try:
        from pycocotools import mask
    except ImportError:
        raise DataError(
            "coco: reading COCO annotations needs pycocotools; install it with "
            "pip install 'segkit[coco]'"
        ) from None
    return mask


def paint(image: CocoImage, height: int, width: int) -> np.ndarray:
    """The H×W label mask of ``image``'s annotations (see the module for the rule)."""
    api = _mask_api()
    mask = np.zeros((height, width), np.uint8)
    objects = []
    for order, annotation in enumerate(image.annotations):
        region = _decode(api, annotation.segmentation, height, width)
        if annotation.crowd:
            mask[region] = 255
        else:
            objects.append((-int(region.sum()), order, region, annotation.label))
    for _, _, region, label in sorted(objects, key=lambda o: (o[0], o[1])):
        mask[region] = label
    return mask


def _decode(api: Any, segmentation: Any, height: int, width: int) -> np.ndarray:
    if isinstance(segmentation, dict) and isinstance(segmentation["counts"], str):
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode()}
    elif isinstance(segmentation, dict):  # uncompressed RLE: counts as a list
        rle = api.frPyObjects(segmentation, height, width)
    else:
        rle = api.merge(api.frPyObjects(segmentation, height, width))
    with warnings.catch_warnings():
        # pycocotools' compiled decoder asks NumPy 2 for an array in the NumPy 1 way;
        # the array it gets is right, the warning is about the call's form
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return api.decode(rle).astype(bool)


class CocoDataset(SegmentationDataset):
    """Images read from files, masks painted from their COCO annotations."""

    def __init__(
        self,
        items: list[tuple[Path, CocoImage]],
        class_names: list[str],
        *,
        split: str,
        splits: list[str],
        annotation_files: list[Path],
    ) -> None:
        super().__init__(class_names, None, split=split, splits=splits)
        self.items = items
        self.annotation_files = annotation_files

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        path, image = self.items[index]
        pixels = read_image(path)
        self._check_size(path, image, *pixels.shape[:2])
        sample = Sample(pixels, paint(image, image.height, image.width), path.stem, str(path))
        check_sample(sample, self.num_classes)
        return sample

    def describe(self, index: int) -> SampleInfo:
        path, image = self.items[index]
        height, width, mode = read_image_header(path)
        self._check_size(path, image, height, width)
        notes = ()
        if image.boxes_only:
            notes = ("annotations with a box but no segmentation were not painted",)
        mask = paint(image, height, width)
        return SampleInfo(
            path.stem, height, width, mode, mask, str(image.source), "COCO", None, notes
        )

    def source_files(self) -> list[Path]:
        return [*self.annotation_files, *(path for path, _ in self.items)]

    @staticmethod
    def _check_size(path: Path, image: CocoImage, height: int, width: int) -> None:
        if (height, width) == (image.height, image.width):
            return
        turned = (width, height) == (image.height, image.width)
        raise DataError(
            f"coco: image {path} is {height}×{width} (H×W) but {image.source.name} says "
            f"{image.height}×{image.width}"
            + (
                ": the annotation tool showed it turned by its EXIF orientation; save the "
                "image turned (e.g. with exiftran or PIL.ImageOps.exif_transpose)"
                if turned
                else "; export the images with their annotations again"
            )
        )


def annotation_files(root: Path, annotations: str | dict | None) -> dict[str, Path] | Path:
    """The annotation file, or one per split (a table, or Roboflow's split folders)."""
    if isinstance(annotations, dict):
        return {str(split): _under(root, str(path)) for split, path in annotations.items()}
    if annotations is not None:
        return _under(root, annotations)
    roboflow = {
        split: root / folder / ROBOFLOW_FILE
        for folder, split in ROBOFLOW_SPLITS.items()
        if (root / folder / ROBOFLOW_FILE).is_file()
    }
    if roboflow:
        return roboflow
    found = sorted(root.glob("*.json")) or sorted((root / "annotations").glob("*.json"))
    if len(found) != 1:
        listing = few([p.name for p in found]) if found else "none"
        raise DataError(
            f"coco: cannot tell which annotation file to read in {root} (found: {listing}); "
            f'set annotations = "<file>.json"{layout_hint(root, "coco")}'
        )
    return found[0]


def _under(root: Path, path: str) -> Path:
    given = Path(path).expanduser()
    return given if given.is_absolute() else root / given


def _locate(root: Path, images: str | None, image: CocoImage) -> Path:
    """The file of ``image``: under ``images`` when given, else beside the annotation
    file (Roboflow, Label Studio), under root, or in root/images (CVAT)."""
    if images is not None:
        candidates = [_under(root, images) / image.file_name]
    else:
        beside = image.source.parent
        candidates = [beside, root, root / "images", beside.parent / "images"]
        candidates = [folder / image.file_name for folder in dict.fromkeys(candidates)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(
        f"coco: {image.source.name} names the image {image.file_name}, which does not exist "
        f"(looked for {candidates[0]}); set images = the folder its file names are in, or "
        f"copy the image there"
    )


def build_coco(
    split: str,
    root: str,
    annotations: str | dict | None = None,
    images: str | None = None,
    splits_dir: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> CocoDataset:
    """A COCO export rasterised into semantic masks, split by file or like ``folder``."""
    _mask_api()
    root_path = Path(root).expanduser()
    files = annotation_files(root_path, annotations)
    per_split = files if isinstance(files, dict) else {"": files}
    categories: dict[Any, str] | None = None
    for path in per_split.values():
        found = categories_of(read_coco(path), path)
        if categories is not None and found != categories:
            raise DataError(
                f"coco: {path} lists other categories than {next(iter(per_split.values()))}; "
                f"export every split from the same project"
            )
        categories = found
    assert categories is not None
    labels = {category: index + 1 for index, category in enumerate(sorted(categories))}
    names = ["background", *(categories[c] for c in sorted(categories))]
    if isinstance(files, dict):
        if split not in files:
            known = ", ".join(sorted(files))
            raise DataError(f"coco: no annotation file for split '{split}' (splits: {known})")
        chosen = parse_coco(files[split], labels)
        splits = list(files)
    else:
        every = parse_coco(files, labels)
        by_stem: dict[str, CocoImage] = {}
        for image in every:
            stem = Path(image.file_name).stem
            if stem in by_stem:
                raise DataError(
                    f"coco: {files} names two images with the stem '{stem}' "
                    f"({by_stem[stem].file_name}, {image.file_name}); rename one"
                )
            by_stem[stem] = image
        stems, splits = split_stems(
            "coco", split, list(by_stem), root_path, splits_dir, val_fraction, seed
        )
        chosen = [by_stem[stem] for stem in stems]
    if not chosen:
        raise DataError(f"coco: split '{split}' has no images; export some")
    items = [(_locate(root_path, images, image), image) for image in chosen]
    return CocoDataset(
        items, names, split=split, splits=splits, annotation_files=list(per_split.values())
    )
