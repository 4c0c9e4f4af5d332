"""DeepLab v1 heads (Chen et al., ICLR 2015): LargeFOV, MSc, MSc-LargeFOV, and one with
every knob.  The heads and their initialisation from ImageNet's classifier are in
:mod:`segkit_plugins.heads.deeplab_net`, imported when one is built.
"""

from __future__ import annotations

from collections.abc import Callable

from segkit import Param, hookimpl

NETWORKS = "segkit_plugins.heads.deeplab_net"


def _fc_channels(default: int) -> Param:
    return Param("fc_channels", int, default, "channels of fc6 and fc7 (small for CPU models)")


@hookimpl
def register_heads(register: Callable[..., None]) -> None:
    dropout = Param("dropout", float, 0.5, "dropout after fc6, fc7 and each MSc layer")
    msc_channels = Param("msc_channels", int, 128, "filters of each MSc layer (DeepLab: 128)")
    register(
        "deeplab_largefov",
        f"{NETWORKS}:build_deeplab_largefov",
        help="DeepLab-LargeFOV: fc6 3x3 dilation 12, 1024 channels",
        params=[_fc_channels(1024), dropout],
    )
    register(
        "deeplab_msc_largefov",
        f"{NETWORKS}:build_deeplab_msc_largefov",
        help="DeepLab-MSc-LargeFOV: LargeFOV plus MSc features of the image and pool1..pool4",
        params=[_fc_channels(1024), dropout, msc_channels],
    )
    register(
        "deeplab_msc",
        f"{NETWORKS}:build_deeplab_msc",
        help="DeepLab-MSc: fc6 4x4 dilation 4, 4096 channels, plus MSc features",
        params=[_fc_channels(4096), dropout, msc_channels],
    )
    register(
        "deeplab",
        f"{NETWORKS}:build_deeplab",
        help="DeepLab v1 head with every knob: fc6 kernel/dilation, channels, MSc",
        params=[
            Param("fc6_kernel", int, 3, "fc6 kernel size (LargeFOV: 3, DeepLab: 4)"),
            Param("fc6_dilation", int, 12, "fc6 dilation (LargeFOV: 12, DeepLab: 4)"),
            _fc_channels(1024),
            Param("msc", bool, False, "add MSc features of the image and pool1..pool4"),
            msc_channels,
            dropout,
        ],
    )
