"""Small trees in the layouts of public datasets and annotation tools, written by the
tests (never downloaded), with each format's quirks and the masks expected of them.

Each writer returns ``{name: expected mask}``: what segkit must read, pixel for pixel,
worked out here from the drawn regions, not by the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 24, 32


def photo(seed: int, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# -- Cityscapes ---------------------------------------------------------------------

#: Regions of a label-id image: (rows, cols, Cityscapes label id, the train id expected).
CITYSCAPES_REGIONS = [
    ((slice(0, 24), slice(0, 32)), 7, 0),  # road
    ((slice(0, 6), slice(0, 32)), 23, 10),  # sky
    ((slice(8, 16), slice(4, 12)), 26, 13),  # car
    ((slice(10, 14), slice(6, 10)), 255, 255),  # license plate: id -1, stored as 255
    ((slice(8, 20), slice(14, 18)), 24, 11),  # person
    ((slice(20, 24), slice(0, 32)), 1, 255),  # ego vehicle: train id 255
    ((slice(8, 12), slice(20, 28)), 29, 255),  # caravan: train id 255
    ((slice(14, 18), slice(22, 30)), 33, 18),  # bicycle
]


def write_cityscapes(root: Path, images: int = 3, train_ids_in_val: bool = True) -> dict:
    """leftImg8bit/ + gtFine/ with train (label ids) and val (also *_labelTrainIds)."""
    expected = {}
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        for index in range(images):
            stem = f"{city}_{index:06d}_000019"
            ids = np.zeros((H, W), np.uint8)
            train = np.zeros((H, W), np.uint8)
            for (rows, cols), label_id, train_id in CITYSCAPES_REGIONS[: 4 + index * 2]:
                ids[rows, cols], train[rows, cols] = label_id, train_id
            image_dir = root / "leftImg8bit" / split / city
            label_dir = root / "gtFine" / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo(index)).save(image_dir / f"{stem}_leftImg8bit.png")
            Image.fromarray(ids, "L").save(label_dir / f"{stem}_gtFine_labelIds.png")
            if split == "val" and train_ids_in_val:
                # made by createTrainIdLabelImgs.py: read instead of the ids, so here it
                # holds something the ids would not give, to see which one is read
                train = np.where(train == 255, 255, (train + 1) % 19).astype(np.uint8)
                Image.fromarray(train, "L").save(label_dir / f"{stem}_gtFine_labelTrainIds.png")
            expected[f"{stem}_leftImg8bit"] = train
    return expected


# -- ADE20K -------------------------------------------------------------------------


def write_ade20k(root: Path, images: int = 3) -> dict:
    """ADEChallengeData2016 with label 0 ("other") and labels 1..150."""
    base = root / "ADEChallengeData2016"
    expected = {}
    for folder in ("training", "validation"):
        (base / "images" / folder).mkdir(parents=True, exist_ok=True)
        (base / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        for index in range(images):
            stem = f"ADE_{folder[:5]}_{index + 1:08d}"
            stored = np.zeros((H, W), np.uint8)  # 0: other objects, ignored
            stored[0:8] = 1  # wall -> class 0
            stored[8:16, 0:16] = 13  # person -> class 12
            stored[16:24, 16:32] = 150  # flag -> class 149
            stored[10:14, 20:24] = 3 + index  # sky, floor, tree ...
            reduced = np.where(stored == 0, 255, stored.astype(np.int16) - 1).astype(np.uint8)
            Image.fromarray(photo(10 + index)).save(base / "images" / folder / f"{stem}.jpg")
            Image.fromarray(stored, "L").save(base / "annotations" / folder / f"{stem}.png")
            expected[stem] = reduced
    return expected


# -- COCO ---------------------------------------------------------------------------

COCO_CATEGORIES = [
    {"id": 3, "name": "cat", "supercategory": "animal"},
    {"id": 7, "name": "dog", "supercategory": "animal"},
    {"id": 12, "name": "person", "supercategory": "person"},
]


def rectangle(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    """A COCO polygon covering the pixels x0..x1-1, y0..y1-1."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def column_major_rle(region: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths of 0s and 1s down the columns, 0s first."""
    flat = region.astype(np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": list(region.shape), "counts": counts}


def write_coco(root: Path, images: int = 4, file: str = "annotations.json") -> dict:
    """Images and one COCO file: overlapping polygons listed smallest first, a crowd
    RLE with a person inside it, categories with gaps in their ids."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries, annotations, expected = [], [], {}
    crowd = np.zeros((H, W), bool)
    crowd[2:12, 22:30] = True
    for index in range(images):
        name = f"photo_{index}.png"
        Image.fromarray(photo(20 + index)).save(root / "images" / name)
        entries.append({"id": 100 + index, "file_name": name, "height": H, "width": W})
        found = [
            (7, rectangle(4, 4, 10, 8), 0),  # a dog on
            (3, rectangle(0, 0, 20, 16), 0),  # a cat listed after it, larger
            (12, column_major_rle(crowd), 1),  # a crowd of people
            (12, rectangle(24, 5, 27, 9), 0),  # one person in the crowd
        ]
        for category, segmentation, is_crowd in found:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": 100 + index,
                    "category_id": category,
                    "segmentation": segmentation,
                    "iscrowd": is_crowd,
                    "area": 0,  # tools fill it in unreliably: segkit measures the regions
                    "bbox": [0, 0, 1, 1],
                }
            )
        mask = np.zeros((H, W), np.uint8)
        mask[crowd] = 255
        mask[0:16, 0:20] = 1  # cat: largest, painted first
        mask[4:8, 4:10] = 2  # dog over the cat
        mask[5:9, 24:27] = 3  # person over the crowd
        expected[Path(name).stem] = mask
    data = {"images": entries, "annotations": annotations, "categories": COCO_CATEGORIES}
    (root / file).write_text(json.dumps(data))
    return expected


# -- LabelMe ------------------------------------------------------------------------


def write_labelme(root: Path, images: int = 4) -> dict:
    """LabelMe files away from their images (relative and absolute imagePath, Windows
    separators), with polygons, rectangles, a circle, a line (not painted) and an
    __ignore__ region; no imageData.  Expected: (mask, the circle's rim, not compared)."""
    (root / "json").mkdir(parents=True, exist_ok=True)
    (root / "pictures").mkdir(parents=True, exist_ok=True)
    expected = {}
    for index in range(images):
        name = f"shot_{index}.png"
        Image.fromarray(photo(30 + index)).save(root / "pictures" / name)
        if index == 0:
            image_path = str((root / "pictures" / name).resolve())  # absolute
        elif index == 1:
            image_path = f"..\\pictures\\{name}"  # saved on Windows
        else:
            image_path = f"../pictures/{name}"
        shapes = [
            {"label": "road", "points": [[0, 12], [31, 12], [31, 23], [0, 23]],
             "shape_type": "polygon"},
            {"label": "car", "points": [[10, 4], [2, 14]], "shape_type": "rectangle"},
            {"label": "sign", "points": [[24, 6], [24, 2]], "shape_type": "circle"},
            {"label": "wire", "points": [[0, 0], [31, 0]], "shape_type": "line"},
            {"label": "__ignore__", "points": [[28, 20], [31, 23]], "shape_type": "rectangle"},
        ]  # fmt: skip
        if index % 2:
            shapes = shapes[:3] + shapes[4:]
        data = {
            "version": "5.4.1",
            "shapes": shapes,
            "imagePath": image_path,
            "imageData": None,
            "imageHeight": H,
            "imageWidth": W,
        }
        (root / "json" / f"shot_{index}.json").write_text(json.dumps(data))
        # labels: background 0, then car, road, sign (sorted; the line's wire is not one)
        mask = np.zeros((H, W), np.uint8)
        mask[12:24, 0:32] = 2  # road polygon, corners included
        mask[4:15, 2:11] = 1  # car rectangle, both corners included, over the road
        mask[20:24, 28:32] = 255  # ignored
        inside, outside = circle_pixels((24, 6), 4, margin=1)
        mask[inside] = 3  # the sign; its rim is rasterised as LabelMe's PIL does
        expected[f"shot_{index}"] = (mask, ~inside & ~outside)
    return expected


def circle_pixels(center: tuple[float, float], radius: float, margin: float) -> tuple:
    """Pixels surely inside (distance < radius - margin) and surely outside a circle."""
    rows, cols = np.mgrid[0:H, 0:W]
    distance = np.hypot(cols - center[0], rows - center[1])
    return distance < radius - margin, distance > radius + margin


# -- a folder dataset, and what tests check around a refusal -------------------------


def write_folder(
    root: Path, count: int = 10, binary: bool = False, size: tuple[int, int] = (H, W)
) -> Path:
    """``root/images`` + ``root/masks``: classes 1..3 on background 0, a 255 line; or,
    ``binary``, the object saved as 255 on 0 (as most binary masks in the wild are)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    height, width = size
    for index in range(count):
        mask = np.zeros(size, np.uint8)
        mask[height // 4 : height // 2, width // 4 : 3 * width // 4] = 255 if binary else 1
        if not binary:
            mask[height // 2 :, : width // 3] = 1 + index % 3
            mask[1] = 255
        Image.fromarray(photo(40 + index, height, width)).save(root / "images" / f"i{index:03}.jpg")
        Image.fromarray(mask, "L").save(root / "masks" / f"i{index:03}.png")
    return root


def tree_state(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes."""
    import hashlib

    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def error_lines(capsys) -> list[str]:
    """The lines a command wrote to stderr (the one-line error of a refusal)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.strip()]
