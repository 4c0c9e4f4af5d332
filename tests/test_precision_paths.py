"""The GPU's training paths, run on the CPU: mixed precision (bfloat16 autocast here,
float16 on CUDA), channels_last and torch.compile, each against plain float32."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from segkit.cli import main
from segkit.core import Part, load_plugins
from segkit.core.config import LossTerm
from segkit.infer import Precision
from segkit.model import build_model_from_parts, load_checkpoint
from segkit.train import LossTask, build_loss
from segkit.train.step import train_step

from .tiny import write_tiny_config

REGISTRY = load_plugins().registry
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def tiny_model(crf: Part | None = None) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model_from_parts(
        REGISTRY,
        Part("deeplab_vgg16", {"width": 0.0625, "batch_norm": True}),
        Part("deeplab_largefov", {"fc_channels": 16}),
        Part("interpolate", {"align_corners": True}),
        3,
        crf,
        MEAN,
        STD,
    )


def one_step(model: torch.nn.Module, precision: Precision, channels_last: bool = False):
    """One training step: its loss, the dtypes the convolutions computed in, the model."""
    torch.manual_seed(1)
    images = torch.randn(2, 3, 40, 40)
    masks = torch.randint(0, 3, (2, 40, 40))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    dtypes = set()
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: dtypes.add(out.dtype))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=precision.scales_gradients)
    loss = build_loss([LossTerm("cross_entropy")], LossTask(3), REGISTRY)
    result = train_step(model.train(), images, masks, loss, optimizer, scheduler, scaler, precision)
    for hook in hooks:
        hook.remove()
    return result.loss, dtypes, model


def test_mixed_precision_is_bfloat16_on_the_cpu_and_float16_on_cuda():
    cpu = Precision.for_device(torch.device("cpu"), True, None)
    assert cpu.amp and cpu.dtype == torch.bfloat16 and not cpu.scales_gradients
    assert not cpu.channels_last  # channels_last defaults on for CUDA only
    cuda = Precision.for_device(torch.device("cuda"), None, None)
    assert cuda.amp and cuda.dtype == torch.float16 and cuda.scales_gradients
    assert cuda.channels_last
    assert not Precision.for_device(torch.device("cpu"), None, None).amp


def step_of(before: torch.nn.Module, after: torch.nn.Module) -> torch.Tensor:
    """The change of every float weight, flattened into one vector."""
    pairs = zip(after.state_dict().values(), before.state_dict().values(), strict=True)
    return torch.cat([(a - b).flatten() for a, b in pairs if a.is_floating_point()])


@pytest.mark.parametrize("crf", [None, Part("convcrf", {"iterations": 2, "downsample": 2})])
def test_bfloat16_autocast_step_is_close_to_float32(crf):
    start = tiny_model(crf)
    plain_loss, plain_dtypes, plain = one_step(copy.deepcopy(start), Precision())
    amp = Precision(amp=True, dtype=torch.bfloat16)
    amp_loss, amp_dtypes, mixed = one_step(copy.deepcopy(start), amp)
    assert plain_dtypes == {torch.float32} and amp_dtypes == {torch.bfloat16}
    assert amp_loss == pytest.approx(plain_loss, rel=0.03)
    # the weights stay float32, and the step goes the way float32's goes
    assert all(
        v.dtype == torch.float32 for v in mixed.state_dict().values() if v.is_floating_point()
    )
    plain_step, mixed_step = step_of(start, plain), step_of(start, mixed)
    assert torch.cosine_similarity(plain_step, mixed_step, 0) > 0.98
    assert float(mixed_step.norm()) == pytest.approx(float(plain_step.norm()), rel=0.1)


def test_channels_last_step_equals_the_contiguous_one():
    start = tiny_model()
    plain_loss, _, plain = one_step(copy.deepcopy(start), Precision())
    last_loss, _, last = one_step(copy.deepcopy(start), Precision(channels_last=True), True)
    # other convolution kernels, so float32 rounding differs, and nothing more
    assert last_loss == pytest.approx(plain_loss, rel=1e-3)
    plain_step, last_step = step_of(start, plain), step_of(start, last)
    assert torch.cosine_similarity(plain_step, last_step, 0) > 0.999


def test_a_step_the_gradient_scaler_skips_still_counts_and_warns_nothing():
    """float16's scaler skips the first steps while its gradients overflow (on CUDA, seen
    in the quickstart); a scaled loss beyond float32's range does the same on the CPU."""
    import warnings

    model = tiny_model().train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    cross_entropy = build_loss([LossTerm("cross_entropy")], LossTask(3), REGISTRY)
    loss = lambda logits, masks: cross_entropy(logits, masks) * 1e30  # noqa: E731
    images, masks = torch.randn(2, 3, 40, 40), torch.randint(0, 3, (2, 40, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_step(model, images, masks, loss, optimizer, scheduler, scaler, Precision())
    assert scaler.get_scale() < 2.0**40  # the step was skipped ...
    assert all(torch.equal(before[name], p) for name, p in model.named_parameters())
    assert scheduler.last_epoch == 1  # ... and the schedule counted it


def test_a_run_with_amp_and_channels_last_on_the_cpu(tmp_path):
    config = write_tiny_config(tmp_path, epochs=1, steps='["train", "evaluate"]')
    run_dir = tmp_path / "out"
    overrides = ["--set", "train.amp=true", "--set", "train.channels_last=true"]
    assert main(["run", str(config), "--run-dir", str(run_dir), *overrides]) == 0
    weights = load_checkpoint(run_dir / "last.pt")["model"]
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 <= summary["miou"] <= 1


def test_compiled_model_computes_what_the_eager_one_does():
    eager = tiny_model().eval()
    compiled = torch.compile(copy.deepcopy(eager), backend="aot_eager")
    images = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(compiled(images), eager(images), rtol=1e-4, atol=1e-5)
    plain_loss, _, _ = one_step(tiny_model(), Precision())
    compiled_loss, _, _ = one_step(torch.compile(tiny_model(), backend="aot_eager"), Precision())
    assert compiled_loss == pytest.approx(plain_loss, rel=1e-5)
