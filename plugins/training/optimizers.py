"""Optimizers: SGD (the papers'), Adam and AdamW.

segkit builds the parameter groups (backbone and head, each split into weights that
decay and norms and biases that do not) with their learning rates; an optimizer here
only adds its own settings.  Their values are checked here, without PyTorch; the
optimizers are built in :mod:`segkit_plugins.training.optimizers_torch`.
"""

from __future__ import annotations

from collections.abc import Callable

from segkit import ConfigError, Param, hookimpl

BUILDERS = "segkit_plugins.training.optimizers_torch"


def _check(name: str, key: str, value: float, low: float, high: float | None = None) -> None:
    ok = value >= low and (high is None or value < high)
    if not ok:
        bounds = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ConfigError(f"optimizer '{name}': {key} must be {bounds}, got {value}")


def check_sgd(momentum: float, weight_decay: float, nesterov: bool) -> None:
    _check("sgd", "momentum", momentum, 0.0, 1.0)
    _check("sgd", "weight_decay", weight_decay, 0.0)
    if nesterov and momentum == 0:
        raise ConfigError("optimizer 'sgd': nesterov needs a momentum above 0")


def _adam_family_check(name: str) -> Callable[..., None]:
    """The check of ``adam`` or ``adamw``: one per name, so that its messages name it."""

    def check(betas: list[float], weight_decay: float, eps: float) -> None:
        _check(name, "weight_decay", weight_decay, 0.0)
        _check(name, "eps", eps, 0.0)
        if len(betas) != 2:
            raise ConfigError(f"optimizer '{name}': betas must be [beta1, beta2], got {betas}")
        for value in betas:
            _check(name, "betas", value, 0.0, 1.0)

    return check


@hookimpl
def register_optimizers(register):
    decay = "L2 penalty (decoupled for adamw)"

    def adam_params(weight_decay: float) -> list[Param]:
        return [
            Param("betas", list[float], [0.9, 0.999], "[beta1, beta2] moment decay rates"),
            Param("weight_decay", float, weight_decay, decay),
            Param("eps", float, 1e-8, "added to the denominator"),
        ]

    register(
        "sgd",
        f"{BUILDERS}:sgd",
        params=[
            Param("momentum", float, 0.9, "momentum factor"),
            Param("weight_decay", float, 5e-4, decay),
            Param("nesterov", bool, False, "Nesterov momentum"),
        ],
        help="SGD with momentum (FCN and DeepLab papers)",
        check=check_sgd,
    )
    register(
        "adam",
        f"{BUILDERS}:adam",
        params=adam_params(0.0),
        help="Adam (Kingma & Ba 2015)",
        check=_adam_family_check("adam"),
    )
    register(
        "adamw",
        f"{BUILDERS}:adamw",
        params=adam_params(0.01),
        help="AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019)",
        check=_adam_family_check("adamw"),
    )
