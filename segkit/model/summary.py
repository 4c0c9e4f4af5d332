"""``segkit summary``: per-module output shapes and parameter counts of a config's model."""

from __future__ import annotations

import re
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from segkit.core.config import Config, Part
from segkit.core.errors import ConfigError
from segkit.core.registry import Registry
from segkit.model.assembly import build_model_from_parts, count_parameters


def parse_input_size(text: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX×,]\s*(\d+)\s*[xX×,]\s*(\d+)\s*", text)
    if not match:
        raise ConfigError(f"--input '{text}': expected CxHxW, e.g. --input 3x375x500")
    channels, height, width = (int(g) for g in match.groups())
    if channels != 3 or height < 1 or width < 1:
        raise ConfigError(f"--input '{text}': segkit models take 3 channels and a positive size")
    return channels, height, width


def _shape(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "×".join(str(d) for d in value.shape)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_shape(v)}" for k, v in value.items() if k != "image")
    return type(value).__name__


def layer_summary(model: nn.Module, images: torch.Tensor) -> list[tuple[str, str, str, int]]:
    """(name, type, output shape, own parameters) of each leaf module or module with weights."""
    rows: list[tuple[str, str, str, int]] = []
    hooks = []
    for name, module in model.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        is_leaf = next(module.children(), None) is None
        if not name or not (is_leaf or own):
            continue

        def record(
            mod: nn.Module, inputs: Any, output: Any, name: str = name, own: int = own
        ) -> None:
            rows.append((name, type(mod).__name__, _shape(output), own))

        hooks.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        for hook in hooks:
            hook.remove()
    return rows


#: The class count described when neither the config nor the command gives one (PASCAL VOC).
DEFAULT_CLASSES = 21


def print_summary(
    config: Config,
    input_size: str,
    console: Console,
    registry: Registry,
    num_classes: int | None = None,
) -> int:
    """Print the table and ``Total params: N``; returns N.

    Describing a model needs neither its dataset nor its pretrained weights: the class
    count is ``num_classes``, else the config's, else 21, and the backbone is built
    without reading weights (they change values, not shapes).
    """
    _, height, width = parse_input_size(input_size)
    classes = num_classes or config.model.num_classes or DEFAULT_CLASSES
    backbone = config.model.backbone
    if any(p.name == "weights" for p in registry.get("backbone", backbone.name).params):
        backbone = Part(backbone.name, {**backbone.params, "weights": None})
    m = config.model
    model = build_model_from_parts(
        registry, backbone, m.head, m.upsampler, classes, m.crf, config.data.mean, config.data.std
    )
    images = torch.zeros(1, 3, height, width)
    table = Table(title=f"{config.name}: input 1×3×{height}×{width}, {classes} classes")
    for column, justify in (
        ("layer", "left"),
        ("type", "left"),
        ("output", "left"),
        ("params", "right"),
    ):
        table.add_column(column, justify=justify)
    for name, kind, shape, own in layer_summary(model, images):
        table.add_row(name, kind, shape, f"{own:,}")
    console.print(table)
    total = count_parameters(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    console.print(f"Trainable params: {trainable:,}")
    console.print(f"Total params: {total:,}")
    return total
