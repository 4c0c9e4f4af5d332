"""A run directory's checkpoints: ``last.pt`` to resume from, ``best.pt`` to use.

Each carries the config, classes and palette beside the weights, so a checkpoint
predicts alone; ``last.pt`` also carries the optimizer, schedule, scaler and random
states, so that a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segkit.core.errors import CheckpointError
from segkit.model.assembly import SegmentationModel
from segkit.model.checkpoint import (
    check_model_state,
    check_resume_state,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from segkit.train.context import Run


def unwrap(model: nn.Module) -> SegmentationModel:
    """The model inside DistributedDataParallel and torch.compile wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


class RunCheckpoints:
    """Writes and reads the checkpoints of ``run`` for ``model``; only rank 0 writes."""

    def __init__(self, run: Run, model: nn.Module, num_classes: int) -> None:
        self.run = run
        self.model = model
        self.num_classes = num_classes

    def payload(self, **state: Any) -> dict[str, Any]:
        return {
            "config": self.run.config.to_dict(),
            "num_classes": self.num_classes,
            "class_names": self.run.class_names,
            "palette": np.asarray(self.run.palette).tolist(),
            "model": unwrap(self.model).state_dict(),
            **state,
        }

    def save(self, name: str, **state: Any) -> None:
        if self.run.is_main:
            save_checkpoint(self.run.run_dir / name, self.payload(**state))

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
        first = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
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
