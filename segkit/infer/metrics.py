"""Segmentation metrics from a confusion matrix accumulated on the device."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from segkit.data.dataset import IGNORE_INDEX


class ConfusionMatrix:
    """``matrix[t, p]`` counts pixels of true class ``t`` predicted as ``p``.

    Updates stay on the predictions' device (one ``bincount`` per batch, no host
    sync), so evaluation on a GPU does not stall on metrics.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, predictions: Tensor, targets: Tensor) -> None:
        """Add a batch of label maps; target pixels equal to 255 are ignored."""
        if predictions.shape != targets.shape:
            raise ValueError(
                f"predictions {tuple(predictions.shape)} != targets {tuple(targets.shape)}"
            )
        valid = targets != IGNORE_INDEX
        index = targets[valid].to(torch.int64) * self.num_classes + predictions[valid].to(
            torch.int64
        )
        counts = torch.bincount(index, minlength=self.num_classes**2)
        self.matrix += counts.view(self.num_classes, self.num_classes).to(self.matrix.device)

    def all_reduce(self) -> None:
        """Sum the matrices of all processes (no-op outside torch.distributed)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def compute(self, class_names: list[str] | None = None) -> dict[str, Any]:
        """Pixel accuracy, mean class accuracy, mIoU, frequency-weighted IoU, per-class IoU.

        Classes that appear neither in the targets nor in the predictions have no IoU
        (``None``) and are left out of the means, as in the VOC evaluation.
        """
        m = self.matrix.double().cpu()
        true_per_class = m.sum(1)
        pred_per_class = m.sum(0)
        hits = m.diag()
        total = m.sum()
        union = true_per_class + pred_per_class - hits
        iou = torch.where(union > 0, hits / union.clamp(min=1), torch.nan)
        acc = torch.where(true_per_class > 0, hits / true_per_class.clamp(min=1), torch.nan)
        present = true_per_class > 0
        freq = true_per_class / total if total > 0 else true_per_class
        names = class_names or [str(i) for i in range(self.num_classes)]
        return {
            "pixel_acc": _float(hits.sum() / total) if total > 0 else None,
            "mean_class_acc": _float(acc.nanmean()),
            "miou": _float(iou.nanmean()),
            "fw_iou": _float((freq[present] * iou[present].nan_to_num()).sum())
            if total > 0
            else None,
            "per_class_iou": {n: _float(v) for n, v in zip(names, iou, strict=True)},
        }


def _float(value: Tensor) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number
