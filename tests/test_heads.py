"""FCN and DeepLab heads: skip crops, alignment, initialisation, refusals."""

from __future__ import annotations

import pytest
import torch

from segkit import BackboneInfo, ConfigError, FeatureInfo, IncompatiblePartsError
from segkit.core.config import Part
from segkit.model import SegmentationModel, build_model_from_parts


def backbone_info(name: str, backbone) -> BackboneInfo:
    return BackboneInfo(name, dict(backbone.feature_info), getattr(backbone, "spare_weights", {}))


def build_head(registry, name, info, num_classes=2, **params):
    return registry.get("head", name).build(info, num_classes, params=params)


def build_upsampler(registry, name, head, num_classes=2, **params):
    return registry.get("upsampler", name).build(
        num_classes, head.stride, head.offset, params=params
    )


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


@pytest.fixture(scope="module")
def vgg16(registry):
    return registry.get("backbone", "vgg16").build(params={"width": 0.125}).eval()


@pytest.fixture(scope="module")
def deeplab_vgg16(registry):
    return registry.get("backbone", "deeplab_vgg16").build(params={"width": 0.125}).eval()


# -- FCN -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "crops", "stride", "offset", "final_crop"),
    [
        ("fcn32s", [], 32, 12.5, 19),
        ("fcn16s", [5], 16, -11.5, 27),
        ("fcn8s", [5, 9], 8, -23.5, 31),
    ],
)
def test_fcn_on_padded_vgg16_gives_the_caffe_crop_offsets(
    registry, vgg16, head, crops, stride, offset, final_crop
):
    fcn = build_head(registry, head, backbone_info("vgg16", vgg16), 21)
    assert fcn.skip_names == ["pool4", "pool3"][: len(crops)]
    assert fcn.skip_crops == crops
    assert (fcn.stride, fcn.offset) == (stride, offset)
    assert build_upsampler(registry, "transposed_bilinear", fcn, 21).crop == final_crop


def coordinate_features(features: dict[str, torch.Tensor], info: dict[str, FeatureInfo]):
    """Maps of the real sizes whose channels 0 and 1 hold each pixel's input row / column."""
    out = {}
    for name, x in features.items():
        h, w = x.shape[-2:]
        stride, offset = info[name].stride, info[name].offset
        rows = stride * torch.arange(h, dtype=torch.float64) + offset
        cols = stride * torch.arange(w, dtype=torch.float64) + offset
        maps = torch.zeros(1, x.shape[1], h, w, dtype=torch.float64)
        maps[0, 0], maps[0, 1] = rows[:, None].expand(h, w), cols[None, :].expand(h, w)
        out[name] = maps
    return out


FEATURES: dict[tuple[int, int], dict[str, torch.Tensor]] = {}


@pytest.mark.parametrize("head", ["fcn32s", "fcn16s", "fcn8s"])
@pytest.mark.parametrize("upsampler", ["transposed_bilinear", "interpolate"])
@pytest.mark.parametrize("size", [(333, 497), (375, 500), (97, 131)])
def test_fcn_skips_and_output_are_aligned_for_any_size(registry, vgg16, head, upsampler, size):
    """Every map carries its pixels' input coordinates; aligned sums give k * y at pixel y."""
    info = dict(vgg16.feature_info)
    if size not in FEATURES:
        with torch.no_grad():
            FEATURES[size] = coordinate_features(vgg16(torch.zeros(1, 3, *size)), info)
    fcn = build_head(registry, head, backbone_info("vgg16", vgg16)).double()
    with torch.no_grad():
        for layer in [fcn.score_fr, *fcn.score_skip]:  # class 0 <- rows, class 1 <- columns
            layer.weight[0, 0], layer.weight[1, 1] = 1.0, 1.0
        up = build_upsampler(registry, upsampler, fcn).double()
        logits = up(fcn(FEATURES[size]), size)
    assert logits.shape == (1, 2, *size)
    maps = 1 + len(fcn.skip_names)
    h, w = size
    rows = torch.arange(h, dtype=torch.float64)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=torch.float64)[None, :].expand(h, w)
    # Transposed convolutions only sum fully away from the maps' borders.
    inner = (slice(40, -40), slice(40, -40))
    torch.testing.assert_close(logits[0, 0][inner], maps * rows[inner], atol=1e-6, rtol=0)
    torch.testing.assert_close(logits[0, 1][inner], maps * cols[inner], atol=1e-6, rtol=0)


