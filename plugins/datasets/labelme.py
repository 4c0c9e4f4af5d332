"""``labelme``: a folder of LabelMe JSON files, one per image, painted into masks.

Shapes are painted in the order of the file, a later shape over an earlier one, as
LabelMe's own export does: polygons, rectangles (two corners), circles (the centre and
a point on the rim) and masks (LabelMe 5.3's bitmap of a box).  Lines, line strips
and points enclose no area: they are not painted, and ``segkit data check`` counts
them.  The label ``__ignore__`` paints 255 (ignore), ``_background_`` paints 0; the
other labels, collected across all the files and sorted, are classes 1..K unless
``class_names`` gives their order.
"""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
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

AREA_SHAPES = {"polygon", "rectangle", "circle", "mask"}
#: Shapes without an area: not painted, counted by the data check.
LINE_SHAPES = {"line", "linestrip", "point", "points"}
IGNORE_LABEL, BACKGROUND_LABEL = "__ignore__", "_background_"


@dataclass
class Shape:
    label: str
    kind: str
    points: list[tuple[float, float]]
    mask: str | None = None


@dataclass
class LabelmeFile:
    json: Path
    image: Path
    height: int
    width: int
    shapes: list[Shape]
    skipped: int


def read_labelme(path: Path) -> LabelmeFile:
    """One LabelMe file; a malformed shape or a missing image is one line naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"labelme: {path} is not a JSON file ({exc}); save it again") from None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DataError(
            f"labelme: {path} is not a LabelMe file (it has no list of shapes); move it out "
            f"of the folder, or read COCO files with dataset 'coco'"
        )
    image_path = data.get("imagePath")
    if not isinstance(image_path, str) or not image_path:
        raise DataError(f"labelme: {path} has no imagePath; open and save it in LabelMe again")
    image = Path(image_path.replace("\\", "/"))
    image = image if image.is_absolute() else path.parent / image
    if not image.is_file():
        raise DataError(
            f"labelme: {path} names the image {image_path}, which does not exist ({image}); "
            f"fix imagePath or put the image there (imageData is not read)"
        )
    shapes, skipped = [], 0
    for index, entry in enumerate(data["shapes"]):
        shape = _shape(entry, path, index)
        if shape.kind in LINE_SHAPES:
            skipped += 1
        else:
            shapes.append(shape)
    height, width = data.get("imageHeight"), data.get("imageWidth")
    return LabelmeFile(path, image, height, width, shapes, skipped)


def _shape(entry: Any, path: Path, index: int) -> Shape:
    where = f"labelme: {path} shape {index + 1}"
    if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
        raise DataError(f"{where} has no label; label it in LabelMe")
    kind = entry.get("shape_type") or "polygon"
    label = entry["label"]
    if kind not in AREA_SHAPES | LINE_SHAPES:
        raise DataError(
            f"{where} ('{label}') is a {kind!r} shape, which segkit cannot paint; redraw it "
            f"as a polygon"
        )
    try:
        points = [(float(x), float(y)) for x, y in entry.get("points") or []]
    except (TypeError, ValueError):
        raise DataError(f"{where} ('{label}') has points that are not [x, y] pairs") from None
    needed = {"polygon": 3, "rectangle": 2, "circle": 2, "mask": 2}.get(kind, 0)
    if len(points) < needed or (kind in ("rectangle", "circle") and len(points) != 2):
        shape = f"{kind} of {len(points)} point{'s' if len(points) != 1 else ''}"
        fix = "at least 3" if kind == "polygon" else "2"
        raise DataError(f"{where} ('{label}') is a {shape}; it needs {fix}: redraw it")
    return Shape(label, kind, points, entry.get("mask"))


def paint(file: LabelmeFile, labels: dict[str, int], height: int, width: int) -> np.ndarray:
    """The H×W label mask of ``file``'s shapes, a later shape over an earlier one."""
    mask = Image.new("L", (width, height), 0)
    for shape in file.shapes:
        region = _region(shape, height, width, file.json)
        mask.paste(labels[shape.label], mask=region)
    return np.asarray(mask, dtype=np.uint8).copy()


