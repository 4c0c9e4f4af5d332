"""The training loop: epochs of steps, with resume, interrupts, checkpoints and records.

The loop is the same on a CPU, a GPU and several ``torchrun`` processes.  Every epoch
ends with a record in ``metrics.jsonl`` (loss, learning rate, images/s and, when it
evaluates, mIoU), the curves, ``last.pt`` and, on a new best mIoU, ``best.pt``.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader

from segkit.core.errors import CheckpointError, ConfigError, SegkitError
from segkit.data.loading import ShardSampler, TrainingSet, to_device
from segkit.report import write_curves
from segkit.train import recipe
from segkit.train import step as steps
from segkit.train.checkpoints import RunCheckpoints, rng_state, set_rng_state
from segkit.train.context import Run
from segkit.train.evaluation import Evaluator


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
        self.scaler = torch.amp.GradScaler(run.device.type, enabled=run.precision.amp)
        self.start_epoch, self.start_step, self.best = 0, 0, -1.0
        self.unlabelled = 0  # this epoch's crops without a labelled pixel

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
        self.best = state.get("best_miou", -1.0)
        run.history = list(state.get("history", []))
        run.log(
            f"[green]resuming[/] from {run.run_dir / 'last.pt'}: "
            f"epoch {self.start_epoch + 1}, step {self.start_step}"
        )

    def snapshot(self, epoch: int, step: int) -> dict[str, Any]:
        """Everything beyond the weights that a resumed run needs."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "epoch": epoch,
            "step": step,
            "best_miou": self.best,
            "history": self.run.history,
        }

    def fit(self) -> None:
        run, epochs = self.run, self.epochs
        state = self.checkpoints.resume_state()
        if state is not None:
            self.restore(state)
        model = run.processes.wrap(self.model, run.device)
        if run.config.train.compile:
            model = torch.compile(model)
        with run.progress() as progress, _InterruptFlag() as interrupted:
            epochs_task = progress.add_task(
                "epochs", total=epochs, completed=self.start_epoch, info=""
            )
            for epoch in range(self.start_epoch, epochs):
                skip = self.start_step if epoch == self.start_epoch else 0
                losses, rate = self.train_epoch(model, epoch, skip, progress, interrupted)
                self.end_epoch(epoch, losses, rate, progress)
                progress.update(epochs_task, advance=1)

    def train_epoch(
        self,
        model: nn.Module,
        epoch: int,
        skip: int,
        progress: Progress,
        interrupted: _InterruptFlag,
    ) -> tuple[list[float], float]:
        """One epoch from step ``skip``; returns the step losses and the images/s."""
        run, cfg = self.run, self.run.config
        self.sampler.set_epoch(epoch, skip=skip * cfg.data.batch_size)
        self.training_set.set_epoch(epoch)
        task = progress.add_task(
            f"epoch {epoch + 1}", total=self.steps_per_epoch, completed=skip, info=""
        )
        meter, losses = steps.Throughput(), []
        self.unlabelled = 0
        model.train()
        step = skip
        for images, masks in self.loader:
            images, masks = to_device(images, masks, run.device, run.precision.channels_last)
            try:
                result = steps.train_step(
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
                raise SegkitError(
                    f"{exc} at epoch {epoch + 1}, step {step + 1}; the last good "
                    f"checkpoint is kept in {run.run_dir}; lower train.lr and resume"
                ) from None
            step += 1
            losses.append(result.loss)
            self.unlabelled += result.unlabelled
            rate = meter.add(result.images * run.processes.world)
            lr = self.optimizer.param_groups[0]["lr"]
            progress.update(
                task, advance=1, info=f"loss {result.loss:.3f}  lr {lr:.2e}  {rate:.1f} img/s"
            )
            every = cfg.train.checkpoint_every
            if every and step % every == 0 and step < self.steps_per_epoch:
                self.checkpoints.save("last.pt", **self.snapshot(epoch, step))
            if interrupted.flag:
                self.checkpoints.save("last.pt", **self.snapshot(epoch, step))
                raise SegkitError(
                    f"interrupted; a resumable checkpoint is in {run.run_dir / 'last.pt'} "
                    f"(run again with --run-dir {run.run_dir} to resume)"
                )
        progress.remove_task(task)
        return losses, meter.add(0)

    def end_epoch(self, epoch: int, losses: list[float], rate: float, progress: Progress) -> None:
        """Evaluate when due, then record the epoch, checkpoint it and tell the plugins."""
        run, cfg = self.run, self.run.config
        run.processes.sync_buffers(self.model)
        record = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)) if losses else None,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": rate,
        }
        if self.unlabelled:  # crops without a labelled pixel: counted, they teach nothing
            record["unlabelled_images"] = self.unlabelled
        every = cfg.eval.every
        if every and (epoch + 1 == self.epochs or (epoch + 1) % every == 0):
            metrics = self.evaluator.metrics(progress)["raw"]
            record.update({k: metrics[k] for k in ("miou", "pixel_acc", "mean_class_acc")})
            if metrics["miou"] is not None and metrics["miou"] > self.best:
                self.best = metrics["miou"]
                self.checkpoints.save("best.pt", **self.snapshot(epoch + 1, 0))
        run.history.append(record)
        self.checkpoints.save("last.pt", **self.snapshot(epoch + 1, 0))
        if run.is_main:
            with (run.run_dir / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
            write_curves(run.history, run.run_dir / "curves.png")
            run.console.print(_epoch_line(record))
        run.plugins.hook.on_epoch_end(run=run, epoch=epoch + 1, metrics=record)


class _InterruptFlag:
    """Turns Ctrl-C into a flag the loop checks after the current step."""

    def __init__(self) -> None:
        self.flag = False
        self._previous: Any = None

    def __enter__(self) -> _InterruptFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C as it is
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.flag:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.flag = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


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
