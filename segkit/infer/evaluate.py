"""Scoring a model on a dataset: confusion matrices of the raw prediction and after each
post-processor, summed over every ``torchrun`` process, and the table that shows them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from rich.table import Table
from torch import nn
from torch.utils.data import DataLoader

from segkit.core.interrupts import check_stop, stoppable, uninterruptible
from segkit.data.loading import to_device
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
    for name in class_names:
        table.add_row(name, *(_fmt(c["per_class_iou"].get(name)) for c in columns.values()))
    table.add_section()
    for label, key in _SUMMARY_ROWS:
        table.add_row(f"[bold]{label}", *(f"[bold]{_fmt(c[key])}" for c in columns.values()))
    return table
