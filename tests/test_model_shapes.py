"""Every backbone x head x upsampler: logits of exactly the input's size, or a clear refusal.

The combinations come from the registry: every registered backbone (each value of its
``Literal`` parameters, such as ResNet's output_stride), head and upsampler.  A head
decides itself whether it can sit on a backbone, by raising IncompatiblePartsError.
Small widths keep this fast on a CPU: VGG at width 1/8 and heads with few channels;
the paper-sized models are only built (once) to count their parameters.
"""

from __future__ import annotations

import itertools
import typing

import pytest
import torch

from segkit import BackboneInfo, IncompatiblePartsError
from segkit.core import load_plugins
from segkit.core.config import Part
from segkit.model import SegmentationModel, build_model_from_parts, count_parameters

NUM_CLASSES = 3

#: Small parameters by registered name (any other name is built with its defaults).
SMALL = {
    "vgg16": {"width": 0.125},
    "deeplab_vgg16": {"width": 0.125},
    "timm": {"model": "test_convnext"},
    "deeplab_largefov": {"fc_channels": 16},
    "deeplab_msc_largefov": {"fc_channels": 16, "msc_channels": 8},
    "deeplab_msc": {"fc_channels": 16, "msc_channels": 8},
    # An even kernel makes the MSc alignment a rounded half pixel.
    "deeplab": {"fc6_kernel": 4, "fc6_dilation": 3, "fc_channels": 8, "msc": True},
}
#: Input sizes: FCN's and VOC's for the (cheap) narrow VGGs, small ones for the rest.
SIZES = {"vgg16": [(333, 497), (375, 500), (64, 64)], "deeplab_vgg16": [(333, 497), (64, 64)]}
SMALL_SIZES = [(64, 64), (97, 131)]


def variants(registry, kind: str, name: str) -> list[dict]:
    """``SMALL[name]`` with every combination of the part's ``Literal`` parameters."""
    choices = [
        [(p.name, value) for value in typing.get_args(p.type)]
        for p in registry.get(kind, name).params
        if typing.get_origin(p.type) is typing.Literal and p.name not in SMALL.get(name, {})
    ]
    return [SMALL.get(name, {}) | dict(combo) for combo in itertools.product(*choices)]


def upsamplers(registry) -> list[tuple[str, dict]]:
    """Every upsampler, with each of its bool parameters off and on."""
    result = []
    for name in registry.names("upsampler"):
        flags = [p.name for p in registry.get("upsampler", name).params if p.type is bool]
        result += [(name, {})] + [(name, {flag: True}) for flag in flags]
    return result


_REGISTRY = load_plugins().registry
CASES = [
    (name, params, size)
    for name in _REGISTRY.names("backbone")
    for params in variants(_REGISTRY, "backbone", name)
    for size in SIZES.get(name, SMALL_SIZES)
]


def case_id(name: str, params: dict, size: tuple[int, int]) -> str:
    settings = "-".join(f"{k}={v}" for k, v in params.items())
    return f"{name}-{settings}-{size[0]}x{size[1]}".replace("--", "-")


_BACKBONES: dict[str, torch.nn.Module] = {}


def backbone_for(registry, name: str, params: dict) -> torch.nn.Module:
    key = f"{name}{params}"
    if key not in _BACKBONES:
        torch.manual_seed(0)
        _BACKBONES.clear()  # one at a time keeps memory low
        _BACKBONES[key] = registry.get("backbone", name).build(params=params).eval()
    return _BACKBONES[key]


@pytest.mark.parametrize(("name", "params", "size"), CASES, ids=[case_id(*c) for c in CASES])
def test_every_combination_returns_input_sized_logits_or_a_one_line_refusal(
    registry, name, params, size
):
    backbone = backbone_for(registry, name, params)
    info = BackboneInfo(name, dict(backbone.feature_info))
    images = torch.randn(1, 3, *size)
    with torch.no_grad():
        features = {"image": images, **backbone(images)}
    accepted = []
    for head_name in registry.names("head"):
        head_component = registry.get("head", head_name)
        head_params = SMALL.get(head_name, {})
        try:
            head = head_component.build(info, NUM_CLASSES, params=head_params).eval()
        except IncompatiblePartsError as error:
            message = str(error)
            assert message and "\n" not in message, (head_name, message)
            assert head_name in message and name in message, message
            continue
        accepted.append(head_name)
        with torch.no_grad():
            scores = head(features)
        assert scores.shape[:2] == (1, NUM_CLASSES), head_name
        for up_name, up_params in upsamplers(registry):
            upsampler = registry.get("upsampler", up_name).build(
                NUM_CLASSES, head.stride, head.offset, params=up_params
            )
            # What SegmentationModel.forward does, reusing the backbone's features.
            with torch.no_grad():
                logits = upsampler(scores, images.shape[-2:])
            where = f"{name} {params} + {head_name} + {up_name} {up_params} at {size}"
            assert logits.shape == (1, NUM_CLASSES, *size), where
            assert torch.isfinite(logits).all(), where
    # FCN-32s reads only the deepest map: every backbone takes it.
    assert "fcn32s" in accepted, f"{name} {params} accepted only {accepted}"


def test_every_head_sits_on_some_backbone(registry):
    infos = []
    with torch.device("meta"):  # shapes only: feature_info needs no real weights
        for name, params, _ in CASES:
            backbone = registry.get("backbone", name).build(params=params)
            infos.append(BackboneInfo(name, dict(backbone.feature_info)))
    for head_name in registry.names("head"):
        accepted = []
        for info in infos:
            try:
                head = registry.get("head", head_name)
                head.build(info, NUM_CLASSES, params=SMALL.get(head_name, {}))
            except IncompatiblePartsError:
                continue
            accepted.append(info.name)
        assert accepted, f"head {head_name} sits on none of the registered backbones"


@pytest.mark.parametrize(
    ("backbone", "params", "head"),
    [
        ("vgg16", SMALL["vgg16"], "fcn8s"),
        ("deeplab_vgg16", SMALL["deeplab_vgg16"], "deeplab_msc_largefov"),
        ("resnet18", {"output_stride": 8}, "fcn32s"),
    ],
)
def test_assembled_model_forward(registry, backbone, params, head):
    model = build_model_from_parts(
        registry,
        Part(backbone, params),
        Part(head, SMALL.get(head, {})),
        Part("transposed_bilinear"),
        NUM_CLASSES,
    ).eval()
    assert isinstance(model, SegmentationModel)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 67, 53))
    assert logits.shape == (2, NUM_CLASSES, 67, 53)


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
