"""Where a timm model's feature maps lie: each map's stride and offset, measured.

A feature map's pixel ``i`` is centred on input pixel ``stride * i + offset``
(``segkit.FeatureInfo``); the FCN heads rely on it to align their skip connections.
Offsets differ between architectures (0 for ResNet's centred 3x3/7x7 convolutions,
``(stride - 1) / 2`` for ConvNeXt's 4x4 patch stem and 2x2 downsamplings), so they
are measured, not assumed: one small forward pass at build time follows every
convolution, pooling and padding the model actually runs (``trace_grid``) and applies
``segkit.grid_after``'s rule to each.  Where a model downsamples by other means (Swin's
patch merging slices the tensor), the traced stride does not match the measured one,
and the map is taken to tile the input in patches, offset ``(stride - 1) / 2``.
TensorFlow-ported models with "same" padding pad by an amount that depends on the
input size, so their offsets hold for inputs of even size and lie up to a pixel off
for odd ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from segkit import ConfigError, FeatureInfo

_GRID = "_segkit_grid"


class GridTracer(TorchFunctionMode):
    """Follows (stride, offset) along the image's horizontal axis through every torch call.

    Convolutions, poolings and paddings move the grid (the rule of ``segkit.grid_after``);
    every other operation hands on the grid of its first traced input.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        traced = [t for t in _tensors(args) if hasattr(t, _GRID)]
        if not traced:
            return result
        stride, offset = getattr(traced[0], _GRID)
        name = getattr(func, "__name__", "")
        if name == "conv2d":
            stride, offset = _after_conv(args, kwargs, stride, offset)
        elif name in ("max_pool2d", "_max_pool2d", "max_pool2d_with_indices", "avg_pool2d"):
            stride, offset = _after_pool(name, args, kwargs, stride, offset)
        elif name == "pad":
            pad = _arg(args, kwargs, 1, "pad", (0,))
            offset -= stride * pad[0]
        for tensor in _tensors(result):
            setattr(tensor, _GRID, (stride, offset))
        return result


def trace_grid(body: nn.Module, images: Tensor) -> list[Tensor]:
    """``body``'s feature maps for ``images``, each carrying its traced (stride, offset)."""
    setattr(images, _GRID, (1, 0.0))
    with GridTracer():
        maps = body(images)
    return list(maps.values()) if isinstance(maps, Mapping) else list(maps)


def probe_features(
    body: nn.Module, names: Sequence[str], model: str
) -> tuple[dict[str, FeatureInfo], bool]:
    """Channels, stride and offset of each map, from one forward pass (see the module doc)."""
    cfg = getattr(body, "pretrained_cfg", {}) or {}
    deepest = max(body.feature_info.reduction())
    size = cfg["input_size"][-1] if cfg.get("fixed_input_size") else max(64, 2 * deepest)
    was_training = body.training
    body.eval()
    try:
        with torch.no_grad():
            maps = trace_grid(body, torch.zeros(1, 3, size, size))
    finally:
        body.train(was_training)
    channels = body.feature_info.channels()
    pairs = list(zip(maps, channels, strict=True))
    channels_last = all(m.dim() == 4 and m.shape[-1] == c for m, c in pairs)
    channels_last = channels_last and not all(m.shape[1] == c for m, c in pairs)
    info = {}
    for name, fmap, count in zip(names, maps, channels, strict=True):
        if fmap.dim() != 4:
            raise ConfigError(
                f"backbone 'timm': model '{model}' gives {fmap.dim()}-d features ({name}), "
                f"not image-shaped maps; choose a convolutional or hierarchical model"
            )
        width = fmap.shape[-2] if channels_last else fmap.shape[-1]
        measured = size / width
        stride, offset = getattr(fmap, _GRID, (None, None))
        if stride != measured:
            stride, offset = round(measured), (measured - 1) / 2
        info[name] = FeatureInfo(count, int(stride), float(offset))
    return info, channels_last


def _after_conv(args: tuple, kwargs: dict, stride: int, offset: float) -> tuple[int, float]:
    kernel = _arg(args, kwargs, 1, "weight", None).shape[-1]
    step = _last(_arg(args, kwargs, 3, "stride", 1))
    padding = _arg(args, kwargs, 4, "padding", 0)
    dilation = _last(_arg(args, kwargs, 5, "dilation", 1))
    if padding == "same":
        padding = dilation * (kernel - 1) // 2  # PyTorch puts the odd pixel on the right
    elif padding == "valid":
        padding = 0
    return _moved(stride, offset, kernel, step, _last(padding), dilation)


def _after_pool(
    name: str, args: tuple, kwargs: dict, stride: int, offset: float
) -> tuple[int, float]:
    kernel = _last(_arg(args, kwargs, 1, "kernel_size", 1))
    step = _last(_arg(args, kwargs, 2, "stride", None) or kernel)
    padding = _last(_arg(args, kwargs, 3, "padding", 0))
    dilation = 1 if name == "avg_pool2d" else _last(_arg(args, kwargs, 4, "dilation", 1))
    return _moved(stride, offset, kernel, step, padding, dilation)


def _moved(
    stride: int, offset: float, kernel: int, step: int, padding: int, dilation: int
) -> tuple[int, float]:
    # Output pixel 0 is centred on input position d (k - 1) / 2 - p (segkit.grid_after).
    return stride * step, offset + stride * (dilation * (kernel - 1) / 2 - padding)


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _last(value: Any) -> int:
    # Tuples are (height, width): the width's is traced.
    return int(value[-1]) if isinstance(value, list | tuple) else int(value)


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, Mapping):
        return [t for item in value.values() for t in _tensors(item)]
    return []
