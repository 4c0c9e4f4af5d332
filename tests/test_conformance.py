"""segkit.testing's conformance checks, run over every registered built-in part."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from segkit import FeatureInfo, hookimpl
from segkit.core import KINDS, Part, load_plugins
from segkit.data import voc_palette
from segkit.infer.pictures import save_mask_png
from segkit.testing import (
    BackboneConformance,
    DatasetConformance,
    HeadConformance,
    PostprocessorConformance,
    UpsamplerConformance,
)
from tests.dataset_fixtures import write_ade20k, write_cityscapes, write_coco, write_labelme

#: The registered names, read when the tests are collected.
NAMES = {kind: load_plugins().registry.names(kind) for kind in KINDS}

SMALL_VGG = {"width": 0.125, "fc_channels": 64}

#: (kind, name) -> small parameters; a name missing here is checked with its defaults.
#: Heads also name the backbone they are checked on; datasets' ``root`` is made here.
PARAMS = {
    ("backbone", "vgg16"): SMALL_VGG,
    ("backbone", "deeplab_vgg16"): {"width": 0.125},
    ("backbone", "resnet18"): {"output_stride": 16},
    ("backbone", "timm"): {"model": "test_convnext"},
    ("head", "fcn32s"): ({}, Part("vgg16", SMALL_VGG)),
    ("head", "fcn16s"): ({}, Part("vgg16", SMALL_VGG)),
    ("head", "fcn8s"): ({}, Part("resnet18")),
    ("head", "fpn"): ({"pyramid_channels": 16, "channels": 8}, Part("resnet18")),
    ("head", "deeplab"): ({"fc_channels": 8}, Part("resnet18", {"output_stride": 8})),
    ("head", "deeplab_largefov"): ({"fc_channels": 16}, Part("deeplab_vgg16", {"width": 0.125})),
    ("head", "deeplab_msc"): (
        {"fc_channels": 16, "msc_channels": 8},
        Part("deeplab_vgg16", {"width": 0.125}),
    ),
    ("head", "deeplab_msc_largefov"): (
        {"fc_channels": 16, "msc_channels": 8},
        Part("deeplab_vgg16", {"width": 0.125}),
    ),
    ("upsampler", "interpolate"): {"align_corners": True},
    ("postprocessor", "densecrf"): {"iterations": 2, "workers": 1},
    ("postprocessor", "densecrf_torch"): {"iterations": 2, "device": "cpu"},
    ("dataset", "synthetic"): {"train_size": 4, "val_size": 2, "min_size": 48, "max_size": 56},
    ("dataset", "folder"): {"root": "folder", "num_classes": 4, "val_fraction": 0.34},
    ("dataset", "voc"): {"root": "VOCdevkit"},
    ("dataset", "cityscapes"): {"root": "cityscapes"},
    ("dataset", "ade20k"): {"root": "ade20k"},
    ("dataset", "coco"): {"root": "coco", "val_fraction": 0.25},
    ("dataset", "labelme"): {"root": "labelme", "val_fraction": 0.25},
}

#: Heads and a backbone each must refuse (the others sit on any backbone).
INCOMPATIBLE = {
    "fcn8s": Part("resnet18", {"output_stride": 8}),
    "fpn": Part("resnet18", {"output_stride": 8}),
    "deeplab_msc": Part("resnet18"),
    "deeplab_msc_largefov": Part("vgg16", SMALL_VGG),
}


def part_fixture(kind: str):
    """A class-scoped ``part`` fixture over every registered name of ``kind``."""

    @pytest.fixture(scope="class", params=NAMES[kind])
    @classmethod
    def part(cls, request) -> Part:
        params = PARAMS.get((kind, request.param), {})
        return Part(request.param, dict(params[0] if kind == "head" else params))

    return part


class TestBackbones(BackboneConformance):
    part = part_fixture("backbone")


class TestHeads(HeadConformance):
    part = part_fixture("head")

    @pytest.fixture(scope="class")
    @classmethod
    def backbone_part(cls, part) -> Part:
        return PARAMS[("head", part.name)][1]

    @pytest.fixture(scope="class")
    @classmethod
    def incompatible_part(cls, part) -> Part | None:
        return INCOMPATIBLE.get(part.name)


class TestUpsamplers(UpsamplerConformance):
    part = part_fixture("upsampler")


class TestPostprocessors(PostprocessorConformance):
    part = part_fixture("postprocessor")


def write_pair(image_path, mask_path, seed: int, labels: int) -> None:
    """A random image and a palette mask with labels below ``labels`` and a 255 line."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (21, 27, 3), dtype=np.uint8)).save(image_path)
    mask = rng.integers(0, labels, (21, 27), dtype=np.uint8)
    mask[3] = 255
    save_mask_png(mask_path, mask, voc_palette())


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A tiny tree for each dataset that reads one."""
    root = tmp_path_factory.mktemp("datasets")
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True)
    stems = ["2007_000032", "2007_000039", "2007_000063"]
    for i, stem in enumerate(stems):
        write_pair(voc / f"JPEGImages/{stem}.jpg", voc / f"SegmentationClass/{stem}.png", i, 21)
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(stems) + "\n")
    for folder in ("images", "masks"):
        (root / "folder" / folder).mkdir(parents=True)
    for i in range(3):
        write_pair(root / f"folder/images/{i}.png", root / f"folder/masks/{i}.png", 10 + i, 4)
    write_cityscapes(root / "cityscapes")
    write_ade20k(root / "ade20k")
    write_coco(root / "coco")
    write_labelme(root / "labelme")
    return root


class TestDatasets(DatasetConformance):
    @pytest.fixture(scope="class", params=NAMES["dataset"])
    @classmethod
    def part(cls, request, data_root) -> Part:
        params = dict(PARAMS.get(("dataset", request.param), {}))
        if "root" in params:
            params["root"] = str(data_root / params["root"])
        return Part(request.param, params)


# -- the checks catch broken parts ---------------------------------------------------


class Lying(nn.Module):
    """Declares 8 channels at stride 4 but gives 4 channels at stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.feature_info = {"out": FeatureInfo(channels=8, stride=4, offset=0.0)}

    def forward(self, images):
        return {"out": self.conv(images)}


