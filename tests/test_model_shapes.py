"""Every backbone x head x upsampler: logits of exactly the input's size, or a clear refusal.

Small widths keep this fast on a CPU: VGG at width 1/8 and heads with few channels;
the paper-sized models are only built (once) to count their parameters.
"""

from __future__ import annotations

import pytest
import torch

from segkit import BackboneInfo, IncompatiblePartsError
from segkit.core.config import Part
from segkit.model import SegmentationModel, build_model_from_parts, count_parameters

NUM_CLASSES = 3

#: key -> (backbone name, params, strides of its maps)
BACKBONES = {
    "vgg16": ("vgg16", {"width": 0.125}, {8, 16, 32}),
    "deeplab_vgg16": ("deeplab_vgg16", {"width": 0.125}, {2, 4, 8}),
}
for _depth in (18, 34, 50, 101):
    for _os, _strides in ((32, {8, 16, 32}), (16, {8, 16}), (8, {8})):
        BACKBONES[f"resnet{_depth}-os{_os}"] = (f"resnet{_depth}", {"output_stride": _os}, _strides)

HEADS = {
    "fcn32s": {},
    "fcn16s": {},
    "fcn8s": {},
    "deeplab_largefov": {"fc_channels": 16},
    "deeplab_msc_largefov": {"fc_channels": 16, "msc_channels": 8},
    "deeplab_msc": {"fc_channels": 16, "msc_channels": 8},
    # An even kernel makes the MSc alignment a rounded half pixel.
    "deeplab": {"fc6_kernel": 4, "fc6_dilation": 3, "fc_channels": 8, "msc": True},
}
UPSAMPLERS = {
    "transposed_bilinear": ("transposed_bilinear", {}),
    "interpolate": ("interpolate", {}),
    "interpolate-align_corners": ("interpolate", {"align_corners": True}),
}
PAPER_SIZES = [(333, 497), (375, 500), (64, 64)]


def allowed(backbone_key: str, head: str) -> bool:
    """MSc reads pool1..pool4; FCN-16s/8s need maps at 1/2 and 1/4 of the deepest stride."""
    if head.startswith("deeplab_msc") or HEADS[head].get("msc"):
        return backbone_key == "deeplab_vgg16"
    strides = BACKBONES[backbone_key][2]
    needed = {"fcn16s": [2], "fcn8s": [2, 4]}.get(head, [])
    return all(max(strides) // factor in strides for factor in needed)


def sizes_for(key: str) -> list[tuple[int, int]]:
    if key.startswith(("resnet50", "resnet101")):
        odd = (333, 497) if key.endswith("os32") else (97, 131)
        return [(64, 64), odd]
    return PAPER_SIZES


CASES = [(key, size) for key in BACKBONES for size in sizes_for(key)]


_BACKBONES: dict[str, torch.nn.Module] = {}


def backbone_for(registry, key: str) -> torch.nn.Module:
    if key not in _BACKBONES:
        name, params, _ = BACKBONES[key]
        torch.manual_seed(0)
        _BACKBONES.clear()  # one at a time keeps memory low
        _BACKBONES[key] = registry.get("backbone", name).build(params=params).eval()
    return _BACKBONES[key]


@pytest.mark.parametrize(("key", "size"), CASES, ids=[f"{k}-{h}x{w}" for k, (h, w) in CASES])
def test_every_combination_returns_input_sized_logits(registry, key, size):
    backbone = backbone_for(registry, key)
    name = BACKBONES[key][0]
    info = BackboneInfo(name, dict(backbone.feature_info))
    images = torch.randn(1, 3, *size)
    with torch.no_grad():
        features = {"image": images, **backbone(images)}
    checked = 0
    for head_name, head_params in HEADS.items():
        head_component = registry.get("head", head_name)
        if not allowed(key, head_name):
            with pytest.raises(IncompatiblePartsError) as error:
                head_component.build(info, NUM_CLASSES, params=head_params)
            assert "\n" not in str(error.value), head_name
            continue
        head = head_component.build(info, NUM_CLASSES, params=head_params).eval()
        with torch.no_grad():
            scores = head(features)
        for up_name, up_params in UPSAMPLERS.values():
            upsampler = registry.get("upsampler", up_name).build(
                NUM_CLASSES, head.stride, head.offset, params=up_params
            )
            # What SegmentationModel.forward does, reusing the backbone's features.
            with torch.no_grad():
                logits = upsampler(scores, images.shape[-2:])
            where = f"{key} + {head_name} + {up_name} {up_params} at {size}"
            assert logits.shape == (1, NUM_CLASSES, *size), where
            assert torch.isfinite(logits).all(), where
            checked += 1
    assert checked >= 3 * 2  # at least FCN-32s and DeepLab-LargeFOV on every backbone


@pytest.mark.parametrize("key", ["vgg16", "deeplab_vgg16", "resnet18-os8"])
def test_assembled_model_forward(registry, key):
    name, params, _ = BACKBONES[key]
    head = "fcn8s" if key == "vgg16" else "deeplab_msc_largefov" if "vgg" in key else "fcn32s"
    model = build_model_from_parts(
        registry,
        Part(name, params),
        Part(head, HEADS[head]),
        Part("transposed_bilinear"),
        NUM_CLASSES,
    ).eval()
    assert isinstance(model, SegmentationModel)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 67, 53))
    assert logits.shape == (2, NUM_CLASSES, 67, 53)


def test_fcn8s_on_output_stride_8_resnet_is_refused_at_build_time(registry):
    with pytest.raises(IncompatiblePartsError) as error:
        build_model_from_parts(
            registry,
            Part("resnet50", {"output_stride": 8}),
            Part("fcn8s"),
            Part("transposed_bilinear"),
            21,
        )
    message = str(error.value)
    assert "\n" not in message and "fcn8s" in message and "stride 4" in message


# -- the paper-sized models ----------------------------------------------------------


@pytest.fixture(scope="module")
def paper_models(registry):
    fcn8s = build_model_from_parts(
        registry, Part("vgg16"), Part("fcn8s"), Part("transposed_bilinear"), 21
    )
    counts = {"fcn8s": count_parameters(fcn8s), "upscore8": fcn8s.upsampler.weight.shape}
    del fcn8s
    largefov = build_model_from_parts(
        registry, Part("deeplab_vgg16"), Part("deeplab_largefov"), Part("interpolate"), 21
    )
    counts["deeplab_largefov"] = count_parameters(largefov)
    return counts


def test_fcn8s_vgg16_has_the_papers_parameter_count(paper_models):
    assert paper_models["upscore8"] == (21, 21, 16, 16)
    assert paper_models["fcn8s"] == 134_489_759


def test_deeplab_largefov_has_the_papers_parameter_count(paper_models):
    assert paper_models["deeplab_largefov"] == 20_505_429
