"""Refusing non-finite class scores: NaN weights must not pass for a confident background.

``argmax`` of NaN scores is class 0, so a checkpoint whose weights became NaN would
predict "background" everywhere without a word.  Every prediction path checks its
scores and names the cause it can see: the weights, else the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from segkit.core.errors import CheckpointError, DataError


def non_finite_parameters(model: nn.Module) -> list[str]:
    """The names of the model's parameters and buffers that hold NaN or infinite values."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return [
        name
        for name, tensor in tensors
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def check_finite_scores(scores: Tensor, model: nn.Module) -> None:
    """Raise a one-line error when ``scores`` (the model's output) hold NaN or infinity."""
    if bool(torch.isfinite(scores).all()):
        return
    broken = non_finite_parameters(model)
    if broken:
        raise CheckpointError(
            f"the model's weights hold NaN or infinite values ({describe_names(broken)}), so "
            f"its predictions would be meaningless; use an earlier checkpoint (e.g. best.pt) "
            f"or train again with a lower train.lr"
        )
    raise DataError(
        "the model's class scores are NaN or infinite for this image although its weights "
        "are finite; check that data.std holds no zero and the image no NaN"
    )


def describe_names(names: Sequence[str], shown: int = 2) -> str:
    """``'a', 'b' and 3 more``."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(f"'{n}'" for n in names[:shown]) + more
