"""One training step: forward, the config's loss, backward, the optimizer and schedule.

What the loss, optimizer and schedule are is the recipe's (:mod:`segkit.train.recipe`);
a step only checks that the loss is finite before it touches the weights.
:class:`Optimization` holds them for the loop, and their state for the checkpoints.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from segkit.core.errors import CheckpointError, SegkitError
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
    scale = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    if scale is not None and scaler.get_scale() < scale:
        # float16's gradient scaler skipped the optimizer step (its gradients overflowed,
        # as they do in the first steps while it finds its scale).  The schedule still
        # counts the iteration, as the progress and the checkpoints do; PyTorch warns
        # when that happens before the first optimizer step, which is expected here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            scheduler.step()
    else:
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


class Optimization:
    """What changes the weights step by step: the loss, the optimizer with its schedule,
    and the gradient scaler of mixed precision."""

    def __init__(
        self,
        loss: Callable[[Tensor, Tensor], Tensor],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler,
        precision: Precision,
    ) -> None:
        self.loss, self.optimizer, self.scheduler = loss, optimizer, scheduler
        self.scaler, self.precision = scaler, precision
        # the config's rates: a resume puts them back over the checkpoint's
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]

    @property
    def lr(self) -> float:
        """The current learning rate of the first parameter group."""
        return self.optimizer.param_groups[0]["lr"]

    def step(self, model: nn.Module, images: Tensor, masks: Tensor) -> StepResult:
        """One optimizer step (:func:`train_step`)."""
        return train_step(
            model,
            images,
            masks,
            self.loss,
            self.optimizer,
            self.scheduler,
            self.scaler,
            self.precision,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        """Continue from ``state`` (read from ``path``), with the config's learning rates."""
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"{path} holds the state of another optimizer ({exc}); resume with the "
                f"config it was written with, or start a new --run-dir"
            ) from None
        set_base_lrs(self.optimizer, self.scheduler, self.base_lrs)
        self.scaler.load_state_dict(state["scaler"])