class Identity:
    """Returns the probabilities as they come, checking nothing."""

    def __call__(self, probs, images):
        return probs


class BrokenParts:
    @hookimpl
    def register_backbones(self, register):
        register("lying", Lying)

    @hookimpl
    def register_postprocessors(self, register):
        register("identity", Identity)


@pytest.fixture(scope="module")
def broken_registry():
    return load_plugins(extra=(BrokenParts(),)).registry


def test_conformance_fails_a_backbone_whose_feature_info_lies(broken_registry):
    check = BackboneConformance()
    backbone = broken_registry.get("backbone", "lying").build()
    with torch.no_grad():
        outputs = backbone(torch.randn(2, 3, 67, 93))
    check.test_keys_are_in_order_shallow_to_deep(backbone, outputs)  # the keys are right
    with pytest.raises(AssertionError, match="out"):
        check.test_maps_match_channels_stride_and_offset(backbone, outputs)
    backbone.feature_info = {"out": FeatureInfo(channels=4, stride=4, offset=0.0)}
    with pytest.raises(AssertionError, match="stride 4"):
        check.test_maps_match_channels_stride_and_offset(backbone, outputs)
    backbone.feature_info = {"out": FeatureInfo(channels=4, stride=2, offset=0.0)}
    check.test_maps_match_channels_stride_and_offset(backbone, outputs)


def test_conformance_fails_a_postprocessor_that_checks_nothing(broken_registry):
    check = PostprocessorConformance()
    identity = broken_registry.get("postprocessor", "identity").build()
    probs = torch.softmax(torch.randn(2, 3, 5, 6), dim=1)
    images = torch.randint(0, 256, (2, 3, 5, 6), dtype=torch.uint8)
    check.test_keeps_the_shape_and_sums_to_one(identity, (probs, images))
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        check.test_rejects_bad_input_with_a_data_error(identity, (probs, images), "other size")
