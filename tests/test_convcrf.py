"""The ``convcrf`` post-processor: values against a direct computation, batching,
gradients, accuracy on noisy scenes, bad input and the command line."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from segkit_plugins.crf import ConvCRFParams, conv_crf
from segkit_plugins.crf import conv as segkit_conv

import segkit
from segkit import ConfigError, DataError
from segkit.cli import main

from .test_densecrf import EXAMPLES, agreement, batch, scene
from .test_refine import two_halves


def direct_conv_crf(unary: np.ndarray, image: np.ndarray, params: ConvCRFParams) -> np.ndarray:
    """The convolutional CRF at full resolution (downsample 1), pixel by pixel: the
    truncated kernels, their symmetric normalisation D^-½ K D^-½ (D counting the pixel
    itself), Potts messages from the other pixels of the window, mean-field updates.
    Beyond ``dense_radius`` pixels from the centre only the offsets with both
    coordinates even take part, each weighing as four."""
    height, width = unary.shape[1:]
    half = params.window // 2
    rgb = image.astype(np.float64)

    def kernels(y: int, x: int, v: int, u: int) -> tuple[float, float]:
        distance2 = (y - v) ** 2 + (x - u) ** 2
        colour2 = float(((rgb[:, y, x] - rgb[:, v, u]) ** 2).sum())
        gaussian = math.exp(-distance2 / (2 * params.gaussian_sxy**2))
        bilateral = math.exp(
            -distance2 / (2 * params.bilateral_sxy**2) - colour2 / (2 * params.bilateral_srgb**2)
        )
        return gaussian, bilateral

    def window(y: int, x: int):
        for v in range(max(0, y - half), min(height, y + half + 1)):
            for u in range(max(0, x - half), min(width, x + half + 1)):
                dy, dx = v - y, u - x
                if (v, u) == (y, x):
                    continue
                if max(abs(dy), abs(dx)) <= params.dense_radius:
                    yield v, u, 1.0
                elif dy % 2 == 0 and dx % 2 == 0:
                    yield v, u, 4.0

    degree = np.ones((2, height, width))
    for y in range(height):
        for x in range(width):
            for v, u, count in window(y, x):
                degree[:, y, x] += count * np.array(kernels(y, x, v, u))
    weights = (params.gaussian_compat, params.bilateral_compat)
    q = np.exp(-unary) / np.exp(-unary).sum(0)
    for _ in range(params.iterations):
        message = np.zeros_like(q)
        for y in range(height):
            for x in range(width):
                for v, u, count in window(y, x):
                    for k, value in enumerate(kernels(y, x, v, u)):
                        norm = math.sqrt(degree[k, y, x] * degree[k, v, u])
                        message[:, y, x] += weights[k] * count * value / norm * q[:, v, u]
        logits = message - unary
        q = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
    return q


def test_full_resolution_matches_the_direct_computation():
    image, probs, _ = scene(0, height=9, width=11)
    params = ConvCRFParams(
        iterations=3,
        window=5,
        downsample=1,
        bilateral_sxy=6,
        bilateral_srgb=30,
        bilateral_compat=4,
        gaussian_compat=2,
    )
    unary = -probs.double().log()
    q = conv_crf(unary[None], image[None], params)[0]
    expected = direct_conv_crf(unary.numpy(), image.numpy(), params)
    np.testing.assert_allclose(q.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_a_sampled_outer_ring_matches_the_direct_computation():
    image, probs, _ = scene(1, height=12, width=13)
    params = ConvCRFParams(
        iterations=2, window=9, dense_radius=1, downsample=1, bilateral_sxy=6, bilateral_srgb=30
    )
    unary = -probs.double().log()
    q = conv_crf(unary[None], image[None], params)[0]
    expected = direct_conv_crf(unary.numpy(), image.numpy(), params)
    np.testing.assert_allclose(q.numpy(), expected, rtol=1e-9, atol=1e-12)
    # 3×3 dense, then the even offsets of the 9×9 window: 8 + (25 - 1) products
    assert len(segkit_conv.window_offsets(9, 1)) == 8 + 24
    full = conv_crf(unary[None], image[None], replace(params, dense_radius=4))[0]
    assert not torch.allclose(q, full, atol=1e-3)  # the sampling is no mere no-op


def test_a_batch_equals_its_images_one_by_one():
    images, probs, _ = batch([1, 2, 3], height=29, width=35)
    crf = segkit.build_postprocessor("convcrf", downsample=3, iterations=4)
    together = crf(probs, images)
    for i in range(3):
        alone = crf(probs[i : i + 1], images[i : i + 1])
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-5, atol=1e-6)
    assert together.shape == probs.shape
    torch.testing.assert_close(together.sum(1), torch.ones(3, 29, 35))


def test_zero_iterations_is_the_softmax_of_the_unaries():
    images, probs, _ = batch([4], height=20, width=24)
    out = segkit.build_postprocessor("convcrf", iterations=0)(probs, images)
    torch.testing.assert_close(out, probs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("downsample", "dense_radius"), [(1, 3), (3, 3), (1, 0)])
def test_gradient_matches_finite_differences(downsample, dense_radius):
    images, probs, _ = batch([5], height=9, width=11)
    unary = (-probs.double().log()).requires_grad_()
    params = ConvCRFParams(
        iterations=2, window=5, dense_radius=dense_radius, downsample=downsample, bilateral_sxy=20
    )
    crf = lambda u: conv_crf(u, images, params)  # noqa: E731
    assert torch.autograd.gradcheck(crf, (unary,), fast_mode=True)


def test_refines_noisy_scenes():
    images, probs, labels = batch([6, 7, 8, 9], height=64, width=80, classes=3)
    refined = segkit.build_postprocessor("convcrf", bilateral_sxy=30)(probs, images)
    before = float((probs.argmax(1) == labels).float().mean())
    after = float((refined.argmax(1) == labels).float().mean())
    assert after > before + 0.05, (before, after)


def test_edge_aware_upsampling_keeps_edges_sharp():
    # two colours meeting at x = 21, inside a block of the coarse grid: with messages
    # on a grid 4 times coarser, every pixel still takes its own side's label
    image = torch.zeros(1, 3, 32, 40, dtype=torch.uint8)
    image[..., :21] = torch.tensor([200, 40, 40], dtype=torch.uint8).view(3, 1, 1)
    image[..., 21:] = torch.tensor([40, 40, 200], dtype=torch.uint8).view(3, 1, 1)
    truth = torch.zeros(32, 40, dtype=torch.long)
    truth[:, 21:] = 1
    rng = np.random.default_rng(0)
    logits = 1.5 * torch.nn.functional.one_hot(truth, 2).permute(2, 0, 1).double()
    logits += torch.from_numpy(rng.normal(0, 1.2, (2, 32, 40)))
    probs = logits.softmax(0)[None].float()
    refined = segkit.build_postprocessor("convcrf", downsample=4, window=5)(probs, image)
    assert float((refined.argmax(1)[0] == truth).float().mean()) == 1.0
    assert float((probs.argmax(1)[0] == truth).float().mean()) < 0.9


def test_a_pixel_unlike_every_nearby_cell_still_takes_messages():
    # a white speck in a dark uniform region, its unary confidently wrong: its colour is
    # so far from the mean colours of the four coarse cells around it that their
    # affinities all underflow to 0 in float32; it must still take its most similar
    # cell's messages (and so the region's label) rather than none at all
    image = torch.full((1, 3, 32, 40), 30, dtype=torch.uint8)
    image[..., 13, 17] = 255
    truth = torch.zeros(32, 40, dtype=torch.long)
    probs = torch.full((1, 2, 32, 40), 0.1)
    probs[:, 0] = 0.9
    probs[:, :, 13, 17] = torch.tensor([0.1, 0.9])
    crf = segkit.build_postprocessor("convcrf", window=5, downsample=4)
    assert float((crf(probs, image).argmax(1)[0] == truth).float().mean()) == 1.0


def test_defaults_are_documented():
    crf = segkit.build_postprocessor("convcrf")
    assert crf.params == ConvCRFParams()
    assert (crf.params.window, crf.params.downsample) == (13, 3)


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="densecrf_examples folder not present")
def test_gains_on_a_real_photograph_with_degraded_unaries():
    from PIL import Image

    image = np.asarray(Image.open(EXAMPLES / "im1.png").convert("RGB"))
    colours = np.asarray(Image.open(EXAMPLES / "out1.png").convert("RGB")).reshape(-1, 3)
    labels = torch.from_numpy(np.unique(colours, axis=0, return_inverse=True)[1])
    labels = labels.reshape(image.shape[:2])
    onehot = torch.nn.functional.one_hot(labels, 2).permute(2, 0, 1)[None].float()
    coarse = torch.nn.functional.adaptive_avg_pool2d(onehot, (30, 40))
    coarse = 2.5 * coarse + torch.from_numpy(np.random.default_rng(1).normal(0, 1, coarse.shape))
    probs = torch.nn.functional.interpolate(coarse.float(), image.shape[:2], mode="bilinear")
    probs = probs.softmax(1)
    images = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].contiguous()
    refined = segkit.build_postprocessor("convcrf")(probs, images)
    before = float((probs.argmax(1)[0] == labels).float().mean())
    after = float((refined.argmax(1)[0] == labels).float().mean())
    assert after > before + 0.02, (before, after)
    dense = segkit.build_postprocessor("densecrf_torch", bilateral_sxy=80, bilateral_srgb=13)
    assert agreement(refined, dense(probs, images)) > 0.9


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"window": 4}, "window must be an odd size"),
        ({"window": 1}, "window must be an odd size"),
        ({"dense_radius": -1}, "dense_radius must be at least 0"),
        ({"downsample": 0}, "downsample must be at least 1"),
        ({"iterations": -1}, "iterations must be >= 0"),
        ({"bilateral_srgb": 0.0}, "bilateral_srgb must be a positive width"),
    ],
)
def test_bad_parameters_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        segkit.build_postprocessor("convcrf", **params)


def test_a_window_larger_than_the_image_is_a_data_error():
    images, probs, _ = batch([1], height=6, width=30)
    with pytest.raises(DataError, match=r"window 13 is larger than the 6×30 image.*at most 5"):
        segkit.build_postprocessor("convcrf")(probs, images)
    assert segkit.build_postprocessor("convcrf", window=5)(probs, images).shape == probs.shape


def test_command_line_bad_window_is_one_line_exit_2(tmp_path, capsys):
    photo, rough, _ = two_halves(tmp_path)
    out = tmp_path / "out.png"
    argv = ["refine", str(photo), str(rough), "--out", str(out), "--postprocessor", "convcrf"]
    assert main([*argv, "--window", "6"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "window must be an odd size" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert main([*argv, "--window", "41"]) == 2
    err = capsys.readouterr().err.strip()
    assert "window 41 is larger than the 40×64 image" in err and len(err.splitlines()) == 1
    assert main([*argv, "--dense-radius", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "dense_radius must be at least 0" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert main([*argv, "--window", "5", "--downsample", "2", "--dense-radius", "1"]) == 0
    assert out.is_file()
