"""The training loop: epochs of steps, with resume, interrupts, checkpoints and records.

The loop is the same on a CPU, a GPU and several ``torchrun`` processes.  Every epoch
ends with ``last.pt``, then its evaluation when due (and ``best.pt`` on a new best
mIoU), then its record in ``metrics.jsonl`` (loss, learning rate, images/s and mIoU)
and the curves.  The checkpoint comes first and holds every record, so neither an
interrupt nor an error in the evaluation loses the epoch's training, and a resume
redoes a missing evaluation and restores a missing line.

SIGINT and SIGTERM stop the loop after the current step with a resumable ``last.pt``
(:mod:`segkit.core.interrupts`); a checkpoint taken in the middle of an epoch
(``train.checkpoint_every``) holds the epoch's losses so far, and the loop resumes it
exactly as if it had not stopped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader

from segkit.core.errors import CheckpointError, ConfigError, SegkitError
from segkit.core.interrupts import Interrupted, stop_on_signals, stoppable, uninterruptible
from segkit.data.loading import ShardSampler, TrainingSet, to_device
from segkit.infer.finite import describe_names, non_finite_parameters
from segkit.train import recipe
from segkit.train import step as steps
from segkit.train.checkpoints import RunCheckpoints, rng_state, set_rng_state, unwrap
from segkit.train.context import Run
from segkit.train.curves import write_curves
from segkit.train.evaluation import Evaluator
from segkit.train.faults import non_finite_causes
from segkit.train.records import append_record, sync_records


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
        self.run, self.model, self.evaluator, self.checkpoints = run, model, evaluator, checkpoints
        self.training_set, self.sampler, self.loader = data
        cfg = run.config
        self.steps_per_epoch = len(self.sampler) // cfg.data.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"data.batch_size {cfg.data.batch_size} is larger than the training split "
                f"({len(self.training_set)} images per process); lower data.batch_size"
            )
        self.epochs = _epochs(cfg.train.epochs, cfg.train.iterations, self.steps_per_epoch)
        num_classes, seed = len(run.class_names), cfg.train.seed
        self.loss, self.optimizer, self.scheduler = recipe.build_recipe(
            cfg.train,
            model,
            run.plugins.registry,
            num_classes,
            self.steps_per_epoch * self.epochs,
            lambda: recipe.cached_frequencies(
                run.run_dir, self.training_set.dataset, num_classes, seed, run.is_main
            ),
        )
        self.base_lrs = [group["initial_lr"] for group in self.optimizer.param_groups]
        self.scaler = torch.amp.GradScaler(run.device.type, enabled=run.precision.scales_gradients)
        self.start_epoch, self.start_step, self.best = 0, 0, -1.0
        self.unlabelled = 0  # this epoch's crops without a labelled pixel
        self.resumed_losses: list[float] = []  # the steps a mid-epoch checkpoint had done
        self.pending_evaluation = False  # last.pt was written before its epoch's evaluation
        self.saved: tuple[int, int] | None = None  # (epoch, step) of this run's last.pt

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a ``last.pt`` state (the weights are already loaded)."""
        run = self.run
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"{run.run_dir / 'last.pt'} holds the state of another optimizer ({exc}); "
                f"resume with the config it was written with, or start a new --run-dir"
            ) from None
        steps.set_base_lrs(self.optimizer, self.scheduler, self.base_lrs)
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.start_epoch, self.start_step = state["epoch"], state["step"]
        self.saved = (self.start_epoch, self.start_step)
        self.best = state.get("best_miou", -1.0)
        self.resumed_losses = list(state.get("epoch_losses", []))
        self.unlabelled = state.get("unlabelled", 0)
        self.pending_evaluation = bool(state.get("pending_evaluation")) and bool(
            run.config.eval.every
        )
        run.history = list(state.get("history", []))
        done = run.history[:-1] if self.pending_evaluation else run.history
        if run.is_main and "history" in state and sync_records(run.run_dir, done):
            run.log(f"metrics.jsonl restored from {run.run_dir / 'last.pt'}")
        run.log(
            f"[green]resuming[/] from {run.run_dir / 'last.pt'}: "
            f"epoch {self.start_epoch + 1}, step {self.start_step}"
        )

    def snapshot(
        self,
        epoch: int,
        step: int,
        losses: list[float] | None = None,
        pending_evaluation: bool = False,
    ) -> dict[str, Any]:
        """Everything beyond the weights that a resumed run needs.

        In the middle of an epoch, ``losses`` are its step losses so far (its record
        averages them all); ``pending_evaluation`` marks an epoch checkpointed before
        its evaluation, which a resume then redoes.
        """
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "epoch": epoch,
            "step": step,
            "best_miou": self.best,
            "history": self.run.history,
            "epoch_losses": list(losses or []),
            "unlabelled": self.unlabelled if step else 0,
            "pending_evaluation": pending_evaluation,
        }

    @uninterruptible()
    def save_last(self, epoch: int, step: int, **state: Any) -> None:
        """Write ``last.pt`` whole, even when a stop signal arrives meanwhile; never one
        with non-finite weights, which would replace the last good one."""
        broken = non_finite_parameters(unwrap(self.model))
        if broken:
            raise SegkitError(
                f"the weights became NaN or infinite ({describe_names(broken)}) by "
                f"{_position(epoch, step)}; likely cause: "
                f"train.lr = {self.run.config.train.lr:g} is too high for this model; "
                f"{self.what_is_kept('lower train.lr and ')}"
            )
        self.checkpoints.save("last.pt", **self.snapshot(epoch, step, **state))
        self.saved = (epoch, step)

    def fit(self) -> None:
        run, epochs = self.run, self.epochs
        state = self.checkpoints.resume_state()
        if state is not None:
            self.restore(state)
        model = run.processes.wrap(self.model, run.device)
        if run.config.train.compile:
            model = torch.compile(model)
        with stop_on_signals(), run.progress() as progress:
            epochs_task = progress.add_task(
                "epochs", total=epochs, completed=self.start_epoch, info=""
            )
            try:
                if self.pending_evaluation:
                    self.evaluate_epoch(self.start_epoch - 1, run.history[-1], progress)
                    self.finish_epoch(run.history[-1])
                for epoch in range(self.start_epoch, epochs):
                    skip = self.start_step if epoch == self.start_epoch else 0
                    losses, rate = self.train_epoch(model, epoch, skip, progress)
                    self.end_epoch(epoch, losses, rate, progress)
                    progress.update(epochs_task, advance=1)
            except Interrupted as stop:
                if stop.message:  # it already says where it stopped and what was kept
                    raise
                raise stop.explained(f"while training; {self.what_is_kept()}") from None

    def train_epoch(
        self, model: nn.Module, epoch: int, skip: int, progress: Progress
    ) -> tuple[list[float], float]:
        """One epoch from step ``skip``; returns the step losses and the images/s.

        A stop signal ends the loop between steps, with a ``last.pt`` to resume from.
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
                    lr = self.optimizer.param_groups[0]["lr"]
                    info = f"loss {result.loss:.3f}  lr {lr:.2e}  {rate:.1f} img/s"
                    progress.update(task, advance=1, info=info)
                    every = cfg.train.checkpoint_every
                    if every and step % every == 0 and step < self.steps_per_epoch:
                        self.save_last(epoch, step, losses=losses)
            except Interrupted as stop:
                self.save_last(epoch, step, losses=losses)
                where = f"at epoch {epoch + 1}, step {step}"
                raise stop.explained(f"{where}; {self.what_is_kept()}") from None
        progress.remove_task(task)
        return losses, meter.add(0)

    def step(
        self, model: nn.Module, images: torch.Tensor, masks: torch.Tensor, epoch: int, step: int
    ) -> steps.StepResult:
        """One optimizer step; a non-finite loss stops the run with its likely causes."""
        run = self.run
        try:
            return steps.train_step(
                model,
                images,
                masks,
                self.loss,
                self.optimizer,
                self.scheduler,
                self.scaler,
                run.precision,
            )
        except steps.NonFiniteLoss as exc:
            causes = "; ".join(non_finite_causes(run.config, images, masks, unwrap(model)))
            raise SegkitError(
                f"{exc} at epoch {epoch + 1}, step {step + 1}; likely cause: {causes}; "
                f"{self.what_is_kept('fix that and ')}"
            ) from None

    def what_is_kept(self, first: str = "") -> str:
        """What a stopped run leaves to resume from: only a checkpoint this run wrote."""
        run = self.run
        if self.saved is None:
            return f"no checkpoint was written yet: {first}start the run again"
        return (
            f"the last checkpoint ({_position(*self.saved)}) is {run.run_dir / 'last.pt'}: "
            f"{first}run again with --run-dir {run.run_dir} to resume"
        )

    def end_epoch(self, epoch: int, losses: list[float], rate: float, progress: Progress) -> None:
        """Checkpoint the epoch, evaluate it when due, then record it and tell the plugins."""
        cfg = self.run.config
        with uninterruptible():  # the epoch's training reaches last.pt whole
            record = self.close_epoch(epoch, losses, rate)
            every = cfg.eval.every
            due = bool(every) and (epoch + 1 == self.epochs or (epoch + 1) % every == 0)
            self.save_last(epoch + 1, 0, pending_evaluation=due)
        if due:
            self.evaluate_epoch(epoch, record, progress)
        self.finish_epoch(record)

    def close_epoch(self, epoch: int, losses: list[float], rate: float) -> dict[str, Any]:
        """The epoch's record, added to the run's history."""
        run = self.run
        run.processes.sync_buffers(self.model)
        record = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)) if losses else None,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": rate,
        }
        if self.unlabelled:  # crops without a labelled pixel: counted, they teach nothing
            record["unlabelled_images"] = self.unlabelled
        run.history.append(record)
        self.unlabelled = 0
        return record

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
        if metrics["miou"] is not None and metrics["miou"] > self.best:
            self.best = metrics["miou"]
            with uninterruptible():
                self.checkpoints.save("best.pt", **self.snapshot(epoch + 1, 0))
        self.save_last(epoch + 1, 0)

    def finish_epoch(self, record: dict[str, Any]) -> None:
        """The epoch's line, curves and console line, and the plugins' ``on_epoch_end``."""
        run = self.run
        if run.is_main:
            with uninterruptible():  # no half-written line or picture
                append_record(run.run_dir, record)
                write_curves(run.history, run.run_dir / "curves.png")
            run.console.print(_epoch_line(record))
        run.plugins.hook.on_epoch_end(run=run, epoch=record["epoch"], metrics=record)


def _position(epoch: int, step: int) -> str:
    """A checkpoint's place in human terms: ``(epoch, step)`` counts finished epochs."""
    return f"end of epoch {epoch}" if not step else f"epoch {epoch + 1}, step {step}"


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


def _epoch_line(record: dict[str, Any]) -> str:
    parts = [
        f"epoch {record['epoch']}",
        f"loss {record['loss']:.4f}",
        f"{record['images_per_s']:.1f} img/s",
    ]
    if record.get("unlabelled_images"):
        parts.append(f"{record['unlabelled_images']} crops without labels")
    if "miou" in record and record["miou"] is not None:
        parts.append(f"mIoU {record['miou']:.4f}  pixel acc {record['pixel_acc']:.4f}")
    return "  ".join(parts)
