"""The training room: a runner that wires a run, a trainer that owns the loop, the run's
checkpoints and evaluation, and the helpers for several processes."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Loaded on first use: `segkit config` checks a config (segkit.train.preflight) without
# PyTorch, which the modules below import.
_LAZY = {
    "RunCheckpoints": "segkit.train.checkpoints",
    "unwrap": "segkit.train.checkpoints",
    "Run": "segkit.train.context",
    "default_run_dir": "segkit.train.context",
    "prepare_output_dir": "segkit.train.context",
    "Processes": "segkit.train.distributed",
    "leave_process_group": "segkit.train.distributed",
    "Evaluator": "segkit.train.evaluation",
    "LossTask": "segkit.train.recipe",
    "SummedLoss": "segkit.train.recipe",
    "build_loss": "segkit.train.recipe",
    "build_optimizer": "segkit.train.recipe",
    "build_schedule": "segkit.train.recipe",
    "param_groups": "segkit.train.recipe",
    "Runner": "segkit.train.runner",
    "run_config": "segkit.train.runner",
    "seed_everything": "segkit.train.runner",
    "train_step": "segkit.train.step",
    "Trainer": "segkit.train.trainer",
}

if TYPE_CHECKING:
    from segkit.train.checkpoints import RunCheckpoints, unwrap
    from segkit.train.context import Run, default_run_dir, prepare_output_dir
    from segkit.train.distributed import Processes, leave_process_group
    from segkit.train.evaluation import Evaluator
    from segkit.train.recipe import (
        LossTask,
        SummedLoss,
        build_loss,
        build_optimizer,
        build_schedule,
        param_groups,
    )
    from segkit.train.runner import Runner, run_config, seed_everything
    from segkit.train.step import train_step
    from segkit.train.trainer import Trainer


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'segkit.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "Evaluator",
    "LossTask",
    "Processes",
    "Run",
    "RunCheckpoints",
    "Runner",
    "SummedLoss",
    "Trainer",
    "build_loss",
    "build_optimizer",
    "build_schedule",
    "default_run_dir",
    "leave_process_group",
    "param_groups",
    "prepare_output_dir",
    "run_config",
    "seed_everything",
    "train_step",
    "unwrap",
]
