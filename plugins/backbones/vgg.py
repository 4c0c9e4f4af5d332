"""VGG16 backbones as the FCN and DeepLab v1 papers use them: ``vgg16`` and
``deeplab_vgg16``.  The networks and their pretrained weights are in
:mod:`segkit_plugins.backbones.vgg_net`, imported when one is built.
"""

from __future__ import annotations

from collections.abc import Callable

from segkit import WEIGHTS_PARAM, Param, hookimpl

NETWORKS = "segkit_plugins.backbones.vgg_net"


@hookimpl
def register_backbones(register: Callable[..., None]) -> None:
    common = [
        WEIGHTS_PARAM,
        Param(
            "batch_norm",
            bool,
            False,
            "BatchNorm after every conv (vgg16_bn layout), for training from scratch",
        ),
        Param("width", float, 1.0, "multiplier on every channel count, for small CPU models"),
    ]
    register(
        "vgg16",
        f"{NETWORKS}:build_vgg16",
        help="VGG16 as in FCN: conv1_1 padded by 100, fc6/fc7 as convs; pool3, pool4, fc7",
        params=[
            common[0],
            Param(
                "first_padding",
                int,
                100,
                "zero padding of conv1_1 (FCN: 100, so fc6 covers small images)",
            ),
            Param("fc6_kernel", int, 7, "fc6 kernel size: 7 as in FCN, 1 for a lighter net"),
            Param("fc_channels", int, 4096, "channels of fc6 and fc7 (scaled by width)"),
            *common[1:],
            Param("dropout", float, 0.5, "dropout after fc6 and after fc7"),
        ],
    )
    register(
        "deeplab_vgg16",
        f"{NETWORKS}:build_deeplab_vgg16",
        help="VGG16 as in DeepLab v1: stride-1 pool4/pool5, conv5 dilated by 2; pool1..pool5 "
        "(stride 8)",
        params=common,
    )
