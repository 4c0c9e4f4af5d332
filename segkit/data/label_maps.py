"""How the values stored in mask files become class labels.

Most masks store the label itself.  Some do not: a binary mask saved as 0/255, a
benchmark's own ids (Cityscapes' 34 label ids for 19 training classes, ADE20K's 0 =
"other"), a tool that wrote 1/2/3 for the classes 0/1/2.  A :class:`LabelMap` is the
table from stored value to label; a value it does not list is refused by name, never
guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.core.errors import DataError

#: Stored values a map covers: 8- and 16-bit masks.
VALUE_RANGE = 65536
#: The table entry of a value the map does not list.
UNLISTED = -1
IGNORE = 255


@dataclass(frozen=True, eq=False)
class LabelMap:
    """``table[v]`` is the label of the stored value ``v`` (255 = ignore, -1 = refused).

    ``name`` names the map in messages (``"binary = true"``, ``"cityscapes label ids"``)
    and ``hint`` says how to fix a mask holding a value the map refuses.
    """

    table: np.ndarray
    name: str
    hint: str

    @classmethod
    def from_pairs(cls, pairs: Mapping[int, int], name: str, hint: str) -> LabelMap:
        """Only the listed values are allowed: ``{stored value: label}``."""
        table = np.full(VALUE_RANGE, UNLISTED, dtype=np.int32)
        for value, label in pairs.items():
            table[value] = label
        return cls(table, name, hint)

    @classmethod
    def binary(cls) -> LabelMap:
        """0 is background (label 0); every other value is foreground (label 1).

        A 0/255 mask, a 0/1 mask and a 0/255 mask with anti-aliased edges all read the
        same: whatever was painted is the object.
        """
        table = np.ones(VALUE_RANGE, dtype=np.int32)
        table[0] = 0
        return cls(table, "binary = true", "")

    def apply(self, values: np.ndarray, path: str | Path) -> np.ndarray:
        """The labels of ``values`` (an H×W array of stored values) as H×W uint8."""
        values = np.asarray(values)
        if values.size and (values.min() < 0 or values.max() >= VALUE_RANGE):
            raise DataError(
                f"mask {path} holds values outside 0..{VALUE_RANGE - 1}; save masks as 8- or "
                f"16-bit PNGs"
            )
        table = self.table[:256] if values.dtype == np.uint8 else self.table
        labels = np.take(table, values)
        if labels.min(initial=0) < 0:
            refused = np.unique(values[labels < 0])
            shown = ", ".join(str(int(v)) for v in refused[:6])
            more = f" and {len(refused) - 6} more" if len(refused) > 6 else ""
            raise DataError(
                f"mask {path} holds the value{'s' if len(refused) > 1 else ''} {shown}{more}, "
                f"which {self.name} does not map to a class; {self.hint}"
            )
        return labels.astype(np.uint8)


def mask_values_map(mask_values: Mapping[str | int, int]) -> LabelMap:
    """The map of a dataset's ``mask_values`` table (``{ "255" = 1, "0" = 0 }``)."""
    pairs = {}
    for key, label in mask_values.items():
        value = _stored_value(key)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= IGNORE:
            raise DataError(
                f"mask_values: value {key} maps to {label!r}; map each stored value to a "
                f"class label 0..254, or to 255 to ignore its pixels"
            )
        pairs[value] = label
    if not pairs:
        raise DataError("mask_values is empty; list each stored value, e.g. { 0 = 0, 255 = 1 }")
    return LabelMap.from_pairs(
        pairs,
        "data.dataset.mask_values",
        "add it to mask_values (with = 255 to ignore its pixels)",
    )


def _stored_value(key: str | int) -> int:
    try:
        value = int(key)
    except (TypeError, ValueError):
        value = -1
    if not 0 <= value < VALUE_RANGE:
        raise DataError(
            f"mask_values: the key {key!r} is no stored mask value; keys are the values in "
            f"the mask files, 0..{VALUE_RANGE - 1}, e.g. mask_values = {{ 0 = 0, 255 = 1 }}"
        )
    return value
