"""The ``timm`` backbone: timm's own ``features_only`` model, unchanged.

``model`` is any name of ``timm.list_models()`` (``segkit plugins --timm PATTERN``
lists them), optionally with a pretrained tag (``convnext_tiny.fb_in1k``).  Its
feature maps are named after the timm modules that produce them (``layer2``,
``stages.1``, ``blocks.4`` ...), and their channels come from timm's ``feature_info``;
their strides and offsets are measured (:mod:`segkit_plugins.backbones.timm_grid`),
and pretrained weights are read and fitted by
:mod:`segkit_plugins.backbones.timm_weights`.

Output stride.  ``output_stride`` 16 or 8 is passed to timm, which replaces the
strides of the last stages by dilation in the models that support it (ResNet,
ConvNeXt, EfficientNet, RegNet, MobileNet ...); a model that cannot, or an output
stride it refuses, is reported in one line naming the output strides it supports.
Leaving it unset keeps the model's own (32 for most CNNs, 16 for a ViT-B/16).

Input normalisation follows the pretrained config's mean and std (the ``mean`` and
``std`` attributes, read by ``segkit.build_model`` when the config leaves
``data.mean``/``data.std`` unset).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
from segkit_plugins.backbones.timm_grid import probe_features
from segkit_plugins.backbones.timm_weights import load_timm_state, read_timm_weights
from torch import Tensor, nn

from segkit import ConfigError, FeatureInfo, resolve_weights
from segkit.core import did_you_mean, first_line

#: Output strides timm's dilation support can give.
OUTPUT_STRIDES = (32, 16, 8)


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
    return first_line(exc, 120)
