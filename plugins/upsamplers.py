"""Upsamplers: bring a head's scores back to exactly the input's H x W.

``transposed_bilinear`` (FCN's final layer) and ``interpolate``; how each places the
scores on the input's pixels is in :mod:`segkit_plugins.upsamplers_net`, imported
when one is built.
"""

from __future__ import annotations

from collections.abc import Callable

from segkit import Param, hookimpl

NETWORKS = "segkit_plugins.upsamplers_net"


@hookimpl
def register_upsamplers(register: Callable[..., None]) -> None:
    register(
        "transposed_bilinear",
        f"{NETWORKS}:build_transposed_bilinear",
        help="FCN's final layer: ConvTranspose2d (kernel 2s, stride s) set to bilinear, "
        "then an exact crop",
        params=[
            Param("trainable", bool, False, "learn the upsampling filter (FCN keeps it fixed)"),
        ],
    )
    register(
        "interpolate",
        f"{NETWORKS}:build_interpolate",
        help="bilinear F.interpolate by the head's stride, then an exact crop",
        params=[
            Param(
                "align_corners",
                bool,
                False,
                "True: sample score (y - offset) / stride exactly, as DeepLab's Caffe Interp",
            ),
        ],
    )
