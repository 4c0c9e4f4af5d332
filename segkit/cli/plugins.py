"""``segkit plugins``: what is installed, and which plugin provides each name."""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any

from segkit.cli import terminal
from segkit.core.manager import Plugins


def add_parser(sub: Any) -> None:
    p = sub.add_parser("plugins", help="list installed plugins and what they register")
    p.add_argument(
        "--markdown",
        action="store_true",
        help="print the plugin table as markdown (one row per registered name)",
    )
    p.add_argument(
        "--timm",
        nargs="?",
        const="",
        default=None,
        metavar="PATTERN",
        help="list the timm model names the 'timm' backbone takes (filtered by PATTERN)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from segkit.core.registry import KINDS, PLURAL

    if args.timm is not None:
        return list_timm_models(args.timm)
    plugins = terminal.plugins_for(args)
    if args.markdown:
        print(plugins_markdown(plugins))
        return 0
    console = terminal.console
    table = Table(title="installed plugins")
    for column in ("plugin", "distribution", "version", "status"):
        table.add_column(column, overflow="fold")
    for info in plugins.infos:
        style = "" if info.status == "loaded" else "yellow"
        table.add_row(info.name, info.distribution, info.version, escape(info.status), style=style)
    console.print(table)
    for kind in KINDS:
        names = plugins.registry.components[kind]
        table = Table(title=PLURAL[kind], show_lines=True)
        for column in ("name", "plugin", "description", "parameters"):
            table.add_column(column, overflow="fold")  # wrap long names, never cut them
        for name in sorted(names):
            comp = names[name]
            params = "\n".join(
                escape(
                    f"{p.name}: {p.type_name()} "
                    f"{'(required)' if p.required else f'= {p.default!r}'} — {p.help}"
                )
                for p in comp.params
            )
            table.add_row(name, comp.plugin, escape(comp.help), params or "—")
        console.print(table)
    return 0


def list_timm_models(pattern: str) -> int:
    """``segkit plugins --timm [PATTERN]``: the model names the ``timm`` backbone takes.

    PATTERN filters as ``timm.list_models`` does (``convnext*``); a bare word matches
    anywhere in the name.  The list is paged on a terminal.
    """
    import contextlib

    import timm
    from rich.columns import Columns

    from segkit.core.errors import ConfigError, did_you_mean

    glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
    names = timm.list_models(glob)
    if not names:
        close = did_you_mean(pattern, timm.list_models())
        raise ConfigError(f"no timm model matches '{pattern}'{close}; try a shorter pattern")
    console = terminal.console
    pager = console.pager() if console.is_terminal else contextlib.nullcontext()
    with pager:
        console.print(Columns(names, column_first=True, padding=(0, 2)))
        console.print(
            f"{len(names)} timm models; use one as "
            f'backbone = {{ name = "timm", model = "{names[0]}" }}'
        )
    return 0


def plugins_markdown(plugins: Plugins) -> str:
    """The plugin table: one row per registered name, then the run-event plugins."""
    from segkit.core import hookspecs
    from segkit.core.registry import KINDS

    root = Path(__file__).resolve().parents[2]

    def source(file: str | None) -> str:
        if file is None:
            return "?"
        path = Path(file).resolve()
        bases = [root, *(Path(p).resolve() for p in sys.path if p)]
        for base in sorted(bases, key=lambda b: len(b.parts), reverse=True):
            if path.is_relative_to(base):
                return path.relative_to(base).as_posix()
        return path.name

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    rows = ["| hook point | name | plugin file | what it is |", "|---|---|---|---|"]
    for kind in KINDS:
        for name, comp in sorted(plugins.registry.components[kind].items()):
            file = source(comp.source_file())  # a lazy factory's module is found, not run
            rows.append(f"| {kind} | `{name}` | `{file}` | {cell(comp.help)} |")
    events = [n for n in dir(hookspecs) if n.startswith("on_")]
    for name, plugin in sorted(plugins.manager.list_name_plugin()):
        if any(hasattr(plugin, event) for event in events):
            doc = (inspect.getdoc(plugin) or "").split("\n\n")[0].replace("\n", " ")
            file = source(inspect.getsourcefile(plugin))  # type: ignore[arg-type]
            rows.append(f"| run events | `{name}` | `{file}` | {cell(doc)} |")
    return "\n".join(rows)
