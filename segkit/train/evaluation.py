"""Evaluating a run's model on its val split, raw and after each post-processor."""

from __future__ import annotations

import json
from typing import Any

from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader, Subset

from segkit.core.outputs import write_text_atomically
from segkit.data.dataset import SegmentationDataset
from segkit.data.loading import EvalSet, ShardSampler, collate_eval, make_loader
from segkit.data.transforms import EvalTransform
from segkit.infer.evaluate import evaluate, metrics_table, summarize
from segkit.infer.inference import InferenceSettings
from segkit.infer.metrics import ConfusionMatrix
from segkit.infer.postprocess import PostprocessChain
from segkit.train.checkpoints import unwrap
from segkit.train.context import Run


class Evaluator:
    """Scores ``model`` on ``val_set``, each process its share, summed over all of them."""

    def __init__(
        self,
        run: Run,
        model: nn.Module,
        val_set: SegmentationDataset,
        inference: InferenceSettings | None = None,
    ) -> None:
        self.run = run
        self.model = model
        self.val_set = val_set
        # [eval]'s test-time augmentation and tiling, for the final evaluation only: the
        # per-epoch scores only follow training, and TTA would multiply their cost
        self.inference = inference or InferenceSettings.from_options(run.config.eval)

    def loader(self) -> tuple[DataLoader, int]:
        """The evaluation loader and how many images this process scores."""
        cfg = self.run.config
        eval_set: Any = EvalSet(self.val_set, EvalTransform(cfg.data.mean, cfg.data.std))
        if cfg.eval.max_images is not None:
            eval_set = Subset(eval_set, range(min(len(eval_set), cfg.eval.max_images)))
        processes = self.run.processes
        sampler = ShardSampler(
            len(eval_set), processes.rank, processes.world, shuffle=False, pad=False
        )
        loader = make_loader(
            eval_set,
            sampler,
            cfg.eval.batch_size,
            cfg.data.workers,
            self.run.device,
            collate_eval,
        )
        return loader, len(sampler)

    def confusion_matrices(
        self,
        postprocessors: PostprocessChain | None = None,
        progress: Progress | None = None,
        label: str = "",
        inference: InferenceSettings | None = None,
    ) -> dict[str, ConfusionMatrix]:
        """The current weights' matrices, raw and after each post-processor."""
        loader, size = self.loader()
        task = progress.add_task(label, total=size, info="") if progress else None
        matrices = evaluate(
            unwrap(self.model),
            loader,
            self.val_set.num_classes,
            self.run.device,
            postprocessors,
            self.run.precision,
            on_batch=(lambda n: progress.update(task, advance=n)) if progress else None,
            inference=inference,
        )
        if progress:
            progress.remove_task(task)
        return matrices

    def metrics(
        self,
        progress: Progress,
        postprocessors: PostprocessChain | None = None,
        label: str = "",
        inference: InferenceSettings | None = None,
    ) -> dict[str, dict[str, Any]]:
        matrices = self.confusion_matrices(
            postprocessors, progress, label or "evaluating", inference
        )
        return {name: m.compute(self.run.class_names) for name, m in matrices.items()}

    def final(self, postprocessors: PostprocessChain) -> dict[str, Any]:
        """Evaluate raw and post-processed; write ``summary.json`` and print the table."""
        run = self.run
        with run.progress() as progress:
            results = self.metrics(progress, postprocessors, "final evaluation", self.inference)
        summary = summarize(results, postprocessors.names())
        if run.is_main:
            write_text_atomically(run.run_dir / "summary.json", json.dumps(summary, indent=2))
            run.console.print(metrics_table(summary, run.class_names))
        return summary
