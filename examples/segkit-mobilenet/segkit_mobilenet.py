"""MobileNetV3 backbones for segkit, from torchvision.

An example of a third-party plugin: it uses only segkit's public API and is found
through the ``segkit`` entry point declared in this package's pyproject.toml.
"""

from __future__ import annotations

from typing import Literal

import torchvision
from torch import Tensor, nn

from segkit import FeatureInfo, Param, SegkitError, hookimpl

# Where torchvision's feature stack reaches strides 8, 16 and 32, and its channels.
_TAPS = {
    "large": {"stride8": (6, 40, 8), "stride16": (12, 112, 16), "stride32": (16, 960, 32)},
    "small": {"stride8": (3, 24, 8), "stride16": (8, 48, 16), "stride32": (12, 576, 32)},
}


class MobileNetV3(nn.Module):
    """MobileNetV3 features exposed at strides 8, 16 and 32 (offset 0, "same" padding)."""

    def __init__(self, size: Literal["large", "small"], weights: str | None) -> None:
        super().__init__()
        build = getattr(torchvision.models, f"mobilenet_v3_{size}")
        self.features = build(weights=None).features
        if weights is not None:
            self._load(weights)
        self.taps = {index: name for name, (index, _, _) in _TAPS[size].items()}
        self.feature_info = {
            name: FeatureInfo(channels, stride, 0.0)
            for name, (_, channels, stride) in _TAPS[size].items()
        }

    def _load(self, path: str) -> None:
        import torch

        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise SegkitError(f"mobilenet: cannot read weights {path} ({exc})") from None
        features = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
        self.features.load_state_dict(features)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        out = {}
        x = images
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                out[self.taps[index]] = x
        return out


@hookimpl
def register_backbones(register):
    register(
        "mobilenet_v3",
        MobileNetV3,
        help="torchvision MobileNetV3 features at strides 8, 16, 32",
        params=[
            Param("size", Literal["large", "small"], "large", "model size"),
            Param("weights", str | None, None, "path to a torchvision-format state dict"),
        ],
    )
