"""``segkit run``: train, evaluate and predict as a config says, into a run directory.

The run directory holds the resolved config, ``metrics.jsonl`` (one line per
epoch), ``summary.json`` (final evaluation, raw and per post-processor),
``last.pt`` / ``best.pt``, ``curves.png`` and the prediction panels.  Running the
same command with the same ``--run-dir`` resumes from ``last.pt``; what else a run
does with an existing folder is decided in :mod:`segkit.train.run_dir`.

The :class:`Runner` only wires the run — processes, device, folder, seed, data,
model, post-processors — and hands the loop to :class:`~segkit.train.Trainer`, the
final evaluation to :class:`~segkit.infer.Evaluator` and the prediction panels to
:class:`~segkit.train.reporting.RunReport`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from torch.utils.data import DataLoader

from segkit.core.config import Config, TrainConfig
from segkit.core.interrupts import Interrupted, stop_on_signals
from segkit.core.manager import Plugins
from segkit.data.dataset import build_splits
from segkit.data.loading import ShardSampler, TrainingSet, make_loader
from segkit.data.transforms import build_train_transform
from segkit.infer.device import Precision, resolve_device
from segkit.infer.evaluate import Evaluator
from segkit.infer.postprocess import PostprocessChain
from segkit.model.assembly import build_model
from segkit.model.checkpoint import check_resume_state, load_checkpoint
from segkit.train.checkpoints import RunCheckpoints, load_resumed_weights, unwrap
from segkit.train.context import Run
from segkit.train.distributed import Processes, leave_process_group
from segkit.train.preflight import check_config, check_run_data
from segkit.train.reporting import RunReport
from segkit.train.run_dir import discard_if_unused, lock_if_exists, plan_run_directory
from segkit.train.run_files import RunFiles
from segkit.train.trainer import Trainer


class Runner:
    """Wires one run; every process builds one, only rank 0 writes.

    ``plugins`` provides every part (model, datasets, post-processors, run hooks).
    """

    def __init__(
        self,
        config: Config,
        run_dir: Path | None,
        plugins: Plugins,
        console: Console | None = None,
        overwrite: bool = False,
        resume: bool = False,
    ) -> None:
        self.config = config
        console = console or Console()
        processes, device = join_processes(config.train)
        # Rank 0 locks an existing folder before looking at it: a second run on the same
        # folder is refused here, at once (released when the run ends, in run_config).
        # Every check that can fail runs before the folder is touched.  Each process
        # checks (a refusal stops them all alike); the broadcast keeps any from
        # checking after rank 0 has begun to write.
        lock = lock_if_exists(run_dir) if processes.is_main else None
        try:
            plan = plan_run_directory(config, run_dir, overwrite, resume)
            self.directory = processes.broadcast(plan)
            self.directory.lock = lock
            self.wire(processes, device, plugins, console)
        except BaseException:
            if lock is not None:
                lock.release()
            if hasattr(self, "directory"):
                self.directory.release()
            raise

    def wire(
        self, processes: Processes, device: torch.device, plugins: Plugins, console: Console
    ) -> None:
        """Data, model, post-processors and the run's folder, in that order."""
        config, train = self.config, self.config.train
        seed_everything(train.seed + processes.rank)

        registry = plugins.registry
        self.splits = build_splits(config, registry, train="train" in config.run.steps)
        check_run_data(config, self.splits, registry, console if processes.is_main else None)
        precision = Precision.for_device(device, train.amp, train.channels_last)
        model = build_model(config, self.splits.num_classes, registry).to(device)
        if precision.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        if self.resumes():
            last = self.directory.path / "last.pt"
            load_resumed_weights(model, check_resume_state(load_checkpoint(last), last), last)
        self.postprocessors = PostprocessChain.from_parts(config.postprocessors, registry)
        # Every process must write to (and resume from) the same folder: rank 0 makes it.
        made = str(self.directory.create()) if processes.is_main else ""
        run_dir = Path(processes.broadcast(made))
        reference = self.splits.reference
        self.run = Run(
            config,
            run_dir,
            list(reference.class_names),
            reference.palette,
            processes,
            device,
            precision,
            console,
            plugins,
            RunFiles(run_dir, enabled=processes.is_main),
        )
        self.checkpoints = RunCheckpoints(self.run, model)
        self.evaluator = Evaluator(
            model,
            self.splits.val,
            self.run.class_names,
            config,
            device,
            precision,
            rank=processes.rank,
            world=processes.world,
        )
        self.report = RunReport(self.run)

    def execute(self) -> dict[str, Any]:
        """The config's steps; run-end hooks hear of the end, whether it failed or not."""
        steps, run = self.config.run.steps, self.run
        hook = run.plugins.hook
        hook.on_run_start(run=run)
        summary: dict[str, Any] = {}
        error: BaseException | None = None
        try:
            trainer = self.trainer() if "train" in steps else None
            if not self.directory.continues:
                self.report.config()
            if trainer is not None:
                trainer.fit()
                if self.directory.continues:  # the config that trained it to the end
                    self.report.config()
            self.checkpoints.load_trained_weights()
            if "evaluate" in steps:
                posts = self.postprocessors if self.config.eval.postprocess else PostprocessChain()
                with after_training("the final evaluation", run.run_dir):
                    summary = self.report.final_evaluation(self.evaluator, posts)
            if "predict" in steps and run.is_main:
                with after_training("prediction", run.run_dir):
                    self.report.predictions(
                        unwrap(self.model), self.postprocessors, self.splits.val
                    )
        except BaseException as exc:
            error = exc
            discard_if_unused(self.directory, run.run_dir)  # a refused run leaves no folder
            raise
        finally:
            hook.on_run_end(run=run, summary=summary, error=error)
        return summary

    def resumes(self) -> bool:
        """Whether training continues the run in the folder (from its ``last.pt``)."""
        return (
            self.directory.continues
            and "train" in self.config.run.steps
            and self.config.train.resume
        )

    def training_data(self) -> tuple[TrainingSet, ShardSampler, DataLoader]:
        """The augmented training split, this process's sampler and their DataLoader."""
        cfg, processes = self.config, self.run.processes
        data = cfg.data
        transform = build_train_transform(data, self.run.plugins.registry)
        assert self.splits.train is not None, "the training split is built when training"
        training_set = TrainingSet(self.splits.train, transform, seed=cfg.train.seed)
        sampler = ShardSampler(
            len(training_set), processes.rank, processes.world, seed=cfg.train.seed
        )
        loader = make_loader(
            training_set, sampler, data.batch_size, data.workers, self.run.device, drop_last=True
        )
        return training_set, sampler, loader

    def trainer(self) -> Trainer:
        return Trainer(self.run, self.model, self.training_data(), self.evaluator, self.checkpoints)