def _region(shape: Shape, height: int, width: int, path: Path) -> Image.Image:
    region = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(region)
    points = shape.points
    if shape.kind == "polygon":
        draw.polygon(points, fill=1, outline=1)
    elif shape.kind == "rectangle":
        (x0, y0), (x1, y1) = points
        draw.rectangle((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), fill=1, outline=1)
    elif shape.kind == "circle":
        (cx, cy), (px, py) = points
        r = math.hypot(px - cx, py - cy)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=1, outline=1)
    else:  # a bitmap of the box between the two points
        try:
            bitmap = Image.open(io.BytesIO(base64.b64decode(shape.mask or ""))).convert("1")
        except (OSError, ValueError):
            raise DataError(
                f"labelme: {path} has a mask shape whose bitmap cannot be read"
            ) from None
        (x0, y0) = points[0]
        region.paste(bitmap, (round(x0), round(y0)))
    return region


class LabelmeDataset(SegmentationDataset):
    """Images read from files, masks painted from their LabelMe shapes."""

    def __init__(
        self, files: list[LabelmeFile], labels: dict[str, int], names: list[str], **kw: Any
    ) -> None:
        super().__init__(names, None, **kw)
        self.files = files
        self.labels = labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        file = self.files[index]
        pixels = read_image(file.image)
        height, width = pixels.shape[:2]
        self._check_size(file, height, width)
        mask = paint(file, self.labels, height, width)
        sample = Sample(pixels, mask, file.json.stem, str(file.image), str(file.json))
        check_sample(sample, self.num_classes)
        return sample

    def describe(self, index: int) -> SampleInfo:
        file = self.files[index]
        height, width, mode = read_image_header(file.image)
        self._check_size(file, height, width)
        notes = ("line and point shapes (no area) were not painted",) if file.skipped else ()
        mask = paint(file, self.labels, height, width)
        return SampleInfo(
            file.json.stem, height, width, mode, mask, str(file.json), "LabelMe", None, notes
        )

    def source_files(self) -> list[Path]:
        return [path for file in self.files for path in (file.json, file.image)]

    @staticmethod
    def _check_size(file: LabelmeFile, height: int, width: int) -> None:
        if file.height in (None, height) and file.width in (None, width):
            return
        raise DataError(
            f"labelme: {file.image} is {height}×{width} (H×W) but {file.json} was drawn on "
            f"{file.height}×{file.width}; annotate the image as it is, or restore its size"
        )


def _labels(files: list[LabelmeFile], class_names: list[str] | None) -> tuple[dict, list[str]]:
    found = sorted({s.label for f in files for s in f.shapes} - {IGNORE_LABEL, BACKGROUND_LABEL})
    names = class_names or ["background", *found]
    labels = {name: index for index, name in enumerate(names)}
    labels[IGNORE_LABEL] = 255
    labels.setdefault(BACKGROUND_LABEL, 0)
    unknown = [label for label in found if label not in labels]
    if unknown:
        holder = next(f.json for f in files if any(s.label == unknown[0] for s in f.shapes))
        raise DataError(
            f"labelme: the label{'s' if len(unknown) > 1 else ''} {few(unknown)} (e.g. in "
            f"{holder}) {'are' if len(unknown) > 1 else 'is'} not in class_names; add "
            f"{'them' if len(unknown) > 1 else 'it'}, or relabel the shapes"
        )
    return labels, names


def build_labelme(
    split: str,
    root: str,
    class_names: list[str] | None = None,
    splits_dir: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> LabelmeDataset:
    """Every LabelMe JSON under ``root``, split by lists or a seeded shuffle."""
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise DataError(f"labelme: root {root_path} is not a folder; set it to the JSON folder")
    paths = [
        p for p in sorted(root_path.rglob("*.json"))
        if not any(part.startswith(".") for part in p.relative_to(root_path).parts)
    ]  # fmt: skip
    if not paths:
        raise DataError(
            f"labelme: {root_path} holds no .json files; point root at the folder LabelMe "
            f"saved them in{layout_hint(root_path, 'labelme')}"
        )
    by_stem: dict[str, Path] = {}
    for path in paths:
        if path.stem in by_stem:
            raise DataError(
                f"labelme: two files share the stem '{path.stem}' ({by_stem[path.stem]}, "
                f"{path}); rename one"
            )
        by_stem[path.stem] = path
    every = {stem: read_labelme(path) for stem, path in by_stem.items()}
    labels, names = _labels(list(every.values()), class_names)
    stems, splits = split_stems(
        "labelme", split, list(every), root_path, splits_dir, val_fraction, seed
    )
    return LabelmeDataset([every[s] for s in stems], labels, names, split=split, splits=splits)
