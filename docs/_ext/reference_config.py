"""The config reference: every section's keys with type, default, range and help."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

from markdown_text import anchor, cell, code, toml_value

#: Part keys whose hook point is not named by the key itself.
PART_KEY_KINDS = {
    "crf": "postprocessor",
    "augment": "augmentation",
    "postprocessors": "postprocessor",
}

CONFIG_HEADER = ["| key | type | default | allowed | help |", "|---|---|---|---|---|"]


def config_sections() -> list[tuple[str, type]]:
    """The config's tables in file order: ``model``, ``data``, ``train`` ..."""
    from segkit.core.config import Config

    hints = typing.get_type_hints(Config)
    fields = dataclasses.fields(Config)
    return [(f.name, hints[f.name]) for f in fields if dataclasses.is_dataclass(hints[f.name])]


def describe_range(rule: Any) -> str:
    """What a range from ``segkit.core.ranges.RANGES`` allows, in words."""
    text = rule.describe()
    unset = getattr(rule, "unset", "")
    return f"{text} ({unset})" if unset else text


def part_kind(key: str, hint: Any) -> str:
    """The hook point a config key names plugin parts of (``backbone``), or ""."""
    from segkit.core.config import Part

    args = typing.get_args(hint)
    is_part = hint is Part or hint == Part | None
    is_parts = (
        typing.get_origin(hint) is list and isinstance(args[0], type) and issubclass(args[0], Part)
    )
    if not (is_part or is_parts):
        return ""
    return PART_KEY_KINDS.get(key, key)


def config_row(key: str, f: dataclasses.Field, hint: Any) -> str:
    from segkit.core.ranges import RANGES
    from segkit.core.registry import PLURAL, type_name

    default = f.default
    if f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    shown = "required" if default is dataclasses.MISSING else code(toml_value(default))
    kind = part_kind(f.name, hint)
    if kind:
        plural = PLURAL[kind]
        link = f"[{plural}](plugins.md#{anchor('plugins', plural)})"
        allowed = f"any installed {link}: a table with `name` and its parameters"
        shown_type = "list of parts" if typing.get_origin(hint) is list else "part"
    else:
        rule = RANGES.get(key)
        allowed = describe_range(rule) if rule is not None else ""
        shown_type = code(type_name(hint))
    help_text = f.metadata.get("help", "")
    return f"| `{key}` | {shown_type} | {shown} | {cell(allowed)} | {cell(help_text)} |"


def config_markdown() -> str:
    """Every config key with its type, default, range and help."""
    from segkit.core.config import CRF_LAYER_PARAMS, Config

    hints = typing.get_type_hints(Config)
    top = [
        config_row(f.name, f, hints[f.name])
        for f in dataclasses.fields(Config)
        if not dataclasses.is_dataclass(hints[f.name])
    ]
    out = [f"({anchor('config', 'top-level')})=", "## Top level", "", *CONFIG_HEADER, *top, ""]
    for section, cls in config_sections():
        section_hints = typing.get_type_hints(cls)
        out += [f"({anchor('config', section)})=", f"## `[{section}]`", ""]
        doc = inspect.getdoc(cls) or ""
        if doc and not doc.startswith(cls.__name__ + "("):  # not dataclasses' generated one
            out += [doc, ""]
        out += CONFIG_HEADER
        for f in dataclasses.fields(cls):
            out.append(config_row(f"{section}.{f.name}", f, section_hints[f.name]))
        out.append("")
        if section == "model":
            out += ["Keys of `[model.crf]` that belong to the layer, beside the CRF's own:", ""]
            out += ["| key | type | default | help |", "|---|---|---|---|"]
            for param in CRF_LAYER_PARAMS:
                out.append(
                    f"| `model.crf.{param.name}` | {code(param.type_name())} | "
                    f"{code(toml_value(param.default))} | {cell(param.help)} |"
                )
            out.append("")
    return "\n".join(out)
