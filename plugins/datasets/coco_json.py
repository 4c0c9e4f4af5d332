"""Reading a COCO-format annotation file (as COCO, CVAT, Label Studio and Roboflow export
it) into images and their annotations, refusing by name whatever is malformed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segkit import DataError


@dataclass
class Annotation:
    """One annotation: its class label, its segmentation (polygons or RLE) and whether
    it is a crowd region."""

    id: Any
    label: int
    segmentation: Any
    crowd: bool


@dataclass
class CocoImage:
    file_name: str
    height: int
    width: int
    source: Path
    annotations: list[Annotation] = field(default_factory=list)
    #: Annotations without a segmentation (boxes only): not painted.
    boxes_only: int = 0


@dataclass
class CocoFile:
    path: Path
    #: category id -> name, in the file's order.
    categories: dict[Any, str]
    images: list[CocoImage]


def read_coco(path: Path) -> dict[str, Any]:
    """The JSON object of ``path``, which must hold images, annotations and categories."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DataError(f"coco: annotation file {path} does not exist; check annotations") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"coco: {path} is not a JSON file ({exc}); export it again") from None
    keys = ("images", "annotations", "categories")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in keys):
        found = ", ".join(sorted(data)[:6]) if isinstance(data, dict) else type(data).__name__
        raise DataError(
            f"coco: {path} is not a COCO annotation file (it needs the lists images, "
            f"annotations and categories; it holds {found or 'nothing'}); export the "
            f"annotations in COCO format"
        )
    return data


def categories_of(data: dict[str, Any], path: Path) -> dict[Any, str]:
    """Category id -> name, without Roboflow's unused dataset-named category.

    Roboflow exports a category 0 named after the project, the supercategory of all the
    others, which no annotation uses; it is not a class.
    """
    categories: dict[Any, str] = {}
    supers = set()
    for entry in data["categories"]:
        if (
            not isinstance(entry, dict)
            or "id" not in entry
            or not isinstance(entry.get("name"), str)
        ):
            raise DataError(
                f"coco: {path} has a category without an id and a name ({str(entry)[:60]}); "
                f"every category needs both"
            )
        if entry["id"] in categories:
            raise DataError(f"coco: {path} lists category id {entry['id']} twice; keep one")
        categories[entry["id"]] = entry["name"]
        if entry.get("supercategory") not in (None, "", "none", entry["name"]):
            supers.add(entry["supercategory"])
    used = {a.get("category_id") for a in data["annotations"] if isinstance(a, dict)}
    for category, name in list(categories.items()):
        if name in supers and category not in used and len(categories) > 1:
            del categories[category]
    if not categories:
        raise DataError(
            f"coco: {path} has an empty category list; export it again with the labels "
            f"(classes) of the project"
        )
    return categories


def parse_coco(path: Path, labels: dict[Any, int]) -> list[CocoImage]:
    """The images of ``path`` with their annotations, labelled through ``labels``
    (category id -> class label)."""
    data = read_coco(path)
    images: dict[Any, CocoImage] = {}
    for entry in data["images"]:
        image = _image(entry, path)
        if entry["id"] in images:
            raise DataError(f"coco: {path} lists image id {entry['id']} twice; keep one")
        images[entry["id"]] = image
    for entry in data["annotations"]:
        if not isinstance(entry, dict):
            raise DataError(f"coco: {path} has an annotation that is not an object: {entry!r:.60}")
        where = f"annotation {entry.get('id')} in {path}"
        image = images.get(entry.get("image_id"))
        if image is None:
            raise DataError(
                f"coco: {where} names image id {entry.get('image_id')!r}, which the file's "
                f"images list does not hold; export the images with their annotations"
            )
        if entry.get("category_id") not in labels:
            raise DataError(
                f"coco: {where} names category {entry.get('category_id')!r}, which the "
                f"categories list does not hold; export the categories too"
            )
        segmentation = entry.get("segmentation")
        if not segmentation:
            image.boxes_only += 1
            continue
        _check_segmentation(segmentation, image, where)
        label = labels[entry["category_id"]]
        image.annotations.append(
            Annotation(entry.get("id"), label, segmentation, bool(entry.get("iscrowd", 0)))
        )
    return list(images.values())


def _image(entry: Any, path: Path) -> CocoImage:
    ok = isinstance(entry, dict) and "id" in entry and isinstance(entry.get("file_name"), str)
    sizes = [entry.get(k) for k in ("height", "width")] if isinstance(entry, dict) else []
    if not ok or not all(isinstance(v, int) and v > 0 for v in sizes):
        raise DataError(
            f"coco: {path} has an image entry without id, file_name, height and width "
            f"({str(entry)[:80]}); export it again"
        )
    return CocoImage(entry["file_name"].replace("\\", "/"), sizes[0], sizes[1], path)


def _check_segmentation(segmentation: Any, image: CocoImage, where: str) -> None:
    if isinstance(segmentation, dict):
        size = segmentation.get("size")
        if "counts" not in segmentation or not isinstance(size, list):
            raise DataError(f"coco: {where} has an RLE without counts and size; export it again")
        if list(size) != [image.height, image.width]:
            raise DataError(
                f"coco: {where} has an RLE of size {size} for image {image.file_name} of "
                f"{image.height}×{image.width} (H×W); export it again"
            )
        return
    if not isinstance(segmentation, list):
        raise DataError(f"coco: {where} has a segmentation that is neither polygons nor RLE")
    for polygon in segmentation:
        numbers = isinstance(polygon, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in polygon
        )
        if not numbers or len(polygon) % 2:
            raise DataError(
                f"coco: {where} has a polygon that is not a flat list of x, y numbers; "
                f"export it again"
            )
        if len(polygon) < 6:
            raise DataError(
                f"coco: {where} (image {image.file_name}) has a polygon of "
                f"{len(polygon) // 2} points; a polygon needs at least 3: delete or redraw it"
            )
