"""The timm backbone: every head on timm encoders, their geometry, weights and bad input.

Backbones are built once per model and output stride (random init, eval mode,
no_grad); each backbone's features for an image are computed once and every head
runs on them, which is what ``SegmentationModel.forward`` does.  Pretrained weights
are fabricated here: timm's own models' state dicts, written to files.
"""

from __future__ import annotations

import huggingface_hub
import pytest
import timm
import torch
from safetensors.torch import save_file
from segkit_plugins.backbones.timm_grid import trace_grid
from torch import nn

from segkit import CheckpointError, ConfigError, IncompatiblePartsError, SegmentationModel
from segkit.core.config import config_from_dict
from segkit.model import BackboneInfo, build_model, count_parameters, grid_after
from tests.test_cli import assert_one_line_error
from tests.test_cli_models import segkit  # noqa: F401  (the in-process CLI fixture)

MODELS = ["resnet50", "convnext_tiny", "efficientnet_b0", "regnety_016", "mobilenetv3_large_100"]
FCN_SKIPS = {"fcn32s": 0, "fcn16s": 1, "fcn8s": 2}
NUM_CLASSES = 5


def build(registry, **params):
    return registry.get("backbone", "timm").build(params=params)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


@pytest.fixture(scope="module")
def backbones(registry):
    """Backbones built on first use, kept for the module: (model, output_stride) -> module."""
    cache: dict[tuple[str, int | None], nn.Module] = {}

    def get(model: str, output_stride: int | None = None) -> nn.Module:
        if (model, output_stride) not in cache:
            backbone = build(registry, model=model, output_stride=output_stride)
            cache[model, output_stride] = backbone.eval()
        return cache[model, output_stride]

    return get


def heads_for(registry, model: str, backbone: nn.Module) -> dict[str, nn.Module]:
    """Every head (with its upsampler) that fits the backbone; the others must be refused."""
    info = BackboneInfo(model, backbone.feature_info)
    strides = {f.stride for f in backbone.feature_info.values()}
    deepest = info.features[info.deepest].stride
    parts = {}
    for head, params in [*((h, {}) for h in FCN_SKIPS), ("deeplab_largefov", {"fc_channels": 16})]:
        fits = all(deepest // 2**k in strides for k in range(1, FCN_SKIPS.get(head, 0) + 1))
        if not fits:
            with pytest.raises(IncompatiblePartsError):
                registry.get("head", head).build(info, NUM_CLASSES, params=params)
            continue
        module = registry.get("head", head).build(info, NUM_CLASSES, params=params)
        upsampler = registry.get("upsampler", "interpolate").build(
            NUM_CLASSES, module.stride, module.offset
        )
        parts[head] = SegmentationModel(backbone, module, upsampler).eval()
    # DeepLab-MSc reads VGG's pool1..pool4, which no timm model has: refused in one line.
    with pytest.raises(IncompatiblePartsError) as error:
        registry.get("head", "deeplab_msc_largefov").build(info, NUM_CLASSES)
    assert "pool1" in one_line(error)
    return parts


def logits_of(parts: dict[str, nn.Module], backbone: nn.Module, size: tuple[int, int]):
    images = torch.randn(1, 3, *size)
    with torch.no_grad():
        features = {"image": images, **backbone(images)}
        for name, model in parts.items():
            yield name, model.upsampler(model.head(features), images.shape[-2:])


# -- every head, exact input size ---------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_every_head_gives_logits_of_the_input_size(registry, backbones, model):
    backbone = backbones(model)
    assert backbone.feature_info[list(backbone.feature_info)[-1]].stride == 32
    parts = heads_for(registry, model, backbone)
    assert set(parts) == {"fcn32s", "fcn16s", "fcn8s", "deeplab_largefov"}
    for size in [(333, 497), (64, 64)]:
        for head, logits in logits_of(parts, backbone, size):
            assert logits.shape == (1, NUM_CLASSES, *size), (head, size)
            assert torch.isfinite(logits).all()


# Dilated variants run on 64x64 and a smaller odd size than 333x497: at output stride
# 8 a ResNet-50 costs 4x more there, and the sizes' oddness is what the crops must meet.
@pytest.mark.parametrize("output_stride", [16, 8])
@pytest.mark.parametrize("model", MODELS)
def test_dilated_variants_give_logits_of_the_input_size(registry, backbones, model, output_stride):
    backbone = backbones(model, output_stride)
    strides = [f.stride for f in backbone.feature_info.values()]
    assert strides[-1] == output_stride
    assert strides == sorted(strides)
    parts = heads_for(registry, model, backbone)
    # FCN-8s needs maps at a half and a quarter of the output stride.
    assert "fcn16s" in parts and "deeplab_largefov" in parts
    assert ("fcn8s" in parts) == (output_stride // 4 in strides)
    for size in [(129, 97), (64, 64)]:
        for head, logits in logits_of(parts, backbone, size):
            assert logits.shape == (1, NUM_CLASSES, *size), (head, size)


def test_a_config_builds_the_whole_model(registry):
    config = config_from_dict(
        {
            "model": {
                "backbone": {"name": "timm", "model": "efficientnet_b0", "output_stride": 16},
                "head": {"name": "fcn8s"},
            }
        },
        registry=registry,
    )
    model = build_model(config, NUM_CLASSES, registry).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 75, 101)).shape == (2, NUM_CLASSES, 75, 101)


