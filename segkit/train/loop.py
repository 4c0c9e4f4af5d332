"""The training loop proper: one epoch of optimizer steps over this process's shard.

Stops are taken between steps, never inside a step nor inside the DataLoader: a stop
signal ends the epoch with a ``last.pt`` to resume from, and a checkpoint taken in the
middle of an epoch (``train.checkpoint_every``) holds the epoch's losses so far, so
that a resume continues it exactly as if it had not stopped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader

from segkit.core.errors import SegkitError
from segkit.core.interrupts import Interrupted, stoppable, uninterruptible
from segkit.data.loading import ShardSampler, TrainingSet, to_device
from segkit.train import step as steps
from segkit.train.checkpoints import Checkpointing, ResumePoint, unwrap
from segkit.train.context import Run
from segkit.train.faults import non_finite_causes


class TrainingLoop:
    """Trains ``model`` an epoch at a time; each epoch ends with its record."""

    def __init__(
        self,
        run: Run,
        model: nn.Module,
        data: tuple[TrainingSet, ShardSampler, DataLoader],
        optimization: steps.Optimization,
        checkpointing: Checkpointing,
        steps_per_epoch: int,
    ) -> None:
        self.run, self.model = run, model
        self.optimization, self.checkpointing = optimization, checkpointing
        self.training_set, self.sampler, self.loader = data
        self.steps_per_epoch = steps_per_epoch
        self.unlabelled = 0  # this epoch's crops without a labelled pixel
        self.resumed_losses: list[float] = []  # the steps a mid-epoch checkpoint had done

    def resume(self, point: ResumePoint) -> None:
        """Continue the epoch a mid-epoch checkpoint stopped in."""
        self.resumed_losses, self.unlabelled = point.losses, point.unlabelled

    def train_epoch(
        self, model: nn.Module, epoch: int, skip: int, progress: Progress
    ) -> tuple[list[float], float]:
        """One epoch from step ``skip``; returns the step losses and the images/s.

        ``model`` is the one to step: ``self.model`` in any wrapper (DistributedDataParallel,
        ``torch.compile``).  A stop signal ends the loop between steps, with a ``last.pt``.
        """
        run, cfg = self.run, self.run.config
        self.sampler.set_epoch(epoch, skip=skip * cfg.data.batch_size)
        self.training_set.set_epoch(epoch)
        task = progress.add_task(
            f"epoch {epoch + 1}", total=self.steps_per_epoch, completed=skip, info=""
        )
        meter = steps.Throughput()
        losses = self.resumed_losses if skip else []
        if not skip:
            self.unlabelled = 0
        model.train()
        step = skip
        # Stops are taken between steps: never inside a step nor inside the DataLoader.
        with uninterruptible():
            try:
                for images, masks in stoppable(self.loader):
                    images, masks = to_device(
                        images, masks, run.device, run.precision.channels_last
                    )
                    result = self.step(model, images, masks, epoch, step)
                    step += 1
                    losses.append(result.loss)
                    self.unlabelled += result.unlabelled
                    rate = meter.add(result.images * run.processes.world)
                    lr = self.optimization.lr
                    info = f"loss {result.loss:.3f}  lr {lr:.2e}  {rate:.1f} img/s"
                    progress.update(task, advance=1, info=info)
                    every = cfg.train.checkpoint_every
                    if every and step % every == 0 and step < self.steps_per_epoch:
                        self.save_last(epoch, step, losses)
            except Interrupted as stop:
                self.save_last(epoch, step, losses)
                where = f"at epoch {epoch + 1}, step {step}"
                raise stop.explained(f"{where}; {self.checkpointing.what_is_kept()}") from None
        progress.remove_task(task)
        return losses, meter.add(0)

    def save_last(self, epoch: int, step: int, losses: list[float]) -> None:
        """``last.pt`` in the middle of an epoch, with what its record needs."""
        self.checkpointing.save_last(epoch, step, losses=losses, unlabelled=self.unlabelled)

    def step(
        self, model: nn.Module, images: torch.Tensor, masks: torch.Tensor, epoch: int, step: int
    ) -> steps.StepResult:
        """One optimizer step; a non-finite loss stops the run with its likely causes."""
        try:
            return self.optimization.step(model, images, masks)
        except steps.NonFiniteLoss as exc:
            causes = "; ".join(non_finite_causes(self.run.config, images, masks, unwrap(model)))
            raise SegkitError(
                f"{exc} at epoch {epoch + 1}, step {step + 1}; likely cause: {causes}; "
                f"{self.checkpointing.what_is_kept('fix that and ')}"
            ) from None

    def close_epoch(self, epoch: int, losses: list[float], rate: float) -> dict[str, Any]:
        """The epoch's record, added to the run's history."""
        run = self.run
        run.processes.sync_buffers(self.model)
        record = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)) if losses else None,
            "lr": self.optimization.lr,
            "images_per_s": rate,
        }
        if self.unlabelled:  # crops without a labelled pixel: counted, they teach nothing
            record["unlabelled_images"] = self.unlabelled
        run.history.append(record)
        self.unlabelled = 0
        return record
