"""Faults during training and inference: NaN losses and weights, crops without labels,
a stop in the middle of an epoch or of its evaluation, a lost metrics line, a corrupt
validation image.  Each keeps the training done so far and says what to do in one line."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from segkit.cli import main
from segkit.core import load_config
from segkit.core.errors import CheckpointError
from segkit.core.interrupts import Interrupted
from segkit.data.dataset import IGNORE_INDEX, build_splits
from segkit.infer import Segmenter
from segkit.infer.device import Precision
from segkit.infer.evaluate import Evaluator
from segkit.model import load_checkpoint
from segkit.model.checkpoint import save_checkpoint
from segkit.train import step as steps
from segkit.train.faults import non_finite_causes

from .tiny import write_tiny_config

TRAIN_ONLY = '["train"]'


def _run(config, run_dir, *overrides: str) -> int:
    args = ["run", str(config), "--run-dir", str(run_dir)]
    for item in overrides:
        args += ["--set", item]
    return main(args)


def _records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished one-epoch run: its config and run directory."""
    folder = tmp_path_factory.mktemp("trained")
    config = write_tiny_config(folder, steps=TRAIN_ONLY)
    assert _run(config, folder / "out") == 0
    return config, folder / "out"


# --- crops without a labelled pixel ------------------------------------------------------


def test_a_batch_without_labels_contributes_zero_loss_whatever_the_loss():
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 2, 1)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    masks = torch.full((2, 8, 8), IGNORE_INDEX)

    def mean_over_labelled(logits, target):  # NaN on a batch without labels
        return torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)

    assert torch.isnan(mean_over_labelled(model(torch.rand(2, 3, 8, 8)), masks))
    result = steps.train_step(
        model,
        torch.rand(2, 3, 8, 8),
        masks,
        mean_over_labelled,
        optimizer,
        scheduler,
        torch.amp.GradScaler("cpu", enabled=False),
        Precision(),
    )
    assert (result.loss, result.unlabelled) == (0.0, 2)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_crops_without_labels_are_counted_and_reported_each_epoch(tmp_path, capsys):
    root = tmp_path / "shapes"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(8):
        Image.new("RGB", (48, 48), (index * 30, 90, 30)).save(root / "images" / f"im{index}.png")
        mask = np.zeros((48, 48), np.uint8)  # background, and class 1 in the top half
        mask[:24] = 1
        if index % 2:  # half the masks are entirely "ignore"
            mask[:] = IGNORE_INDEX
        Image.fromarray(mask).save(root / "masks" / f"im{index}.png")
    config = _folder_config(tmp_path, root, val_fraction=0.5)
    train = build_splits(load_config(config), _registry()).train
    unlabelled = sum(mask.name in {f"im{i}.png" for i in (1, 3, 5, 7)} for mask in train.masks)
    assert 0 < unlabelled < len(train)
    assert _run(config, tmp_path / "out", "data.batch_size=1", "train.epochs=2") == 0
    records = _records(tmp_path / "out")
    assert [r["unlabelled_images"] for r in records] == [unlabelled, unlabelled]
    assert all(np.isfinite(r["loss"]) for r in records)
    assert f"{unlabelled} crops without labels" in capsys.readouterr().out


def _folder_config(folder, root, val_fraction: float, steps: str = TRAIN_ONLY):
    config = write_tiny_config(folder, steps=steps)
    text = config.read_text()
    text = text[: text.index("[data.dataset]")] + text[text.index("[train]") :]
    text += (
        f'[data.dataset]\nname = "folder"\nroot = "{root}"\nnum_classes = 2\n'
        f"val_fraction = {val_fraction}\n"
    )
    config.write_text(text)
    return config


# --- non-finite losses and weights --------------------------------------------------------


def test_a_nan_loss_before_any_checkpoint_claims_none(tmp_path, capsys):
    config = write_tiny_config(tmp_path, steps=TRAIN_ONLY, lr=1e30)
    assert _run(config, tmp_path / "out") == 2
    line = _error_line(capsys)
    assert "train.lr = 1e+30 is too high for this model" in line
    assert "no checkpoint was written yet" in line and "resume" not in line
    assert not (tmp_path / "out" / "last.pt").exists()


