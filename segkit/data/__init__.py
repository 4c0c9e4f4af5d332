"""The data room: datasets and their building, file reading, transforms, loading.

Dataset plugins import what they need from here (or from ``segkit``); the modules
below are private.
"""

from __future__ import annotations

from segkit.data.dataset import (
    IGNORE_INDEX,
    FileDataset,
    Sample,
    SegmentationDataset,
    Splits,
    as_palette,
    build_dataset,
    build_splits,
    check_sample,
    select_split,
    voc_palette,
)
from segkit.data.files import read_image, read_mask
from segkit.data.loading import (
    EvalItem,
    EvalSet,
    ShardSampler,
    TrainingSet,
    collate_eval,
    make_loader,
    to_device,
)
from segkit.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentData,
    EvalTransform,
    TrainTransform,
    build_train_transform,
    denormalize,
    normalize,
    sample_seed,
)

__all__ = [
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentData",
    "EvalItem",
    "EvalSet",
    "EvalTransform",
    "FileDataset",
    "Sample",
    "SegmentationDataset",
    "ShardSampler",
    "Splits",
    "TrainTransform",
    "TrainingSet",
    "as_palette",
    "build_dataset",
    "build_splits",
    "build_train_transform",
    "check_sample",
    "collate_eval",
    "denormalize",
    "make_loader",
    "normalize",
    "read_image",
    "read_mask",
    "sample_seed",
    "select_split",
    "to_device",
    "voc_palette",
]
