"""What a run would reject, checked before it starts: ``segkit config`` and ``segkit run``
share this path, so a config the one accepts the other does not refuse halfway.

Plugin parts check their own parameters (an optimizer its momentum, an augmentation
its scale range) in the ``check`` they register, which runs here without building the
part, so that no PyTorch is imported; the schedule, a plain function of the
iteration, is built, so that its steps are checked against the run's length.  What a
part can only check once built (a loss's class weights against the dataset's classes,
a CUDA device asked for) the run checks before its first step.  :func:`check_config`
reads no dataset; :func:`check_run_data` reads an even spread of the built splits
(see :mod:`segkit.data.checks`).  Nothing here writes a file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from segkit.core.config import Config
from segkit.core.errors import ConfigError, DataError
from segkit.core.registry import Registry

if TYPE_CHECKING:  # the data room imports PyTorch: `segkit config` checks without it
    from segkit.data.dataset import Splits

#: The run length the schedule is tried with when only the dataset will tell it: long
#: enough that no iteration a schedule names is outside it.
_UNKNOWN_LENGTH = 2**31


def check_config(config: Config, registry: Registry) -> None:
    """Raise the :class:`ConfigError` a run of ``config`` would raise before its first step."""
    steps = config.run.steps
    with _located("data.dataset"):
        registry.get("dataset", config.data.dataset.name).validate(config.data.dataset.params)
    if "train" in steps:
        with _located("data.augment"):
            for step in config.data.augment:
                registry.get("augmentation", step.name).validate(step.params)
        _check_recipe(config, registry)
    with _located("postprocessors"):
        for part in config.postprocessors:
            registry.get("postprocessor", part.name).validate(part.params)
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


def _check_recipe(config: Config, registry: Registry) -> None:
    train = config.train
    with _located("train.loss"):
        if not train.loss:
            raise ConfigError("train.loss is empty; name at least one loss, e.g. cross_entropy")
        for term in train.loss:
            registry.get("loss", term.name).validate(term.params)
    with _located("train.optimizer"):
        registry.get("optimizer", train.optimizer.name).validate(train.optimizer.params)
    known = train.iterations is not None
    total = train.iterations if known else _UNKNOWN_LENGTH
    try:
        with _located("train.schedule"):
            registry.get("schedule", train.schedule.name).build(total, params=train.schedule.params)
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


def check_run_data(
    config: Config, splits: Splits, registry: Registry, console: Console | None
) -> None:
    """Stop on a problem of the data that would make the run meaningless (masks of one
    class, a binary mask's foreground read as "ignore"); print the warnings."""
    from segkit.data.checks import check_run_data as check_splits_data

    datasets = {"val": splits.val}
    if splits.train is not None:
        datasets = {"train": splits.train, "val": splits.val}
    steps = config.run.steps
    fixes = {p.name for p in registry.get("dataset", config.data.dataset.name).params}
    report = check_splits_data(datasets, fixes, evaluates="evaluate" in steps or "train" in steps)
    if report.problems:
        more = len(report.problems) - 1
        also = f" ({more} more: segkit data check CONFIG lists them all)" if more else ""
        raise DataError(report.problems[0] + also)
    if console is not None:
        for warning in report.warnings:
            console.print(Text.assemble(("data warning: ", "yellow"), warning), soft_wrap=True)
