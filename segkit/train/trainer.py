"""The trainer: epochs of the training loop, each checkpointed, evaluated and reported.

The loop is the same on a CPU, a GPU and several ``torchrun`` processes.  Every epoch
ends with ``last.pt``, then its evaluation when due (and ``best.pt`` on a new best
mIoU), then its record in ``metrics.jsonl`` (loss, learning rate, images/s and mIoU)
and the curves.  The checkpoint comes first and holds every record, so neither an
interrupt nor an error in the evaluation loses the epoch's training, and a resume
redoes a missing evaluation and restores a missing line.

SIGINT and SIGTERM stop the loop after the current step with a resumable ``last.pt``
(:mod:`segkit.core.interrupts`).  The work is shared out: the steps of an epoch to
:class:`~segkit.train.loop.TrainingLoop`, what the checkpoints hold and what a stop
keeps to :class:`~segkit.train.checkpoints.Checkpointing`, and the epoch's line,
curves and hooks to :class:`~segkit.train.reporting.RunReport`.
"""

from __future__ import annotations

from typing import Any

import torch
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader

from segkit.core.errors import ConfigError, SegkitError
from segkit.core.interrupts import Interrupted, stop_on_signals, uninterruptible
from segkit.data.loading import ShardSampler, TrainingSet
from segkit.infer.evaluate import Evaluator
from segkit.train import recipe
from segkit.train.checkpoints import Checkpointing, RunCheckpoints
from segkit.train.context import Run
from segkit.train.loop import TrainingLoop
from segkit.train.reporting import RunReport
from segkit.train.step import Optimization


class Trainer:
    """Trains ``model`` on ``training_set`` for the epochs ``run.config`` asks for."""

    def __init__(
        self,
        run: Run,
        model: nn.Module,
        data: tuple[TrainingSet, ShardSampler, DataLoader],
        evaluator: Evaluator,
        checkpoints: RunCheckpoints,
    ) -> None:
        self.run, self.model, self.evaluator = run, model, evaluator
        training_set, sampler, _ = data
        cfg = run.config
        steps_per_epoch = len(sampler) // cfg.data.batch_size
        if steps_per_epoch == 0:
            raise ConfigError(
                f"data.batch_size {cfg.data.batch_size} is larger than the training split "
                f"({len(training_set)} images per process); lower data.batch_size"
            )
        self.epochs = _epochs(cfg.train.epochs, cfg.train.iterations, steps_per_epoch)
        num_classes, seed = len(run.class_names), cfg.train.seed
        loss, optimizer, scheduler = recipe.build_recipe(
            cfg.train,
            model,
            run.plugins.registry,
            num_classes,
            steps_per_epoch * self.epochs,
            lambda: recipe.cached_frequencies(
                run.run_dir, training_set.dataset, num_classes, seed, run.files
            ),
        )
        scaler = torch.amp.GradScaler(run.device.type, enabled=run.precision.scales_gradients)
        optimization = Optimization(loss, optimizer, scheduler, scaler, run.precision)
        self.checkpointing = Checkpointing(run, model, checkpoints, optimization)
        self.loop = TrainingLoop(
            run, model, data, optimization, self.checkpointing, steps_per_epoch
        )
        self.report = RunReport(run)

    def fit(self) -> None:
        run, epochs = self.run, self.epochs
        start = self.checkpointing.restore()
        self.loop.resume(start)
        model = run.processes.wrap(self.model, run.device)
        if run.config.train.compile:
            model = torch.compile(model)
        with stop_on_signals(), run.progress() as progress:
            epochs_task = progress.add_task("epochs", total=epochs, completed=start.epoch, info="")
            try:
                if start.pending_evaluation:
                    self.evaluate_epoch(start.epoch - 1, run.history[-1], progress)
                    self.report.epoch(run.history[-1])
                for epoch in range(start.epoch, epochs):
                    skip = start.step if epoch == start.epoch else 0
                    losses, rate = self.loop.train_epoch(model, epoch, skip, progress)
                    self.end_epoch(epoch, losses, rate, progress)
                    progress.update(epochs_task, advance=1)
            except Interrupted as stop:
                if stop.message:  # it already says where it stopped and what was kept
                    raise
                kept = self.checkpointing.what_is_kept()
                raise stop.explained(f"while training; {kept}") from None

    def end_epoch(self, epoch: int, losses: list[float], rate: float, progress: Progress) -> None:
        """Checkpoint the epoch, evaluate it when due, then record it and tell the plugins."""
        every = self.run.config.eval.every
        with uninterruptible():  # the epoch's training reaches last.pt whole
            record = self.loop.close_epoch(epoch, losses, rate)
            due = bool(every) and (epoch + 1 == self.epochs or (epoch + 1) % every == 0)
            self.checkpointing.save_last(epoch + 1, 0, pending_evaluation=due)
        if due:
            self.evaluate_epoch(epoch, record, progress)
        self.report.epoch(record)

    def evaluate_epoch(self, epoch: int, record: dict[str, Any], progress: Progress) -> None:
        """Score the epoch's weights (already in ``last.pt``) into ``record``."""
        run = self.run
        kept = (
            f"epoch {epoch + 1}'s training is kept in {run.run_dir / 'last.pt'} "
            f"(run again with --run-dir {run.run_dir} to resume; the evaluation is redone)"
        )
        try:
            metrics = self.evaluator.metrics(progress)["raw"]
        except Interrupted as stop:
            raise stop.explained(f"while evaluating epoch {epoch + 1}; {kept}") from None
        except SegkitError as exc:
            raise _with_context(exc, kept) from None
        record.update({k: metrics[k] for k in ("miou", "pixel_acc", "mean_class_acc")})
        self.checkpointing.save_if_best(epoch + 1, metrics["miou"])
        self.checkpointing.save_last(epoch + 1, 0)


def _with_context(error: SegkitError, context: str) -> SegkitError:
    """``error`` (of the same type where it allows) with ``context`` appended to its line."""
    message = f"{str(error).rstrip()}; {context}"  # a worker's message ends with a newline
    try:
        return type(error)(message)
    except TypeError:  # an error type with its own constructor
        return SegkitError(message)


def _epochs(epochs: int, iterations: int | None, steps_per_epoch: int) -> int:
    """The number of epochs: the config's, or enough whole epochs for ``iterations``."""
    if iterations is None:
        if epochs < 1:
            raise ConfigError(f"train.epochs must be at least 1, got {epochs}")
        return epochs
    if iterations < 1:
        raise ConfigError(f"train.iterations must be at least 1, got {iterations}")
    return -(-iterations // steps_per_epoch)
