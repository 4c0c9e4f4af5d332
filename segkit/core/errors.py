"""Errors a user can fix.

Everything raised as a :class:`SegkitError` is printed by the command line as one
line (no traceback unless ``--debug``) and ends the process with a non-zero code.
The message names what is wrong and how to fix it.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable


class SegkitError(Exception):
    """A problem with the user's input: a config, a path, a name, a file."""


class ConfigError(SegkitError):
    """The config (TOML file or ``--set`` override) is not valid."""


class PluginError(SegkitError):
    """A plugin name is unknown, registered twice, or a plugin failed to load."""


class IncompatiblePartsError(SegkitError):
    """Two model parts cannot be combined (e.g. FCN-8s on an output-stride-8 backbone)."""


class DataError(SegkitError):
    """A dataset, image or mask is missing, malformed or inconsistent."""


class CheckpointError(SegkitError):
    """A checkpoint is missing, not a segkit checkpoint, or does not fit the config."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def first_line(text: object, limit: int = 200) -> str:
    """The first line of ``text`` (an exception's message, say), at most ``limit``
    characters, shortened at a word boundary with an ellipsis rather than mid-word."""
    lines = str(text).strip().splitlines()
    line = lines[0].strip() if lines else ""
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"


def unprintable(text: str) -> str | None:
    """The first control character in ``text`` (a line break, an escape code) as Python
    writes it, or ``None``: names that reach the console and files must be one plain line."""
    for character in text:
        if unicodedata.category(character) in ("Cc", "Cf", "Zl", "Zp"):
            return repr(character)
    return None
