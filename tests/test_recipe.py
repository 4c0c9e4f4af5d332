"""The training recipe as plugins: losses against independent references, schedules
against closed forms, optimizer groups, config upgrades, and bad recipes refused."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from segkit_plugins.training.losses_torch import lovasz_gradient

from segkit import ConfigError, hookimpl
from segkit.cli import main
from segkit.core import default_registry, load_plugins
from segkit.core.config import LossTerm, Part, TrainConfig, config_from_dict, load_config
from segkit.data import IGNORE_INDEX
from segkit.train import (
    LossTask,
    build_loss,
    build_optimizer,
    build_schedule,
    param_groups,
    run_config,
)
from tests.tiny import write_tiny_config

CLASSES = 5


def batch(seed: int = 0, ignore: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float64 logits N×C×H×W and targets with ignore pixels."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, CLASSES, 6, 7, generator=generator, dtype=torch.float64) * 2
    target = torch.randint(0, CLASSES, (2, 6, 7), generator=generator)
    target[torch.rand(target.shape, generator=generator) < ignore] = IGNORE_INDEX
    return logits, target


def loss(name: str, task: LossTask | None = None, **params: object):
    task = task or LossTask(CLASSES)
    return default_registry().get("loss", name).build(task, params=params)


def labelled_numpy(logits: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """P×C log-probabilities (numpy, by hand) and P labels of the labelled pixels."""
    x = logits.movedim(1, -1).reshape(-1, CLASSES).numpy()
    t = target.reshape(-1).numpy()
    keep = t != IGNORE_INDEX
    x, t = x[keep], t[keep]
    log_probs = x - x.max(1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
    return log_probs, t


# -- losses -----------------------------------------------------------------------


def test_cross_entropy_matches_a_hand_computation_with_weights():
    logits, target = batch()
    log_probs, t = labelled_numpy(logits, target)
    plain = -log_probs[np.arange(len(t)), t].mean()
    assert loss("cross_entropy")(logits, target).item() == pytest.approx(plain, rel=1e-12)
    weights = np.array([0.5, 1.0, 2.0, 0.0, 3.0])
    per_pixel = -log_probs[np.arange(len(t)), t] * weights[t]
    expected = per_pixel.sum() / weights[t].sum()
    got = loss("cross_entropy", class_weights=weights.tolist())(logits, target)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_label_smoothing_matches_torch():
    logits, target = batch(1)
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, label_smoothing=0.1)
    got = loss("cross_entropy", label_smoothing=0.1)(logits, target)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_cross_entropy_keeps_only_the_hardest_pixels():
    logits, target = batch(2)
    log_probs, t = labelled_numpy(logits, target)
    per_pixel = np.sort(-log_probs[np.arange(len(t)), t])[::-1]
    keep = round(0.25 * len(t))
    got = loss("cross_entropy", keep_hardest=0.25)(logits, target)
    assert got.item() == pytest.approx(per_pixel[:keep].mean(), rel=1e-12)


@pytest.mark.parametrize("name", ["cross_entropy", "dice", "focal", "lovasz_softmax"])
def test_a_batch_without_labels_gives_zero_and_a_finite_gradient(name):
    logits, target = batch(3)
    logits.requires_grad_(True)
    target[:] = IGNORE_INDEX
    value = loss(name)(logits, target)
    value.backward()
    assert value.item() == 0.0
    assert torch.isfinite(logits.grad).all() and not logits.grad.any()


def test_dice_matches_a_hand_computation_over_present_classes():
    logits, target = batch(4)
    target[target == 2] = 0  # class 2 absent: left out of the mean
    log_probs, t = labelled_numpy(logits, target)
    probs, onehot = np.exp(log_probs), np.eye(CLASSES)[t]
    scores = []
    for c in range(CLASSES):
        if onehot[:, c].sum() == 0:
            continue
        inter = (probs[:, c] * onehot[:, c]).sum()
        scores.append((2 * inter + 1) / (probs[:, c].sum() + onehot[:, c].sum() + 1))
    assert 2 not in t and len(scores) == CLASSES - 1
    got = loss("dice")(logits, target)
    assert got.item() == pytest.approx(1 - np.mean(scores), rel=1e-12)


def test_focal_matches_a_hand_computation_and_is_cross_entropy_at_gamma_zero():
    logits, target = batch(5)
    log_probs, t = labelled_numpy(logits, target)
    log_pt = log_probs[np.arange(len(t)), t]
    expected = (-((1 - np.exp(log_pt)) ** 2) * log_pt).mean()
    assert loss("focal")(logits, target).item() == pytest.approx(expected, rel=1e-12)
    assert loss("focal", gamma=0.0)(logits, target).item() == pytest.approx(
        loss("cross_entropy")(logits, target).item(), rel=1e-12
    )


def lovasz_by_definition(errors: np.ndarray, truth: np.ndarray) -> float:
    """The Lovász extension of the Jaccard loss, from the set function itself.

    Sorting errors decreasingly, loss = Σ_k e_k (Δ(S_k) - Δ(S_{k-1})) with S_k the
    first k pixels treated as mispredicted and Δ(S) = |S| / |G ∪ S| (G: the class's
    true pixels), i.e. 1 - IoU when exactly S is wrong.
    """
    order = np.argsort(-errors, kind="stable")
    truth_set = set(np.flatnonzero(truth).tolist())
    total, previous, chosen = 0.0, 0.0, set()
    for index in order:
        chosen.add(int(index))
        delta = len(chosen) / len(truth_set | chosen)
        total += errors[index] * (delta - previous)
        previous = delta
    return total


def test_lovasz_softmax_matches_the_set_function_definition():
    logits, target = batch(6)
    log_probs, t = labelled_numpy(logits, target)
    probs = np.exp(log_probs)
    per_class = []
    for c in np.unique(t):
        truth = (t == c).astype(float)
        per_class.append(lovasz_by_definition(np.abs(truth - probs[:, c]), truth))
    got = loss("lovasz_softmax")(logits, target)
    assert got.item() == pytest.approx(np.mean(per_class), rel=1e-9)
    # and the gradient helper gives Jaccard increments that sum to the full loss of 1
    assert lovasz_gradient(torch.tensor([1.0, 0.0, 1.0])).sum().item() == pytest.approx(1.0)


def test_summed_losses_weigh_each_term():
    logits, target = batch(7)
    terms = [LossTerm("cross_entropy", {}, 0.5), LossTerm("dice", {}, 2.0)]
    total = build_loss(terms, LossTask(CLASSES), default_registry())(logits, target)
    expected = 0.5 * loss("cross_entropy")(logits, target) + 2 * loss("dice")(logits, target)
    assert total.item() == pytest.approx(expected.item(), rel=1e-12)


def test_auto_class_weights_are_inverse_square_root_frequencies_averaging_one():
    shares = np.array([0.9, 0.06, 0.04, 0.0, 0.0])
    task = LossTask(CLASSES, frequencies=lambda: shares)
    weights = task.class_weights("auto", "cross_entropy").numpy()
    present = shares > 0
    assert (shares * weights).sum() == pytest.approx(1.0, rel=1e-6)
    raw = shares[present] ** -0.5
    np.testing.assert_allclose(weights[present] / weights[0], raw / raw[0], rtol=1e-6)
    assert (weights[~present] == weights[present].max()).all()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([1.0, 2.0], "has 2 values but the model has 5 classes"),
        ([1.0, -1.0, 1.0, 1.0, 1.0], "must be finite and >= 0, got -1.0"),
        ([0.0] * 5, "are all zero"),
        ("balanced", 'must be a list of numbers or "auto"'),
    ],
)
def test_bad_class_weights_are_named(spec, message):
    with pytest.raises(ConfigError, match=message):
        LossTask(CLASSES).class_weights(spec, "cross_entropy")


# -- schedules and optimizer ------------------------------------------------------


def learning_rates(schedule: Part, total: int, warmup: int = 0, lr: float = 0.1) -> list[float]:
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=lr)
    scheduler = build_schedule(optimizer, schedule, total, warmup, default_registry())
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(
    ("schedule", "closed_form"),
    [
        (Part("poly", {"power": 0.9}), lambda it: 0.1 * (1 - it / 10) ** 0.9),
        (Part("step", {"every": 4}), lambda it: 0.1 * 0.1 ** (it // 4)),
        (
            Part("step", {"milestones": [3, 7], "gamma": 0.5}),
            lambda it: 0.1 * 0.5 ** ((it >= 3) + (it >= 7)),
        ),
        (Part("cosine"), lambda it: 0.1 * 0.5 * (1 + math.cos(math.pi * it / 10))),
        (Part("constant"), lambda it: 0.1),
    ],
    ids=["poly", "step_every", "step_milestones", "cosine", "constant"],
)
def test_schedules_follow_their_closed_form(schedule, closed_form):
    np.testing.assert_allclose(learning_rates(schedule, 10), [closed_form(i) for i in range(10)])


def test_warm_up_ramps_linearly_into_the_schedule():
    rates = learning_rates(Part("constant"), 10, warmup=4)
    np.testing.assert_allclose(rates, [0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])


@pytest.mark.parametrize(
    ("schedule", "warmup", "message"),
    [
        (Part("step", {"every": 10}), 0, "a step at iteration 10 is outside the run's 10"),
        (Part("step", {"milestones": [2, 12]}), 0, "a step at iteration 12 is outside"),
        (Part("step"), 0, "give either every = N"),
        (Part("constant"), 10, r"warmup_iterations must be in \[0, 10\)"),
    ],
)
def test_bad_schedules_are_refused_before_training(schedule, warmup, message):
    with pytest.raises(ConfigError, match=message):
        learning_rates(schedule, 10, warmup)


class TwoPartModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
        self.head = torch.nn.Conv2d(4, 2, 1)

    def param_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        return {"backbone": list(self.backbone.parameters()), "head": list(self.head.parameters())}


def test_param_groups_exempt_norms_and_biases_and_scale_the_head():
    model = TwoPartModel()
    groups = {g["name"]: g for g in param_groups(model, 0.01, 10.0, norm_bias_decay=False)}
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    assert all(p.ndim > 1 for p in groups["backbone"]["params"])
    assert len(groups["backbone_no_decay"]["params"]) == 3  # conv bias, BN weight and bias
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["head"]["lr"] == 0.1
    every = param_groups(model, 0.01, 1.0, norm_bias_decay=True)
    assert [g["name"] for g in every] == ["backbone", "head"]


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimizers_take_the_groups_as_given(name):
    train = TrainConfig(lr=0.01, head_lr_mult=10.0, optimizer=Part(name, {"weight_decay": 0.1}))
    optimizer = build_optimizer(TwoPartModel(), train, default_registry())
    rates = {g["name"]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups}
    assert rates == {
        "backbone": (0.01, 0.1),
        "backbone_no_decay": (0.01, 0.0),
        "head": (0.1, 0.1),
        "head_no_decay": (0.1, 0.0),
    }


# -- configs ----------------------------------------------------------------------

MINIMAL = {"model": {"backbone": "resnet18", "head": "fcn32s"}}


def test_old_recipe_keys_become_parts():
    config = config_from_dict(
        {
            **MINIMAL,
            "train": {"momentum": 0.99, "weight_decay": 1e-4, "poly_power": 0.0},
            "data": {"scale_range": [1.0, 1.0], "flip": True},
        },
        registry=default_registry(),
    )
    assert config.train.optimizer == Part("sgd", {"momentum": 0.99, "weight_decay": 1e-4})
    assert config.train.schedule == Part("poly", {"power": 0.0})
    assert config.data.augment == [Part("hflip")]
    with pytest.raises(ConfigError, match=r"train\.momentum is a parameter of the optimizer 'sgd'"):
        config_from_dict({**MINIMAL, "train": {"momentum": 0.9, "optimizer": "adamw"}})


def test_a_loss_list_with_weights_round_trips():
    config = config_from_dict(
        {**MINIMAL, "train": {"loss": [{"name": "dice", "weight": 0.5}, "cross_entropy"]}},
        registry=default_registry(),
    )
    assert config.train.loss == [LossTerm("dice", {}, 0.5), LossTerm("cross_entropy", {}, 1.0)]
    again = config_from_dict(config.to_dict(), registry=default_registry())
    assert again.train.loss == config.train.loss


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            'train.loss="cross_entropi"',
            "unknown loss 'cross_entropi'; did you mean 'cross_entropy'",
        ),
        ('train.optimizer="adamv"', "unknown optimizer 'adamv'; did you mean 'adam"),
        ('train.schedule="cosin"', "unknown schedule 'cosin'; did you mean 'cosine'"),
        ('data.augment=["hflipp"]', "unknown augmentation 'hflipp'; did you mean 'hflip'"),
    ],
)
def test_unknown_recipe_names_exit_2_with_a_suggestion(tmp_path, capsys, override, message):
    config = write_tiny_config(tmp_path)
    assert main(["config", str(config), "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.loss=[{name='cross_entropy', class_weights=[1.0, 2.0]}]", "has 2 values"),
        ("train.loss=[{name='dice', weight=-1.0}]", "weight must be a finite number >= 0"),
        ("train.schedule={name='step', every=100000}", "outside the run's"),
        ("train.optimizer={name='sgd', momentum=1.5}", "momentum must be in [0.0, 1.0), got 1.5"),
    ],
)
def test_bad_recipe_values_exit_2_before_training(tmp_path, capsys, override, message):
    config = write_tiny_config(tmp_path, epochs=1)
    run_dir = tmp_path / "run"
    code = main(["run", str(config), "--run-dir", str(run_dir), "--set", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (run_dir / "last.pt").exists()


# -- a resumed run keeps its recipe -----------------------------------------------

RECIPE = [
    "train.optimizer={name='adamw', weight_decay=0.01}",
    "train.schedule={name='step', milestones=[3, 5]}",
    "train.warmup_iterations=2",
    "train.loss=[{name='cross_entropy', class_weights='auto'},"
    " {name='lovasz_softmax', weight=0.5}]",
]


def read_metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


class Crash(BaseException):
    """Beyond ``Exception``, as a crash is: run-event hooks' own errors do not stop a run."""


