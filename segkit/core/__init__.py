"""The plugin core: hook specs, the plugin manager, the registry with its typed ``Param``
schema, configs and errors.  It holds no model code."""

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
)
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
    "SegkitError",
    "config_from_dict",
    "default_registry",
    "did_you_mean",
    "dump_toml",
    "get_plugins",
    "hookimpl",
    "load_config",
    "load_plugins",
]
