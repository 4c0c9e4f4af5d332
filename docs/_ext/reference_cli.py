"""The command reference: every command's ``--help``, walked from ``segkit.cli.build_parser()``."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

from markdown_text import anchor, cell

#: Help text is wrapped at this width, whatever the terminal building the docs.
HELP_WIDTH = 90


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """The sub-command parsers of ``parser`` by name, each with its one-line help."""
    found: dict[str, tuple[argparse.ArgumentParser, str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if name in helps:  # aliases have no entry of their own
                    found[name] = (sub, helps[name])
    return found


def walk_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = (), summary: str = ""
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """Every parser below ``parser`` (itself first), with its command path and summary."""
    yield path, parser, summary
    for name, (sub, help_text) in subcommands(parser).items():
        yield from walk_commands(sub, (*path, name), help_text)


@contextlib.contextmanager
def help_width(columns: int = HELP_WIDTH) -> Iterator[None]:
    """argparse wraps at the terminal's width, which it reads from ``$COLUMNS``."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


def command_help(parser: argparse.ArgumentParser) -> str:
    with help_width():
        return parser.format_help().rstrip()


def cli_markdown() -> str:
    """Every command's ``--help``, from the parser ``segkit`` itself builds."""
    from segkit.cli import build_parser

    commands = list(walk_commands(build_parser()))
    out = ["| command | what it does |", "|---|---|"]
    for path, _, summary in commands[1:]:
        out.append(f"| [`segkit {' '.join(path)}`](#{anchor('cli', *path)}) | {cell(summary)} |")
    out.append("")
    for path, parser, _ in commands:
        out += [f"({anchor('cli', *path) if path else 'cli-segkit'})="]
        out += [f"## `{' '.join(('segkit', *path))}`", ""]
        out += ["```text", command_help(parser), "```", ""]
    return "\n".join(out)
