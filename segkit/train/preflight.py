"""What a run would reject, checked before it starts: ``segkit config`` and ``segkit run``
share this path, so a config the one accepts the other does not refuse halfway.

Plugin parts check their own parameters when they are built (an optimizer its
momentum, an augmentation its scale range), so the cheap parts are built here once on
stand-ins: the recipe on one weight, the augmentations on the crop, the
post-processors as they are.  Nothing here reads a dataset or writes a file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segkit.core.config import Config
from segkit.core.errors import ConfigError
from segkit.core.registry import Registry
from segkit.data.transforms import build_train_transform
from segkit.infer.postprocess import PostprocessChain
from segkit.train.recipe import LossTask, build_loss, build_optimizer, build_schedule

#: The run length the schedule is tried with when only the dataset will tell it: long
#: enough that no iteration a schedule names is outside it.
_UNKNOWN_LENGTH = 2**31


def check_config(config: Config, registry: Registry) -> None:
    """Raise the :class:`ConfigError` a run of ``config`` would raise before its first step."""
    steps = config.run.steps
    if "train" in steps:
        with _located("data.augment"):
            build_train_transform(config.data, registry)
        _check_recipe(config, registry)
    with _located("postprocessors"):
        PostprocessChain.from_parts(config.postprocessors, registry)
    if "predict" in steps:
        _check_images_exist(config.predict.images)


@contextlib.contextmanager
def _located(key: str) -> Iterator[None]:
    """Name the config key a plugin's own message leaves out."""
    try:
        yield
    except ConfigError as exc:
        if str(exc).startswith(key.split("[")[0]):
            raise
        raise ConfigError(f"{key}: {exc}") from None


class _OneWeight(nn.Module):
    """A stand-in model: the optimizer and schedule check their settings on one weight."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 1))

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"backbone": [self.weight], "head": []}


def _check_recipe(config: Config, registry: Registry) -> None:
    train = config.train
    classes = config.model.num_classes
    # Per-class weights can only be counted once the dataset gives the classes.
    terms = [t for t in train.loss if classes is not None or "class_weights" not in t.params]
    uniform = np.full(classes or 2, 1 / (classes or 2))
    if terms or not train.loss:  # an empty list is its own error
        with _located("train.loss"):
            build_loss(terms, LossTask(classes or 2, frequencies=lambda: uniform), registry)
    with _located("train.optimizer"):
        optimizer = build_optimizer(_OneWeight(), train, registry)
    known = train.iterations is not None
    total = train.iterations if known else _UNKNOWN_LENGTH
    warmup = train.warmup_iterations if known else 0  # else checked against the real length
    try:
        with _located("train.schedule"):
            build_schedule(optimizer, train.schedule, total, warmup, registry)
    except ConfigError as exc:
        if known or str(_UNKNOWN_LENGTH) not in str(exc):
            raise
        # a check against the run's length, which the dataset tells: the run makes it


def _check_images_exist(images: list[str]) -> None:
    missing = [path for path in images if not Path(path).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ConfigError(
            f"predict.images: {missing[0]}{more} does not exist; fix the path or remove it "
            f"from the list"
        )
