"""The allowed ranges of segkit's own config values, checked before anything runs.

Types are checked while a config is parsed; this module checks what a type cannot say:
that a batch size is positive, a learning rate finite, an overlap a share of a tile.
The same :class:`Range` checks a command-line flag or a Python API argument that
stands for a config value, so the three speak alike and name what the user wrote
(``--tile``, ``eval.tile`` or ``num_classes``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from segkit.core.errors import ConfigError

#: The largest square training crop: a bigger one asks for tens of GiB per batch.
MAX_CROP_SIZE = 8192

#: The most classes a model may have: label maps are uint8 and 255 means "ignore".
MAX_CLASSES = 255

#: The largest test-time-augmentation scale: beyond it one image fills the memory.
MAX_TTA_SCALE = 4.0

#: The largest tile overlap: beyond it windows would nearly repeat each other.
MAX_TILE_OVERLAP = 0.9

#: The largest integer a config value may hold: counts and sizes beyond it fit no run
#: (PyTorch's and NumPy's 32-bit indices among them), so they are typing mistakes.
MAX_INTEGER = 2**31 - 1


@dataclass(frozen=True)
class Range:
    """A number between ``low`` and ``high`` (None: unbounded); an integer if ``integer``.

    ``low_open`` excludes ``low`` itself.  ``unset`` says what leaving the value out
    means, for values that may be left out.
    """

    low: float | None = None
    high: float | None = None
    integer: bool = True
    low_open: bool = False
    unset: str = ""

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{kind} <= {self.high:g}"
        return kind

    def check(self, value: Any, name: str, fix: str = "") -> Any:
        """Return ``value`` when it lies in the range, else raise a :class:`ConfigError`
        naming ``name`` (a config key, a flag or an argument) and the allowed range."""
        if not self.contains(value):
            unset = f" ({self.unset})" if self.unset else ""
            raise ConfigError(f"{name} must be {self.describe()}{unset}, got {value!r}{fix}")
        if self.integer and abs(value) > MAX_INTEGER:
            raise ConfigError(
                f"{name} is {value}, larger than any run can use (at most {MAX_INTEGER:,}){fix}"
            )
        return value


@dataclass(frozen=True)
class ListOf:
    """A list of numbers, each in ``each``; exactly ``length`` of them, else at least one."""

    each: Range
    length: int | None = None

    def describe(self) -> str:
        count = f"{self.length}" if self.length is not None else "one or more"
        return f"a list of {count} numbers, each {self.each.describe()}"

    def check(self, value: Any, name: str, fix: str = "") -> Any:
        if not self._contains(value):
            raise ConfigError(f"{name} must be {self.describe()}, got {value!r}{fix}")
        return value

    def _contains(self, value: Any) -> bool:
        if not isinstance(value, list | tuple):
            return False
        size_ok = len(value) == self.length if self.length is not None else len(value) > 0
        return size_ok and all(self.each.contains(v) for v in value)


def positive(unset: str = "") -> Range:
    """A count of at least one."""
    return Range(1, unset=unset)


def non_negative(meaning_of_zero: str = "") -> Range:
    """A count that may be zero (``meaning_of_zero`` says what zero does)."""
    return Range(0, unset=meaning_of_zero)


def positive_number() -> Range:
    return Range(0, integer=False, low_open=True)


def share(high: float) -> Range:
    return Range(0, high, integer=False)


def _inference_ranges(section: str) -> dict[str, Range | ListOf]:
    return {
        f"{section}.tta_scales": ListOf(Range(0, MAX_TTA_SCALE, integer=False, low_open=True)),
        f"{section}.tile": non_negative("0: the whole image in one pass"),
        f"{section}.tile_overlap": share(MAX_TILE_OVERLAP),
    }


#: Each config key with a range, as ``section.key``.
RANGES: dict[str, Range | ListOf] = {
    "model.num_classes": Range(2, MAX_CLASSES, unset="leave it out to take the dataset's"),
    "data.batch_size": positive(),
    "data.workers": non_negative("0: load in the main process"),
    "data.crop_size": Range(1, MAX_CROP_SIZE),
    "data.mean": ListOf(Range(integer=False), 3),
    "data.std": ListOf(positive_number(), 3),
    "train.epochs": non_negative(),
    "train.iterations": positive("leave it out to train by epochs"),
    "train.lr": positive_number(),
    "train.head_lr_mult": positive_number(),
    "train.warmup_iterations": non_negative("0: no warm-up"),
    "train.checkpoint_every": non_negative("0: at the end of each epoch only"),
    "train.threads": positive("leave it out for PyTorch's choice"),
    "eval.every": non_negative("0: not while training"),
    "eval.batch_size": positive(),
    "eval.max_images": positive("leave it out to evaluate every image"),
    **_inference_ranges("eval"),
    "predict.samples": positive(),
    **_inference_ranges("predict"),
}

_FIX = "; fix it in the config"


def check_ranges(config: Any) -> None:
    """Check every ranged value of a parsed config, then the values that depend on each
    other; raises a :class:`ConfigError` naming the key and the allowed range."""
    for key, allowed in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value is not None:
            allowed.check(value, key, _FIX)
    for index, term in enumerate(config.train.loss):
        Range(0, integer=False).check(term.weight, f"train.loss[{index}].weight", _FIX)
    _check_steps(config)


def _check_steps(config: Any) -> None:
    steps, train = config.run.steps, config.train
    if not steps:
        raise ConfigError("run.steps is empty; name what to do: train, evaluate and/or predict")
    if "train" in steps and train.iterations is None and train.epochs == 0:
        raise ConfigError(
            "train.epochs is 0 but run.steps includes 'train', so there is nothing to train; "
            "set train.epochs (or train.iterations) to at least 1, or remove 'train' from "
            "run.steps to evaluate or predict with a trained run's weights"
        )
    if train.iterations is not None and train.warmup_iterations >= train.iterations:
        raise ConfigError(
            f"train.warmup_iterations must be below train.iterations ({train.iterations}), "
            f"got {train.warmup_iterations}; shorten the warm-up"
        )
