"""Scoring a model on a dataset: confusion matrices of the raw prediction and after each
post-processor, summed over every ``torchrun`` process, and the table that shows them.

:class:`Evaluator` is what ``segkit eval``, a run's per-epoch scores and its final
evaluation share: the dataset as the config says to read it, each process its share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from rich.progress import Progress
from rich.table import Table
from rich.text import Text
from torch import nn
from torch.utils.data import DataLoader, Subset

from segkit.core.config import Config
from segkit.core.interrupts import check_stop, stoppable, uninterruptible
from segkit.data.dataset import SegmentationDataset
from segkit.data.loading import EvalSet, ShardSampler, collate_eval, make_loader, to_device
from segkit.data.transforms import EvalTransform
from segkit.infer.device import Precision
from segkit.infer.finite import check_finite_scores
from segkit.infer.inference import InferenceSettings, predict_probs
from segkit.infer.metrics import ConfusionMatrix
from segkit.infer.postprocess import PostprocessChain


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    device: torch.device,
    postprocessors: PostprocessChain | None = None,
    precision: Precision | None = None,
    on_batch: Callable[[int], None] | None = None,
    inference: InferenceSettings | None = None,
) -> dict[str, ConfusionMatrix]:
    """Confusion matrices of the raw prediction and after each post-processor.

    Post-processors chain: the matrix named ``"densecrf"`` scores the raw
    probabilities refined by every post-processor up to and including it.
    ``inference`` adds test-time augmentation or tiling; then each image is
    predicted at its own size rather than padded into its batch.
    """
    inference = inference or InferenceSettings()
    precision = precision or Precision()
    model.eval()
    matrices = {"raw": ConfusionMatrix(num_classes, device)}
    chain = postprocessors or PostprocessChain()
    for name in chain.names():
        matrices[name] = ConfusionMatrix(num_classes, device)
    # Stops are taken between images: never inside the DataLoader, nor a matrix half-updated.
    with uninterruptible():
        for batch in stoppable(loader):
            images = batch["image"]
            images, masks = to_device(images, batch["mask"], device, precision.channels_last)
            if inference.plain:
                with precision.autocast(device):
                    logits = model(images)
                check_finite_scores(logits, model)
            for i, (height, width) in enumerate(batch["size"]):
                check_stop()
                if inference.plain:
                    scores = logits[i : i + 1, :, :height, :width].float()
                else:
                    image = images[i : i + 1, :, :height, :width]
                    scores = predict_probs(model, image, inference, precision)
                target = masks[i : i + 1, :height, :width]
                matrices["raw"].update(scores.argmax(1), target)
                if chain:
                    original = batch["original"][i : i + 1, :, :height, :width].to(device)
                    probs = scores.softmax(1) if inference.plain else scores
                    for name, refined in chain.each(probs, original):
                        matrices[name].update(refined.argmax(1), target)
                        check_stop()
            if on_batch is not None:
                on_batch(len(batch["size"]))
    for matrix in matrices.values():
        matrix.all_reduce()
    return matrices


def summarize(results: dict[str, dict[str, Any]], postprocessors: list[str]) -> dict[str, Any]:
    """A run's ``summary.json``: the raw metrics, with each post-processor's under
    ``"postprocessed"``; ``results`` maps ``"raw"`` and each name to its metrics."""
    summary = dict(results["raw"])
    summary["postprocessed"] = {name: results[name] for name in postprocessors}
    return summary


class Evaluator:
    """Scores ``model`` on ``dataset`` as ``config`` says, this process its share (``rank``
    of ``world``), the confusion matrices summed over all of them.

    ``model`` is the network itself, not a DistributedDataParallel or compiled wrapper:
    evaluation needs no gradient synchronisation.  ``inference`` (test-time
    augmentation, tiling) defaults to the config's ``[eval]``; it is what
    :meth:`metrics` is given for a final evaluation, the per-epoch scores going without.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: SegmentationDataset,
        class_names: list[str],
        config: Config,
        device: torch.device,
        precision: Precision | None = None,
        inference: InferenceSettings | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.model = model
        self.dataset = dataset
        self.class_names = class_names
        self.config = config
        self.device = device
        self.precision = precision or Precision()
        self.inference = inference or InferenceSettings.from_options(config.eval)
        self.rank, self.world = rank, world

    def loader(self) -> tuple[DataLoader, int]:
        """The evaluation loader and how many images this process scores."""
        cfg = self.config
        eval_set: Any = EvalSet(self.dataset, EvalTransform(cfg.data.mean, cfg.data.std))
        if cfg.eval.max_images is not None:
            eval_set = Subset(eval_set, range(min(len(eval_set), cfg.eval.max_images)))
        sampler = ShardSampler(len(eval_set), self.rank, self.world, shuffle=False, pad=False)
        loader = make_loader(
            eval_set, sampler, cfg.eval.batch_size, cfg.data.workers, self.device, collate_eval
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
            self.model,
            loader,
            self.dataset.num_classes,
            self.device,
            postprocessors,
            self.precision,
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
        """The metrics of the raw prediction and of each post-processor, by name."""
        matrices = self.confusion_matrices(
            postprocessors, progress, label or "evaluating", inference
        )
        return {name: m.compute(self.class_names) for name, m in matrices.items()}


_SUMMARY_ROWS = (
    ("mIoU", "miou"),
    ("pixel acc", "pixel_acc"),
    ("mean class acc", "mean_class_acc"),
    ("fw IoU", "fw_iou"),
)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def metrics_table(summary: dict[str, Any], class_names: list[str]) -> Table:
    """Per-class IoU and the summary metrics, raw and after each post-processor."""
    columns = {"raw": summary, **summary.get("postprocessed", {})}
    table = Table(title="final evaluation", show_lines=False)
    table.add_column("class")
    for name in columns:
        table.add_column(name, justify="right")
    for name in class_names:  # a name is text: brackets in it are no console markup
        cells = (_fmt(c["per_class_iou"].get(name)) for c in columns.values())
        table.add_row(Text(name), *cells)
    table.add_section()
    for label, key in _SUMMARY_ROWS:
        table.add_row(f"[bold]{label}", *(f"[bold]{_fmt(c[key])}" for c in columns.values()))
    return table