def test_a_nan_loss_names_a_zero_std_and_masks_without_labels(tmp_path):
    config = load_config(write_tiny_config(tmp_path))
    config.data.std = [0.0, 0.2, 0.2]
    images = torch.rand(2, 3, 8, 8)
    masks = torch.zeros(2, 8, 8, dtype=torch.int64)
    masks[1] = IGNORE_INDEX
    causes = non_finite_causes(config, images, masks, torch.nn.Conv2d(3, 2, 1))
    assert causes[0] == "data.std [0.0, 0.2, 0.2] holds a zero, which makes every image infinite"
    assert causes[1].startswith("1 of the batch's masks have no labelled pixel (all 255)")
    assert len(causes) == 2  # a usual learning rate is not blamed when a cause is seen


def test_a_huge_learning_rate_leaves_only_finite_checkpoints(trained, capsys):
    config, run_dir = trained
    code = _run(config, run_dir, "train.epochs=2", "train.lr=1e38", "train.checkpoint_every=1")
    assert code == 2
    line = _error_line(capsys)
    assert "epoch 2" in line and "lower train.lr" in line
    kept = load_checkpoint(run_dir / "last.pt")
    assert all(bool(torch.isfinite(v).all()) for v in kept["model"].values())
    where = "end of epoch 1" if kept["step"] == 0 else f"epoch 2, step {kept['step']}"
    assert f"the last checkpoint ({where}) is {run_dir / 'last.pt'}" in line


def test_weights_turned_nan_never_replace_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    config = write_tiny_config(tmp_path, steps=TRAIN_ONLY)
    run_dir = tmp_path / "out"
    assert _run(config, run_dir) == 0
    good = load_checkpoint(run_dir / "last.pt")
    real_step = steps.train_step

    def overflowing_step(model, *args, **kwargs):  # a finite loss, then weights overflow
        result = real_step(model, *args, **kwargs)
        with torch.no_grad():
            next(model.parameters()).fill_(float("inf"))
        return result

    with monkeypatch.context() as patch:
        patch.setattr(steps, "train_step", overflowing_step)
        assert _run(config, run_dir, "train.epochs=2", "train.checkpoint_every=1") == 2
    line = _error_line(capsys)
    assert line.startswith("error: the weights became NaN or infinite ('backbone.")
    assert "by epoch 2, step 1" in line and "lower train.lr" in line
    assert f"the last checkpoint (end of epoch 1) is {run_dir / 'last.pt'}" in line
    kept = load_checkpoint(run_dir / "last.pt")
    assert kept["epoch"] == 1
    assert all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])


@pytest.fixture(scope="module")
def nan_checkpoint(trained, tmp_path_factory):
    _, run_dir = trained
    state = load_checkpoint(run_dir / "last.pt")
    name = next(k for k, v in state["model"].items() if v.is_floating_point() and v.dim() == 4)
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    path = tmp_path_factory.mktemp("nan") / "nan.pt"
    save_checkpoint(path, state)
    return path, name


def test_segmenter_refuses_nan_weights_instead_of_predicting_background(nan_checkpoint):
    path, name = nan_checkpoint
    segmenter = Segmenter.from_checkpoint(path, device="cpu")
    image = np.zeros((48, 48, 3), dtype=np.uint8)
    with pytest.raises(CheckpointError, match=f"hold NaN or infinite values \\('{name}'\\)"):
        segmenter.predict(image, postprocess=False)


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_predict_and_eval_refuse_nan_weights_in_one_line(nan_checkpoint, tmp_path, capsys, command):
    path, name = nan_checkpoint
    if command == "predict":
        image = tmp_path / "photo.png"
        Image.new("RGB", (48, 40), (20, 90, 30)).save(image)
        args = ["predict", str(path), str(image), "--out", str(tmp_path / "pred"), "--no-crf"]
    else:
        args = ["eval", str(path), "--max-images", "2"]
    assert main(args) == 2
    line = _error_line(capsys)
    assert f"the model's weights hold NaN or infinite values ('{name}')" in line
    assert "use an earlier checkpoint" in line
    if command == "predict":
        assert not list((tmp_path / "pred").glob("*.png"))


