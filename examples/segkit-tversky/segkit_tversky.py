"""The Tversky loss (Salehi et al. 2017) for segkit, as a third-party plugin.

Tversky's index generalises Dice with separate penalties for false positives (alpha)
and false negatives (beta); beta > alpha trades precision for recall, which helps
when small or rare classes are missed.  The package uses segkit's public API only
and is found through the ``segkit`` entry point in its pyproject.toml.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from segkit import ConfigError, Param, hookimpl
from segkit.train import LossTask


class Tversky:
    """1 - the mean Tversky index over the classes present in the batch's targets."""

    def __init__(self, ignore_index: int, alpha: float, beta: float) -> None:
        self.ignore_index, self.alpha, self.beta = ignore_index, alpha, beta

    def __call__(self, logits: Tensor, target: Tensor) -> Tensor:
        labelled = target != self.ignore_index
        if not bool(labelled.any()):
            return logits.sum() * 0  # no labelled pixel: zero, never NaN
        probs = logits.softmax(1).movedim(1, -1)[labelled]
        truth = F.one_hot(target[labelled], logits.shape[1]).to(probs.dtype)
        hits = (probs * truth).sum(0)
        false_pos = (probs * (1 - truth)).sum(0)
        false_neg = ((1 - probs) * truth).sum(0)
        index = (hits + 1) / (hits + self.alpha * false_pos + self.beta * false_neg + 1)
        return 1 - index[truth.sum(0) > 0].mean()


def build_tversky(task: LossTask, alpha: float = 0.3, beta: float = 0.7) -> Tversky:
    if alpha < 0 or beta < 0:
        raise ConfigError(f"loss 'tversky': alpha and beta must be >= 0, got {alpha}, {beta}")
    return Tversky(task.ignore_index, alpha, beta)


@hookimpl
def register_losses(register):
    register(
        "tversky",
        build_tversky,
        params=[
            Param("alpha", float, help="weight of false positives"),
            Param("beta", float, help="weight of false negatives"),
        ],
        help="Tversky loss: Dice with separate false-positive and false-negative weights",
    )
