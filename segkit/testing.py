"""Conformance tests for segkit plugins, to reuse with pytest.

Subclass one class per registered name, set ``name`` and ``params``, and pytest runs
the inherited ``test_*`` methods against the hook contract (see
:mod:`segkit.core.hookspecs`), through the registry as segkit itself builds parts::

    # test_my_plugin.py
    from segkit.testing import BackboneConformance

    class TestMobileNet(BackboneConformance):
        name = "mobilenet_v3"
        params = {"size": "small"}

The registry is that of the installed plugins (``segkit.core.load_plugins()``)
unless the subclass sets ``registry``.  To check several names with one class,
override the class-scoped ``part`` fixture with a parametrised one.  Inputs are small
(an odd 67×93, batch of 2) so that the checks run in seconds on a CPU; choose small
``params`` (widths, channels) for big parts.

This module imports pytest: import it from tests only, never from a plugin.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from segkit.core import DataError, IncompatiblePartsError, Part, Registry, load_plugins
from segkit.data import Sample, SampleInfo, SegmentationDataset
from segkit.model import BackboneInfo, FeatureInfo, build_model_from_parts

__all__ = [
    "BackboneConformance",
    "DatasetConformance",
    "HeadConformance",
    "PostprocessorConformance",
    "UpsamplerConformance",
]

#: An odd input size: no power of two divides it, so rounding mistakes show.
ODD_SIZE = (67, 93)


@functools.cache
def _installed_registry() -> Registry:
    return load_plugins().registry


def _symmetric_size(length: int, stride: int, offset: float) -> float:
    """Pixels of a map of ``stride``/``offset`` laid symmetrically over ``length`` pixels."""
    return (length - 1 - 2 * offset) / stride + 1


class _Conformance:
    """Shared by the conformance classes: what to check, and through which registry."""

    #: The registered name to check.
    name: ClassVar[str] = ""
    #: Its parameters, as a config gives them (keep them small).
    params: ClassVar[dict[str, Any]] = {}
    #: The registry to build from; ``None``: the installed plugins'.
    registry: ClassVar[Registry | None] = None

    @pytest.fixture(scope="class")
    @classmethod
    def part(cls) -> Part:
        """The part under test; override with a parametrised fixture to check several."""
        if not cls.name:
            pytest.fail(f"{cls.__name__}: set the class attribute 'name'")
        return Part(cls.name, dict(cls.params))

    @pytest.fixture(scope="class")
    @classmethod
    def parts(cls) -> Registry:
        """The registry parts are built from."""
        return cls.registry if cls.registry is not None else _installed_registry()


class BackboneConformance(_Conformance):
    """A backbone's feature maps match its ``feature_info``: keys, channels, strides."""

    #: Input height and width (odd on purpose) and batch size.
    input_size: ClassVar[tuple[int, int]] = ODD_SIZE
    batch: ClassVar[int] = 2

    @pytest.fixture(scope="class")
    @classmethod
    def backbone(cls, parts, part) -> torch.nn.Module:
        torch.manual_seed(0)
        return parts.get("backbone", part.name).build(params=part.params).eval()

    @pytest.fixture(scope="class")
    @classmethod
    def outputs(cls, backbone) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return backbone(torch.randn(cls.batch, 3, *cls.input_size))

    def test_declares_feature_info(self, backbone):
        info = getattr(backbone, "feature_info", None)
        assert isinstance(info, dict) and info, "backbone needs a non-empty dict feature_info"
        for key, feature in info.items():
            assert isinstance(feature, FeatureInfo), f"feature_info[{key!r}] is {feature!r}"
            assert isinstance(feature.channels, int) and feature.channels > 0, key
            assert isinstance(feature.stride, int) and feature.stride > 0, key

    def test_keys_are_in_order_shallow_to_deep(self, backbone, outputs):
        assert list(outputs) == list(backbone.feature_info), "maps must follow feature_info"
        strides = [feature.stride for feature in backbone.feature_info.values()]
        assert strides == sorted(strides), f"strides {strides} must not decrease"

    def test_maps_match_channels_stride_and_offset(self, backbone, outputs):
        height, width = self.input_size
        for key, feature in backbone.feature_info.items():
            x = outputs[key]
            assert x.shape[:2] == (self.batch, feature.channels), f"{key}: {tuple(x.shape)}"
            assert torch.isfinite(x).all(), key
            for got, length in zip(x.shape[-2:], (height, width), strict=True):
                expected = _symmetric_size(length, feature.stride, feature.offset)
                assert abs(got - expected) < 1, (
                    f"{key}: {got} pixels for an input of {length}, but stride "
                    f"{feature.stride} and offset {feature.offset} mean about {expected:.2f}"
                )


