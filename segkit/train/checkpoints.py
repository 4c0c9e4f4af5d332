"""A run directory's checkpoints: ``last.pt`` to resume from, ``best.pt`` to use.

Each carries the config, classes and palette beside the weights, so a checkpoint
predicts alone; ``last.pt`` also carries the optimizer, schedule, scaler and random
states, so that a resumed run continues exactly where it stopped.
:class:`RunCheckpoints` reads and writes the files; :class:`Checkpointing` decides,
for the training loop, what goes into them and what a stopped run leaves behind.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.markup import escape
from torch import nn

from segkit.core.errors import CheckpointError, SegkitError, first_line
from segkit.core.interrupts import uninterruptible
from segkit.infer.finite import describe_names, non_finite_parameters
from segkit.model.assembly import SegmentationModel
from segkit.model.checkpoint import (
    check_model_state,
    check_resume_state,
    load_checkpoint,
    load_weights,
    model_payload,
    save_checkpoint,
)
from segkit.train.context import Run
from segkit.train.records import METRICS_FILE, sync_records
from segkit.train.step import Optimization


def unwrap(model: nn.Module) -> SegmentationModel:
    """The model inside DistributedDataParallel and torch.compile wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


class RunCheckpoints:
    """Writes and reads the checkpoints of ``run`` for ``model``; only rank 0 writes."""

    def __init__(self, run: Run, model: nn.Module) -> None:
        self.run = run
        self.model = model

    def payload(self, **state: Any) -> dict[str, Any]:
        run, model = self.run, unwrap(self.model)
        return {**model_payload(run.config, model, run.class_names, run.palette), **state}

    def save(self, name: str, **state: Any) -> None:
        if self.run.is_main:
            self.run.files.add(save_checkpoint(self.run.run_dir / name, self.payload(**state)))

    def resume_state(self) -> dict[str, Any] | None:
        """Load ``last.pt``'s weights and return its state, when the run resumes."""
        path = self.run.run_dir / "last.pt"
        if not (self.run.config.train.resume and path.exists()):
            return None
        state = check_resume_state(load_checkpoint(path), path)
        load_resumed_weights(self.model, state, path)
        return state

    def load_trained_weights(self) -> None:
        """Give the model the run's best weights (else its last ones)."""
        for name in ("best.pt", "last.pt"):
            path = self.run.run_dir / name
            if path.exists():
                state = check_model_state(load_checkpoint(path), path)
                problem = f"{path} does not match this config's model"
                load_weights(
                    unwrap(self.model), state, problem, "give --run-dir of a run of this config"
                )
                return
        raise CheckpointError(
            f"{self.run.run_dir} holds no best.pt or last.pt to evaluate or predict with; "
            f"add 'train' to run.steps or give --run-dir of a trained run"
        )


def load_resumed_weights(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    """Give ``model`` the weights of ``state`` (read from ``path``), which must fit it."""
    try:
        unwrap(model).load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        first = first_line(exc, 100) or type(exc).__name__
        raise CheckpointError(
            f"{path} does not match this config's model ({first}); give a new --run-dir, "
            f"or add --overwrite to replace that run"
        ) from None


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state()[1].tolist(),
        "python": list(random.getstate()[1]),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = np.random.get_state()
    np.random.set_state((np_state[0], np.array(state["numpy"], dtype=np.uint32), *np_state[2:]))
    py_state = random.getstate()
    random.setstate((py_state[0], tuple(state["python"]), py_state[2]))


@dataclass
class ResumePoint:
    """Where a resumed run continues: ``(epoch, step)`` counts finished epochs and the
    steps done of the next one, whose losses and crops without labels so far are kept."""

    epoch: int = 0
    step: int = 0
    losses: list[float] = field(default_factory=list)
    unlabelled: int = 0
    pending_evaluation: bool = False  # last.pt was written before its epoch's evaluation


class Checkpointing:
    """The training loop's checkpoints: ``last.pt`` to resume from, ``best.pt`` on a new
    best mIoU, and what a stopped run leaves to resume from."""

    def __init__(
        self, run: Run, model: nn.Module, files: RunCheckpoints, optimization: Optimization
    ) -> None:
        self.run, self.model, self.files, self.optimization = run, model, files, optimization
        self.best = -1.0
        self.saved: tuple[int, int] | None = None  # (epoch, step) of this run's last.pt

    def restore(self) -> ResumePoint:
        """Continue from ``last.pt`` when the run resumes (weights included)."""
        state = self.files.resume_state()
        if state is None:
            return ResumePoint()
        run = self.run
        last = run.run_dir / "last.pt"
        self.optimization.load_state_dict(state, last)
        set_rng_state(state["rng"])
        point = ResumePoint(
            state["epoch"],
            state["step"],
            list(state.get("epoch_losses", [])),
            state.get("unlabelled", 0),
            bool(state.get("pending_evaluation")) and bool(run.config.eval.every),
        )
        self.saved = (point.epoch, point.step)
        self.best = state.get("best_miou", -1.0)
        run.history = list(state.get("history", []))
        done = run.history[:-1] if point.pending_evaluation else run.history
        if run.is_main and "history" in state and sync_records(run.run_dir, done):
            run.files.add(run.run_dir / METRICS_FILE)
            run.log(f"metrics.jsonl restored from {escape(str(last))}")
        where = f"epoch {point.epoch + 1}, step {point.step}"
        run.log(f"[green]resuming[/] from {escape(str(last))}: {where}")
        return point

    def snapshot(
        self,
        epoch: int,
        step: int,
        losses: list[float] | None = None,
        unlabelled: int = 0,
        pending_evaluation: bool = False,
    ) -> dict[str, Any]:
        """Everything beyond the weights that a resumed run needs.

        In the middle of an epoch, ``losses`` are its step losses so far (its record
        averages them all) and ``unlabelled`` its crops without a labelled pixel;
        ``pending_evaluation`` marks an epoch checkpointed before its evaluation, which
        a resume then redoes.
        """
        return {
            **self.optimization.state_dict(),
            "rng": rng_state(),
            "epoch": epoch,
            "step": step,
            "best_miou": self.best,
            "history": self.run.history,
            "epoch_losses": list(losses or []),
            "unlabelled": unlabelled if step else 0,
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
                f"{position(epoch, step)}; likely cause: "
                f"train.lr = {self.run.config.train.lr:g} is too high for this model; "
                f"{self.what_is_kept('lower train.lr and ')}"
            )
        self.files.save("last.pt", **self.snapshot(epoch, step, **state))
        self.saved = (epoch, step)

    def save_if_best(self, epochs_done: int, miou: float | None) -> None:
        """Write ``best.pt`` when ``miou`` beats every earlier evaluation of the run."""
        if miou is not None and miou > self.best:
            self.best = miou
            with uninterruptible():
                self.files.save("best.pt", **self.snapshot(epochs_done, 0))

    def what_is_kept(self, first: str = "") -> str:
        """What a stopped run leaves to resume from: only a checkpoint this run wrote."""
        run = self.run
        if self.saved is None:
            return f"no checkpoint was written yet: {first}start the run again"
        return (
            f"the last checkpoint ({position(*self.saved)}) is {run.run_dir / 'last.pt'}: "
            f"{first}run again with --run-dir {run.run_dir} to resume"
        )


def position(epoch: int, step: int) -> str:
    """A checkpoint's place in human terms: ``(epoch, step)`` counts finished epochs."""
    return f"end of epoch {epoch}" if not step else f"epoch {epoch + 1}, step {step}"
