"""Recognising a known dataset layout from its folder names, for the message of a
dataset that was pointed at another layout's folder."""

from __future__ import annotations

from pathlib import Path

#: (what the tree holds, the dataset that reads it).
_LAYOUTS = (
    (("leftImg8bit", "gtFine"), "cityscapes"),
    (("ADEChallengeData2016",), "ade20k"),
    (("images/training", "annotations/training"), "ade20k"),
    (("JPEGImages", "SegmentationClass"), "voc"),
    (("VOC2012/JPEGImages",), "voc"),
    (("images", "masks"), "folder"),
)


def recognise(root: Path) -> str | None:
    """The dataset whose layout ``root`` has, from folder and file names only."""
    if not root.is_dir():
        return None
    for parts, name in _LAYOUTS:
        if all((root / part).is_dir() for part in parts):
            return name
    jsons = [p for p in root.glob("*.json") if not p.name.startswith(".")]
    coco_names = ("_annotations.coco.json", "result.json")
    if any(p.name in coco_names or p.name.startswith("instances_") for p in jsons):
        return "coco"
    if (root / "annotations").is_dir() and any((root / "annotations").glob("*.json")):
        return "coco"
    if jsons:
        return "labelme"
    return None


def layout_hint(root: Path, expected: str = "folder") -> str:
    """``"; it looks like a Cityscapes tree: ..."`` when ``root`` has another layout."""
    found = recognise(root)
    if found is None or found == expected:
        return ""
    return (
        f"; {root} looks like a '{found}' dataset: set data.dataset.name = \"{found}\" "
        f"(segkit data check {root} --dataset {found})"
    )