class StopAfterFirstEpoch:
    """A run-event plugin that ends the run once epoch 1 is checkpointed, as a crash would."""

    @hookimpl
    def on_epoch_end(self, run, epoch, metrics):
        if epoch == 1:
            raise Crash("stopped after epoch 1")


def test_a_resumed_run_continues_the_same_schedule_and_loss_weights(tmp_path):
    path = write_tiny_config(tmp_path, epochs=2, train_size=8, every=0, steps='["train"]')
    config = load_config(path, RECIPE, registry=default_registry())
    whole, split = tmp_path / "whole", tmp_path / "split"
    console = Console(file=io.StringIO())
    run_config(config, whole, load_plugins(), console)
    with pytest.raises(Crash, match="stopped after epoch 1"):
        run_config(config, split, load_plugins(extra=(StopAfterFirstEpoch(),)), console)
    frequencies = json.loads((split / "class_frequencies.json").read_text())
    assert len(read_metrics(split)) == 1
    run_config(config, split, load_plugins(), console)
    assert json.loads((split / "class_frequencies.json").read_text()) == frequencies
    expected, resumed = read_metrics(whole), read_metrics(split)
    assert [r["lr"] for r in resumed] == pytest.approx([r["lr"] for r in expected], rel=1e-9)
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in expected], rel=1e-5)


