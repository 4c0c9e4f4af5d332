"""Tiled inference and test-time augmentation, against full-image passes computed apart."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segkit.core.errors import ConfigError
from segkit.data import IMAGENET_MEAN, IMAGENET_STD
from segkit.infer import ConfusionMatrix, PostprocessChain, Segmenter
from segkit.infer.evaluate import evaluate
from segkit.infer.inference import InferenceSettings, predict_probs
from segkit.infer.tiling import Tiling
from segkit.infer.tta import TestTimeAugmentation

from .infer_fixtures import CLASS_NAMES, LocalNet, random_image, tiny_config


def full_pass(model, images):
    with torch.no_grad():
        return model(images).softmax(1)


@pytest.mark.parametrize(("size", "overlap"), [(64, 0.75), (48, 0.5), (96, 0.9)])
def test_tiles_match_one_full_pass_where_the_receptive_field_fits(size, overlap):
    model = LocalNet().eval()
    images = torch.randn(2, 3, 150, 203, generator=torch.Generator().manual_seed(1))
    tiling = Tiling(size, overlap)
    assert len(tiling.windows(150, 203, align=4)) > 4  # really tiled
    with torch.no_grad():
        tiled = predict_probs(model, images, InferenceSettings(tiling=tiling))
    assert tiled.shape == (2, 5, 150, 203)
    assert float((tiled - full_pass(model, images)).abs().max()) < 1e-3


def test_tiles_without_room_for_the_receptive_field_differ_but_stay_probabilities():
    model = LocalNet().eval()
    images = torch.randn(1, 3, 97, 131, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        tiled = predict_probs(model, images, InferenceSettings(tiling=Tiling(16, 0.0)))
    assert float((tiled - full_pass(model, images)).abs().max()) > 1e-3  # seams exist
    torch.testing.assert_close(tiled.sum(1), torch.ones(1, 97, 131))


@pytest.mark.parametrize("length", [64, 65, 200, 203, 1000])
def test_windows_cover_the_axis_on_the_stride_grid(length):
    tiling = Tiling(64, 0.25)
    spans = tiling.spans(length, align=8)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (start, stop), (next_start, _) in itertools.pairwise(spans):
        assert start % 8 == 0 and next_start % 8 == 0
        assert stop - next_start >= 16  # neighbours overlap by at least the overlap
    assert all(64 <= stop - start < 64 + 8 for start, stop in spans) or length <= 64
    weights = torch.zeros(length)
    for start, stop in spans:
        weights[start:stop] += tiling.profile(start, stop, length, 8, torch.device("cpu"))
    assert float(weights.min()) > 0  # every pixel counted


@pytest.mark.parametrize(
    ("size", "overlap", "fragment"),
    [(0, 0.25, "positive number"), (64, 0.95, "[0, 0.9]"), (64, -0.1, "[0, 0.9]")],
)
def test_bad_tiling_is_one_clear_error(size, overlap, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        Tiling(size, overlap)


def test_tile_smaller_than_the_stride_is_refused():
    with pytest.raises(ConfigError, match="smaller than the model's output stride 4"):
        InferenceSettings(tiling=Tiling(3)).check(LocalNet())


def reference_tta(model, images, scales, flip):
    """Probabilities averaged by hand: resize, predict, resize back, mirror."""
    height, width = images.shape[-2:]
    total, count = torch.zeros(images.shape[0], 5, height, width), 0
    for scale in scales:
        size = (round(height * scale), round(width * scale))
        scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        for mirrored in [False, True] if flip else [False]:
            x = torch.flip(scaled, dims=[3]) if mirrored else scaled
            probs = full_pass(model, x)
            probs = torch.flip(probs, dims=[3]) if mirrored else probs
            total += F.interpolate(probs, size=(height, width), mode="bilinear")
            count += 1
    return total / count


@pytest.mark.parametrize(
    ("scales", "flip"), [((1.0,), True), ((0.5, 1.0, 1.5), False), ((0.75, 1.25), True)]
)
def test_tta_averages_scales_and_flips(scales, flip):
    model = LocalNet().eval()
    images = torch.randn(1, 3, 61, 83, generator=torch.Generator().manual_seed(3))
    tta = TestTimeAugmentation(scales, flip)
    assert tta.passes == len(scales) * (2 if flip else 1)
    with torch.no_grad():
        probs = predict_probs(model, images, InferenceSettings(tta=tta))
    torch.testing.assert_close(probs, reference_tta(model, images, scales, flip))
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 61, 83))
    assert float((probs - full_pass(model, images)).abs().max()) > 1e-3  # it did something


def test_tta_with_tiles_equals_tta_alone_where_the_field_fits():
    model = LocalNet().eval()
    images = torch.randn(1, 3, 120, 170, generator=torch.Generator().manual_seed(4))
    tta = TestTimeAugmentation((0.5, 1.0), True)
    with torch.no_grad():
        alone = predict_probs(model, images, InferenceSettings(tta=tta))
        tiled = predict_probs(model, images, InferenceSettings(tta, Tiling(64, 0.75)))
    assert float((alone - tiled).abs().max()) < 1e-3


@pytest.mark.parametrize("scales", [[], [0.0], [-1.0]])
def test_bad_tta_scales_are_one_clear_error(scales):
    with pytest.raises(ConfigError, match="tta_scales"):
        TestTimeAugmentation(scales)


def test_settings_from_the_config_and_the_flags(tmp_path, registry):
    extra = "\n[predict]\ntta = true\ntta_scales = [0.5, 1.0]\ntile = 64\ntile_overlap = 0.5\n"
    config = tiny_config(tmp_path, registry, extra)
    settings = InferenceSettings.from_options(config.predict)
    assert settings.tta == TestTimeAugmentation((0.5, 1.0), True)
    assert settings.tiling == Tiling(64, 0.5)
    assert InferenceSettings.from_options(config.eval).plain  # [eval] has its own
    off = settings.override(config.predict, tta=False, tile=0)
    assert off.plain
    changed = settings.override(config.predict, overlap=0.25)
    assert changed.tiling == Tiling(64, 0.25) and changed.tta == settings.tta
    with pytest.raises(ConfigError, match="overlap"):
        settings.override(config.predict, tile=0, overlap=2.0)


def test_segmenter_predict_with_tta(tmp_path, registry):
    config = tiny_config(tmp_path, registry)
    model = LocalNet().eval()
    palette = np.zeros((5, 3), dtype=np.uint8)
    segmenter = Segmenter(
        model, config, CLASS_NAMES, palette, torch.device("cpu"), PostprocessChain()
    )
    image = random_image(45, 70)
    plain = segmenter.predict(image)
    augmented = segmenter.predict(image, tta=True)
    tensor = segmenter_input(image, config)
    expected = reference_tta(model, tensor, (0.5, 0.75, 1.0, 1.25, 1.5), True)[0]
    np.testing.assert_allclose(augmented.probs, expected.numpy(), atol=1e-5)
    np.testing.assert_array_equal(augmented.labels, expected.argmax(0).numpy())
    np.testing.assert_allclose(plain.probs, full_pass(model, tensor)[0].numpy(), atol=1e-6)
    pairs = segmenter.predict_batch([image, random_image(45, 70, seed=1)])
    np.testing.assert_allclose(pairs[0].raw.probs, plain.probs, atol=1e-6)


def segmenter_input(image, config):
    # unset statistics (the model was not built from the config) are ImageNet's
    mean = torch.tensor(config.data.mean or IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(config.data.std or IMAGENET_STD)[:, None, None]
    return ((torch.from_numpy(image).permute(2, 0, 1).float() / 255 - mean) / std)[None]


def test_evaluate_with_tiles_covering_the_image_equals_plain(tmp_path, registry):
    from segkit.data import EvalSet, EvalTransform, build_dataset, collate_eval

    config = tiny_config(tmp_path, registry)
    part = config.data.dataset
    dataset = build_dataset(part.name, "val", part.params, registry)
    loader = torch.utils.data.DataLoader(
        EvalSet(dataset, EvalTransform(config.data.mean, config.data.std)),
        batch_size=1,
        collate_fn=collate_eval,
    )
    model = LocalNet().eval()
    device = torch.device("cpu")
    plain = evaluate(model, loader, 5, device)["raw"].matrix
    whole = InferenceSettings(tiling=Tiling(512))
    assert torch.equal(evaluate(model, loader, 5, device, inference=whole)["raw"].matrix, plain)
    tta = InferenceSettings(tta=TestTimeAugmentation((0.5, 1.0)))
    expected = ConfusionMatrix(5, device)
    for batch in loader:
        probs = reference_tta(model, batch["image"], (0.5, 1.0), True)
        expected.update(probs.argmax(1), batch["mask"])
    matrix = evaluate(model, loader, 5, device, inference=tta)["raw"].matrix
    assert torch.equal(matrix, expected.matrix)