class HeadConformance(_Conformance):
    """A head gives ``num_classes`` scores placed by its ``stride``/``offset``; the
    full model (with the ``interpolate`` upsampler) returns exactly the input size."""

    #: The backbone the head sits on, and its parameters.
    backbone: ClassVar[str] = "resnet18"
    backbone_params: ClassVar[dict[str, Any]] = {}
    #: A backbone the head cannot sit on (name, params), or ``None``.
    incompatible_backbone: ClassVar[tuple[str, dict[str, Any]] | None] = None
    num_classes: ClassVar[int] = 3
    input_size: ClassVar[tuple[int, int]] = ODD_SIZE
    batch: ClassVar[int] = 2

    @pytest.fixture(scope="class")
    @classmethod
    def backbone_part(cls) -> Part:
        """The backbone under the head; override together with ``part`` if needed."""
        return Part(cls.backbone, dict(cls.backbone_params))

    @pytest.fixture(scope="class")
    @classmethod
    def images(cls) -> torch.Tensor:
        return torch.randn(
            cls.batch, 3, *cls.input_size, generator=torch.Generator().manual_seed(0)
        )

    @pytest.fixture(scope="class")
    @classmethod
    def head_and_scores(cls, parts, part, backbone_part, images):
        torch.manual_seed(0)
        backbone = parts.get("backbone", backbone_part.name).build(params=backbone_part.params)
        info = BackboneInfo(
            backbone_part.name,
            dict(backbone.feature_info),
            getattr(backbone, "spare_weights", {}),
        )
        head = parts.get("head", part.name).build(info, cls.num_classes, params=part.params)
        with torch.no_grad():
            scores = head.eval()({"image": images, **backbone.eval()(images)})
        return head, scores

    def test_scores_have_a_channel_per_class(self, head_and_scores):
        _, scores = head_and_scores
        assert scores.dim() == 4
        assert scores.shape[:2] == (self.batch, self.num_classes), tuple(scores.shape)
        assert torch.isfinite(scores).all()

    def test_stride_and_offset_place_scores_over_the_input(self, head_and_scores):
        head, scores = head_and_scores
        stride, offset = head.stride, head.offset
        assert isinstance(stride, int) and stride > 0, f"stride {stride!r}"
        assert isinstance(offset, int | float), f"offset {offset!r}"
        for got, length in zip(scores.shape[-2:], self.input_size, strict=True):
            first, last = offset, offset + stride * (got - 1)
            # Score pixels reach the input's first and last pixel to within one stride.
            assert first < stride and last > length - 1 - stride, (
                f"{got} score pixels at stride {stride}, offset {offset} span input "
                f"[{first}, {last}], which does not cover [0, {length - 1}]"
            )

    def test_full_model_returns_the_input_size(self, parts, part, backbone_part, images):
        torch.manual_seed(0)
        model = build_model_from_parts(
            parts, backbone_part, part, Part("interpolate"), self.num_classes
        ).eval()
        with torch.no_grad():
            logits = model(images)
        assert logits.shape == (self.batch, self.num_classes, *self.input_size)
        assert torch.isfinite(logits).all()

    @pytest.fixture(scope="class")
    @classmethod
    def incompatible_part(cls) -> Part | None:
        """A backbone the head must refuse (from ``incompatible_backbone``), or None."""
        if cls.incompatible_backbone is None:
            return None
        name, params = cls.incompatible_backbone
        return Part(name, dict(params))

    def test_refuses_an_incompatible_backbone_in_one_line(self, parts, part, incompatible_part):
        if incompatible_part is None:
            pytest.skip("no incompatible_backbone given")
        with pytest.raises(IncompatiblePartsError) as error:
            build_model_from_parts(
                parts, incompatible_part, part, Part("interpolate"), self.num_classes
            )
        message = str(error.value)
        assert message and "\n" not in message, repr(message)
        assert part.name in message and incompatible_part.name in message, message


class UpsamplerConformance(_Conformance):
    """An upsampler returns scores of exactly the requested size, differentiably."""

    num_classes: ClassVar[int] = 3
    batch: ClassVar[int] = 2
    #: (stride, offset, scores H×W, requested H×W): FCN-like, DeepLab-like, degenerate.
    cases: ClassVar[list[tuple[int, float, tuple[int, int], tuple[int, int]]]] = [
        (8, -23.5, (18, 22), ODD_SIZE),
        (32, 12.5, (3, 4), ODD_SIZE),
        (8, 0.0, (9, 12), ODD_SIZE),
        (16, 7.0, (2, 2), (40, 3)),
        (1, 0.0, (5, 4), (1, 1)),
    ]

    def _upsampler(self, parts, part, stride, offset):
        return parts.get("upsampler", part.name).build(
            self.num_classes, stride, offset, params=part.params
        )

    def test_returns_exactly_the_requested_size(self, parts, part):
        for stride, offset, score_size, size in self.cases:
            upsampler = self._upsampler(parts, part, stride, offset)
            scores = torch.randn(self.batch, self.num_classes, *score_size)
            out = upsampler(scores, size)
            assert out.shape == (self.batch, self.num_classes, *size), (
                f"stride {stride}, offset {offset}: {tuple(out.shape)} for size {size}"
            )
            assert out.dtype == scores.dtype and torch.isfinite(out).all()

    def test_gradients_reach_the_scores(self, parts, part):
        stride, offset, score_size, size = self.cases[0]
        upsampler = self._upsampler(parts, part, stride, offset)
        scores = torch.randn(self.batch, self.num_classes, *score_size, requires_grad=True)
        upsampler(scores, size).square().sum().backward()
        assert scores.grad is not None and torch.isfinite(scores.grad).all()
        assert scores.grad.abs().sum() > 0


