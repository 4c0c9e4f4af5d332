"""Backbones from timm: every timm model that has ``features_only`` support, by name.

    backbone = { name = "timm", model = "convnext_tiny", weights = "imagenet",
                 output_stride = 16, out_indices = [1, 2, 3] }

``model`` is any name of ``timm.list_models()`` (``segkit plugins --timm PATTERN``
lists them), optionally with a pretrained tag (``convnext_tiny.fb_in1k``).  The
backbone is timm's own ``features_only`` model, unchanged: its feature maps are
named after the timm modules that produce them (``layer2``, ``stages.1``,
``blocks.4`` ...), and their channels come from timm's ``feature_info``.

Output stride.  ``output_stride`` 16 or 8 is passed to timm, which replaces the
strides of the last stages by dilation in the models that support it (ResNet,
ConvNeXt, EfficientNet, RegNet, MobileNet ...); a model that cannot, or an output
stride it refuses, is reported in one line naming the output strides it supports.
Leaving it unset keeps the model's own (32 for most CNNs, 16 for a ViT-B/16).

Strides and offsets.  A feature map's pixel ``i`` is centred on input pixel
``stride * i + offset`` (``segkit.FeatureInfo``); the FCN heads rely on it to align
their skip connections.  Offsets differ between architectures (0 for ResNet's
centred 3x3/7x7 convolutions, ``(stride - 1) / 2`` for ConvNeXt's 4x4 patch stem
and 2x2 downsamplings), so they are measured, not assumed: one small forward pass
at build time follows every convolution, pooling and padding the model actually
runs (``trace_grid``) and applies ``segkit.grid_after``'s rule to each.  Where a
model downsamples by other means (Swin's patch merging slices the tensor), the
traced stride does not match the measured one, and the map is taken to tile the
input in patches, offset ``(stride - 1) / 2``.  TensorFlow-ported models with
"same" padding pad by an amount that depends on the input size, so their offsets
hold for inputs of even size and lie up to a pixel off for odd ones.

Weights.  ``"imagenet"`` loads the model's default pretrained weights (timm's
``pretrained_cfg``) from the local Hugging Face cache, downloading them when the
network allows it, or from the torch hub cache for weights published by URL; when
they are missing, one line names the file to place where.  A path loads a
``.safetensors`` or ``.pth`` file holding either the full timm model's state dict
(its classifier is ignored) or that of timm's ``features_only`` model; a file for
another model is refused, naming the first key that does not fit.

Input normalisation follows the pretrained config's mean and std (the ``mean`` and
``std`` attributes, read by ``segkit.build_model`` when the config leaves
``data.mean``/``data.std`` unset).
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import timm
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from segkit import (
    WEIGHTS_PARAM,
    CheckpointError,
    ConfigError,
    FeatureInfo,
    Param,
    check_state_dict,
    hookimpl,
    hub_checkpoint,
    read_state_dict,
    resolve_weights,
)
from segkit.core import did_you_mean

#: Output strides timm's dilation support can give.
OUTPUT_STRIDES = (32, 16, 8)
#: Files a Hugging Face repository of timm weights holds, in timm's order of preference.
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class TimmBackbone(nn.Module):
    """timm's ``features_only`` model, returning its maps by name (always N×C×H×W)."""

    def __init__(
        self,
        body: nn.Module,
        feature_info: Mapping[str, FeatureInfo],
        channels_last_output: bool,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.body = body
        self.feature_info = dict(feature_info)
        self.names = list(feature_info)
        # Swin-style models give N×H×W×C maps; the heads read N×C×H×W.
        self.channels_last_output = channels_last_output
        self.mean, self.std = tuple(mean), tuple(std)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        maps = self.body(images)
        if isinstance(maps, Mapping):
            maps = list(maps.values())
        if self.channels_last_output:
            maps = [m.permute(0, 3, 1, 2) for m in maps]
        return dict(zip(self.names, maps, strict=True))


def build_timm(
    model: str,
    weights: str | None,
    output_stride: int | None,
    out_indices: list[int] | None,
) -> TimmBackbone:
    check_model_name(model)
    weights = resolve_weights(weights)
    where = f"backbone 'timm' ({model})"
    # Read first, so that a missing file fails before anything is built.
    state = None if weights is None else read_timm_weights(weights, model, where)
    body = create_features_model(model, output_stride, out_indices)
    if state is not None:
        load_timm_state(body, state, f"{where}: {weights}", model)
    names = [str(n) for n in body.feature_info.module_name()]
    feature_info, channels_last = probe_features(body, names, model)
    # A model may accept output_stride and still stride further (no dilation support).
    if output_stride is not None and max(f.stride for f in feature_info.values()) > output_stride:
        raise ConfigError(_stride_message(model, output_stride))
    cfg = body.pretrained_cfg if hasattr(body, "pretrained_cfg") else {}
    mean = cfg.get("mean", (0.485, 0.456, 0.406))
    std = cfg.get("std", (0.229, 0.224, 0.225))
    return TimmBackbone(body, feature_info, channels_last, mean, std)


def check_model_name(model: str) -> None:
    """Refuse a name timm does not know, with the closest ones it does."""
    base, _, tag = model.partition(".")
    if not timm.is_model(base):
        hint = did_you_mean(base, timm.list_models()) or "; list them with segkit plugins --timm"
        raise ConfigError(f"backbone 'timm': unknown timm model '{model}'{hint}")
    if tag:
        tags = timm.list_pretrained(f"{base}.*")
        if model not in tags:
            listing = ", ".join(t.partition(".")[2] for t in tags) or "none"
            raise ConfigError(
                f"backbone 'timm': '{base}' has no pretrained tag '{tag}'"
                f"{did_you_mean(model, tags)} (its tags: {listing})"
            )


def create_features_model(
    model: str, output_stride: int | None, out_indices: list[int] | None
) -> nn.Module:
    """timm's ``features_only`` model, or one line saying which request it cannot meet."""
    options: dict[str, Any] = {}
    if output_stride is not None:
        options["output_stride"] = output_stride
    if out_indices is not None:
        options["out_indices"] = tuple(out_indices)
    try:
        return _create(model, **options)
    except Exception as exc:
        cause = exc
    # Find which part of the request the model refused, on the meta device (no memory).
    try:
        with torch.device("meta"):
            plain = _create(model)
    except Exception:
        raise ConfigError(
            f"backbone 'timm': model '{model}' has no features_only support in timm "
            f"({type(cause).__name__}: {_first_line(cause)}); choose another model"
        ) from cause
    if output_stride is not None:
        strides = supported_strides(model)
        if output_stride not in strides:
            raise ConfigError(_stride_message(model, output_stride)) from cause
        if output_stride == strides[0]:  # its own, from a model that takes no output_stride
            return create_features_model(model, None, out_indices)
    levels = len(plain.feature_info)
    raise ConfigError(
        f"backbone 'timm': out_indices {out_indices} do not fit model '{model}', which has "
        f"{levels} feature levels (indices 0..{levels - 1}, strides "
        f"{'/'.join(str(r) for r in plain.feature_info.reduction())}); fix out_indices"
    ) from cause


def _create(model: str, **options: Any) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm's notes on unused kwargs, deprecations
        return timm.create_model(model, pretrained=False, features_only=True, **options)


def supported_strides(model: str) -> list[int]:
    """The output strides timm can build ``model`` at (its own first)."""
    with torch.device("meta"):
        own = _create(model).feature_info.reduction()[-1]
        strides = [own]
        for stride in OUTPUT_STRIDES:
            if stride == own:
                continue
            with contextlib.suppress(Exception):
                if _create(model, output_stride=stride).feature_info.reduction()[-1] == stride:
                    strides.append(stride)
    return strides


def _stride_message(model: str, output_stride: int) -> str:
    strides = supported_strides(model)
    listing = ", ".join(f"{s} (its own)" if i == 0 else str(s) for i, s in enumerate(strides))
    return (
        f"backbone 'timm': model '{model}' cannot run at output_stride {output_stride}; "
        f"it supports {listing}: set output_stride to one of them or leave it out"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else ""


# -- where the feature maps lie ------------------------------------------------------

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


# -- pretrained weights ------------------------------------------------------------


def read_timm_weights(weights: str, model: str, where: str) -> dict[str, Tensor]:
    """A state dict: ``"imagenet"`` from the local caches (downloaded if possible), or a path."""
    expected = f"timm {model} state dict"
    if weights != "imagenet":
        return read_state_dict(weights, where, expected)
    return read_state_dict(imagenet_file(model, where), where, expected)


def imagenet_file(model: str, where: str) -> Path:
    """The file of ``model``'s default pretrained weights, or a one-line error naming it."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(model)
    hub_id = cfg.hf_hub_id if cfg is not None else None
    url = cfg.url if cfg is not None else None
    if not hub_id and not url:
        raise CheckpointError(
            f"{where}: timm has no pretrained weights for '{model}'; set weights = 'none' or "
            f"the path of a state dict"
        )
    if hub_id:
        for filename in HF_WEIGHT_FILES:
            cached = try_to_load_from_cache(hub_id, filename)
            if isinstance(cached, str):
                return Path(cached)
        with contextlib.suppress(Exception):  # offline, or no such file: say where to put it
            return Path(hf_hub_download(hub_id, HF_WEIGHT_FILES[0]))
        folder = Path(constants.HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}"
        raise CheckpointError(
            f"{where}: ImageNet weights not found and not downloadable; place "
            f"{HF_WEIGHT_FILES[0]} from https://huggingface.co/{hub_id} in "
            f"{folder / 'snapshots' / 'main'}, or set weights to the file's path"
        )
    path = hub_checkpoint(url)
    if not path.is_file():
        raise CheckpointError(
            f"{where}: ImageNet weights not found; place {path.name} (from {url}) in "
            f"{path.parent}, or set weights to the file's path"
        )
    return path


def load_timm_state(body: nn.Module, state: Mapping[str, Tensor], where: str, model: str) -> None:
    """Load the full model's or the ``features_only`` model's state dict into ``body``.

    timm's ``features_only`` wrappers rename modules: nested names are flattened
    (``stages.0`` -> ``stages_0``) or the whole model sits under one attribute
    (``model.`` for ViTs, ``body.`` for hooked models).  Keys are therefore matched
    without that attribute and with dots and underscores treated alike.  Keys of
    modules the wrapper dropped (the classifier, the final norm, stages after the last
    ``out_indices``) are ignored; any other difference is refused.
    """
    own = body.state_dict()
    inner, wrapper = body, ""
    children = list(body.named_children())
    if len(children) == 1:
        wrapper, inner = f"{children[0][0]}.", children[0][1]

    def matchable(key: str) -> str:
        return _flat(key.removeprefix(wrapper))

    by_flat = {matchable(k): k for k in own}
    if len(by_flat) != len(own):  # two names differ only in "." vs "_": match exactly
        by_flat = {k: k for k in own}
    renamed: dict[str, Tensor] = {}
    extra: list[str] = []
    for key, value in state.items():
        target = by_flat.get(matchable(key)) or by_flat.get(key)
        if target is None:
            extra.append(key)
        else:
            renamed[target] = value
    kept = [
        _flat(name) + "_"
        for name, child in inner.named_children()
        if any(True for _ in itertools.chain(child.parameters(), child.buffers()))
    ]
    dropped = {k for k in extra if not any(matchable(k).startswith(p) for p in kept)}
    check_state_dict(
        {**renamed, **{k: state[k] for k in extra}},
        {k: v.shape for k, v in own.items()},
        f"{where} is not a timm {model} state dict",
        f"give one saved from timm.create_model('{model}').state_dict() or its features_only "
        f"model, or weights = 'imagenet'",
        unused=lambda key: key in dropped,
    )
    body.load_state_dict(renamed, strict=False)


def _flat(key: str) -> str:
    return key.replace(".", "_")


@hookimpl
def register_backbones(register: Callable[..., None]) -> None:
    register(
        "timm",
        build_timm,
        help="any timm model with features_only support, e.g. convnext_tiny, efficientnet_b0, "
        "regnety_016, mobilenetv3_large_100, resnext50_32x4d; list the names with "
        "`segkit plugins --timm [PATTERN]`",
        params=[
            Param("model", str, help="timm model name, optionally with a tag", required=True),
            WEIGHTS_PARAM,
            Param(
                "output_stride",
                Literal[32, 16, 8] | None,
                None,
                "stride of the deepest map: 16 or 8 dilate the last stages where the model "
                "supports it; unset: the model's own",
            ),
            Param(
                "out_indices",
                list[int] | None,
                None,
                "feature levels to expose (timm's out_indices); unset: all of them",
            ),
        ],
    )
