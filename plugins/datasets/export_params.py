"""The parameters of the datasets that split their items themselves (``folder``,
``coco``, ``labelme``), and their checks: cheap, importing nothing heavy."""

from __future__ import annotations

from segkit import ConfigError, Param

#: Split lists, or a seeded share held out for validation: as ``folder`` splits.
SPLIT_PARAMS = [
    Param("splits_dir", str | None, None, help="folder of <split>.txt stem lists"),
    Param("val_fraction", float, 0.1, help="without split lists: share of images in 'val'"),
    Param("seed", int, 0, help="shuffle seed of the train/val division"),
]

COCO_PARAMS = [
    Param("root", str, help="the export's folder"),
    Param(
        "annotations",
        str | dict | None,
        None,
        help="the COCO JSON (under root), or one per split: { train = 'a.json', val = "
        "'b.json' }; none: the one .json in root or root/annotations, or Roboflow's "
        "train/ valid/ test/ folders",
    ),
    Param(
        "images",
        str | None,
        None,
        help="the folder the file names are relative to; none: beside the JSON, root or "
        "root/images",
    ),
    *SPLIT_PARAMS,
]

LABELME_PARAMS = [
    Param("root", str, help="the folder of LabelMe JSON files (searched recursively)"),
    Param(
        "class_names",
        list[str] | None,
        None,
        help="class names, label 0 first; none: 'background' and the labels found, sorted",
    ),
    *SPLIT_PARAMS,
]


def check_splits(val_fraction: float = 0.1, annotations: object = None, **_: object) -> None:
    """What the split parameters refuse, without reading a file."""
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if isinstance(annotations, dict):
        for split, path in annotations.items():
            if not isinstance(path, str):
                raise ConfigError(
                    f"annotations: the file of split '{split}' must be a path, got {path!r}"
                )
