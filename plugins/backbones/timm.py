"""Backbones from timm: every timm model that has ``features_only`` support, by name.

    backbone = { name = "timm", model = "convnext_tiny", weights = "imagenet",
                 output_stride = 16, out_indices = [1, 2, 3] }

The backbone is timm's own ``features_only`` model (``timm_net.py``), the strides and
offsets of its feature maps measured by one traced forward pass (``timm_grid.py``),
its pretrained weights read from the local caches (``timm_weights.py``).  timm is
imported when the backbone is built, or by ``segkit plugins --timm``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from segkit import WEIGHTS_PARAM, Param, hookimpl


@hookimpl
def register_backbones(register: Callable[..., None]) -> None:
    register(
        "timm",
        "segkit_plugins.backbones.timm_net:build_timm",
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
