"""The plugin core: hook specs, the plugin manager, the registry with its typed ``Param``
schema, configs, errors and what run-event hooks see of a run.  It holds no model code
and imports no PyTorch; its console progress display is :mod:`segkit.core.progress`."""

from __future__ import annotations

from segkit.core.config import Config, Part, config_from_dict, dump_toml, load_config
from segkit.core.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    IncompatiblePartsError,
    PluginError,
    SegkitError,
    did_you_mean,
    first_line,
)
from segkit.core.events import RunView
from segkit.core.hookspecs import hookimpl
from segkit.core.manager import Plugins, default_registry, get_plugins, load_plugins
from segkit.core.registry import KINDS, Component, Param, Registry

__all__ = [
    "KINDS",
    "CheckpointError",
    "Component",
    "Config",
    "ConfigError",
    "DataError",
    "IncompatiblePartsError",
    "Param",
    "Part",
    "PluginError",
    "Plugins",
    "Registry",
    "RunView",
    "SegkitError",
    "config_from_dict",
    "default_registry",
    "did_you_mean",
    "dump_toml",
    "first_line",
    "get_plugins",
    "hookimpl",
    "load_config",
    "load_plugins",
]
