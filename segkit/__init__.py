"""segkit: semantic segmentation in which every model part is a plugin.

The public API is this package and its rooms' ``__init__`` modules: ``segkit.core``
(plugins, registry, config, errors), ``segkit.model``, ``segkit.data``,
``segkit.infer`` and ``segkit.train``.  Plugins import from these only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from segkit.core.lazy import lazy_names

# The rest loads on first use, so that `segkit --help` and plugin listing do not wait
# for PyTorch: ``segkit.Segmenter`` imports the inference room when first named.
_LAZY = {
    "BackboneInfo": "segkit.model",
    "FeatureInfo": "segkit.model",
    "PostprocessChain": "segkit.infer",
    "Sample": "segkit.data",
    "SegmentationDataset": "segkit.data",
    "SegmentationModel": "segkit.model",
    "Segmenter": "segkit.infer",
    "WEIGHTS_PARAM": "segkit.model",
    "bilinear_kernel": "segkit.model",
    "build_dataset": "segkit.api",
    "build_model": "segkit.api",
    "build_postprocessor": "segkit.api",
    "check_postprocess_inputs": "segkit.infer",
    "check_state_dict": "segkit.model",
    "check_torchvision_keys": "segkit.model",
    "copy_decimated": "segkit.model",
    "crop_or_pad": "segkit.model",
    "crop_start": "segkit.model",
    "decimate": "segkit.model",
    "ensure_memory": "segkit.infer",
    "grid_after": "segkit.model",
    "hub_checkpoint": "segkit.model",
    "kernel_center": "segkit.model",
    "load_config": "segkit.api",
    "read_state_dict": "segkit.model",
    "read_torchvision_weights": "segkit.model",
    "resolve_weights": "segkit.model",
}

if TYPE_CHECKING:
    from segkit.api import build_dataset, build_model, build_postprocessor, load_config
    from segkit.data import Sample, SegmentationDataset
    from segkit.infer import PostprocessChain, Segmenter, check_postprocess_inputs, ensure_memory
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


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


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
