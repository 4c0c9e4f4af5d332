"""segkit: semantic segmentation in which every model part is a plugin.

The public API is this package and its rooms' ``__init__`` modules: ``segkit.core``
(plugins, registry, config, errors), ``segkit.model``, ``segkit.data``,
``segkit.infer`` and ``segkit.train``.  Plugins import from these only.
"""

from __future__ import annotations

from segkit.api import build_dataset, build_model, build_postprocessor, load_config
from segkit.core import (
    CheckpointError,
    Config,
    ConfigError,
    DataError,
    IncompatiblePartsError,
    Param,
    PluginError,
    SegkitError,
    hookimpl,
)
from segkit.data import Sample, SegmentationDataset
from segkit.infer import (
    PostprocessChain,
    Segmenter,
    check_postprocess_inputs,
    ensure_memory,
)
from segkit.model import (
    WEIGHTS_PARAM,
    BackboneInfo,
    FeatureInfo,
    SegmentationModel,
    bilinear_kernel,
    check_state_dict,
    check_torchvision_keys,
    copy_decimated,
    crop_or_pad,
    crop_start,
    decimate,
    grid_after,
    hub_checkpoint,
    kernel_center,
    read_state_dict,
    read_torchvision_weights,
    resolve_weights,
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
    "Segmenter",
    "bilinear_kernel",
    "build_dataset",
    "build_model",
    "build_postprocessor",
    "check_postprocess_inputs",
    "check_state_dict",
    "check_torchvision_keys",
    "copy_decimated",
    "crop_or_pad",
    "crop_start",
    "decimate",
    "ensure_memory",
    "grid_after",
    "hookimpl",
    "hub_checkpoint",
    "kernel_center",
    "load_config",
    "read_state_dict",
    "read_torchvision_weights",
    "resolve_weights",
]