@pytest.mark.parametrize("model", MODELS)
def test_parameter_count_is_timms_own(backbones, model):
    with torch.device("meta"):
        own = timm.create_model(model, features_only=True)
    assert count_parameters(backbones(model)) == count_parameters(own)


def test_out_indices_choose_the_levels(registry):
    backbone = build(registry, model="resnet50", out_indices=[2, 3])
    assert list(backbone.feature_info) == ["layer2", "layer3"]
    assert [f.stride for f in backbone.feature_info.values()] == [8, 16]
    with torch.device("meta"):
        own = timm.create_model("resnet50", features_only=True, out_indices=(2, 3))
    assert count_parameters(backbone) == count_parameters(own)
    with pytest.raises(ConfigError) as error:
        build(registry, model="resnet50", out_indices=[7])
    assert "5 feature levels" in one_line(error) and "out_indices" in one_line(error)


# -- strides and offsets -------------------------------------------------------------


def test_traced_grid_matches_the_layer_arithmetic():
    layers = [
        nn.Conv2d(3, 4, 7, stride=2, padding=3),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(4, 4, 4, stride=4),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2),
        nn.Conv2d(4, 4, 3, stride=2, padding=0),
    ]
    stride, offset = 1, 0.0
    for layer in layers:
        stride, offset = grid_after(layer, stride, offset)
    (traced,) = trace_grid(_Chain(*layers), torch.zeros(1, 3, 128, 128))
    assert traced._segkit_grid == (stride, offset) == (32, 22.0)
    # A 2x2 average pool centres its output between two inputs (+0.5 of its input
    # stride 16); an explicit F.pad of one pixel on the left moves the grid one input
    # pixel left.  By hand: 0 -> 0 -> 6 -> 6 (stride 16) -> 14 (32) -> 46 (64).
    (traced,) = trace_grid(
        _Chain(*layers[:4], nn.AvgPool2d(2), layers[4]), torch.zeros(1, 3, 128, 128)
    )
    assert traced._segkit_grid == (64, 46.0)
    (padded,) = trace_grid(_Chain(nn.ZeroPad2d((1, 0, 1, 0)), layers[2]), torch.zeros(1, 4, 8, 8))
    assert padded._segkit_grid == (4, 0.5)


class _Chain(nn.Sequential):
    def forward(self, x):
        return [super().forward(x)]


def test_offsets_follow_each_architecture(backbones, registry):
    # ResNet, EfficientNet, RegNet, MobileNet: centred 3x3/7x7 convolutions, offset 0.
    for model in ("resnet50", "efficientnet_b0", "regnety_016", "mobilenetv3_large_100"):
        assert {f.offset for f in backbones(model).feature_info.values()} == {0.0}, model
    # ConvNeXt: a 4x4 stride-4 patch stem (centre 1.5), then 2x2 stride-2 downsamplings.
    info = backbones("convnext_tiny").feature_info
    assert [(f.stride, f.offset) for f in info.values()] == [
        (4, 1.5),
        (8, 3.5),
        (16, 7.5),
        (32, 15.5),
    ]
    # TensorFlow's "same" padding puts the odd pixel on the right: each stride-2 layer
    # centres its output one input pixel further right (even input sizes).
    info = build(registry, model="tf_efficientnet_b0").feature_info
    assert [f.offset for f in info.values()] == [1.0, 3.0, 7.0, 15.0, 31.0]
    # Dilated, ConvNeXt's last downsampling is a 2x2 convolution of stride 1 padded on
    # the right only ("same"): it shifts the grid by half a pixel of stride 16.
    dilated = backbones("convnext_tiny", 16).feature_info
    assert [(f.stride, f.offset) for f in dilated.values()][2:] == [(16, 7.5), (16, 15.5)]


