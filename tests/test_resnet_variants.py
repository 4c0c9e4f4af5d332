"""torchvision's ResNeXt and Wide ResNet through the resnet plugin: same stages, dilation."""

from __future__ import annotations

import pytest
import torch
import torchvision

from segkit.model import count_parameters


@pytest.mark.parametrize(
    ("name", "constructor"),
    [
        ("resnext50_32x4d", torchvision.models.resnext50_32x4d),
        ("wide_resnet50_2", torchvision.models.wide_resnet50_2),
    ],
)
def test_resnet_variants_are_torchvisions_without_the_classifier(registry, name, constructor):
    # On the meta device: shapes and counts without allocating the weights.
    with torch.device("meta"):
        backbone = registry.get("backbone", name).build(params={"output_stride": 16})
        reference = constructor()
    info = backbone.feature_info
    assert [(i.channels, i.stride, i.offset) for i in info.values()] == [
        (256, 4, 0.0),
        (512, 8, 0.0),
        (1024, 16, 0.0),
        (2048, 16, 0.0),
    ]
    assert count_parameters(backbone) == count_parameters(reference) - count_parameters(
        reference.fc
    )


def test_dilated_resnext_keeps_the_stride_8_grid(registry):
    backbone = registry.get("backbone", "resnext50_32x4d").build(params={"output_stride": 8})
    with torch.no_grad():
        maps = backbone.eval()(torch.randn(1, 3, 64, 48))
    assert {k: tuple(v.shape[1:]) for k, v in maps.items()} == {
        "layer1": (256, 16, 12),
        "layer2": (512, 8, 6),
        "layer3": (1024, 8, 6),
        "layer4": (2048, 8, 6),
    }
