"""The CRF as a trained layer (``[model.crf]``): equality with the plain model at
T = 0, gradients, warm-up, checkpoints and prediction, summary, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segkit_plugins.crf import ConvCRFParams, conv_crf, dense_crf

import segkit
from segkit import ConfigError, IncompatiblePartsError
from segkit.cli import main
from segkit.core import Part, load_plugins
from segkit.infer import Segmenter
from segkit.model import build_model_from_parts, load_checkpoint

from .test_densecrf import batch
from .tiny import write_tiny_config

REGISTRY = load_plugins().registry
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BACKBONE = Part("deeplab_vgg16", {"width": 0.0625, "batch_norm": True})
HEAD = Part("deeplab_largefov", {"fc_channels": 16})
UPSAMPLER = Part("interpolate", {"align_corners": True})


def model_with(crf: Part | None, classes: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model_from_parts(
        REGISTRY, BACKBONE, HEAD, UPSAMPLER, classes, crf, MEAN, STD
    ).eval()


def normalised(images: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def layer_of(name: str, classes: int, **params) -> torch.nn.Module:
    crf = segkit.build_postprocessor(name, **params)
    return crf.layer(classes, MEAN, STD).double()


@pytest.mark.parametrize("name", ["convcrf", "densecrf_torch"])
def test_zero_iterations_is_the_plain_model(name):
    images = normalised(batch([1, 2], height=40, width=48)[0])
    plain = model_with(None)
    with_crf = model_with(Part(name, {"iterations": 0}))
    assert with_crf.crf is not None
    with torch.no_grad():
        torch.testing.assert_close(with_crf(images), plain(images), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "params", "reference"),
    [
        ("convcrf", {"downsample": 2, "window": 5, "bilateral_sxy": 20}, conv_crf),
        ("densecrf_torch", {"bilateral_sxy": 20}, dense_crf),
    ],
)
def test_initial_layer_is_the_post_processor(name, params, reference):
    """Initialised to Potts and the post-processor's weights, the layer's last scores
    give the post-processor's Q."""
    images, probs, _ = batch([3, 4], height=24, width=30)
    layer = layer_of(name, 3, iterations=3, **params)
    scores = probs.double().log()
    q = layer(scores, normalised(images).double()).softmax(1)
    crf_params = segkit.build_postprocessor(name, iterations=3, **params).params
    expected = reference(-scores, images, crf_params)
    # the layer sees the colours through the normalisation and back: equal to ~1e-5
    torch.testing.assert_close(q, expected, rtol=0, atol=1e-5)
    assert (q - scores.softmax(1)).abs().max() > 0.01  # the CRF did change something


@pytest.mark.parametrize("name", ["convcrf", "densecrf_torch"])
def test_gradients_match_finite_differences(name):
    images, probs, _ = batch([5], height=9, width=11)
    extra = {"window": 3, "downsample": 2} if name == "convcrf" else {}
    layer = layer_of(name, 3, iterations=2, bilateral_sxy=10, **extra)
    with torch.no_grad():  # a compatibility away from Potts, so that every entry matters
        layer.compatibility.add_(torch.linspace(-0.3, 0.3, 9, dtype=torch.float64).view(3, 3))
    x = normalised(images).double()
    scores = probs.double().log().requires_grad_()
    weights = layer.kernel_weights.detach().clone().requires_grad_()
    compatibility = layer.compatibility.detach().clone().requires_grad_()

    def run(scores, weights, compatibility):
        return torch.func.functional_call(
            layer,
            {"kernel_weights": weights, "compatibility": compatibility},
            (scores, x),
        )

    assert torch.autograd.gradcheck(run, (scores, weights, compatibility), fast_mode=True)


def test_kernel_weights_and_compatibility_learn():
    images = normalised(batch([6, 7], height=32, width=32)[0])
    model = model_with(Part("convcrf", {"iterations": 2, "downsample": 2}), seed=1).train()
    labels = torch.randint(0, 3, (2, 32, 32))
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    assert model.crf.kernel_weights.grad.abs().sum() > 0
    assert model.crf.compatibility.grad.abs().sum() > 0
    assert model.backbone.features[0].weight.grad.abs().sum() > 0
    names = {n for n, _ in model.named_parameters()}
    assert {"crf.kernel_weights", "crf.compatibility"} <= names
    assert any(p is model.crf.compatibility for p in model.param_groups()["crf"])


@pytest.mark.parametrize("lr_mult", [100.0, 2.5])
def test_crf_parameters_learn_at_their_own_rate_without_decay(lr_mult):
    from segkit.train import param_groups

    crf = Part("convcrf", {"iterations": 2, "downsample": 2, "lr_mult": lr_mult})
    model = model_with(crf)
    groups = {g["name"]: g for g in param_groups(model, 0.01, 10.0, False)}
    assert groups["crf"]["lr"] == pytest.approx(0.01 * lr_mult)
    assert groups["crf"]["weight_decay"] == 0.0
    crf_ids = {id(p) for p in groups["crf"]["params"]}
    assert crf_ids == {id(model.crf.kernel_weights), id(model.crf.compatibility)}
    others = [p for name, g in groups.items() if name != "crf" for p in g["params"]]
    assert not crf_ids & {id(p) for p in others}
    assert groups["head"]["lr"] == pytest.approx(0.1)  # the head keeps its multiplier
    # every trainable parameter is in exactly one group
    assert len(others) + len(crf_ids) == sum(1 for p in model.parameters() if p.requires_grad)
    plain = {g["name"] for g in param_groups(model_with(None), 0.01, 10.0, False)}
    assert "crf" not in plain