def test_channels_are_timms_feature_info(backbones):
    backbone = backbones("regnety_016")
    images = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        maps = backbone(images)
    for name, info in backbone.feature_info.items():
        assert maps[name].shape == (1, info.channels, 96 // info.stride, 64 // info.stride)


# -- weights -------------------------------------------------------------------------


def test_features_only_state_dict_loads_from_a_pth(registry, tmp_path):
    torch.manual_seed(4)
    state = timm.create_model("resnet18", features_only=True).state_dict()
    torch.save(state, tmp_path / "resnet18.pth")
    backbone = build(registry, model="resnet18", weights=str(tmp_path / "resnet18.pth"))
    loaded = backbone.body.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize(
    ("model", "stem", "features_stem"),
    [
        # timm's features_only wrapper names ConvNeXt's stem "stem_0", the full model "stem.0";
        ("test_convnext", "stem.0.weight", "stem_0.weight"),
        # and puts a ViT whole under "model.".
        ("test_vit", "patch_embed.proj.weight", "model.patch_embed.proj.weight"),
    ],
)
def test_full_model_state_dict_loads_from_safetensors(
    registry, tmp_path, model, stem, features_stem
):
    torch.manual_seed(5)
    full = timm.create_model(model).state_dict()
    save_file(full, tmp_path / "model.safetensors")
    backbone = build(registry, model=model, weights=str(tmp_path / "model.safetensors"))
    loaded = backbone.body.state_dict()
    assert torch.equal(loaded[features_stem], full[stem])
    with torch.device("meta"):
        own = timm.create_model(model, features_only=True).state_dict()
    assert loaded.keys() == own.keys()
    # Every tensor came from the file, under timm's full-model name.
    for key, value in loaded.items():
        name = key.removeprefix("model.").replace("stem_", "stem.").replace("stages_", "stages.")
        assert torch.equal(value, full[name]), key


def test_weights_file_for_another_model_names_the_first_mismatched_key(registry, tmp_path):
    torch.save(timm.create_model("resnet18", features_only=True).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError) as error:
        build(registry, model="resnet34", weights=str(tmp_path / "r18.pth"))
    message = one_line(error)
    assert "not a timm resnet34 state dict" in message
    # ResNet-34 has three blocks in layer1, ResNet-18 two: its first missing key.
    assert "missing layer1.2.conv1.weight" in message


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, and no network."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf"


def test_imagenet_weights_come_from_the_hugging_face_cache(registry, hf_cache):
    hub_id = timm.models.get_pretrained_cfg("test_efficientnet").hf_hub_id
    with pytest.raises(CheckpointError) as error:
        build(registry, model="test_efficientnet", weights="imagenet")
    folder = hf_cache / f"models--{hub_id.replace('/', '--')}" / "snapshots" / "main"
    message = one_line(error)
    assert "model.safetensors" in message and str(folder) in message
    # Placed where the message says, the file is found.
    torch.manual_seed(6)
    full = timm.create_model("test_efficientnet").state_dict()
    folder.mkdir(parents=True)
    save_file(full, folder / "model.safetensors")
    backbone = build(registry, model="test_efficientnet", weights="imagenet")
    assert torch.equal(backbone.body.state_dict()["conv_stem.weight"], full["conv_stem.weight"])


def test_every_backbone_takes_weights_none(registry):
    for name, params in [("resnet18", {}), ("vgg16", {"width": 0.125})]:
        for value in ("none", "None"):
            backbone = registry.get("backbone", name).build(params={"weights": value, **params})
            assert backbone.feature_info
    assert build(registry, model="test_resnet", weights="none").feature_info


# -- normalisation -------------------------------------------------------------------


def test_normalisation_follows_the_pretrained_config_unless_set(registry):
    raw = {"model": {"backbone": {"name": "timm", "model": "test_vit"}, "head": "fcn32s"}}
    config = config_from_dict(raw, registry=registry)
    assert config.data.mean is None
    build_model(config, NUM_CLASSES, registry)
    assert config.data.mean == config.data.std == [0.5, 0.5, 0.5]  # test_vit's pretrained_cfg
    raw["data"] = {"mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2]}
    config = config_from_dict(raw, registry=registry)
    build_model(config, NUM_CLASSES, registry)
    assert config.data.mean == [0.4, 0.4, 0.4] and config.data.std == [0.2, 0.2, 0.2]
    raw = {"model": {"backbone": {"name": "resnet18"}, "head": "fcn32s"}}
    config = config_from_dict(raw, registry=registry)
    build_model(config, NUM_CLASSES, registry)
    assert config.data.mean == [0.485, 0.456, 0.406]


# -- bad input through the command line ------------------------------------------------


def summary(segkit, tmp_path, backbone: str):  # noqa: F811
    path = tmp_path / "model.toml"
    path.write_text(f'[model]\nbackbone = {backbone}\nhead = "fcn32s"\nnum_classes = 3\n')
    return segkit("summary", str(path), "--input", "3x64x64")


def test_unknown_model_name_suggests_timms(segkit, tmp_path):  # noqa: F811
    result = summary(segkit, tmp_path, '{ name = "timm", model = "convnext_tinyy" }')
    assert_one_line_error(result, "unknown timm model 'convnext_tinyy'", "'convnext_tiny'?")


def test_impossible_output_stride_names_the_supported_ones(segkit, tmp_path):  # noqa: F811
    result = summary(segkit, tmp_path, '{ name = "timm", model = "test_vit", output_stride = 8 }')
    assert_one_line_error(result, "cannot run at output_stride 8", "it supports 16 (its own)")


def test_a_models_own_output_stride_is_accepted(registry):
    # test_vit takes no output_stride argument; asking for its own stride is no error.
    info = build(registry, model="test_vit", output_stride=16).feature_info
    assert {f.stride for f in info.values()} == {16}


def test_unknown_pretrained_tag_lists_the_tags(registry):
    with pytest.raises(ConfigError) as error:
        build(registry, model="convnext_tiny.fb_in1kk")
    message = one_line(error)
    assert (
        "no pretrained tag 'fb_in1kk'" in message
        and "did you mean 'convnext_tiny.fb_in1k'" in message
    )


def test_model_without_features_only_is_refused(segkit, tmp_path, monkeypatch):  # noqa: F811
    # A model registered with timm whose builder has no feature extraction.
    monkeypatch.setitem(timm.models._registry._model_entrypoints, "plain_segkit_test", _plain)
    result = summary(segkit, tmp_path, '{ name = "timm", model = "plain_segkit_test" }')
    assert_one_line_error(result, "model 'plain_segkit_test' has no features_only support")


def _plain(pretrained: bool = False, **kwargs) -> nn.Module:
    if kwargs.get("features_only"):
        raise RuntimeError("features_only not implemented for plain_segkit_test")
    return nn.Conv2d(3, 3, 1)


def test_weights_of_another_model_through_the_cli(segkit, tmp_path):  # noqa: F811
    # `segkit summary` skips weights; `segkit run` reads them before any training.
    weights = tmp_path / "w.pth"
    torch.save(timm.create_model("test_resnet", features_only=True).state_dict(), weights)
    config = tmp_path / "run.toml"
    config.write_text(
        f'[model]\nbackbone = {{ name = "timm", model = "test_byobnet", weights = "{weights}" }}\n'
        'head = "fcn32s"\n[data]\nworkers = 0\n'
        "dataset = { name = 'synthetic', train_size = 2, val_size = 1, min_size = 48, "
        "max_size = 49 }\n[train]\ndevice = 'cpu'\n"
    )
    result = segkit("run", str(config), "--run-dir", str(tmp_path / "run"))
    assert_one_line_error(result, "not a timm test_byobnet state dict", "missing stem.conv")


def test_plugins_lists_timm_once_and_its_models(segkit):  # noqa: F811
    rows = [row for row in segkit("plugins", "--markdown").stdout.splitlines() if "timm" in row]
    assert len(rows) == 1 and "`timm`" in rows[0] and "segkit plugins --timm" in rows[0]
    result = segkit("plugins", "--timm", "convnext_t")
    assert result.returncode == 0
    assert "convnext_tiny" in result.stdout and "resnet50" not in result.stdout
    assert "timm models" in result.stdout
