"""The FPN head (Panoptic FPN's semantic branch, Kirillov et al. 2019): a top-down
pyramid over all the backbone's maps, scored at the finest stride.  The head is in
:mod:`segkit_plugins.heads.fpn_net`, imported when it is built.
"""

from __future__ import annotations

from collections.abc import Callable

from segkit import Param, hookimpl


@hookimpl
def register_heads(register: Callable[..., None]) -> None:
    register(
        "fpn",
        "segkit_plugins.heads.fpn_net:build_fpn",
        help="FPN (Panoptic FPN's semantic branch): a top-down pyramid over all the "
        "backbone's maps, scored at the finest stride (4 on a ResNet)",
        params=[
            Param("pyramid_channels", int, 256, "channels of the pyramid's levels"),
            Param("channels", int, 128, "channels of the merged map before the scores"),
            Param("dropout", float, 0.2, "channel dropout before the class scores"),
        ],
    )
