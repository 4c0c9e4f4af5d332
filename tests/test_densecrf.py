"""The dense CRF post-processors: pydensecrf and the PyTorch lattice must agree."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from segkit_plugins import crf as densecrf
from segkit_plugins.crf import fused, lattice_points, meanfield
from segkit_plugins.crf import lattice as lattices
from segkit_plugins.crf.params import softmax_rows_

import segkit
from segkit import ConfigError, DataError, PostprocessChain, check_postprocess_inputs
from segkit.infer import device as device_module

EXAMPLES = Path(
    os.environ.get(
        "SEGKIT_DENSECRF_EXAMPLES",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "densecrf_examples",
    )
)
PLUGINS = ["densecrf", "densecrf_torch"]
COLOURS = np.array([(40, 90, 160), (200, 60, 50), (60, 180, 70), (230, 210, 40)])


def scene(seed: int, height: int = 60, width: int = 80, classes: int = 3):
    """An image of coloured shapes, its true labels and noisy, blurry probabilities."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:height, :width]
    labels = np.zeros((height, width), dtype=np.int64)
    top, left = rng.integers(0, height // 4 + 1), rng.integers(0, width // 4 + 1)
    labels[top : top + max(1, height // 2), left : left + max(1, width // 2)] = 1
    if classes > 2:
        cy, cx = rng.integers(height // 4, 3 * height // 4 + 1), rng.integers(width // 2, width)
        labels[(ys - cy) ** 2 + (xs - cx) ** 2 < (min(height, width) // 5) ** 2] = 2
    image = COLOURS[labels] + rng.normal(0, 12, (height, width, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    # a coarse network: the truth shifted by a few pixels, plus noise
    shifted = np.roll(labels, (3, -2), axis=(0, 1))
    logits = 2.5 * np.eye(classes)[shifted] + rng.normal(0, 1.0, (height, width, classes))
    probs = torch.from_numpy(logits).permute(2, 0, 1).float().softmax(0)
    return torch.from_numpy(image).permute(2, 0, 1), probs, torch.from_numpy(labels)


def batch(seeds, **kwargs):
    scenes = [scene(seed, **kwargs) for seed in seeds]
    return tuple(torch.stack(parts) for parts in zip(*scenes, strict=True))


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(1) == b.argmax(1)).float().mean())


def test_both_registered_with_deeplab_voc_defaults():
    for name in PLUGINS:
        postprocessor = segkit.build_postprocessor(name)
        assert postprocessor.params == densecrf.CRFParams(
            iterations=10,
            gaussian_sxy=3,
            gaussian_compat=3,
            bilateral_sxy=121,
            bilateral_srgb=5,
            bilateral_compat=4,
        )
    assert segkit.build_postprocessor("densecrf", workers=3).workers == 3
    assert segkit.build_postprocessor("densecrf_torch", device="cpu").device == "cpu"


@pytest.mark.parametrize("kernel", ["gaussian", "bilateral"])
def test_one_lattice_update_matches_pydensecrf(kernel):
    """One mean-field step with one kernel isolates the filter: Q must match to float precision."""
    images, probs, _ = batch([0, 1])
    other = "bilateral" if kernel == "gaussian" else "gaussian"
    params = densecrf.CRFParams(iterations=1, **{f"{other}_compat": 0.0})
    expected = densecrf.PyDenseCRF(params, workers=1)(probs, images)
    got = densecrf.TorchDenseCRF(params, device="cpu")(probs, images)
    assert torch.allclose(got, expected, atol=2e-5)
    before = densecrf.unary_from_probabilities(probs).neg().softmax(1)
    assert (expected - before).abs().max() > 0.05  # the kernel really acted


@pytest.mark.parametrize(
    "params",
    [
        densecrf.CRFParams(),
        densecrf.CRFParams(5, 3, 3, 80, 13, 10),
        densecrf.CRFParams(3, 1.5, 5, 20, 30, 2),
    ],
    ids=["deeplab", "example", "narrow"],
)
def test_torch_agrees_with_pydensecrf_on_synthetic_images(params):
    images, probs, truth = batch([2, 3, 4])
    expected = densecrf.PyDenseCRF(params, workers=1)(probs, images)
    got = densecrf.TorchDenseCRF(params, device="cpu")(probs, images)
    assert agreement(got, expected) >= 0.99
    assert (got - expected).abs().max() < 1e-4
    # and the CRF does what it is for: boundaries snap to the image
    raw = float((probs.argmax(1) == truth).float().mean())
    assert float((got.argmax(1) == truth).float().mean()) > raw


def test_output_is_a_distribution_of_the_input_shape_and_dtype():
    images, probs, _ = batch([5])
    for name in PLUGINS:
        for dtype in (torch.float32, torch.float64):
            refined = segkit.build_postprocessor(name, iterations=2)(probs.to(dtype), images)
            assert refined.shape == probs.shape and refined.dtype == dtype
            assert torch.allclose(refined.sum(1), torch.ones(1, 60, 80, dtype=dtype), atol=1e-5)


@pytest.mark.parametrize("height", [1, 12])
def test_inputs_are_left_untouched(height):
    images, probs, _ = batch([21], height=height, width=9, classes=2)
    probs[0, :, 0, 0] = torch.tensor([0.0, 1.0])
    before = probs.clone(), images.clone()
    for name in PLUGINS:
        segkit.build_postprocessor(name)(probs, images)
        assert torch.equal(probs, before[0]) and torch.equal(images, before[1])


def test_zero_iterations_returns_the_floored_input():
    images, probs, _ = batch([6])
    probs[:, 0, :5, :5] = 0.0
    probs = probs / probs.sum(1, keepdim=True)
    expected = densecrf.unary_from_probabilities(probs).neg().softmax(1)
    for name in PLUGINS:
        refined = segkit.build_postprocessor(name, iterations=0)(probs, images)
        assert torch.allclose(refined, expected, atol=1e-6)
        no_kernels = {"gaussian_compat": 0.0, "bilateral_compat": 0.0}
        refined = segkit.build_postprocessor(name, **no_kernels)(probs, images)
        assert torch.allclose(refined, expected, atol=1e-6)


def test_batches_keep_their_order_and_equal_single_images():
    images, probs, _ = batch([7, 8, 9])
    single = densecrf.PyDenseCRF(workers=1)
    alone = torch.cat([single(probs[i : i + 1], images[i : i + 1]) for i in range(3)])
    assert torch.equal(densecrf.PyDenseCRF(workers=2)(probs, images), alone)
    torch_crf = densecrf.TorchDenseCRF(device="cpu")
    alone_torch = torch.cat([torch_crf(probs[i : i + 1], images[i : i + 1]) for i in range(3)])
    assert torch.allclose(torch_crf(probs, images), alone_torch, atol=1e-5)
    assert agreement(alone_torch, alone) >= 0.99


def test_different_sizes_and_odd_shapes():
    for height, width in ((1, 7), (13, 1), (31, 17)):
        images, probs, _ = batch([10], height=height, width=width, classes=2)
        expected = densecrf.PyDenseCRF(workers=1)(probs, images)
        got = densecrf.TorchDenseCRF(device="cpu")(probs, images)
        assert torch.allclose(got, expected, atol=1e-4)


def test_gradient_with_respect_to_the_unaries():
    images, probs, _ = batch([11, 12], height=4, width=5, classes=2)
    unary = densecrf.unary_from_probabilities(probs).double().requires_grad_()
    params = densecrf.CRFParams(iterations=3, gaussian_sxy=1.0, bilateral_sxy=2.0)
    assert torch.autograd.gradcheck(
        lambda u: densecrf.dense_crf(u, images, params), (unary,), eps=1e-6, atol=1e-6
    )


def test_fast_softmax_and_autograd_paths_give_the_same_result():
    """Without autograd the updates take an in-place softmax on shifted unaries; with 21
    classes, as VOC has, values must equal pydensecrf's and the differentiable path's."""
    images, probs, _ = batch([23, 24], height=20, width=24, classes=3)
    logits = torch.randn(2, 21, 20, 24, generator=torch.Generator().manual_seed(0)) * 2
    logits[:, :3] += 4 * probs
    probs = logits.softmax(1)
    expected = densecrf.PyDenseCRF(workers=1)(probs, images)
    unary = densecrf.unary_from_probabilities(probs) + 50  # a shift the result ignores
    with torch.no_grad():
        fast = densecrf.dense_crf(unary, images)
    differentiable = densecrf.dense_crf(unary.requires_grad_(), images)
    assert torch.allclose(fast, expected, atol=1e-4)
    assert torch.allclose(fast, differentiable.detach(), atol=1e-5)


def test_in_place_softmax_falls_back_where_it_would_overflow():
    rows = torch.tensor([[100.0, 0.0, 99.0], [0.0, 1.0, 2.0]])
    expected = torch.softmax(rows, 1)
    torch.testing.assert_close(softmax_rows_(rows.clone()), expected)
    torch.testing.assert_close(softmax_rows_(rows[1:].clone()), expected[1:])


def test_gradient_flows_through_the_post_processor():
    images, probs, truth = batch([13], height=20, width=24)
    logits = probs.log().clone().requires_grad_()
    refined = densecrf.TorchDenseCRF(device="cpu")(logits.softmax(1), images)
    torch.nn.functional.nll_loss(refined.clamp_min(1e-8).log(), truth).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_lattice_built_in_inference_mode_serves_autograd_later():
    images, probs, _ = batch([14], height=16, width=18)
    crf = densecrf.TorchDenseCRF(device="cpu")
    with torch.inference_mode():
        crf(probs, images)  # caches the smoothness lattice for this size
    unary = densecrf.unary_from_probabilities(probs).requires_grad_()
    densecrf.dense_crf(unary, images).sum().backward()
    assert unary.grad is not None


def test_lattice_transpose_and_wide_coordinate_path(monkeypatch):
    torch.manual_seed(0)
    features = torch.rand(400, 5) * torch.tensor([3.0, 3.0, 6.0, 6.0, 6.0])
    group = torch.randint(0, 2, (400,))
    lattice = lattices.build_lattice_filter(features, group=group, groups=2)
    dense = lattice(torch.eye(400))
    assert torch.allclose(lattice(torch.eye(400), transpose=True), dense.T, atol=1e-6)
    # points of different groups (images of a batch) never interact
    assert dense[group[:, None] != group[None, :]].abs().max() == 0
    # a nearby point weighs more than a far one: the filter is a Gaussian in feature space
    distance = torch.cdist(features, features)
    same = group[:, None] == group[None, :]
    near, far = dense[same & (distance < 0.5)].mean(), dense[same & (distance > 3)].mean()
    assert near > 10 * far
    monkeypatch.setattr(lattice_points, "LARGEST_CODE", 1)  # forces naming points by rows
    wide = lattices.build_lattice_filter(features, group=group, groups=2)
    assert wide.lattice_points == lattice.lattice_points
    assert torch.allclose(wide(torch.eye(400)), dense, atol=1e-6)


def bad_inputs():
    images, probs, _ = batch([15, 16], height=12, width=10)
    nan = probs.clone()
    nan[0, 1, 3, 3] = float("nan")
    return {
        "size": (probs[:, :, :11], images, "differ in size"),
        "batch": (probs[:1], images, "differ in size"),
        "nan": (nan, images, "NaN"),
        "sum": (probs * 0.5, images, "do not sum to one"),
        "logits": (probs.log(), images, "[0, 1]"),
        "single class": (torch.ones(2, 1, 12, 10), images, "single class"),
        "float image": (probs, images.float() / 255, "uint8"),
        "integer probs": ((probs > 0.5).long(), images, "floats"),
        "no batch": (probs[0], images[0], "N×C×H×W"),
        "grey image": (probs, images[:, :1], "N×3×H×W"),
    }


@pytest.mark.parametrize("name", PLUGINS)
@pytest.mark.parametrize("case", list(bad_inputs()))
def test_bad_inputs_fail_with_one_line(name, case):
    probs, images, words = bad_inputs()[case]
    postprocessor = segkit.build_postprocessor(name)
    with pytest.raises(DataError) as error:
        postprocessor(probs, images)
    message = str(error.value)
    assert words in message and "\n" not in message


@pytest.mark.parametrize("name", PLUGINS)
def test_image_too_large_for_memory(name, monkeypatch):
    images, probs, _ = batch([17], height=12, width=10)
    monkeypatch.setattr(device_module, "available_memory", lambda device: 2**10)
    with pytest.raises(DataError, match="memory but only"):
        segkit.build_postprocessor(name)(probs, images)


def test_lattice_too_large_for_memory(monkeypatch):
    """The second check, once the lattice size is known, before the blurs are built."""
    images, probs, _ = batch([17], height=12, width=10)
    answers = iter([2**40, 2**10])  # plenty for the first check, not for the lattice
    monkeypatch.setattr(device_module, "available_memory", lambda device: next(answers))
    with pytest.raises(DataError, match=r"lattice .* points.* memory but only"):
        densecrf.TorchDenseCRF(device="cpu")(probs, images)


def test_memory_check_reads_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 1000 kB\nMemAvailable:     2048 kB\n")
    assert device_module._mem_available(meminfo) == 2048 * 1024
    assert device_module._mem_available(tmp_path / "missing") is None
    check_postprocess_inputs(
        torch.full((1, 2, 4, 4), 0.5), torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    )


def test_torch_memory_estimate_grows_linearly():
    small = meanfield.estimate_torch_memory(1, 21, 500, 500)
    assert meanfield.estimate_torch_memory(1, 21, 1000, 1000) == 4 * small
    assert meanfield.estimate_torch_memory(4, 21, 500, 500) == 4 * small
    with_grad = meanfield.estimate_torch_memory(1, 21, 500, 500, iterations=10)
    assert with_grad - small == 500 * 500 * 21 * 4 * 10  # one Q per iteration kept


def test_dense_crf_checks_its_images():
    images, probs, _ = batch([22], height=6, width=7)
    unary = densecrf.unary_from_probabilities(probs)
    with pytest.raises(DataError, match="uint8"):
        densecrf.dense_crf(unary, images.float())
    with pytest.raises(DataError, match="1×3×6×7"):
        densecrf.dense_crf(unary, images[:, :, :5])


@pytest.mark.parametrize(
    "params",
    [{"gaussian_sxy": 0}, {"bilateral_srgb": -1.0}, {"iterations": -1}, {"workers": 0}],
)
def test_invalid_parameters_are_config_errors(params):
    with pytest.raises(ConfigError):
        segkit.build_postprocessor("densecrf", **params)


def test_unknown_parameter_names_the_valid_ones():
    with pytest.raises(ConfigError, match="bilateral_srgb"):
        segkit.build_postprocessor("densecrf_torch", bilateral_rgb=3.0)


def test_chain_applies_post_processors_in_order():
    images, probs, _ = batch([18])
    calls = []

    def sharpen(p, _images):
        calls.append("sharpen")
        return (p**2) / (p**2).sum(1, keepdim=True)

    # on the CPU: on CUDA the lattice's atomic sums differ in the last bits run to run
    crf = segkit.build_postprocessor("densecrf_torch", iterations=2, device="cpu")

    def recorded_crf(p, images):
        calls.append("crf")
        return crf(p, images)

    chain = PostprocessChain([("sharpen", sharpen), ("crf", recorded_crf)])
    assert chain.names() == ["sharpen", "crf"] and len(chain) == 2
    refined = chain(probs, images)
    assert calls == ["sharpen", "crf"]
    assert torch.equal(refined, crf(sharpen(probs, images), images))
    stages = dict(chain.each(probs, images))
    assert torch.equal(stages["sharpen"], sharpen(probs, images))
    assert torch.equal(stages["crf"], refined)
    assert PostprocessChain()(probs, images) is probs


def test_chain_from_config_parts():
    from segkit.core import Part, load_plugins

    chain = PostprocessChain.from_parts(
        [Part("densecrf_torch", {"iterations": 1})], load_plugins().registry
    )
    assert chain.names() == ["densecrf_torch"]
    assert chain.steps[0][1].params.iterations == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("seeds", [[19, 20], [21]], ids=["batch", "one image"])
def test_cuda_matches_cpu(seeds):
    images, probs, _ = batch(seeds)
    cpu = densecrf.TorchDenseCRF(device="cpu")(probs, images)
    cuda = densecrf.TorchDenseCRF(device="cuda")(probs.cuda(), images.cuda())
    assert cuda.is_cuda
    assert torch.allclose(cuda.cpu(), cpu, atol=1e-4)


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="densecrf_examples folder not present")
@pytest.mark.parametrize("index", [1, 2, 3])
def test_photographs_torch_agrees_with_pydensecrf(index):
    """DeepLab's VOC parameters on the example photographs, unaries from the rough labels."""
    from segkit.infer.refine import probabilities_from_labels, read_rgb, split_colors

    image = read_rgb(EXAMPLES / f"im{index}.png", "image")
    colors, labels, unknown = split_colors(read_rgb(EXAMPLES / f"anno{index}.png", "labels"))
    probs = probabilities_from_labels(labels, len(colors), 0.7, unknown)
    images = torch.from_numpy(image).permute(2, 0, 1)[None]
    expected = densecrf.PyDenseCRF(workers=1)(probs, images)
    got = densecrf.TorchDenseCRF(device="cpu")(probs, images)
    assert agreement(got, expected) >= 0.99


def test_batch_lattice_filters_each_image_as_alone():
    """A batch's appearance lattice (the CUDA path, and the CRF layer's) keeps the images
    apart: filtering the batch equals filtering each image on its own lattice."""
    images, _, _ = batch([25, 26], height=14, width=17)
    pixels = 14 * 17
    both = lattices.bilateral_filter(images, 8.0, 13.0, 2.0, classes=3)
    values = torch.rand(pixels * 2, 3, generator=torch.Generator().manual_seed(0))
    filtered = both(values).view(pixels, 2, 3)  # pixel-major, image-minor rows
    for i in range(2):
        alone = lattices.bilateral_filter(images[i : i + 1], 8.0, 13.0, 2.0, classes=3)
        expected = alone(values.view(pixels, 2, 3)[:, i].contiguous())
        assert torch.allclose(filtered[:, i], expected, atol=1e-5)


def test_base_2_updates_fall_back_where_they_would_overflow():
    """Weights large enough that 2^logits overflows: the updates without autograd (base 2,
    no shift by each row's maximum) must still equal the differentiable path's softmax."""
    images, probs, _ = batch([27], height=20, width=24)
    params = densecrf.CRFParams(iterations=3, gaussian_compat=300.0, bilateral_compat=300.0)
    with torch.no_grad():
        fast = densecrf.TorchDenseCRF(params, device="cpu")(probs, images)
    differentiable = densecrf.TorchDenseCRF(params, device="cpu")(probs.requires_grad_(), images)
    assert torch.isfinite(fast).all()
    assert torch.allclose(fast, differentiable.detach(), atol=1e-5)
    logits = torch.tensor([[200.0, 0.0, 199.0], [0.0, 1.0, 2.0], [-300.0, -301.0, -299.0]])
    expected = torch.softmax(logits * math.log(2.0), 1)
    torch.testing.assert_close(fused.softmax2_rows_(logits.clone()), expected)


@pytest.fixture
def threads():
    """Sets PyTorch's threads for a test, and restores them after."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_work_shared_between_threads_gives_the_one_thread_result(threads):
    """With two threads the lattice is built in halves and the updates go in pieces
    shared between threads: the result must be the one thread's."""
    torch.manual_seed(0)
    features = torch.rand(70_000, 5) * torch.tensor([4.0, 4.0, 8.0, 8.0, 8.0])
    values = torch.rand(70_000, 3)
    images, probs, _ = batch([28], height=260, width=270)  # more pixels than one piece takes
    results = {}
    for count in (1, 2):
        threads(count)
        lattice = lattices.build_lattice_filter(features)
        refined = densecrf.TorchDenseCRF(device="cpu")(probs, images)
        results[count] = (lattice.lattice_points, lattice(values), refined)
    (points_one, filtered_one, refined_one), (points_two, filtered_two, refined_two) = (
        results[1],
        results[2],
    )
    assert points_one == points_two
    assert torch.allclose(filtered_one, filtered_two, atol=1e-5)
    assert torch.allclose(refined_one, refined_two, atol=1e-6)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "grad"])
def test_helper_threads_share_the_work_in_the_callers_autograd_mode(mode):
    """The helpers take items while the caller works on its own (each waits for the
    other's first item), and compute under the caller's autograd switches."""
    import threading

    from segkit_plugins.crf.tasks import Tasks

    weight = torch.ones(4, requires_grad=True)
    helper_started = threading.Event()
    caller = threading.current_thread()

    def work(item: int) -> tuple[torch.Tensor, bool]:
        mine = threading.current_thread() is caller
        if mine:
            assert helper_started.wait(10), "no helper took an item"
        else:
            helper_started.set()
        return weight * item, mine

    switch = {
        "no_grad": torch.no_grad(),
        "inference_mode": torch.inference_mode(),
        "grad": torch.enable_grad(),
    }[mode]
    with switch:
        results = Tasks(1).map(work, list(range(6)))
    assert [float(out.detach().sum()) for out, _ in results] == [4.0 * i for i in range(6)]
    by_caller = [mine for _, mine in results]
    assert any(by_caller) and not all(by_caller)
    assert all(out.requires_grad == (mode == "grad") for out, _ in results)
    assert all(out.is_inference() == (mode == "inference_mode") for out, _ in results)
