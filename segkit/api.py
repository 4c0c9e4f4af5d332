"""The entry points of segkit's Python API.

These are the only functions that fall back to the process's installed plugins when no
``registry`` is given; everything below them takes its registry explicitly, so that a
caller with its own plugin set gets that set everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from segkit.core import config as _config
from segkit.core.manager import default_registry
from segkit.core.registry import Registry
from segkit.data import dataset as _dataset
from segkit.infer import postprocess as _postprocess
from segkit.model import assembly as _assembly


def load_config(
    path: str | Path, overrides: Iterable[str] = (), registry: Registry | None = None
) -> _config.Config:
    """Read a TOML config (with its bases), apply overrides, validate it against the plugins."""
    return _config.load_config(path, overrides, default_registry(registry))


def build_model(
    config: _config.Config, num_classes: int | None = None, registry: Registry | None = None
) -> _assembly.SegmentationModel:
    """The model a config describes: N×3×H×W images -> N×C×H×W logits."""
    return _assembly.build_model(config, num_classes, default_registry(registry))


def build_postprocessor(
    name: str, registry: Registry | None = None, **params: Any
) -> _postprocess.Postprocessor:
    """The post-processor ``name`` (``"densecrf"`` ...) with its parameters."""
    return _postprocess.build_postprocessor(name, default_registry(registry), **params)


def build_dataset(
    name: str,
    split: str,
    params: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> _dataset.SegmentationDataset:
    """The dataset ``name``'s split ``split``."""
    return _dataset.build_dataset(name, split, params, default_registry(registry))