def join_processes(train: TrainConfig) -> tuple[Processes, torch.device]:
    """This process among the ``torchrun`` processes, on its device, with its threads."""
    if train.threads:
        torch.set_num_threads(train.threads)
    processes = Processes.from_env()
    device = resolve_device(train.device, processes.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    processes.join(device)
    return processes, device


@contextmanager
def after_training(step: str, run_dir: Path) -> Iterator[None]:
    """A step after training: a stop signal ends it, saying that the checkpoints stay."""
    try:
        with stop_on_signals():
            yield
    except Interrupted as stop:
        raise stop.explained(
            f"during {step}; the checkpoints in {run_dir} are kept "
            f"(run again with --run-dir {run_dir} to finish)"
        ) from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_config(
    config: Config,
    run_dir: Path | None,
    plugins: Plugins,
    console: Console | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> dict[str, Any]:
    """Run a config end to end; returns the final summary (empty without evaluation).

    ``run_dir`` is used as :mod:`segkit.train.run_dir` says: ``overwrite`` replaces a
    run in it, ``resume`` requires one to continue.
    """
    started = time.perf_counter()
    check_config(config, plugins.registry)
    try:
        runner = Runner(config, run_dir, plugins, console, overwrite, resume)
        try:
            summary = runner.execute()
        finally:
            runner.directory.release()
    finally:
        leave_process_group()
    elapsed, folder = time.perf_counter() - started, escape(str(runner.run.run_dir))
    runner.run.log(f"run finished in {elapsed:.0f} s: {folder}")
    return summary