def test_fcn_starts_at_zero_with_bilinear_upsampling(registry, vgg16):
    fcn = build_head(registry, "fcn8s", backbone_info("vgg16", vgg16), 5)
    for layer in [fcn.score_fr, *fcn.score_skip]:
        assert layer.weight.abs().sum() == 0 and layer.bias.abs().sum() == 0
    for upscore in fcn.upscore:
        assert upscore.bias is None and upscore.weight.requires_grad
        assert upscore.weight.shape == (5, 5, 4, 4)
        ramp = torch.tensor([0.25, 0.75, 0.75, 0.25])
        torch.testing.assert_close(upscore.weight[2, 2], ramp[:, None] * ramp[None, :])
        assert upscore.weight[2, 3].abs().sum() == 0
    fixed = build_head(
        registry, "fcn16s", backbone_info("vgg16", vgg16), 5, learnable_upsampling=False
    )
    assert not fixed.upscore[0].weight.requires_grad


def test_fcn_on_resnet_rounds_half_pixel_crops(registry):
    features = {
        "layer2": FeatureInfo(128, 8, 0.0),
        "layer3": FeatureInfo(256, 16, 0.0),
        "layer4": FeatureInfo(512, 32, 0.0),
    }
    fcn = build_head(registry, "fcn8s", BackboneInfo("resnet18", features))
    # upscore2 lands at -24 (crop -1.5 -> -1), upscore_pool4 at -36 (crop -4.5 -> -4).
    assert fcn.skip_names == ["layer3", "layer2"]
    assert fcn.skip_crops == [-1, -4]
    assert (fcn.stride, fcn.offset) == (8, -36.0)


@pytest.mark.parametrize(
    ("head", "output_stride", "missing"),
    # ResNet's layer1 is at stride 4: FCN-8s on output stride 8 finds no stride-2 map
    [("fcn8s", 8, 2)],
)
def test_fcn_needing_a_missing_stride_is_refused_at_build_time(
    registry, head, output_stride, missing
):
    with pytest.raises(IncompatiblePartsError) as error:
        build_model_from_parts(
            registry,
            Part("resnet18", {"output_stride": output_stride}),
            Part(head),
            Part("interpolate"),
            21,
        )
    message = one_line(error)
    assert head in message and f"stride {missing}" in message and "resnet18" in message


# -- DeepLab -------------------------------------------------------------------------


def test_largefov_layers(registry, deeplab_vgg16):
    head = build_head(registry, "deeplab_largefov", backbone_info("deeplab_vgg16", deeplab_vgg16))
    assert (head.fc6.kernel_size, head.fc6.dilation, head.fc6.padding) == (
        (3, 3),
        (12, 12),
        (12, 12),
    )
    assert (head.fc6.in_channels, head.fc6.out_channels) == (64, 1024)
    assert (head.fc7.kernel_size, head.fc7.out_channels) == ((1, 1), 1024)
    assert head.fc8.in_channels == 1024 and not head.msc
    assert (head.stride, head.offset) == (8, 0.0)
    assert head.dropout.p == 0.5


def test_fc8_is_drawn_from_n_0_001(registry, deeplab_vgg16):
    head = build_head(
        registry, "deeplab_largefov", backbone_info("deeplab_vgg16", deeplab_vgg16), 21
    )
    assert 0.0095 < head.fc8.weight.std().item() < 0.0105
    assert abs(head.fc8.weight.mean().item()) < 0.001
    assert head.fc8.bias.abs().sum() == 0


