"""Markdown pieces shared by the reference generators."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any


def anchor(*parts: str) -> str:
    """A label usable as a MyST target: ``plugin-backbone-resnet18``."""
    return "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts)


def cell(text: str) -> str:
    """Plain text (a help string) safe inside a Markdown table cell or paragraph: ``<split>``
    is not taken for HTML nor ``*`` for emphasis; `backquoted` words stay code."""
    escaped = re.sub(r"([<*|\\])", r"\\\1", str(text))
    return escaped.replace("\n", " ").strip()


def code(text: str) -> str:
    """Text as code inside a Markdown table cell (a type, a default value)."""
    return "`" + str(text).replace("|", "\\|").replace("\n", " ") + "`"


def toml_value(value: Any) -> str:
    """A value as it would be written in a config."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if hasattr(value, "to_dict"):  # a config Part
        return toml_value(value.to_dict())
    if "factory" in repr(value):  # the registry's "the factory's own default" marker
        return "the factory's default"
    return repr(value)
