"""What a non-finite training loss most likely comes from, said in one line.

A NaN loss has few causes a user can act on: a learning rate too high for the model,
a normalisation that divides by zero, inputs that are already NaN, or a loss that
cannot handle crops without a labelled pixel.  Those the batch and the config show
are named; the learning rate stays the fallback, being the usual culprit.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from segkit.core.config import Config
from segkit.data.dataset import IGNORE_INDEX
from segkit.infer.finite import describe_names, non_finite_parameters

#: A learning rate above this is far outside what any segmentation recipe uses.
HIGH_LR = 1.0


def non_finite_causes(config: Config, images: Tensor, masks: Tensor, model: nn.Module) -> list[str]:
    """The likely causes of a non-finite loss that this batch and config show."""
    causes = []
    std = config.data.std
    if std is not None and any(not math.isfinite(v) or v == 0 for v in std):
        causes.append(f"data.std {list(std)} holds a zero, which makes every image infinite")
    elif not bool(torch.isfinite(images).all()):
        causes.append("the batch's images are not finite after normalisation (check data.std)")
    unlabelled = int((masks == IGNORE_INDEX).flatten(1).all(1).sum())
    if unlabelled:
        losses = ", ".join(term.name for term in config.train.loss)
        causes.append(
            f"{unlabelled} of the batch's masks have no labelled pixel (all 255), "
            f"which the loss ({losses}) may not handle"
        )
    broken = non_finite_parameters(model)
    if broken:
        causes.append(f"the weights already hold NaN or infinite values ({describe_names(broken)})")
    if config.train.lr > HIGH_LR or not causes:
        causes.append(f"train.lr = {config.train.lr:g} is too high for this model: lower train.lr")
    return causes