@pytest.mark.parametrize(
    ("head", "kernel", "dilation", "padding", "channels"),
    [("deeplab_msc_largefov", 3, 12, 12, 1024), ("deeplab_msc", 4, 4, 6, 4096)],
)
@pytest.mark.parametrize("size", [(333, 497), (64, 64)])
def test_msc_reads_the_image_and_pool1_to_pool4(
    registry, deeplab_vgg16, head, kernel, dilation, padding, channels, size
):
    info = backbone_info("deeplab_vgg16", deeplab_vgg16)
    msc = build_head(registry, head, info, 3, fc_channels=16, msc_channels=8).eval()
    fc6 = msc.fc6
    assert (fc6.kernel_size[0], fc6.dilation[0], fc6.padding[0]) == (kernel, dilation, padding)
    assert list(msc.msc) == ["image", "pool1", "pool2", "pool3", "pool4"]
    assert [branch[0].stride[0] for branch in msc.msc.values()] == [8, 4, 2, 1, 1]
    assert [branch[0].kernel_size[0] for branch in msc.msc.values()] == [3] * 5
    assert [branch[3].kernel_size[0] for branch in msc.msc.values()] == [1] * 5
    assert msc.fc8.in_channels == 16 + 5 * 8
    assert set(msc.msc_crops.values()) == {0}
    images = torch.randn(1, 3, *size)
    with torch.no_grad():
        features = {"image": images, **deeplab_vgg16(images)}
        scores = msc(features)
    assert scores.shape == (1, 3, *features["pool5"].shape[-2:])
    full = build_head(registry, head, info, 21)
    assert full.fc6.out_channels == channels
    assert full.fc8.in_channels == channels + 640


@pytest.mark.parametrize("head", ["deeplab_msc", "deeplab_msc_largefov"])
@pytest.mark.parametrize("backbone", ["resnet18", "vgg16"])
def test_msc_needs_pool1_to_pool4(registry, head, backbone):
    params = {"width": 0.125} if backbone == "vgg16" else {}
    with pytest.raises(IncompatiblePartsError) as error:
        build_model_from_parts(
            registry, Part(backbone, params), Part(head), Part("interpolate"), 21
        )
    message = one_line(error)
    assert "pool1" in message and backbone in message


def test_general_deeplab_refuses_msc_but_runs_without_it_on_resnet(registry):
    features = {
        "layer2": FeatureInfo(128, 8, 0.0),
        "layer3": FeatureInfo(256, 16, 0.0),
        "layer4": FeatureInfo(512, 16, 0.0),
    }
    info = BackboneInfo("resnet18", features)
    with pytest.raises(IncompatiblePartsError):
        build_head(registry, "deeplab", info, msc=True)
    head = build_head(registry, "deeplab", info, fc6_kernel=3, fc6_dilation=6, fc_channels=8)
    assert (head.stride, head.offset) == (16, 0.0)
    scores = head({"layer4": torch.randn(1, 512, 5, 7)})
    assert scores.shape == (1, 2, 5, 7)


# -- DeepLab's ImageNet fc6/fc7 subsampling ---------------------------------------------


@pytest.fixture(scope="module")
def imagenet_classifier():
    generator = torch.Generator().manual_seed(3)
    return {
        "classifier.0.weight": torch.randn(4096, 25088, generator=generator),
        "classifier.0.bias": torch.randn(4096, generator=generator),
        "classifier.3.weight": torch.randn(4096, 4096, generator=generator),
        "classifier.3.bias": torch.randn(4096, generator=generator),
    }


def pretrained_info(spare) -> BackboneInfo:
    features = {f"pool{i}": FeatureInfo(c, s) for i, c, s in [(1, 64, 2), (2, 128, 4)]}
    features |= {f"pool{i}": FeatureInfo(512, 8) for i in (3, 4, 5)}
    return BackboneInfo("deeplab_vgg16", features, spare)


def test_largefov_subsamples_fc6_to_3x3_and_every_4th_filter(registry, imagenet_classifier):
    spare = imagenet_classifier
    head = build_head(registry, "deeplab_largefov", pretrained_info(spare))
    fc6 = spare["classifier.0.weight"].view(4096, 512, 7, 7)
    expected = fc6[0::4][:, :, [0, 3, 6]][:, :, :, [0, 3, 6]]
    assert torch.equal(head.fc6.weight, expected)
    assert torch.equal(head.fc6.bias, spare["classifier.0.bias"][0::4])
    assert torch.equal(head.fc7.weight[:, :, 0, 0], spare["classifier.3.weight"][0::4, 0::4])
    assert torch.equal(head.fc7.bias, spare["classifier.3.bias"][0::4])


