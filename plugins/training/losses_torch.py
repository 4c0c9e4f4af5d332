"""The losses of :mod:`segkit_plugins.training.losses`, on PyTorch; their settings arrive
checked, except the class weights, which need the task (:class:`segkit.train.LossTask`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from segkit.train import LossTask


def _labelled(target: Tensor, ignore_index: int) -> Tensor:
    return target != ignore_index


class CrossEntropy:
    """Per-pixel cross-entropy averaged over the labelled pixels (weighted by class).

    With ``keep_hardest`` < 1, only that fraction of the labelled pixels with the
    highest loss is averaged (online hard example mining, Shrivastava et al. 2016,
    as used for segmentation by Wu et al. 2016): the easy background stops
    dominating the gradient.
    """

    def __init__(
        self,
        ignore_index: int,
        class_weights: Tensor | None,
        label_smoothing: float,
        keep_hardest: float,
    ) -> None:
        self.ignore_index = ignore_index
        self.class_weights = class_weights
        self.label_smoothing = label_smoothing
        self.keep_hardest = keep_hardest

    def __call__(self, logits: Tensor, target: Tensor) -> Tensor:
        weights = self.class_weights
        if weights is not None:
            weights = weights.to(logits.device, logits.dtype)
        labelled = _labelled(target, self.ignore_index)
        per_pixel = F.cross_entropy(
            logits,
            target,
            weight=weights,
            ignore_index=self.ignore_index,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )
        if weights is None:
            pixel_weight = labelled.to(logits.dtype)
        else:
            pixel_weight = weights[target.clamp(max=logits.shape[1] - 1)] * labelled
        if self.keep_hardest < 1:
            count = int(labelled.sum())
            keep = max(1, round(self.keep_hardest * count)) if count else 0
            hard = per_pixel[labelled].topk(keep).indices
            values = per_pixel[labelled][hard]
            norms = pixel_weight[labelled][hard]
            return values.sum() / norms.sum().clamp(min=torch.finfo(logits.dtype).tiny)
        # The mean over labelled pixels, as F.cross_entropy's "mean", but zero (not NaN)
        # when the batch has none.
        return per_pixel.sum() / pixel_weight.sum().clamp(min=torch.finfo(logits.dtype).tiny)


def cross_entropy(
    task: LossTask,
    class_weights: list[float] | str | None,
    label_smoothing: float,
    keep_hardest: float,
) -> CrossEntropy:
    weights = task.class_weights(class_weights, "cross_entropy")
    return CrossEntropy(task.ignore_index, weights, label_smoothing, keep_hardest)


class SoftDice:
    """1 - the mean soft Dice coefficient over the classes present in the batch's targets.

    Dice_c = (2 Σ p_c g_c + ε) / (Σ p_c + Σ g_c + ε) over the labelled pixels of the
    batch, with p the softmax and g the one-hot target.  Classes absent from the
    targets are left out: their Dice would only push predictions of them to zero,
    which cross-entropy already does, and would make the loss depend on the batch's
    class mix (Milletari et al. 2016; Sudre et al. 2017).
    """

    def __init__(self, ignore_index: int, smooth: float) -> None:
        self.ignore_index, self.smooth = ignore_index, smooth

    def __call__(self, logits: Tensor, target: Tensor) -> Tensor:
        labelled = _labelled(target, self.ignore_index)
        if not bool(labelled.any()):
            return logits.sum() * 0
        classes = logits.shape[1]
        probs = logits.softmax(1).movedim(1, -1)[labelled]  # P×C
        onehot = F.one_hot(target[labelled], classes).to(probs.dtype)
        intersection = (probs * onehot).sum(0)
        total = probs.sum(0) + onehot.sum(0)
        dice = (2 * intersection + self.smooth) / (total + self.smooth)
        present = onehot.sum(0) > 0
        return 1 - dice[present].mean()


def dice(task: LossTask, smooth: float) -> SoftDice:
    return SoftDice(task.ignore_index, smooth)


class Focal:
    """Focal loss (Lin et al. 2017): -α_c (1 - p_t)^γ log p_t, mean over labelled pixels."""

    def __init__(self, ignore_index: int, gamma: float, class_weights: Tensor | None) -> None:
        self.ignore_index, self.gamma, self.class_weights = ignore_index, gamma, class_weights

    def __call__(self, logits: Tensor, target: Tensor) -> Tensor:
        labelled = _labelled(target, self.ignore_index)
        if not bool(labelled.any()):
            return logits.sum() * 0
        log_probs = logits.log_softmax(1).movedim(1, -1)[labelled]  # P×C
        truth = target[labelled]
        log_pt = log_probs.gather(1, truth[:, None])[:, 0]
        loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        if self.class_weights is not None:
            loss = loss * self.class_weights.to(loss)[truth]
        return loss.mean()


def focal(task: LossTask, gamma: float, class_weights: list[float] | str | None) -> Focal:
    return Focal(task.ignore_index, gamma, task.class_weights(class_weights, "focal"))


def lovasz_gradient(sorted_truth: Tensor) -> Tensor:
    """The Lovász extension's weights for errors sorted in decreasing order.

    Entry k is J(first k errors) - J(first k-1), with J the Jaccard loss of the set
    of mispredicted pixels (Berman et al. 2018, Algorithm 1).
    """
    total = sorted_truth.sum()
    intersection = total - sorted_truth.cumsum(0)
    union = total + (1 - sorted_truth).cumsum(0)
    jaccard = 1 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    return jaccard


class LovaszSoftmax:
    """The Lovász-softmax loss (Berman et al. 2018): a convex surrogate of 1 - IoU.

    Computed over all labelled pixels of the batch, averaged over the classes
    present in the targets; it optimises the metric segkit reports, and helps most
    on rare and thin classes where per-pixel losses are dominated by the background.
    """

    def __init__(self, ignore_index: int) -> None:
        self.ignore_index = ignore_index

    def __call__(self, logits: Tensor, target: Tensor) -> Tensor:
        labelled = _labelled(target, self.ignore_index)
        if not bool(labelled.any()):
            return logits.sum() * 0
        probs = logits.softmax(1).movedim(1, -1)[labelled]  # P×C
        truth = target[labelled]
        losses = []
        for c in truth.unique().tolist():
            foreground = (truth == c).to(probs.dtype)
            errors = (foreground - probs[:, c]).abs()
            errors, order = errors.sort(descending=True)
            losses.append(errors @ lovasz_gradient(foreground[order]))
        return torch.stack(losses).mean()


def lovasz_softmax(task: LossTask) -> LovaszSoftmax:
    return LovaszSoftmax(task.ignore_index)
