"""One training step and what drives it: the optimizer, the poly schedule, the loss check.

The recipe here is the papers': SGD with a head learning-rate multiplier, DeepLab's
poly schedule, per-pixel cross-entropy that ignores label 255.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segkit.core.errors import SegkitError
from segkit.data.dataset import IGNORE_INDEX
from segkit.infer.device import Precision


def poly_lambda(max_iterations: int, power: float) -> Callable[[int], float]:
    """The DeepLab "poly" schedule: lr * (1 - it / max_it) ** power."""
    return lambda it: max(0.0, 1 - it / max(1, max_iterations)) ** power


def set_base_lrs(optimizer: torch.optim.Optimizer, scheduler: Any, base_lrs: list[float]) -> None:
    """Put the config's learning rates back after a resume (a user may lower them to resume)."""
    scheduler.base_lrs = list(base_lrs)
    for group, base, factor in zip(
        optimizer.param_groups, base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["initial_lr"] = base
        group["lr"] = base * factor(scheduler.last_epoch)


def make_optimizer(
    model: nn.Module, lr: float, momentum: float, weight_decay: float, head_lr_mult: float
) -> torch.optim.SGD:
    groups = model.param_groups()
    return torch.optim.SGD(
        [
            {"params": groups["backbone"], "lr": lr},
            {"params": groups["head"], "lr": lr * head_lr_mult},
        ],
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
    )


class NonFiniteLoss(SegkitError):
    """The loss became NaN or infinite."""


@dataclass
class StepResult:
    loss: float
    images: int


def train_step(
    model: nn.Module,
    images: Tensor,
    masks: Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    precision: Precision,
) -> StepResult:
    """One SGD step; raises :class:`NonFiniteLoss` before touching the weights."""
    with precision.autocast(images.device):
        logits = model(images)
    loss = F.cross_entropy(logits.float(), masks, ignore_index=IGNORE_INDEX)
    value = loss.item()
    if not math.isfinite(value):
        raise NonFiniteLoss(f"the loss became {value}")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return StepResult(value, images.shape[0])


class Throughput:
    """Images per second since the epoch began, for the progress bar and the metrics."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.images = 0

    def add(self, images: int) -> float:
        self.images += images
        return self.images / max(1e-9, time.perf_counter() - self.start)