def test_msc_subsamples_fc6_to_4x4_keeping_all_filters(registry, imagenet_classifier):
    spare = imagenet_classifier
    head = build_head(registry, "deeplab_msc", pretrained_info(spare))
    fc6 = spare["classifier.0.weight"].view(4096, 512, 7, 7)
    assert torch.equal(head.fc6.weight, fc6[:, :, [0, 2, 4, 6]][:, :, :, [0, 2, 4, 6]])
    assert torch.equal(head.fc7.weight[:, :, 0, 0], spare["classifier.3.weight"])
    assert torch.equal(head.fc7.bias, spare["classifier.3.bias"])


def test_subsampling_that_cannot_fit_is_refused(registry, imagenet_classifier):
    with pytest.raises(ConfigError) as error:
        build_head(registry, "deeplab", pretrained_info(imagenet_classifier), fc_channels=8192)
    assert "fc_channels" in one_line(error)


def test_assembled_deeplab_model_keeps_the_input_size(registry):
    model = build_model_from_parts(
        registry,
        Part("deeplab_vgg16", {"width": 0.125}),
        Part("deeplab_msc_largefov", {"fc_channels": 8, "msc_channels": 4}),
        Part("interpolate", {"align_corners": True}),
        3,
    )
    assert isinstance(model, SegmentationModel)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 75, 61)).shape == (2, 3, 75, 61)


# -- FPN -----------------------------------------------------------------------------


def test_fpn_scores_a_resnet_at_stride_4_from_every_level(registry):
    model = build_model_from_parts(
        registry, Part("resnet18"), Part("fpn", {"dropout": 0.0}), Part("interpolate"), 5
    )
    head = model.head
    assert head.names == ["layer1", "layer2", "layer3", "layer4"]
    assert (head.stride, head.offset) == (4, 0.0)
    # one 3x3 block per factor of 2 below each level (1, 1, 2, 3)
    blocks = [sum(isinstance(m, torch.nn.Conv2d) for m in level) for level in head.merge]
    assert blocks == [1, 1, 2, 3]
    images = torch.randn(2, 3, 70, 90)
    scores = model(images)
    assert scores.shape == (2, 5, 70, 90)
    features = model.backbone(images)
    assert head(features).shape == (2, 5, 18, 23)  # ceil(70/4) x ceil(90/4)
    scores.square().mean().backward()
    assert all(conv.weight.grad.abs().sum() > 0 for conv in head.lateral)


def test_fpn_top_down_path_carries_the_deepest_map_to_the_finest(registry):
    resnet = registry.get("backbone", "resnet18").build(params={}).eval()
    head = build_head(registry, "fpn", backbone_info("resnet18", resnet), 3).eval()
    with torch.no_grad():
        features = resnet(torch.randn(1, 3, 64, 64))
        before = head(features)
        # only the deepest level changed: the finest scores change through the sum
        # of the merged levels and through the top-down additions
        features["layer4"] = features["layer4"] + 1.0
        after = head(features)
    assert before.shape == after.shape == (1, 3, 16, 16)
    assert not torch.allclose(before, after)


def test_fpn_refuses_a_backbone_with_repeated_strides(registry):
    with pytest.raises(IncompatiblePartsError) as error:
        build_model_from_parts(
            registry, Part("resnet18", {"output_stride": 8}), Part("fpn"), Part("interpolate"), 3
        )
    message = one_line(error)
    assert "fpn" in message and "distinct strides" in message and "resnet18" in message


def test_fpn_bad_widths_are_config_errors(registry):
    resnet = registry.get("backbone", "resnet18").build(params={})
    with pytest.raises(ConfigError, match="pyramid_channels and channels must be >= 1"):
        build_head(registry, "fpn", backbone_info("resnet18", resnet), 3, channels=0)
