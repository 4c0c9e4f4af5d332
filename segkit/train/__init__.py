"""The training room: a runner that wires a run; a small trainer with its collaborators
(the loop, its checkpointing, the run's reports); the recipe, the run folder, the curves,
and the helpers for several processes.

``Evaluator`` lives in :mod:`segkit.infer` (``segkit eval`` shares it) and is named here
too, as before.
"""

from __future__ import annotations

from segkit.infer.evaluate import Evaluator
from segkit.train.checkpoints import Checkpointing, ResumePoint, RunCheckpoints, unwrap
from segkit.train.context import Run, default_run_dir, prepare_output_dir
from segkit.train.curves import curves_figure, write_curves
from segkit.train.distributed import Processes, leave_process_group
from segkit.train.loop import TrainingLoop
from segkit.train.recipe import (
    LossTask,
    SummedLoss,
    build_loss,
    build_optimizer,
    build_schedule,
    param_groups,
)
from segkit.train.reporting import RunReport
from segkit.train.runner import Runner, run_config, seed_everything
from segkit.train.step import Optimization, train_step
from segkit.train.trainer import Trainer

__all__ = [
    "Checkpointing",
    "Evaluator",
    "LossTask",
    "Optimization",
    "Processes",
    "ResumePoint",
    "Run",
    "RunCheckpoints",
    "RunReport",
    "Runner",
    "SummedLoss",
    "Trainer",
    "TrainingLoop",
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
