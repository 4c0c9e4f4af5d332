"""The model room: assembly of backbone, head and upsampler; feature geometry; pretrained
weights; the checkpoint file format; and the per-layer summary."""

from __future__ import annotations

from segkit.model.assembly import (
    SegmentationModel,
    build_model,
    build_model_from_parts,
    count_parameters,
)
from segkit.model.checkpoint import load_checkpoint, save_checkpoint
from segkit.model.geometry import (
    BackboneInfo,
    FeatureInfo,
    bilinear_kernel,
    crop_or_pad,
    crop_start,
    grid_after,
    kernel_center,
)
from segkit.model.weights import (
    WEIGHTS_PARAM,
    check_state_dict,
    check_torchvision_keys,
    copy_decimated,
    decimate,
    hub_checkpoint,
    read_state_dict,
    read_torchvision_weights,
    resolve_weights,
)

__all__ = [
    "WEIGHTS_PARAM",
    "BackboneInfo",
    "FeatureInfo",
    "SegmentationModel",
    "bilinear_kernel",
    "build_model",
    "build_model_from_parts",
    "check_state_dict",
    "check_torchvision_keys",
    "copy_decimated",
    "count_parameters",
    "crop_or_pad",
    "crop_start",
    "decimate",
    "grid_after",
    "hub_checkpoint",
    "kernel_center",
    "load_checkpoint",
    "read_state_dict",
    "read_torchvision_weights",
    "resolve_weights",
    "save_checkpoint",
]
