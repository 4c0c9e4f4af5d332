"""ResNet backbones: torchvision's ResNet-18/34/50/101, ResNeXt-50 32x4d and Wide
ResNet-50-2, for FCN and DeepLab heads.  The networks, their dilation for output
stride 16 or 8 and their pretrained weights are in
:mod:`segkit_plugins.backbones.resnet_net`, imported when one is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from segkit import WEIGHTS_PARAM, Param, hookimpl

NETWORKS = "segkit_plugins.backbones.resnet_net"

#: Each architecture (a torchvision model name) and how ``segkit plugins`` names it.
TITLES = {
    "resnet18": "ResNet-18",
    "resnet34": "ResNet-34",
    "resnet50": "ResNet-50",
    "resnet101": "ResNet-101",
    "resnext50_32x4d": "ResNeXt-50 32x4d",
    "wide_resnet50_2": "Wide ResNet-50-2",
}


@hookimpl
def register_backbones(register: Callable[..., None]) -> None:
    for name, title in TITLES.items():
        register(
            name,
            f"{NETWORKS}:build_{name}",
            help=f"torchvision {title}; layer1 to layer4 (stride 4/8/16/32, offset 0)",
            params=[
                WEIGHTS_PARAM,
                Param(
                    "output_stride",
                    Literal[32, 16, 8],
                    32,
                    "stride of layer4: 16 or 8 dilate the last stages instead of striding",
                ),
            ],
        )
