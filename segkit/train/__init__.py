"""The training room: a runner that wires a run, a trainer that owns the loop, the run's
checkpoints and evaluation, and the helpers for several processes."""

from __future__ import annotations

from segkit.train.checkpoints import RunCheckpoints, unwrap
from segkit.train.context import Run, default_run_dir, prepare_output_dir
from segkit.train.curves import curves_figure, write_curves
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
    "curves_figure",
    "default_run_dir",
    "leave_process_group",
    "param_groups",
    "prepare_output_dir",
    "run_config",
    "seed_everything",
    "train_step",
    "unwrap",
    "write_curves",
]