# --- metrics.jsonl and last.pt agree ------------------------------------------------------


def test_a_line_lost_after_its_checkpoint_is_restored_on_resume(tmp_path):
    config = write_tiny_config(tmp_path, steps=TRAIN_ONLY)
    run_dir = tmp_path / "out"
    assert _run(config, run_dir) == 0
    first = (run_dir / "metrics.jsonl").read_text()
    (run_dir / "metrics.jsonl").write_text("")  # killed between last.pt and the line
    assert _run(config, run_dir, "train.epochs=2") == 0
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert lines[0] == first.strip()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert load_checkpoint(run_dir / "last.pt")["history"] == [json.loads(x) for x in lines]


def test_a_stop_during_evaluation_keeps_the_epoch_and_the_resume_evaluates_it(
    tmp_path, monkeypatch, capsys
):
    config = write_tiny_config(tmp_path, steps=TRAIN_ONLY)
    run_dir = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(Evaluator, "metrics", _raise(Interrupted(signal.SIGTERM)))
        assert _run(config, run_dir) == 143
    line = _error_line(capsys)
    assert line.startswith("interrupted by SIGTERM while evaluating epoch 1; ")
    assert f"epoch 1's training is kept in {run_dir / 'last.pt'}" in line
    state = load_checkpoint(run_dir / "last.pt")
    assert (state["epoch"], state["step"], state["pending_evaluation"]) == (1, 0, True)
    assert not (run_dir / "metrics.jsonl").exists()

    assert _run(config, run_dir) == 0
    [record] = _records(run_dir)
    assert record["epoch"] == 1 and 0 <= record["miou"] <= 1
    assert load_checkpoint(run_dir / "last.pt")["pending_evaluation"] is False


def test_a_corrupt_validation_image_is_one_line_and_keeps_the_epoch(tmp_path, capsys):
    root = tmp_path / "shapes"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(6):
        Image.new("RGB", (48, 48), (index * 40, 90, 30)).save(root / "images" / f"im{index}.png")
        Image.new("L", (48, 48), index % 2).save(root / "masks" / f"im{index}.png")
    config = _folder_config(tmp_path, root, val_fraction=0.5, steps='["train", "evaluate"]')
    splits = build_splits(load_config(config), _registry(), train=True)
    broken = splits.val.images[0]
    broken.write_bytes(broken.read_bytes()[:60])  # truncated
    run_dir = tmp_path / "out"
    assert _run(config, run_dir, "data.batch_size=1") == 2
    line = _error_line(capsys)
    assert str(broken) in line and "truncated or corrupt" in line
    assert f"epoch 1's training is kept in {run_dir / 'last.pt'}" in line
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1


def _registry():
    from segkit.core import load_plugins

    return load_plugins().registry


def _raise(error: BaseException):
    def fail(*args, **kwargs):
        raise error

    return fail


# --- a stop in the middle of an epoch -----------------------------------------------------


def test_a_mid_epoch_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, monkeypatch, capsys):
    """Steps 1-2, a stop, then steps 3-4 give the weights and losses of steps 1-4 in one go
    (dropout, sampler position and augmentation seeds included)."""
    config = write_tiny_config(tmp_path, steps=TRAIN_ONLY)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert _run(config, whole, "train.checkpoint_every=1") == 0

    real_step, calls = steps.train_step, []

    def stopped_at_step_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Interrupted(signal.SIGINT)
        return real_step(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(steps, "train_step", stopped_at_step_3)
        assert _run(config, resumed, "train.checkpoint_every=1") == 130
    assert "interrupted by SIGINT at epoch 1, step 2; the last checkpoint (epoch 1, step 2)" in (
        _error_line(capsys)
    )
    assert (load_checkpoint(resumed / "last.pt")["step"]) == 2
    assert _run(config, resumed, "train.checkpoint_every=1") == 0

    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for key in ("loss", "lr", "miou", "pixel_acc"):
        assert _records(whole)[0][key] == _records(resumed)[0][key], key
