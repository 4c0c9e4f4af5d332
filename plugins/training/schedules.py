"""Learning-rate schedules: poly, step, cosine and constant.

Each maps an iteration (0-based, of ``total_iterations``) to a factor of the base
learning rate.  segkit steps them once per iteration, restores the position on
resume and multiplies in the optional linear warm-up (``train.warmup_iterations``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from segkit import ConfigError, Param, hookimpl

Schedule = Callable[[int], float]


def poly(total_iterations: int, power: float = 0.9) -> Schedule:
    """DeepLab's poly schedule: (1 - it / total) ** power."""
    if power < 0:
        raise ConfigError(f"schedule 'poly': power must be >= 0, got {power}")
    return lambda it: max(0.0, 1 - it / total_iterations) ** power


def step(
    total_iterations: int,
    every: int | None = None,
    milestones: list[int] | None = None,
    gamma: float = 0.1,
) -> Schedule:
    """Multiply by ``gamma`` every ``every`` iterations, or at each of ``milestones``."""
    if (every is None) == (milestones is None):
        raise ConfigError(
            "schedule 'step': give either every = N (iterations) or milestones = [...], not "
            f"{'both' if every is not None else 'neither'}"
        )
    if not 0 < gamma <= 1:
        raise ConfigError(f"schedule 'step': gamma must be in (0, 1], got {gamma}")
    steps = [every] if every is not None else list(milestones or [])
    for at in steps:
        if at < 1:
            raise ConfigError(f"schedule 'step': steps must be at iteration 1 or later, got {at}")
        if at >= total_iterations:
            raise ConfigError(
                f"schedule 'step': a step at iteration {at} is outside the run's "
                f"{total_iterations} iterations; give steps between 1 and "
                f"{total_iterations - 1}"
            )
    if every is not None:
        return lambda it: gamma ** (it // every)
    ordered = sorted(steps)
    return lambda it: gamma ** sum(it >= at for at in ordered)


def cosine(total_iterations: int, min_factor: float = 0.0) -> Schedule:
    """Cosine annealing from 1 to ``min_factor`` over the run (Loshchilov & Hutter 2017)."""
    if not 0 <= min_factor <= 1:
        raise ConfigError(f"schedule 'cosine': min_factor must be in [0, 1], got {min_factor}")
    return lambda it: (
        min_factor
        + (1 - min_factor)
        * 0.5
        * (1 + math.cos(math.pi * min(it, total_iterations) / total_iterations))
    )


def constant(total_iterations: int) -> Schedule:
    """The fixed learning rate of the FCN paper."""
    return lambda it: 1.0


@hookimpl
def register_schedules(register):
    register(
        "poly",
        poly,
        params=[Param("power", float, help="lr * (1 - it/total) ** power; 0: constant")],
        help="DeepLab's poly decay to zero",
    )
    register(
        "step",
        step,
        params=[
            Param("every", int | None, help="multiply by gamma every N iterations"),
            Param("milestones", list[int] | None, help="or at these iterations"),
            Param("gamma", float, help="the factor at each step"),
        ],
        help="step decay (DeepLab v1: x0.1 every 2,000 iterations)",
    )
    register(
        "cosine",
        cosine,
        params=[Param("min_factor", float, help="final lr as a fraction of the base")],
        help="cosine annealing",
    )
    register("constant", constant, help="a fixed learning rate (FCN)")
