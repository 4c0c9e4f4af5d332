"""``cityscapes``: ``leftImg8bit/`` and ``gtFine/``, the 34 label ids read as the 19
training classes of the official benchmark (cityscapesScripts' ``labels.py``)."""

from __future__ import annotations

from pathlib import Path

from segkit_plugins.datasets.layouts import layout_hint
from segkit_plugins.datasets.lists import few, missing_masks_message

from segkit import DataError
from segkit.data import FileDataset, LabelMap, select_split

#: The official table: (name, label id, train id, colour); train id 255 is ignored.
#: License plate has id -1 and is never drawn into the label images.
LABELS = (
    ("unlabeled", 0, 255, (0, 0, 0)),
    ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)),
    ("out of roi", 3, 255, (0, 0, 0)),
    ("static", 4, 255, (0, 0, 0)),
    ("dynamic", 5, 255, (111, 74, 0)),
    ("ground", 6, 255, (81, 0, 81)),
    ("road", 7, 0, (128, 64, 128)),
    ("sidewalk", 8, 1, (244, 35, 232)),
    ("parking", 9, 255, (250, 170, 160)),
    ("rail track", 10, 255, (230, 150, 140)),
    ("building", 11, 2, (70, 70, 70)),
    ("wall", 12, 3, (102, 102, 156)),
    ("fence", 13, 4, (190, 153, 153)),
    ("guard rail", 14, 255, (180, 165, 180)),
    ("bridge", 15, 255, (150, 100, 100)),
    ("tunnel", 16, 255, (150, 120, 90)),
    ("pole", 17, 5, (153, 153, 153)),
    ("polegroup", 18, 255, (153, 153, 153)),
    ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)),
    ("vegetation", 21, 8, (107, 142, 35)),
    ("terrain", 22, 9, (152, 251, 152)),
    ("sky", 23, 10, (70, 130, 180)),
    ("person", 24, 11, (220, 20, 60)),
    ("rider", 25, 12, (255, 0, 0)),
    ("car", 26, 13, (0, 0, 142)),
    ("truck", 27, 14, (0, 0, 70)),
    ("bus", 28, 15, (0, 60, 100)),
    ("caravan", 29, 255, (0, 0, 90)),
    ("trailer", 30, 255, (0, 0, 110)),
    ("train", 31, 16, (0, 80, 100)),
    ("motorcycle", 32, 17, (0, 0, 230)),
    ("bicycle", 33, 18, (119, 11, 32)),
    ("license plate", -1, -1, (0, 0, 142)),
)
#: The 19 classes by train id, with their colours.
TRAIN_CLASSES = sorted((t, n, c) for n, _, t, c in LABELS if 0 <= t < 255)
CLASS_NAMES = [name for _, name, _ in TRAIN_CLASSES]
PALETTE = [list(colour) for _, _, colour in TRAIN_CLASSES]

LAYOUT = (
    "root/{leftImg8bit,gtFine}/<split>/<city>/<city>_<seq>_<frame>_"
    "{leftImg8bit,gtFine_labelIds}.png"
)
IMAGE_SUFFIX = "_leftImg8bit.png"


def label_id_map() -> LabelMap:
    """Label ids 0..33 -> train ids; -1 and 255 (-1 stored in 8 bits) are ignored."""
    pairs = {}
    for _, label_id, train_id, _ in LABELS:
        pairs[label_id if label_id >= 0 else 255] = train_id if 0 <= train_id < 255 else 255
    return LabelMap.from_pairs(
        pairs,
        "the Cityscapes label ids (0..33)",
        "it is no Cityscapes label id: regenerate the gtFine labels with cityscapesScripts",
    )


def _trees(root: Path) -> tuple[Path, Path]:
    images, labels = root / "leftImg8bit", root / "gtFine"
    if not images.is_dir():
        raise DataError(
            f"cityscapes: {root} has no leftImg8bit/ folder; expected {LAYOUT} (unpack "
            f"leftImg8bit_trainvaltest.zip into root){layout_hint(root, 'cityscapes')}"
        )
    if not labels.is_dir():
        raise DataError(
            f"cityscapes: {root} has no gtFine/ folder; expected {LAYOUT} (unpack "
            f"gtFine_trainvaltest.zip into root)"
        )
    return images, labels


def _mask_for(image: Path, images: Path, labels: Path) -> tuple[Path, bool]:
    """The label image of ``image``: ``*_labelTrainIds.png`` when made, else ``*_labelIds``."""
    stem = image.name[: -len(IMAGE_SUFFIX)]
    folder = labels / image.parent.relative_to(images)
    train_ids = folder / f"{stem}_gtFine_labelTrainIds.png"
    if train_ids.is_file():
        return train_ids, True
    return folder / f"{stem}_gtFine_labelIds.png", False


def build_cityscapes(split: str, root: str) -> FileDataset:
    """Cityscapes' fine annotations, in the 19 training classes."""
    root_path = Path(root).expanduser()
    images_dir, labels_dir = _trees(root_path)
    by_split = {
        folder.name: sorted(folder.glob(f"*/*{IMAGE_SUFFIX}"))
        for folder in sorted(images_dir.iterdir())
        if folder.is_dir()
    }
    images = list(select_split(f"cityscapes ({root_path})", split, by_split))
    pairs = [_mask_for(image, images_dir, labels_dir) for image in images]
    missing = [mask for mask, _ in pairs if not mask.is_file()]
    if missing:
        raise DataError(
            missing_masks_message(
                "cityscapes",
                missing,
                f"unpack gtFine_trainvaltest.zip so that gtFine/{split}/ matches "
                f"leftImg8bit/{split}/",
            )
        )
    kinds = {train_ids for _, train_ids in pairs}
    if len(kinds) > 1:
        made = sorted(mask.name for mask, train_ids in pairs if train_ids)
        raise DataError(
            f"cityscapes: split '{split}' has *_labelTrainIds.png for {len(made)} of its "
            f"{len(pairs)} images ({few(made)}); create them for every image "
            f"(cityscapesscripts/preparation/createTrainIdLabelImgs.py) or delete them"
        )
    return FileDataset(
        images,
        [mask for mask, _ in pairs],
        CLASS_NAMES,
        PALETTE,
        split=split,
        splits=list(by_split),
        label_map=None if kinds == {True} else label_id_map(),
    )