class PostprocessorConformance(_Conformance):
    """A post-processor keeps the shape, returns probabilities and rejects bad input."""

    num_classes: ClassVar[int] = 3
    batch: ClassVar[int] = 2
    size: ClassVar[tuple[int, int]] = (23, 31)

    @pytest.fixture(scope="class")
    @classmethod
    def postprocessor(cls, parts, part):
        return parts.get("postprocessor", part.name).build(params=part.params)

    @pytest.fixture(scope="class")
    @classmethod
    def inputs(cls) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        shape = (cls.batch, cls.num_classes, *cls.size)
        probs = torch.softmax(3 * torch.randn(shape, generator=generator), dim=1)
        images = torch.randint(0, 256, (cls.batch, 3, *cls.size), generator=generator)
        return probs, images.to(torch.uint8)

    def test_keeps_the_shape_and_sums_to_one(self, postprocessor, inputs):
        probs, images = inputs
        out = postprocessor(probs.clone(), images.clone())
        assert isinstance(out, torch.Tensor) and out.shape == probs.shape, type(out)
        assert torch.isfinite(out).all() and (out >= 0).all() and (out <= 1 + 1e-5).all()
        sums = out.float().sum(dim=1)
        torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-4, rtol=0)

    @pytest.mark.parametrize(
        "bad", ["three-dimensional", "float images", "other size", "not summing to one"]
    )
    def test_rejects_bad_input_with_a_data_error(self, postprocessor, inputs, bad):
        probs, images = inputs
        if bad == "three-dimensional":
            probs = probs[0]
        elif bad == "float images":
            images = images.float()
        elif bad == "other size":
            images = images[..., :-2]
        else:
            probs = 2 * probs
        with pytest.raises(DataError) as error:
            postprocessor(probs, images)
        assert str(error.value) and "\n" not in str(error.value)


class DatasetConformance(_Conformance):
    """A dataset split yields :class:`segkit.Sample` items: uint8 H×W×3 images and
    H×W uint8 masks (or none) with labels below ``num_classes`` or 255; ``describe``
    tells of an item what reading it shows, and a dataset that reads files lists them
    in ``source_files``."""

    split: ClassVar[str] = "train"
    #: How many items to read (first, middle, last ...).
    samples: ClassVar[int] = 3

    @pytest.fixture(scope="class")
    @classmethod
    def dataset(cls, parts, part) -> SegmentationDataset:
        return parts.get("dataset", part.name).build(cls.split, params=part.params)

    def test_is_a_non_empty_segmentation_dataset(self, dataset):
        assert isinstance(dataset, SegmentationDataset), type(dataset)
        assert len(dataset) > 0
        assert dataset.num_classes >= 2 and len(dataset.class_names) == dataset.num_classes
        assert dataset.palette.shape[0] >= dataset.num_classes

    def indices(self, dataset) -> list[int]:
        count = len(dataset)
        return sorted(
            {round(i * (count - 1) / max(1, self.samples - 1)) for i in range(self.samples)}
        )

    def test_samples_have_rgb_images_and_matching_masks(self, dataset):
        for index in self.indices(dataset):
            sample = dataset[index]
            assert isinstance(sample, Sample), f"item {index} is {type(sample).__name__}"
            image, mask = sample.image, sample.mask
            assert isinstance(image, np.ndarray) and image.dtype == np.uint8, index
            assert image.ndim == 3 and image.shape[2] == 3, f"image shape {image.shape}"
            if mask is None:
                continue
            assert isinstance(mask, np.ndarray) and mask.dtype == np.uint8, index
            assert mask.shape == image.shape[:2], f"mask {mask.shape}, image {image.shape}"
            labels = np.unique(mask)
            bad = labels[(labels >= dataset.num_classes) & (labels != 255)]
            assert bad.size == 0, f"item {index}: labels {bad.tolist()} >= {dataset.num_classes}"

    def test_describe_agrees_with_the_samples(self, dataset):
        for index in self.indices(dataset):
            sample, info = dataset[index], dataset.describe(index)
            assert isinstance(info, SampleInfo), f"describe({index}) is {type(info).__name__}"
            assert (info.height, info.width) == sample.image.shape[:2], index
            if sample.mask is None:
                assert info.mask is None, index
            else:
                np.testing.assert_array_equal(info.mask, sample.mask, err_msg=f"item {index}")

    def test_source_files_list_the_files_read(self, dataset):
        files = {Path(f).resolve() for f in dataset.source_files()}
        missing = sorted(str(f) for f in files if not f.is_file())
        assert not missing, f"source_files() lists files that do not exist: {missing[:3]}"
        for index in self.indices(dataset):
            sample = dataset[index]
            for path in (sample.path, sample.mask_path):
                if path is not None and Path(path).is_file():
                    assert Path(path).resolve() in files, f"{path} is read but not listed"
