"""The optimizers of :mod:`segkit_plugins.training.optimizers`, built on PyTorch's; their
settings arrive checked."""

from __future__ import annotations

from typing import Any

import torch


def sgd(
    param_groups: list[dict[str, Any]], momentum: float, weight_decay: float, nesterov: bool
) -> torch.optim.SGD:
    return torch.optim.SGD(
        param_groups,
        lr=param_groups[0]["lr"],
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
    )


def adam(
    param_groups: list[dict[str, Any]], betas: list[float], weight_decay: float, eps: float
) -> torch.optim.Optimizer:
    # Adam adds weight decay to the gradient (L2), so it scales with the moments.
    return _adam_family(torch.optim.Adam, param_groups, betas, weight_decay, eps)


def adamw(
    param_groups: list[dict[str, Any]], betas: list[float], weight_decay: float, eps: float
) -> torch.optim.Optimizer:
    # AdamW decays the weights directly, apart from the adaptive step.
    return _adam_family(torch.optim.AdamW, param_groups, betas, weight_decay, eps)


def _adam_family(
    cls: type[torch.optim.Optimizer],
    param_groups: list[dict[str, Any]],
    betas: list[float],
    weight_decay: float,
    eps: float,
) -> torch.optim.Optimizer:
    return cls(
        param_groups,
        lr=param_groups[0]["lr"],
        betas=(float(betas[0]), float(betas[1])),
        weight_decay=weight_decay,
        eps=eps,
    )