def test_iterations_set_the_length_whatever_the_dataset_size(tmp_path, capsys):
    # 8 images in batches of 2: 4 iterations an epoch, so 5 iterations take 2 epochs
    config = write_tiny_config(tmp_path, epochs=7, every=0, steps='["train"]')
    run_dir = tmp_path / "run"
    assert main(["run", str(config), "--run-dir", str(run_dir), "--set", "train.iterations=5"]) == 0
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2]
    code = main(
        ["run", str(config), "--run-dir", str(tmp_path / "r2"), "--set", "train.iterations=0"]
    )
    assert (
        code == 2
        and "train.iterations must be an integer >= 1 (leave it out to train by epochs), got 0"
        in capsys.readouterr().err
    )


def test_a_variant_naming_another_part_replaces_the_bases_parameters(tmp_path):
    (tmp_path / "base.toml").write_text(
        'name = "b"\n[model]\nbackbone = "resnet18"\nhead = "fcn32s"\n'
        '[train]\nschedule = { name = "step", every = 2000 }\n'
        'optimizer = { name = "sgd", momentum = 0.99 }\n'
    )
    (tmp_path / "child.toml").write_text(
        'base = "base.toml"\n[train]\nschedule = { name = "poly", power = 1.0 }\n'
        "optimizer = { weight_decay = 0.001 }\n"
    )
    config = load_config(tmp_path / "child.toml", registry=default_registry())
    assert config.train.schedule == Part("poly", {"power": 1.0})  # not merged with 'every'
    assert config.train.optimizer == Part("sgd", {"momentum": 0.99, "weight_decay": 0.001})
