"""``segkit config CONFIG``: the resolved config (bases merged), as TOML."""

from __future__ import annotations

import argparse
from typing import Any

from segkit.cli import terminal
from segkit.cli.arguments import add_config_args
from segkit.cli.run import load_runnable


def add_parser(sub: Any) -> None:
    p = sub.add_parser("config", help="print the resolved config")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segkit.core.config import dump_toml

    config = load_runnable(args, terminal.plugins_for(args))
    # plain print: the console would wrap long lines at the terminal's width, and a
    # TOML value broken across lines no longer parses (`segkit config x > y.toml`)
    print(dump_toml(config.to_dict()), end="")
    return 0
