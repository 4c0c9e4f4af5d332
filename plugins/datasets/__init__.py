"""Datasets: the layouts people's data comes in, and generated shapes.

``voc``         VOCdevkit/VOC2012 with its split lists, optionally the SBD-augmented
                SegmentationClassAug masks and train_aug list used by DeepLab.
``folder``      ``root/images`` and ``root/masks`` with matching file stems.
``cityscapes``  ``leftImg8bit/`` + ``gtFine/``, read as the 19 training classes.
``ade20k``      ``ADEChallengeData2016``, 150 classes, label 0 ignored.
``coco``        a COCO-format export (COCO, CVAT, Label Studio, Roboflow), rasterised.
``labelme``     a folder of LabelMe JSON files, rasterised.
``synthetic``   shapes on cluttered, textured backgrounds, generated from a seed: the
                class is carried by the shape only, never by the colour or texture.

This module registers them; each is built by its own module, imported when the
dataset is first built.  The parameters of the annotation-tool exports are in
:mod:`segkit_plugins.datasets.export_params`.
"""

from __future__ import annotations

from typing import Literal

from segkit_plugins.datasets.export_params import (
    COCO_PARAMS,
    LABELME_PARAMS,
    SPLIT_PARAMS,
    check_splits,
)

from segkit import ConfigError, Param, hookimpl

#: The shapes ``synthetic`` draws, in class order after the background.
SHAPES = ("circle", "square", "triangle", "cross", "ring", "star")


@hookimpl
def register_datasets(register) -> None:
    register(
        "voc",
        "segkit_plugins.datasets.voc:build_voc",
        help="PASCAL VOC 2012 (VOCdevkit), with the SBD SegmentationClassAug masks when present",
        params=[
            Param("root", str, help="the VOCdevkit (or VOCdevkit/VOC2012) folder"),
            Param(
                "augmented",
                bool | Literal["auto"],
                "auto",
                help="train on train_aug + SegmentationClassAug: true, false or 'auto' "
                "(when present)",
            ),
        ],
    )
    register(
        "folder",
        "segkit_plugins.datasets.folder:build_folder",
        help="root/images and root/masks with matching file stems (index PNG masks)",
        params=[
            Param("root", str, help="folder holding images/ and masks/"),
            Param("class_names", list[str] | None, None, help="class names, label 0 first"),
            Param(
                "num_classes",
                int | None,
                None,
                help="number of classes when no names are given (neither: scan the masks)",
            ),
            Param("palette", list[list[int]] | None, None, help="[r, g, b] per class; none: VOC"),
            *SPLIT_PARAMS,
            Param(
                "binary",
                bool,
                False,
                help="binary masks (0/255, 0/1): 0 is background, any other value foreground",
            ),
            Param(
                "mask_values",
                dict | None,
                None,
                help="the label of each value the masks store, e.g. { 0 = 0, 128 = 1, "
                "255 = 2 }; other values are refused",
            ),
        ],
        check=check_folder,
    )
    register(
        "cityscapes",
        "segkit_plugins.datasets.cityscapes:build_cityscapes",
        help="Cityscapes (leftImg8bit/ + gtFine/): the 19 training classes, other ids ignored",
        params=[Param("root", str, help="the folder holding leftImg8bit/ and gtFine/")],
    )
    register(
        "ade20k",
        "segkit_plugins.datasets.ade20k:build_ade20k",
        help="ADE20K SceneParsing (ADEChallengeData2016): 150 classes, label 0 ignored",
        params=[Param("root", str, help="ADEChallengeData2016, or the folder holding it")],
    )
    register(
        "coco",
        "segkit_plugins.datasets.coco:build_coco",
        help="a COCO-format export (polygons, RLE) with its images, rasterised into masks; "
        "needs pycocotools (pip install 'segkit[coco]')",
        params=COCO_PARAMS,
        check=check_splits,
    )
    register(
        "labelme",
        "segkit_plugins.datasets.labelme:build_labelme",
        help="a folder of LabelMe JSON files (polygons, rectangles, circles), rasterised",
        params=LABELME_PARAMS,
        check=check_splits,
    )
    register(
        "synthetic",
        "segkit_plugins.datasets.synthetic:build_synthetic",
        help="shapes on cluttered textured backgrounds, generated from a seed (no download)",
        params=[
            Param("seed", int, 0, help="generation seed: same seed, same images"),
            Param(
                "num_classes", int, 5, help=f"background + the first shapes of {', '.join(SHAPES)}"
            ),
            Param("train_size", int, 2000, help="images in the train split"),
            Param("val_size", int, 200, help="images in the val split"),
            Param("min_size", int, 97, help="smallest image side"),
            Param("max_size", int, 161, help="largest image side"),
            Param("max_objects", int, 4, help="most shapes per image"),
        ],
    )


def check_folder(binary: bool = False, mask_values: dict | None = None, **params) -> None:
    """What ``folder`` refuses of its parameters, without reading a file."""
    check_splits(**params)
    if binary and mask_values is not None:
        raise ConfigError("dataset 'folder': give binary = true or mask_values, not both")
    for key, label in (mask_values or {}).items():
        if not str(key).isdigit() or int(key) > 65535:
            raise ConfigError(
                f"dataset 'folder': mask_values key {key!r} is no stored mask value; keys are "
                f"the values in the mask files (0..65535), e.g. {{ 0 = 0, 255 = 1 }}"
            )
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= 255:
            raise ConfigError(
                f"dataset 'folder': mask_values maps {key} to {label!r}; give a class label "
                f"0..254, or 255 to ignore those pixels"
            )
