"""The ``segkit`` command line: one module per command, the shared helpers beside them.

Each command module has ``add_parser(sub)``, which declares its arguments, and
``run(args) -> int``; they import PyTorch and the heavy rooms inside ``run``, so that
``segkit --help`` and building the parser stay instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from segkit.cli import (
    config,
    data,
    eval,
    export,
    plugins,
    predict,
    refine,
    run,
    serve,
    summary,
    terminal,
)
from segkit.core.errors import SegkitError, first_line
from segkit.core.interrupts import stop_on_signals
from segkit.core.manager import DISABLE_ENV, check_disable_names
from segkit.core.outputs import storage_error

#: The commands in the order ``segkit --help`` lists them.
COMMANDS = (run, data, predict, eval, export, refine, serve, plugins, config, summary)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segkit", description="Semantic segmentation in which every model part is a plugin."
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="show the version"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument(
        "--disable-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="do not load this plugin (also: SEGKIT_DISABLE_PLUGINS=a,b)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed (host or GPU memory), whoever raised it."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
    )


def _version() -> str:
    from segkit import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "refine":  # only refine takes its post-processor's options
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.options = extra
    # --disable-plugin joins $SEGKIT_DISABLE_PLUGINS for this call, so that every part of
    # segkit loading plugins (config checks, runs, predictions, worker processes) skips them.
    previous = os.environ.get(DISABLE_ENV)
    if args.disable_plugin:
        os.environ[DISABLE_ENV] = ",".join(filter(None, [previous, *args.disable_plugin]))
    try:
        check_disable_names(args.disable_plugin)
        with stop_on_signals():
            return args.func(args)
    except SegkitError as exc:
        if args.debug:
            raise
        terminal.print_error(terminal.one_line(exc))
        return 2
    except KeyboardInterrupt as exc:  # SIGINT (130) or SIGTERM (143), see core.interrupts
        terminal.err_console.print(str(exc) or "interrupted", markup=False, soft_wrap=True)
        return getattr(exc, "exit_code", 130)
    except Exception as exc:
        if args.debug:
            raise
        if (storage := storage_error(exc)) is not None:  # a full disk is no internal error
            terminal.print_error(str(storage))
            return 2
        if is_out_of_memory(exc):
            terminal.print_error(
                f"out of memory ({first_line(exc, 160)}); give the command less at once: "
                f"smaller images or --input, a smaller batch, --tile, or a smaller model"
            )
            return 2
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        terminal.print_error(
            f"{type(exc).__name__}: {message} (run with --debug for the traceback)",
            "internal error",
        )
        return 1
    finally:
        if previous is None:
            os.environ.pop(DISABLE_ENV, None)
        else:
            os.environ[DISABLE_ENV] = previous


if __name__ == "__main__":
    sys.exit(main())
