"""Backbones: feature maps, strides and offsets, and torchvision weights (fabricated here)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from segkit import CheckpointError, ConfigError


def build(registry, name, **params):
    return registry.get("backbone", name).build(params=params)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


# -- geometry ----------------------------------------------------------------------


def test_fcn_vgg16_maps_strides_and_offsets(registry):
    backbone = build(registry, "vgg16", width=0.125)
    info = backbone.feature_info
    assert list(info) == ["pool3", "pool4", "fc7"]
    assert [(i.stride, i.offset) for i in info.values()] == [(8, -95.5), (16, -91.5), (32, 12.5)]
    assert [i.channels for i in info.values()] == [32, 64, 512]
    with torch.no_grad():
        maps = backbone.eval()(torch.randn(1, 3, 500, 500))
    # FCN's known sizes for a 500 x 500 image: pool3 88, pool4 44, score 16.
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "pool3": (1, 32, 88, 88),
        "pool4": (1, 64, 44, 44),
        "fc7": (1, 512, 16, 16),
    }


def test_vgg16_offsets_follow_the_padding_and_fc6_kernel(registry):
    # Without the big padding, 2x2 pools tile the input: pool3 pixel i covers [8i, 8i + 8).
    info = build(registry, "vgg16", width=0.125, first_padding=1, fc6_kernel=1).feature_info
    assert (info["pool3"].stride, info["pool3"].offset) == (8, 3.5)
    assert (info["pool4"].stride, info["pool4"].offset) == (16, 7.5)
    assert (info["fc7"].stride, info["fc7"].offset) == (32, 15.5)
    assert (
        build(registry, "vgg16", width=0.125, first_padding=0).feature_info["pool3"].offset == 4.5
    )


def test_full_width_channels(registry):
    with torch.device("meta"):
        info = build(registry, "vgg16").feature_info
        deeplab_info = build(registry, "deeplab_vgg16").feature_info
    assert [i.channels for i in info.values()] == [256, 512, 4096]
    assert [i.channels for i in deeplab_info.values()] == [64, 128, 256, 512, 512]


def test_deeplab_vgg16_is_stride_8_with_dilated_conv5(registry):
    backbone = build(registry, "deeplab_vgg16", width=0.125)
    info = backbone.feature_info
    assert list(info) == ["pool1", "pool2", "pool3", "pool4", "pool5"]
    assert [(i.stride, i.offset) for i in info.values()] == [(2, 0), (4, 0), (8, 0), (8, 0), (8, 0)]
    conv5 = [m for m in backbone.features[24:] if isinstance(m, nn.Conv2d)]
    assert [(c.dilation, c.padding) for c in conv5] == [((2, 2), (2, 2))] * 3
    with torch.no_grad():
        maps = backbone.eval()(torch.randn(1, 3, 321, 321))
    # DeepLab's 321 x 321 crops give 41 x 41 score maps.
    assert maps["pool5"].shape == (1, 64, 41, 41)
    assert maps["pool1"].shape[-1] == 161 and maps["pool2"].shape[-1] == 81


def test_deeplab_vgg16_without_weights_has_no_spare_weights(registry):
    assert build(registry, "deeplab_vgg16", width=0.125).spare_weights == {}


@pytest.mark.parametrize(
    ("name", "output_stride", "strides"),
    [
        ("resnet18", 32, [4, 8, 16, 32]),
        ("resnet18", 16, [4, 8, 16, 16]),
        ("resnet18", 8, [4, 8, 8, 8]),
        ("resnet50", 16, [4, 8, 16, 16]),
    ],
)
def test_resnet_strides_and_sizes(registry, name, output_stride, strides):
    backbone = build(registry, name, output_stride=output_stride).eval()
    info = backbone.feature_info
    assert list(info) == ["layer1", "layer2", "layer3", "layer4"]
    assert [i.stride for i in info.values()] == strides
    assert all(i.offset == 0 for i in info.values())
    expansion = 4 if name == "resnet50" else 1
    assert [i.channels for i in info.values()] == [
        64 * expansion,
        128 * expansion,
        256 * expansion,
        512 * expansion,
    ]
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 64, 64))
    for key, feature in info.items():
        assert maps[key].shape == (1, feature.channels, 64 // feature.stride, 64 // feature.stride)


def test_resnet_dilation_matches_torchvision(registry):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]).eval()
    backbone = build(registry, "resnet50", output_stride=8).eval()
    backbone.load_state_dict({k: v for k, v in reference.state_dict().items() if k[:3] != "fc."})
    images = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(images))))
        x = reference.layer3(reference.layer2(reference.layer1(x)))
        expected = reference.layer4(x)
        torch.testing.assert_close(backbone(images)["layer4"], expected)


# -- torchvision weights ------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """A torchvision-format VGG16 state dict with random values."""
    torch.manual_seed(1)
    state = torchvision.models.vgg16().state_dict()
    path = tmp_path_factory.mktemp("weights") / "vgg16_random.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    torch.manual_seed(2)
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18_random.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub"
    assert torch.hub.get_dir() == str(hub), "torch.hub.set_dir was called elsewhere"
    return hub / "checkpoints"


def test_vgg16_fc6_fc7_are_the_convolutionalized_classifier(registry, vgg16_file):
    path, state = vgg16_file
    backbone = build(registry, "vgg16", weights=str(path))
    for key, value in backbone.features.state_dict().items():
        assert torch.equal(value, state[f"features.{key}"]), key
    fc6, fc7 = backbone.classifier[0], backbone.classifier[3]
    assert fc6.weight.shape == (4096, 512, 7, 7) and fc7.weight.shape == (4096, 4096, 1, 1)
    # torchvision: Linear fc6 and fc7 (with ReLU) on the flattened 512 x 7 x 7 pool5.
    pool5 = torch.randn(2, 512, 7, 7, dtype=torch.float64)
    w6, b6, w7, b7 = (
        state[f"classifier.{k}"].double() for k in ("0.weight", "0.bias", "3.weight", "3.bias")
    )
    expected = F.relu(F.linear(F.relu(F.linear(pool5.flatten(1), w6, b6)), w7, b7))
    with torch.no_grad():
        x = F.relu(F.conv2d(pool5, fc6.weight.double(), fc6.bias.double()))
        x = F.relu(F.conv2d(x, fc7.weight.double(), fc7.bias.double()))
    assert x.shape == (2, 4096, 1, 1)
    torch.testing.assert_close(x.flatten(1), expected, atol=1e-5, rtol=0)


def test_imagenet_weights_come_from_the_hub_cache(registry, vgg16_file, empty_hub):
    path, state = vgg16_file
    empty_hub.mkdir(parents=True)
    os.symlink(path, empty_hub / "vgg16-397923af.pth")
    backbone = build(registry, "deeplab_vgg16", weights="imagenet")
    assert torch.equal(backbone.features[0].weight, state["features.0.weight"])
    assert torch.equal(backbone.features[28].bias, state["features.28.bias"])
    spare = backbone.spare_weights
    assert sorted(spare) == sorted(
        f"classifier.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")
    )
    assert torch.equal(spare["classifier.0.weight"], state["classifier.0.weight"])
    assert torch.equal(spare["classifier.3.bias"], state["classifier.3.bias"])


@pytest.mark.parametrize(
    ("name", "params", "filename"),
    [
        ("vgg16", {}, "vgg16-397923af.pth"),
        ("vgg16", {"batch_norm": True}, "vgg16_bn-6c64b313.pth"),
        ("deeplab_vgg16", {}, "vgg16-397923af.pth"),
        ("resnet18", {}, "resnet18-f37072fd.pth"),
        ("resnet101", {}, "resnet101-63fe2227.pth"),
    ],
)
def test_missing_imagenet_weights_name_the_file_and_folder(
    registry, empty_hub, name, params, filename
):
    with pytest.raises(CheckpointError) as error:
        build(registry, name, weights="imagenet", **params)
    message = one_line(error)
    assert filename in message
    assert str(empty_hub) in message


def test_vgg16_smaller_fc_layers_are_subsampled(registry, vgg16_file):
    path, state = vgg16_file
    backbone = build(registry, "vgg16", weights=str(path), fc6_kernel=1, fc_channels=1024)
    fc6 = state["classifier.0.weight"].reshape(4096, 512, 7, 7)
    assert torch.equal(backbone.classifier[0].weight, fc6[0::4, :, 3:4, 3:4])
    assert torch.equal(backbone.classifier[0].bias, state["classifier.0.bias"][0::4])
    fc7 = state["classifier.3.weight"][0::4, 0::4]
    assert torch.equal(backbone.classifier[3].weight[:, :, 0, 0], fc7)


def test_vgg16_batch_norm_layout_loads_torchvision_vgg16_bn(registry, tmp_path):
    state = torchvision.models.vgg16_bn().features.state_dict()
    # Only the conv part matters here; a real file also holds the classifier.
    full = {f"features.{k}": v for k, v in state.items()}
    full.update(
        {
            "classifier.0.weight": torch.zeros(4096, 25088),
            "classifier.0.bias": torch.zeros(4096),
            "classifier.3.weight": torch.zeros(4096, 4096),
            "classifier.3.bias": torch.zeros(4096),
        }
    )
    path = tmp_path / "vgg16_bn.pth"
    torch.save(full, path)
    backbone = build(registry, "deeplab_vgg16", weights=str(path), batch_norm=True)
    assert torch.equal(backbone.features[1].running_var, state["1.running_var"])
    with pytest.raises(CheckpointError) as error:
        build(registry, "deeplab_vgg16", weights=str(path))
    assert "unexpected features.1.weight" in one_line(error)


def test_resnet_weights_load_from_a_path_and_the_hub(registry, resnet18_file, empty_hub):
    path, state = resnet18_file
    for weights in (str(path), "imagenet"):
        if weights == "imagenet":
            empty_hub.mkdir(parents=True)
            os.symlink(path, empty_hub / "resnet18-f37072fd.pth")
        backbone = build(registry, "resnet18", weights=weights, output_stride=8)
        loaded = backbone.state_dict()
        assert set(loaded) == {k for k in state if not k.startswith("fc.")}
        for key, value in loaded.items():
            assert torch.equal(value, state[key]), key


def test_resnet_file_without_num_batches_tracked_loads(registry, resnet18_file, tmp_path):
    _, state = resnet18_file
    older = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(older, tmp_path / "old.pth")
    backbone = build(registry, "resnet18", weights=str(tmp_path / "old.pth"))
    assert torch.equal(backbone.layer4[1].bn2.weight, state["layer4.1.bn2.weight"])


def test_wrong_weight_files_are_one_line_errors(registry, resnet18_file, tmp_path):
    path, _ = resnet18_file
    with pytest.raises(CheckpointError) as error:
        build(registry, "vgg16", weights=str(path))
    message = one_line(error)
    assert "missing" in message and "vgg16" in message
    with pytest.raises(CheckpointError) as error:
        build(registry, "resnet50", weights=str(path))
    assert "resnet50" in one_line(error)
    with pytest.raises(CheckpointError) as error:
        build(registry, "resnet18", weights=str(tmp_path / "nowhere.pth"))
    assert "nowhere.pth" in one_line(error)
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError) as error:
        build(registry, "resnet34", weights=str(tmp_path / "junk.pth"))
    assert "junk.pth" in one_line(error)


def test_pretrained_weights_need_full_width(registry, vgg16_file):
    path, _ = vgg16_file
    for name in ("vgg16", "deeplab_vgg16"):
        with pytest.raises(ConfigError) as error:
            build(registry, name, weights=str(path), width=0.5)
        assert "width" in one_line(error)
