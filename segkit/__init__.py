"""segkit: semantic segmentation in which every model part is a plugin."""

from __future__ import annotations

from segkit.config import Config, load_config
from segkit.data import Sample, SegmentationDataset
from segkit.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    IncompatiblePartsError,
    PluginError,
    SegkitError,
)
from segkit.geometry import (
    BackboneInfo,
    FeatureInfo,
    bilinear_kernel,
    crop_or_pad,
    crop_start,
    grid_after,
    kernel_center,
)
from segkit.hookspecs import hookimpl
from segkit.model import SegmentationModel, build_model
from segkit.postprocess import (
    PostprocessChain,
    build_postprocessor,
    check_postprocess_inputs,
    ensure_memory,
)
from segkit.registry import Param
from segkit.weights import (
    WEIGHTS_PARAM,
    check_torchvision_keys,
    copy_decimated,
    decimate,
    read_torchvision_weights,
)

__version__ = "0.1.0"

__all__ = [
    "WEIGHTS_PARAM",
    "BackboneInfo",
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataError",
    "FeatureInfo",
    "IncompatiblePartsError",
    "Param",
    "PluginError",
    "PostprocessChain",
    "Sample",
    "SegkitError",
    "SegmentationDataset",
    "SegmentationModel",
    "bilinear_kernel",
    "build_model",
    "build_postprocessor",
    "check_postprocess_inputs",
    "check_torchvision_keys",
    "copy_decimated",
    "crop_or_pad",
    "crop_start",
    "decimate",
    "ensure_memory",
    "grid_after",
    "hookimpl",
    "kernel_center",
    "load_config",
    "read_torchvision_weights",
]
