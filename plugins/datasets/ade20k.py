"""``ade20k``: the SceneParsing benchmark's ``ADEChallengeData2016``, 150 classes.

Label 0 of its annotations is "other objects", not a class of the benchmark: it is
ignored, and labels 1..150 become classes 0..149 (what MMSegmentation calls
``reduce_zero_label``).
"""

from __future__ import annotations

import colorsys
from pathlib import Path

from segkit_plugins.datasets.layouts import layout_hint
from segkit_plugins.datasets.lists import missing_masks_message

from segkit import DataError
from segkit.data import FileDataset, LabelMap, select_split

#: The 150 classes in the order of the benchmark's objectInfo150 (its first name each).
CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip

FOLDERS = {"train": "training", "val": "validation"}
LAYOUT = "ADEChallengeData2016/{images,annotations}/{training,validation}/"


def palette(count: int = len(CLASS_NAMES)) -> list[list[int]]:
    """``count`` distinct colours: hues a golden angle apart, in three brightnesses, so
    that neighbouring labels never look alike."""
    colours = []
    for index in range(count):
        hue = (index * 0.618033988749895) % 1.0
        value = (1.0, 0.78, 0.56)[index % 3]
        red, green, blue = colorsys.hsv_to_rgb(hue, 0.75, value)
        colours.append([round(red * 255), round(green * 255), round(blue * 255)])
    return colours


def reduce_zero_label() -> LabelMap:
    """0 ("other objects") is ignored, label ``k`` (1..150) is class ``k - 1``."""
    pairs = {0: 255} | {k: k - 1 for k in range(1, len(CLASS_NAMES) + 1)}
    return LabelMap.from_pairs(
        pairs,
        "ADE20K's labels (0..150)",
        "it is no ADE20K label: use the annotations of ADEChallengeData2016",
    )


def _base(root: Path) -> Path:
    for base in (root / "ADEChallengeData2016", root):
        if (base / "images").is_dir() and (base / "annotations").is_dir():
            return base
    raise DataError(
        f"ade20k: {root} has no ADEChallengeData2016/ (nor images/ and annotations/); "
        f"expected {LAYOUT}{layout_hint(root, 'ade20k')}"
    )


def build_ade20k(split: str, root: str) -> FileDataset:
    """ADE20K's SceneParsing images and annotations; splits ``train`` and ``val``."""
    base = _base(Path(root).expanduser())
    by_split = {
        name: sorted((base / "images" / folder).glob("*.jpg"))
        for name, folder in FOLDERS.items()
        if (base / "images" / folder).is_dir()
    }
    images = list(select_split(f"ade20k ({base})", split, by_split))
    mask_dir = base / "annotations" / FOLDERS[split]
    masks = [mask_dir / f"{image.stem}.png" for image in images]
    missing = [mask for mask in masks if not mask.is_file()]
    if missing:
        raise DataError(
            missing_masks_message(
                "ade20k", missing, f"unpack ADEChallengeData2016.zip whole into {base.parent}"
            )
        )
    return FileDataset(
        images,
        masks,
        CLASS_NAMES,
        palette(),
        split=split,
        splits=list(by_split),
        label_map=reduce_zero_label(),
    )
