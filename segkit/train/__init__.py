"""The training room: a runner that wires a run; a small trainer with its collaborators
(the loop, its checkpointing, the run's reports); the recipe, the run folder, the curves,
and the helpers for several processes.

``Evaluator`` lives in :mod:`segkit.infer` (``segkit eval`` shares it) and is named here
too, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segkit.core.lazy import lazy_names

# Loaded on first use: `segkit config` checks a config (segkit.train.preflight) without
# PyTorch, which the modules below import.
_LAZY = {
    "Evaluator": "segkit.infer.evaluate",
    "Checkpointing": "segkit.train.checkpoints",
    "ResumePoint": "segkit.train.checkpoints",
    "RunCheckpoints": "segkit.train.checkpoints",
    "unwrap": "segkit.train.checkpoints",
    "Run": "segkit.train.context",
    "default_run_dir": "segkit.train.context",
    "prepare_output_dir": "segkit.core.outputs",
    "curves_figure": "segkit.train.curves",
    "write_curves": "segkit.train.curves",
    "Processes": "segkit.train.distributed",
    "leave_process_group": "segkit.train.distributed",
    "TrainingLoop": "segkit.train.loop",
    "LossTask": "segkit.train.recipe",
    "SummedLoss": "segkit.train.recipe",
    "build_loss": "segkit.train.recipe",
    "build_optimizer": "segkit.train.recipe",
    "build_schedule": "segkit.train.recipe",
    "param_groups": "segkit.train.recipe",
    "RunReport": "segkit.train.reporting",
    "Runner": "segkit.train.runner",
    "run_config": "segkit.train.runner",
    "seed_everything": "segkit.train.runner",
    "Optimization": "segkit.train.step",
    "train_step": "segkit.train.step",
    "Trainer": "segkit.train.trainer",
}

if TYPE_CHECKING:
    from segkit.core.outputs import prepare_output_dir
    from segkit.infer.evaluate import Evaluator
    from segkit.train.checkpoints import Checkpointing, ResumePoint, RunCheckpoints, unwrap
    from segkit.train.context import Run, default_run_dir
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


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


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
