"""The data room: datasets and their building, file reading, transforms, loading.

Dataset plugins import what they need from here (or from ``segkit``); the modules
below are private.
"""

from __future__ import annotations

from segkit.data.dataset import (
    IGNORE_INDEX,
    FileDataset,
    Sample,
    SampleInfo,
    SegmentationDataset,
    Splits,
    as_palette,
    build_dataset,
    build_splits,
    check_mask,
    check_sample,
    select_split,
    voc_palette,
)
from segkit.data.files import LOSSY_MASKS, read_image, read_image_header, read_mask
from segkit.data.label_maps import LabelMap, mask_values_map
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
    "LOSSY_MASKS",
    "AugmentData",
    "EvalItem",
    "EvalSet",
    "EvalTransform",
    "FileDataset",
    "LabelMap",
    "Sample",
    "SampleInfo",
    "SegmentationDataset",
    "ShardSampler",
    "Splits",
    "TrainTransform",
    "TrainingSet",
    "as_palette",
    "build_dataset",
    "build_splits",
    "build_train_transform",
    "check_mask",
    "check_sample",
    "collate_eval",
    "denormalize",
    "make_loader",
    "mask_values_map",
    "normalize",
    "read_image",
    "read_image_header",
    "read_mask",
    "sample_seed",
    "select_split",
    "to_device",
    "voc_palette",
]
