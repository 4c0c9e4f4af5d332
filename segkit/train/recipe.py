"""The training recipe built from plugins: the loss, the optimizer and its schedule.

``[[train.loss]]`` sums registered losses with weights; ``[train.optimizer]`` names
an optimizer, to which segkit hands parameter groups (backbone and head, with the
head's learning-rate multiplier, and norms and biases apart so they can be exempt
from weight decay); ``[train.schedule]`` names a schedule, stepped per iteration,
with an optional linear warm-up.  Everything is built, and every value checked,
before the first step.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from segkit.core.config import LossTerm, Part, TrainConfig
from segkit.core.errors import ConfigError
from segkit.core.outputs import write_text_atomically
from segkit.core.registry import Registry
from segkit.data.dataset import IGNORE_INDEX, SegmentationDataset
from segkit.train.run_files import RunFiles

#: How many training masks "auto" class weights are estimated from, at most.
FREQUENCY_SAMPLE = 1000
#: Where a run keeps its training masks' class counts (``class_weights = "auto"``).
FREQUENCIES_FILE = "class_frequencies.json"


@dataclass
class LossTask:
    """What a loss factory knows of the task: the classes, the ignore label, the data.

    ``frequencies`` computes the training masks' pixel share of each class; it is
    called at most once, and only by a loss that asks for ``"auto"`` class weights.
    """

    num_classes: int
    ignore_index: int = IGNORE_INDEX
    frequencies: Callable[[], np.ndarray] | None = None
    _cached: np.ndarray | None = field(default=None, repr=False)

    def class_frequencies(self) -> np.ndarray:
        """Each class's share of the labelled training pixels (sums to one)."""
        if self._cached is None:
            if self.frequencies is None:
                raise ConfigError(
                    '"auto" class weights need the training data; give the weights as a list'
                )
            self._cached = np.asarray(self.frequencies(), dtype=np.float64)
        return self._cached

    def class_weights(self, spec: Sequence[float] | str | None, loss: str) -> Tensor | None:
        """A loss's ``class_weights`` parameter as a tensor: None, a list or ``"auto"``.

        ``"auto"`` weights each class by the inverse square root of its pixel share,
        scaled so that the average weight of a training pixel is one (the learning
        rate keeps its meaning).  The square root balances rare classes without the
        hundredfold weights of plain inverse frequency, which make a network paint
        rare classes over the background.  Classes absent from the training masks get
        the largest weight.
        """
        where = f"loss '{loss}': class_weights"
        if spec is None:
            return None
        if isinstance(spec, str):
            if spec != "auto":
                raise ConfigError(f'{where} must be a list of numbers or "auto", got {spec!r}')
            share = self.class_frequencies()
            present = share > 0
            weights = np.zeros_like(share)
            weights[present] = share[present] ** -0.5
            weights /= float((share * weights).sum())
            weights[~present] = weights[present].max() if present.any() else 1.0
            return torch.tensor(weights, dtype=torch.float32)
        values = [float(v) for v in spec]
        if len(values) != self.num_classes:
            raise ConfigError(
                f"{where} has {len(values)} values but the model has {self.num_classes} "
                f"classes; give one weight per class"
            )
        bad = [v for v in values if not math.isfinite(v) or v < 0]
        if bad:
            raise ConfigError(f"{where} must be finite and >= 0, got {bad[0]}")
        if not any(values):
            raise ConfigError(f"{where} are all zero; nothing would be learned")
        return torch.tensor(values, dtype=torch.float32)


class SummedLoss:
    """Σ weight_k · loss_k(logits, target) over the config's ``[[train.loss]]`` terms."""

    def __init__(self, terms: list[tuple[str, float, Callable[[Tensor, Tensor], Tensor]]]):
        self.terms = terms

    def __call__(self, logits: Tensor, target: Tensor) -> Tensor:
        total: Tensor | None = None
        for _, weight, loss in self.terms:
            value = weight * loss(logits, target)
            total = value if total is None else total + value
        assert total is not None, "a config has at least one loss"
        return total


def build_loss(terms: Sequence[LossTerm], task: LossTask, registry: Registry) -> SummedLoss:
    built = []
    for index, term in enumerate(terms):
        if not math.isfinite(term.weight) or term.weight < 0:
            raise ConfigError(
                f"train.loss[{index}] ('{term.name}'): weight must be finite and >= 0, "
                f"got {term.weight}"
            )
        loss = registry.get("loss", term.name).build(task, params=term.params)
        built.append((term.name, term.weight, loss))
    if not built:
        raise ConfigError("train.loss is empty; name at least one loss, e.g. cross_entropy")
    return SummedLoss(built)


