"""``segkit run``: train, evaluate and predict as a config says, into a run directory.

The run directory holds the resolved config, ``metrics.jsonl`` (one line per
epoch), ``summary.json`` (final evaluation, raw and per post-processor),
``last.pt`` / ``best.pt``, ``curves.png`` and the prediction panels.  Running the
same command with the same ``--run-dir`` resumes from ``last.pt``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn
from torch.utils.data import DataLoader

from segkit import data as segdata
from segkit import engine
from segkit.checkpoint import load_checkpoint, save_checkpoint
from segkit.config import Config, dump_toml
from segkit.errors import CheckpointError, ConfigError, SegkitError
from segkit.model import SegmentationModel, build_model
from segkit.plugins import Plugins, get_plugins
from segkit.postprocess import PostprocessChain
from segkit.report import metrics_table, write_curves


@dataclass
class Run:
    """What run-event hooks see of a run."""

    config: Config
    run_dir: Path
    class_names: list[str]
    palette: np.ndarray
    processes: engine.Processes
    device: torch.device
    console: Console
    plugins: Plugins
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_main(self) -> bool:
        return self.processes.is_main

    def log(self, *objects: Any) -> None:
        if self.is_main:
            self.console.print(*objects)


def default_run_dir(config: Config) -> Path:
    return Path("runs") / config.name / datetime.now().strftime("%Y%m%d-%H%M%S")


def _shared_run_dir(run_dir: Path | None, config: Config, processes: engine.Processes) -> Path:
    """Every process must write to (and resume from) the same folder: rank 0 picks it."""
    chosen = [str(run_dir or default_run_dir(config))]
    if processes.distributed:
        dist.broadcast_object_list(chosen, src=0)
    return Path(chosen[0])


def prepare_output_dir(path: Path, option: str = "--run-dir") -> None:
    """Create ``path`` and make sure it is writable before any work is done."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SegkitError(
            f"cannot write to the output folder {path} ({exc.strerror}); "
            f"choose another with {option}"
        ) from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


def make_progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


