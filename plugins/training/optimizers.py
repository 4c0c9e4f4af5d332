"""Optimizers: SGD (the papers'), Adam and AdamW.

segkit builds the parameter groups (backbone and head, each split into weights that
decay and norms and biases that do not) with their learning rates; an optimizer here
only adds its own settings.
"""

from __future__ import annotations

from typing import Any

import torch

from segkit import ConfigError, Param, hookimpl


def _check(name: str, key: str, value: float, low: float, high: float | None = None) -> None:
    ok = value >= low and (high is None or value < high)
    if not ok:
        bounds = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ConfigError(f"optimizer '{name}': {key} must be {bounds}, got {value}")


def sgd(
    param_groups: list[dict[str, Any]],
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = False,
) -> torch.optim.SGD:
    _check("sgd", "momentum", momentum, 0.0, 1.0)
    _check("sgd", "weight_decay", weight_decay, 0.0)
    if nesterov and momentum == 0:
        raise ConfigError("optimizer 'sgd': nesterov needs a momentum above 0")
    return torch.optim.SGD(
        param_groups,
        lr=param_groups[0]["lr"],
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
    )


def _betas(name: str, betas: list[float]) -> tuple[float, float]:
    if len(betas) != 2:
        raise ConfigError(f"optimizer '{name}': betas must be [beta1, beta2], got {betas}")
    for value in betas:
        _check(name, "betas", value, 0.0, 1.0)
    return float(betas[0]), float(betas[1])


def _adam_family(
    cls: type[torch.optim.Optimizer],
    name: str,
    param_groups: list[dict[str, Any]],
    betas: list[float],
    weight_decay: float,
    eps: float,
) -> torch.optim.Optimizer:
    _check(name, "weight_decay", weight_decay, 0.0)
    _check(name, "eps", eps, 0.0)
    return cls(
        param_groups,
        lr=param_groups[0]["lr"],
        betas=_betas(name, betas),
        weight_decay=weight_decay,
        eps=eps,
    )


def adam(
    param_groups: list[dict[str, Any]],
    betas: list[float] = [0.9, 0.999],  # noqa: B006
    weight_decay: float = 0.0,
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    # Adam adds weight decay to the gradient (L2), so it scales with the moments.
    return _adam_family(torch.optim.Adam, "adam", param_groups, betas, weight_decay, eps)


def adamw(
    param_groups: list[dict[str, Any]],
    betas: list[float] = [0.9, 0.999],  # noqa: B006
    weight_decay: float = 0.01,
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    # AdamW decays the weights directly, apart from the adaptive step.
    return _adam_family(torch.optim.AdamW, "adamw", param_groups, betas, weight_decay, eps)


@hookimpl
def register_optimizers(register):
    decay = Param("weight_decay", float, help="L2 penalty (decoupled for adamw)")
    adam_params = [
        Param("betas", list[float], help="[beta1, beta2] moment decay rates"),
        decay,
        Param("eps", float, help="added to the denominator"),
    ]
    register(
        "sgd",
        sgd,
        params=[
            Param("momentum", float, help="momentum factor"),
            decay,
            Param("nesterov", bool, help="Nesterov momentum"),
        ],
        help="SGD with momentum (FCN and DeepLab papers)",
    )
    register("adam", adam, params=adam_params, help="Adam (Kingma & Ba 2015)")
    register(
        "adamw",
        adamw,
        params=adam_params,
        help="AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019)",
    )
