"""One training step: forward, the config's loss, backward, the optimizer and schedule.

What the loss, optimizer and schedule are is the recipe's (:mod:`segkit.train.recipe`);
a step only checks that the loss is finite before it touches the weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from segkit.core.errors import SegkitError
from segkit.data.dataset import IGNORE_INDEX
from segkit.infer.device import Precision


def set_base_lrs(optimizer: torch.optim.Optimizer, scheduler: Any, base_lrs: list[float]) -> None:
    """Put the config's learning rates back after a resume (a user may lower them to resume)."""
    scheduler.base_lrs = list(base_lrs)
    for group, base, factor in zip(
        optimizer.param_groups, base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["initial_lr"] = base
        group["lr"] = base * factor(scheduler.last_epoch)


class NonFiniteLoss(SegkitError):
    """The loss became NaN or infinite."""


@dataclass
class StepResult:
    loss: float
    images: int
    unlabelled: int  # images of the batch without a labelled pixel


def train_step(
    model: nn.Module,
    images: Tensor,
    masks: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    precision: Precision,
) -> StepResult:
    """One optimizer step; raises :class:`NonFiniteLoss` before touching the weights.

    A batch without a labelled pixel contributes a zero loss, whatever the loss
    function makes of it: it says nothing, and an average over no pixel is NaN.
    """
    with precision.autocast(images.device):
        logits = model(images)
    unlabelled = int((masks == IGNORE_INDEX).flatten(1).all(1).sum())
    if unlabelled == images.shape[0]:
        loss = logits.float().sum() * 0
    else:
        loss = loss_fn(logits.float(), masks)
    value = loss.item()
    if not math.isfinite(value):
        raise NonFiniteLoss(f"the loss became {value}")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return StepResult(value, images.shape[0], unlabelled)


class Throughput:
    """Images per second since the epoch began, for the progress bar and the metrics."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.images = 0

    def add(self, images: int) -> float:
        self.images += images
        return self.images / max(1e-9, time.perf_counter() - self.start)