class Runner:
    """Chains the steps of one run; every process runs it, only rank 0 writes."""

    def __init__(
        self,
        config: Config,
        run_dir: Path | None = None,
        console: Console | None = None,
        plugins: Plugins | None = None,
    ) -> None:
        self.config = config
        self.plugins = plugins or get_plugins()
        train = config.train
        if train.threads:
            torch.set_num_threads(train.threads)
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        device = engine.resolve_device(train.device, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        processes = engine.init_processes(device)
        run_dir = _shared_run_dir(run_dir, config, processes)
        if processes.is_main:
            prepare_output_dir(run_dir)
        seed_everything(train.seed + processes.rank)

        registry = self.plugins.registry
        dataset_part = config.data.dataset
        dataset_component = registry.get("dataset", dataset_part.name)
        self.train_set = dataset_component.build(
            config.data.train_split, params=dataset_part.params
        )
        self.val_set = dataset_component.build(config.data.val_split, params=dataset_part.params)
        num_classes = self.train_set.num_classes
        if config.model.num_classes not in (None, num_classes):
            raise ConfigError(
                f"model.num_classes is {config.model.num_classes} but dataset "
                f"'{dataset_part.name}' has {num_classes} classes; remove model.num_classes"
            )
        self.num_classes = num_classes
        self.model = build_model(config, num_classes, registry=registry).to(device)
        self.amp = device.type == "cuda" if train.amp is None else train.amp
        if self.amp and device.type != "cuda":
            raise ConfigError("train.amp needs a CUDA device; set train.amp = false on the CPU")
        self.channels_last = (
            device.type == "cuda" if train.channels_last is None else train.channels_last
        )
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.run = Run(
            config,
            run_dir,
            list(self.train_set.class_names),
            self.train_set.palette,
            processes,
            device,
            console or Console(),
            self.plugins,
        )
        self.postprocessors = PostprocessChain.from_parts(config.postprocess)

    # -- checkpoints ---------------------------------------------------------------

    def checkpoint_payload(self, **state: Any) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "num_classes": self.num_classes,
            "class_names": self.run.class_names,
            "palette": np.asarray(self.run.palette).tolist(),
            "model": _unwrap(self.model).state_dict(),
            **state,
        }

    def save(self, name: str, **state: Any) -> None:
        if self.run.is_main:
            save_checkpoint(self.run.run_dir / name, self.checkpoint_payload(**state))

    def _resume_state(self) -> dict[str, Any] | None:
        path = self.run.run_dir / "last.pt"
        if not (self.config.train.resume and path.exists()):
            return None
        state = load_checkpoint(path)
        try:
            _unwrap(self.model).load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path} does not match this config's model ({str(exc).splitlines()[0][:100]}); "
                f"use another --run-dir or set train.resume = false"
            ) from None
        return state

    # -- steps ----------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        steps = self.config.run.steps
        self.plugins.hook.on_run_start(run=self.run)
        if self.run.is_main:
            (self.run.run_dir / "config.json").write_text(
                json.dumps(self.config.to_dict(), indent=2)
            )
            (self.run.run_dir / "config.toml").write_text(dump_toml(self.config.to_dict()))
        summary: dict[str, Any] = {}
        if "train" in steps:
            self.train()
        self.load_trained_weights()
        if "evaluate" in steps:
            summary = self.evaluate_final()
        if "predict" in steps and self.run.is_main:
            self.predict_samples()
        self.plugins.hook.on_run_end(run=self.run, summary=summary)
        return summary

    def training_loader(self) -> tuple[segdata.TrainingSet, engine.ShardSampler, DataLoader]:
        """The augmented training split, this process's sampler and their DataLoader."""
        cfg = self.config
        transform = segdata.TrainTransform(
            cfg.data.crop_size,
            tuple(cfg.data.scale_range),
            cfg.data.flip,
            cfg.data.mean,
            cfg.data.std,
        )
        training_set = segdata.TrainingSet(self.train_set, transform, seed=cfg.train.seed)
        sampler = engine.ShardSampler(len(training_set), self.run.processes, seed=cfg.train.seed)
        loader = engine.make_loader(
            training_set,
            sampler,
            cfg.data.batch_size,
            cfg.data.workers,
            self.run.device,
            drop_last=True,
        )
        return training_set, sampler, loader

    def train(self) -> None:
        cfg, run = self.config, self.run
        train_cfg = cfg.train
        training_set, sampler, loader = self.training_loader()
        steps_per_epoch = len(sampler) // cfg.data.batch_size
        if steps_per_epoch == 0:
            raise ConfigError(
                f"data.batch_size {cfg.data.batch_size} is larger than the training split "
                f"({len(self.train_set)} images per process); lower data.batch_size"
            )
        max_iterations = steps_per_epoch * train_cfg.epochs
        model = self.model
        optimizer = engine.make_optimizer(
            model, train_cfg.lr, train_cfg.momentum, train_cfg.weight_decay, train_cfg.head_lr_mult
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, engine.poly_lambda(max_iterations, train_cfg.poly_power)
        )
        scaler = torch.amp.GradScaler(run.device.type, enabled=self.amp)
        start_epoch, start_step, best = 0, 0, -1.0
        state = self._resume_state()
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            base_lrs = [train_cfg.lr, train_cfg.lr * train_cfg.head_lr_mult]
            engine.set_base_lrs(optimizer, scheduler, base_lrs)
            scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            start_epoch, start_step = state["epoch"], state["step"]
            best = state.get("best_miou", -1.0)
            run.history = list(state.get("history", []))
            run.log(
                f"[green]resuming[/] from {run.run_dir / 'last.pt'}: "
                f"epoch {start_epoch + 1}, step {start_step}"
            )
        if run.processes.distributed:
            device_ids = [run.device.index] if run.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        if train_cfg.compile:
            model = torch.compile(model)

        def snapshot(epoch: int, step: int) -> dict[str, Any]:
            return {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_state(),
                "epoch": epoch,
                "step": step,
                "best_miou": best,
                "history": run.history,
            }

        interrupted = _InterruptFlag()
        progress = make_progress(run.console, run.is_main)
        with progress, interrupted:
            epochs_task = progress.add_task(
                "epochs", total=train_cfg.epochs, completed=start_epoch, info=""
            )
            for epoch in range(start_epoch, train_cfg.epochs):
                skip = start_step if epoch == start_epoch else 0
                sampler.set_epoch(epoch, skip=skip * cfg.data.batch_size)
                training_set.set_epoch(epoch)
                task = progress.add_task(
                    f"epoch {epoch + 1}", total=steps_per_epoch, completed=skip, info=""
                )
                meter, losses = engine.Throughput(), []
                model.train()
                step = skip
                for images, masks in loader:
                    images, masks = engine.to_device(images, masks, run.device, self.channels_last)
                    try:
                        result = engine.train_step(
                            model, images, masks, optimizer, scheduler, scaler, self.amp
                        )
                    except engine.NonFiniteLoss as exc:
                        raise SegkitError(
                            f"{exc} at epoch {epoch + 1}, step {step + 1}; the last good "
                            f"checkpoint is kept in {run.run_dir}; lower train.lr and resume"
                        ) from None
                    step += 1
                    losses.append(result.loss)
                    rate = meter.add(result.images * run.processes.world)
                    lr = optimizer.param_groups[0]["lr"]
                    progress.update(
                        task,
                        advance=1,
                        info=f"loss {result.loss:.3f}  lr {lr:.2e}  {rate:.1f} img/s",
                    )
                    save_every = train_cfg.checkpoint_every
                    if save_every and step % save_every == 0 and step < steps_per_epoch:
                        self.save("last.pt", **snapshot(epoch, step))
                    if interrupted.flag:
                        self.save("last.pt", **snapshot(epoch, step))
                        raise SegkitError(
                            f"interrupted; a resumable checkpoint is in {run.run_dir / 'last.pt'} "
                            f"(run again with --run-dir {run.run_dir} to resume)"
                        )
                progress.remove_task(task)
                engine.sync_buffers(self.model, run.processes)
                record = {
                    "epoch": epoch + 1,
                    "loss": float(np.mean(losses)) if losses else None,
                    "lr": optimizer.param_groups[0]["lr"],
                    "images_per_s": meter.add(0),
                }
                every = cfg.eval.every
                if every and (epoch + 1 == train_cfg.epochs or (epoch + 1) % every == 0):
                    metrics = self.evaluate_raw(progress)
                    record.update({k: metrics[k] for k in ("miou", "pixel_acc", "mean_class_acc")})
                    if metrics["miou"] is not None and metrics["miou"] > best:
                        best = metrics["miou"]
                        self.save("best.pt", **snapshot(epoch + 1, 0))
                run.history.append(record)
                self.save("last.pt", **snapshot(epoch + 1, 0))
                if run.is_main:
                    with (run.run_dir / "metrics.jsonl").open("a") as f:
                        f.write(json.dumps(record) + "\n")
                    write_curves(run.history, run.run_dir / "curves.png")
                    run.console.print(_epoch_line(record))
                progress.update(epochs_task, advance=1)
                self.plugins.hook.on_epoch_end(run=run, epoch=epoch + 1, metrics=record)

    def _eval_loader(self) -> Any:
        cfg = self.config
        eval_set = segdata.EvalSet(self.val_set, segdata.EvalTransform(cfg.data.mean, cfg.data.std))
        if cfg.eval.max_images is not None:
            eval_set = torch.utils.data.Subset(
                eval_set, range(min(len(eval_set), cfg.eval.max_images))
            )
        sampler = engine.ShardSampler(len(eval_set), self.run.processes, shuffle=False, pad=False)
        return engine.make_loader(
            eval_set,
            sampler,
            cfg.eval.batch_size,
            cfg.data.workers,
            self.run.device,
            segdata.collate_eval,
        ), len(sampler)

    def confusion_matrices(
        self,
        postprocessors: PostprocessChain,
        progress: Progress | None = None,
        label: str = "",
    ) -> dict[str, engine.ConfusionMatrix]:
        """Evaluate the current weights on the val split, summed over all processes."""
        loader, size = self._eval_loader()
        task = progress.add_task(label, total=size, info="") if progress else None
        matrices = engine.evaluate(
            _unwrap(self.model),
            loader,
            self.num_classes,
            self.run.device,
            postprocessors,
            amp=self.amp,
            channels_last=self.channels_last,
            on_batch=(lambda n: progress.update(task, advance=n)) if progress else None,
        )
        if progress:
            progress.remove_task(task)
        return matrices

    def _evaluate(
        self, progress: Progress, postprocessors: PostprocessChain, label: str
    ) -> dict[str, Any]:
        matrices = self.confusion_matrices(postprocessors, progress, label)
        return {name: m.compute(self.run.class_names) for name, m in matrices.items()}

    def evaluate_raw(self, progress: Progress) -> dict[str, Any]:
        return self._evaluate(progress, [], "evaluating")["raw"]

    def load_trained_weights(self) -> None:
        """Evaluate and predict with the best checkpoint of the run (else its last one)."""
        for name in ("best.pt", "last.pt"):
            path = self.run.run_dir / name
            if path.exists():
                _unwrap(self.model).load_state_dict(load_checkpoint(path)["model"])
                return
        raise CheckpointError(
            f"{self.run.run_dir} holds no best.pt or last.pt to evaluate or predict with; "
            f"add 'train' to run.steps or give --run-dir of a trained run"
        )

    def evaluate_final(self) -> dict[str, Any]:
        run = self.run
        posts = self.postprocessors if self.config.eval.postprocess else PostprocessChain()
        progress = make_progress(run.console, run.is_main)
        with progress:
            results = self._evaluate(progress, posts, "final evaluation")
        summary = dict(results["raw"])
        summary["postprocessed"] = {name: results[name] for name in posts.names()}
        if run.is_main:
            (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
            run.console.print(metrics_table(summary, run.class_names))
        return summary

    def predict_samples(self) -> None:
        from segkit.predict import Segmenter, write_prediction

        cfg, run = self.config, self.run
        segmenter = Segmenter(
            _unwrap(self.model), cfg, run.class_names, run.palette, run.device, self.postprocessors
        )
        out_dir = run.run_dir / "predictions"
        if cfg.predict.images:
            items = [(Path(p).stem, segdata.read_image(p), None) for p in cfg.predict.images]
        else:
            count = min(cfg.predict.samples, len(self.val_set))
            samples = [self.val_set[i] for i in range(count)]
            items = [(s.name, s.image, s.mask) for s in samples]
        progress = make_progress(run.console, True)
        with progress:
            task = progress.add_task("predicting", total=len(items), info="")
            for name, image, mask in items:
                pair = segmenter.predict_pair(image, crf=cfg.predict.crf)
                write_prediction(out_dir, name, pair, run.palette, mask)
                progress.update(task, advance=1)
        run.log(f"predictions written to {out_dir}")


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


def _unwrap(model: nn.Module) -> SegmentationModel:
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def _epoch_line(record: dict[str, Any]) -> str:
    parts = [
        f"epoch {record['epoch']}",
        f"loss {record['loss']:.4f}",
        f"{record['images_per_s']:.1f} img/s",
    ]
    if "miou" in record and record["miou"] is not None:
        parts.append(f"mIoU {record['miou']:.4f}  pixel acc {record['pixel_acc']:.4f}")
    return "  ".join(parts)


def run_config(
    config: Config, run_dir: Path | None = None, console: Console | None = None
) -> dict[str, Any]:
    """Run a config end to end; returns the final summary (empty without evaluation)."""
    started = time.perf_counter()
    runner = Runner(config, run_dir, console)
    try:
        summary = runner.execute()
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    runner.run.log(f"run finished in {time.perf_counter() - started:.0f} s: {runner.run.run_dir}")
    return summary
