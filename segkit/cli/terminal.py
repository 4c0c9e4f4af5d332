"""What every command shares: the two consoles, the installed plugins, one-line errors.

Commands print through ``terminal.console`` (results) and ``terminal.err_console``
(warnings, errors), looked up at the time of printing, so that a test can point
them at a console of its own width.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.text import Text

from segkit.core.errors import SegkitError
from segkit.core.manager import Plugins, get_plugins

console = Console()
err_console = Console(stderr=True)


def say(text: str, to: Console | None = None) -> None:
    """Print ``text`` as it is: no markup, no highlighting, one logical line (on ``to``,
    by default the results console)."""
    (to or console).print(text, markup=False, highlight=False, soft_wrap=True)


def console_beside(*outputs: Path | None) -> Console:
    """Where a command's messages go: the error console when one of its ``outputs`` is the
    standard output itself (``--out /dev/stdout``), so that they never mix with the data."""
    from segkit.core.outputs import standard_stream

    if any(path is not None and standard_stream(path) == 1 for path in outputs):
        return err_console
    return console


def plugins_for(args: argparse.Namespace) -> Plugins:
    """The installed plugins (less the disabled ones); failures are one warning line each."""
    plugins = get_plugins()
    for failure in plugins.failures():
        warning = Text(f"warning: plugin '{failure.name}' {failure.status}", "yellow")
        err_console.print(warning, soft_wrap=True)  # one line, whatever the width
    return plugins


def one_line(exc: SegkitError) -> str:
    """The message of a segkit error, also when a DataLoader worker process raised it.

    PyTorch re-raises a worker's exception with the worker's whole traceback in the
    message; the user's one line is its last line, after the exception's name.
    """
    message = str(exc).strip()
    if "DataLoader worker" in message and "Traceback" in message:
        last = message.splitlines()[-1]
        message = last.split(": ", 1)[1] if f"{type(exc).__name__}: " in last else last
    return message


def print_error(message: str, label: str = "error") -> None:
    """``label: message`` on the error console, on one logical line."""
    err_console.print(Text.assemble((f"{label}: ", "bold red"), message), soft_wrap=True)
