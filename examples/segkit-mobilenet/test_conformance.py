"""segkit's conformance checks for this package's backbone (run with pytest once installed)."""

from __future__ import annotations

from typing import ClassVar

from segkit.testing import BackboneConformance, HeadConformance


class TestMobileNetV3Small(BackboneConformance):
    name = "mobilenet_v3"
    params: ClassVar[dict] = {"size": "small"}


class TestFCN8sOnMobileNetV3(HeadConformance):
    """A built-in head sits on the backbone: strides 8, 16 and 32 are all there."""

    name = "fcn8s"
    backbone = "mobilenet_v3"
    backbone_params: ClassVar[dict] = {"size": "small"}
