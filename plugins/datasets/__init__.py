"""Datasets: PASCAL VOC 2012, a folder of images and masks, and generated shapes.

``voc``        VOCdevkit/VOC2012 with its split lists, optionally the SBD-augmented
               SegmentationClassAug masks and train_aug list used by DeepLab.
``folder``     ``root/images`` and ``root/masks`` with matching file stems.
``synthetic``  shapes on cluttered, textured backgrounds, generated from a seed: the
               class is carried by the shape only, never by the colour or texture.

This module registers them; each is built by its own module, imported when the
dataset is first built.
"""

from __future__ import annotations

from typing import Literal

from segkit import Param, hookimpl

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
            Param("splits_dir", str | None, None, help="folder of <split>.txt stem lists"),
            Param("val_fraction", float, 0.1, help="without split lists: share of images in 'val'"),
            Param("seed", int, 0, help="shuffle seed of the train/val division"),
        ],
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