def test_warm_up_trains_the_plain_model_first_and_counts_in_the_state():
    images = normalised(batch([8], height=32, width=32)[0])
    crf = Part("convcrf", {"iterations": 2, "downsample": 2, "warmup_steps": 2})
    model, plain = model_with(crf), model_with(None)
    with torch.no_grad():  # evaluated during the warm-up, it is the plain model too
        torch.testing.assert_close(model(images), plain(images), rtol=0, atol=0)
    model.train(), plain.train()
    torch.manual_seed(0)
    for step in range(3):
        torch.manual_seed(step)  # the same dropout in both
        out = model(images)
        torch.manual_seed(step)
        expected = plain(images)
        if step < 2:
            torch.testing.assert_close(out, expected, rtol=0, atol=0)
        else:
            assert not torch.allclose(out, expected)
    assert int(model.state_dict()["crf.steps_seen"]) == 3
    model.eval()(images)  # evaluation does not count
    assert int(model.crf.steps_seen) == 3


def test_autocast_bfloat16_on_the_cpu():
    images = normalised(batch([9], height=32, width=40)[0])
    model = model_with(Part("convcrf", {"iterations": 3, "downsample": 2}))
    with torch.no_grad():
        full = model(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(images)
    assert mixed.dtype == torch.bfloat16 and torch.isfinite(mixed).all()
    agreement = (mixed.float().argmax(1) == full.argmax(1)).float().mean()
    assert agreement > 0.95


LAYER = """
[model.crf]
name = "convcrf"
iterations = 2
window = 5
downsample = 2
bilateral_sxy = 20
warmup_steps = 3
"""


def test_checkpoint_resume_predict_and_segmenter_carry_the_layer(tmp_path, capsys):
    config = write_tiny_config(tmp_path, epochs=1, train_size=8, steps='["train"]', extra=LAYER)
    run_dir = tmp_path / "out"
    assert main(["run", str(config), "--run-dir", str(run_dir)]) == 0
    state = load_checkpoint(run_dir / "last.pt")
    assert int(state["model"]["crf.steps_seen"]) == 4  # 8 images in batches of 2
    assert state["config"]["model"]["crf"]["warmup_steps"] == 3
    # the layer trained after its warm-up
    assert not torch.equal(state["model"]["crf.kernel_weights"], torch.tensor([1.0, 40.0]))
    assert main(["run", str(config), "--run-dir", str(run_dir), "--set", "train.epochs=2"]) == 0
    assert int(load_checkpoint(run_dir / "last.pt")["model"]["crf.steps_seen"]) == 8

    segmenter = Segmenter.from_checkpoint(run_dir / "last.pt", device="cpu")
    assert segmenter.model.crf is not None
    image = np.random.default_rng(0).integers(0, 256, (41, 53, 3), dtype=np.uint8)
    labels, probs = segmenter.predict(image, postprocess=False)
    assert labels.shape == (41, 53) and probs.shape[1:] == (41, 53)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-4)
    weights = segmenter.model.crf.kernel_weights.detach()
    torch.testing.assert_close(
        weights, load_checkpoint(run_dir / "last.pt")["model"]["crf.kernel_weights"]
    )

    from PIL import Image

    Image.fromarray(image).save(tmp_path / "photo.png")
    out = tmp_path / "pred"
    assert (
        main(["predict", str(run_dir / "last.pt"), str(tmp_path / "photo.png"), "--out", str(out)])
        == 0
    )
    assert (out / "photo_mask.png").is_file()


def test_summary_lists_the_learnable_parameters(tmp_path, capsys):
    config = write_tiny_config(tmp_path, extra=LAYER)
    assert main(["summary", str(config), "--input", "3x40x40", "--num-classes", "4"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "CRFLayer" in line)
    assert "18" in row  # 2 kernel weights + a 4×4 compatibility
    assert (
        main(
            [
                "summary",
                str(config),
                "--input",
                "3x40x40",
                "--num-classes",
                "4",
                "--set",
                "model.crf.iterations=0",
            ]
        )
        == 0
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.crf.iterations=-1", "iterations must be >= 0"),
        ("model.crf.window=6", "window must be an odd size"),
        ("model.crf.warmup_steps=-5", "warmup_steps must be >= 0"),
        ("model.crf.lr_mult=0", "lr_mult must be a positive number"),
        ("model.crf.warmup_step=5", "warmup_step"),
    ],
)
def test_bad_layer_config_is_one_line_exit_2(tmp_path, capsys, override, message):
    config = write_tiny_config(tmp_path, extra=LAYER)
    code = main(["summary", str(config), "--input", "3x40x40", "--set", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_post_processor_without_a_layer_is_one_line_exit_2(tmp_path, capsys):
    config = write_tiny_config(tmp_path, extra='[model.crf]\nname = "densecrf"\n')
    assert main(["summary", str(config), "--input", "3x40x40"]) == 2
    err = capsys.readouterr().err.strip()
    assert "post-processor 'densecrf' cannot act as a trained layer" in err
    assert len(err.splitlines()) == 1


def test_scores_not_at_input_resolution_are_refused():
    class HalfSize(torch.nn.Module):
        def forward(self, scores, size):
            return torch.nn.functional.interpolate(scores, (size[0] // 2, size[1] // 2))

    model = model_with(Part("convcrf", {"iterations": 1}))
    model.upsampler = HalfSize()
    with pytest.raises(IncompatiblePartsError, match=r"scores at the input resolution.*20×24"):
        model(normalised(batch([1], height=40, width=48)[0]))


def test_params_must_be_a_layer_post_processor():
    with pytest.raises(ConfigError, match="cannot act as a trained layer"):
        model_with(Part("densecrf", {}))
    assert isinstance(segkit.build_postprocessor("convcrf").params, ConvCRFParams)
