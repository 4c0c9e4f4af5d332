"""The model room: assembly of backbone, head and upsampler; feature geometry; pretrained
weights; the checkpoint file format; and the per-layer summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from segkit.core.lazy import lazy_names

# Loaded on first use: a backbone plugin registers WEIGHTS_PARAM without PyTorch.
_LAZY = {
    "SegmentationModel": "segkit.model.assembly",
    "build_model": "segkit.model.assembly",
    "build_model_from_parts": "segkit.model.assembly",
    "count_parameters": "segkit.model.assembly",
    "load_checkpoint": "segkit.model.checkpoint",
    "save_checkpoint": "segkit.model.checkpoint",
    "BackboneInfo": "segkit.model.geometry",
    "FeatureInfo": "segkit.model.geometry",
    "bilinear_kernel": "segkit.model.geometry",
    "crop_or_pad": "segkit.model.geometry",
    "crop_start": "segkit.model.geometry",
    "grid_after": "segkit.model.geometry",
    "kernel_center": "segkit.model.geometry",
    "WEIGHTS_PARAM": "segkit.model.weights_param",
    "resolve_weights": "segkit.model.weights_param",
    "check_state_dict": "segkit.model.weights",
    "check_torchvision_keys": "segkit.model.weights",
    "copy_decimated": "segkit.model.weights",
    "decimate": "segkit.model.weights",
    "hub_checkpoint": "segkit.model.weights",
    "read_state_dict": "segkit.model.weights",
    "read_torchvision_weights": "segkit.model.weights",
}

if TYPE_CHECKING:
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
        check_state_dict,
        check_torchvision_keys,
        copy_decimated,
        decimate,
        hub_checkpoint,
        read_state_dict,
        read_torchvision_weights,
    )
    from segkit.model.weights_param import WEIGHTS_PARAM, resolve_weights


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


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