def param_groups(
    model: nn.Module, lr: float, head_lr_mult: float, norm_bias_decay: bool
) -> list[dict[str, Any]]:
    """The optimizer's groups: backbone and head, each split by weight decay, and a CRF
    layer's parameters at the layer's own rate without decay (``plugins/crf/layer.py``).

    One-dimensional parameters (biases and the scales and shifts of normalisation
    layers) are exempt from weight decay unless ``norm_bias_decay``: decaying them
    only shrinks the network's freedom to shift and scale its activations (as in
    the FCN and DeepLab Caffe models, whose biases have decay_mult 0).
    """
    parts = model.param_groups()
    groups = []
    for part, group_lr in (("backbone", lr), ("head", lr * head_lr_mult)):
        params = [p for p in parts[part] if p.requires_grad]
        decayed = [p for p in params if norm_bias_decay or p.ndim > 1]
        exempt = [p for p in params if not norm_bias_decay and p.ndim <= 1]
        if decayed:
            groups.append({"params": decayed, "lr": group_lr, "name": f"{part}"})
        if exempt:
            groups.append(
                {"params": exempt, "lr": group_lr, "weight_decay": 0.0, "name": f"{part}_no_decay"}
            )
    crf = [p for p in parts.get("crf", []) if p.requires_grad]
    if crf:
        crf_lr = lr * model.crf.lr_mult
        groups.append({"params": crf, "lr": crf_lr, "weight_decay": 0.0, "name": "crf"})
    return groups


def build_optimizer(
    model: nn.Module, train: TrainConfig, registry: Registry
) -> torch.optim.Optimizer:
    for key in ("lr", "head_lr_mult"):
        value = getattr(train, key)
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"train.{key} must be a positive number, got {value}")
    groups = param_groups(model, train.lr, train.head_lr_mult, train.norm_bias_decay)
    optimizer = registry.get("optimizer", train.optimizer.name)
    return optimizer.build(groups, params=train.optimizer.params)


def build_schedule(
    optimizer: torch.optim.Optimizer,
    schedule: Part,
    total_iterations: int,
    warmup_iterations: int,
    registry: Registry,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration LambdaLR: the registered schedule times a linear warm-up.

    During the first ``warmup_iterations`` the factor ramps linearly, (it + 1) /
    (warmup + 1), so the first step already moves.
    """
    if not 0 <= warmup_iterations < total_iterations:
        raise ConfigError(
            f"train.warmup_iterations must be in [0, {total_iterations}) (the run's "
            f"iterations), got {warmup_iterations}"
        )
    factor = registry.get("schedule", schedule.name).build(total_iterations, params=schedule.params)

    # A plain function, not an object: LambdaLR saves an object's attributes in its
    # state, and a checkpoint must hold data only.
    def with_warmup(iteration: int) -> float:
        ramp = min(1.0, (iteration + 1) / (warmup_iterations + 1)) if warmup_iterations else 1.0
        return ramp * factor(iteration)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, with_warmup)


def build_recipe(
    train: TrainConfig,
    model: nn.Module,
    registry: Registry,
    num_classes: int,
    total_iterations: int,
    frequencies: Callable[[], np.ndarray],
) -> tuple[SummedLoss, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The config's loss, optimizer and schedule, every value checked before a step.

    ``frequencies`` gives the training masks' class shares, for "auto" class weights.
    """
    loss = build_loss(train.loss, LossTask(num_classes, frequencies=frequencies), registry)
    optimizer = build_optimizer(model, train, registry)
    scheduler = build_schedule(
        optimizer, train.schedule, total_iterations, train.warmup_iterations, registry
    )
    return loss, optimizer, scheduler


def count_class_pixels(
    dataset: SegmentationDataset, num_classes: int, limit: int = FREQUENCY_SAMPLE, seed: int = 0
) -> np.ndarray:
    """Labelled pixels per class over (at most ``limit``, seeded) training masks."""
    indices = np.arange(len(dataset))
    if len(indices) > limit:
        indices = np.sort(np.random.default_rng(seed).choice(indices, limit, replace=False))
    counts = np.zeros(num_classes, dtype=np.int64)
    for index in indices:
        mask = dataset[int(index)].mask
        if mask is None:
            continue
        labels = mask[mask != IGNORE_INDEX].astype(np.int64)
        counts += np.bincount(labels, minlength=num_classes)[:num_classes]
    return counts


def cached_frequencies(
    run_dir: Path, dataset: SegmentationDataset, num_classes: int, seed: int, files: RunFiles
) -> np.ndarray:
    """Class frequencies from ``run_dir/class_frequencies.json``, computed on first use.

    The file makes a resumed run use the very weights it started with.  Counting is
    seeded, so a file that is damaged or does not fit the classes is counted again
    (and rewritten, on rank 0: ``files.enabled``) rather than trusted.
    """
    path = run_dir / FREQUENCIES_FILE
    cached = _read_counts(path, num_classes)
    if cached is not None:
        return _shares(cached)
    counts = count_class_pixels(dataset, num_classes, seed=seed)
    if files.enabled:
        record = {
            "pixels": counts.tolist(),
            "masks": min(len(dataset), FREQUENCY_SAMPLE),
            "method": "labelled pixels per class over the training masks, before augmentation",
        }
        files.add(write_text_atomically(path, json.dumps(record, indent=2)))
    return _shares(counts.astype(np.float64))


def _read_counts(path: Path, num_classes: int) -> np.ndarray | None:
    """The cached counts when ``path`` holds ``num_classes`` non-negative integers with a
    labelled pixel among them; ``None`` when it is missing, damaged or for other data."""
    try:
        counts = json.loads(path.read_bytes().decode("utf-8"))["pixels"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    valid = (
        isinstance(counts, list)
        and len(counts) == num_classes
        and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
        and sum(counts) > 0
    )
    return np.asarray(counts, dtype=np.float64) if valid else None


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    if total == 0:
        raise ConfigError(
            '"auto" class weights: the training masks have no labelled pixel; check the masks'
        )
    return counts / total
