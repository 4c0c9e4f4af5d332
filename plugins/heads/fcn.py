"""FCN heads (Long, Shelhamer & Darrell, CVPR 2015): FCN-32s, FCN-16s and FCN-8s.

The heads, their skip connections and how the skips are aligned are in
:mod:`segkit_plugins.heads.fcn_net`, imported when one is built.
"""

from __future__ import annotations

from collections.abc import Callable

from segkit import Param, hookimpl

NETWORKS = "segkit_plugins.heads.fcn_net"


@hookimpl
def register_heads(register: Callable[..., None]) -> None:
    learnable = Param(
        "learnable_upsampling",
        bool,
        True,
        "learn the bilinear-initialised 2x upsamplings, as the paper does",
    )
    register(
        "fcn32s",
        f"{NETWORKS}:build_fcn32s",
        help="FCN-32s: 1x1 class scores on the deepest map",
    )
    register(
        "fcn16s",
        f"{NETWORKS}:build_fcn16s",
        help="FCN-16s: FCN-32s scores upsampled 2x plus scores of the stride/2 map (pool4)",
        params=[learnable],
    )
    register(
        "fcn8s",
        f"{NETWORKS}:build_fcn8s",
        help="FCN-8s: FCN-16s plus scores of the stride/4 map (pool3), at stride/4",
        params=[learnable],
    )
