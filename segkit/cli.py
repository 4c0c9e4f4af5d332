"""The ``segkit`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from segkit.core.config import Config, load_config
from segkit.core.errors import SegkitError
from segkit.core.interrupts import stop_on_signals
from segkit.core.manager import DISABLE_ENV, Plugins, check_disable_names, get_plugins
from segkit.core.outputs import storage_error
from segkit.inference_parsers import add_inference_commands

console = Console()
err_console = Console(stderr=True)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="TOML config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (TOML syntax), e.g. --set train.epochs=5",
    )


def _load_runnable(args: argparse.Namespace, plugins: Plugins) -> Config:
    """The config as ``segkit run`` checks it: ``segkit config`` refuses the same configs."""
    from segkit.train.preflight import check_config

    config = load_config(args.config, args.overrides, registry=plugins.registry)
    check_config(config, plugins.registry)
    return config


def plugins_for(args: argparse.Namespace) -> Plugins:
    """The installed plugins (less the disabled ones); failures are one warning line each."""
    plugins = get_plugins()
    for failure in plugins.failures():
        warning = Text(f"warning: plugin '{failure.name}' {failure.status}", "yellow")
        err_console.print(warning, soft_wrap=True)  # one line, whatever the width
    return plugins


def cmd_run(args: argparse.Namespace) -> int:
    from segkit.train import run_config

    plugins = plugins_for(args)
    # --resume asks to continue: it wins over a config's train.resume = false
    if args.resume:
        args.overrides = [*args.overrides, "train.resume=true"]
    config = _load_runnable(args, plugins)
    if args.resume and args.run_dir is None:
        args.run_dir = _latest_run_dir(config.name)
    run_config(config, args.run_dir, plugins, console, args.overwrite, args.resume)
    return 0


def _latest_run_dir(name: str) -> Path:
    """The run of config ``name`` under ``runs/`` whose ``last.pt`` was written last."""
    runs = [p for p in (Path("runs") / name).glob("*") if (p / "last.pt").is_file()]
    if not runs:
        raise SegkitError(
            f"--resume: no run of '{name}' with a last.pt under runs/{name}/; give the "
            f"run's folder with --run-dir, or drop --resume to start a new run"
        )
    return max(runs, key=lambda p: (p / "last.pt").stat().st_mtime)


def cmd_plugins(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from segkit.core.registry import KINDS, PLURAL

    if args.timm is not None:
        return list_timm_models(args.timm)
    plugins = plugins_for(args)
    if args.markdown:
        print(_plugins_markdown(plugins))
        return 0
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
    pager = console.pager() if console.is_terminal else contextlib.nullcontext()
    with pager:
        console.print(Columns(names, column_first=True, padding=(0, 2)))
        console.print(
            f"{len(names)} timm models; use one as "
            f'backbone = {{ name = "timm", model = "{names[0]}" }}'
        )
    return 0


def _plugins_markdown(plugins: Plugins) -> str:
    """README's plugin table: one row per registered name, then the run-event plugins."""
    import inspect

    from segkit.core import hookspecs
    from segkit.core.registry import KINDS

    root = Path(__file__).resolve().parent.parent

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


def cmd_config(args: argparse.Namespace) -> int:
    from segkit.core.config import dump_toml

    config = _load_runnable(args, plugins_for(args))
    # plain print: the console would wrap long lines at the terminal's width, and a
    # TOML value broken across lines no longer parses (`segkit config x > y.toml`)
    print(dump_toml(config.to_dict()), end="")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from segkit.inference_commands import check_flags
    from segkit.model.checkpoint import (
        check_model_state,
        is_checkpoint_file,
        load_checkpoint,
        stored_config,
    )
    from segkit.model.summary import print_summary

    check_flags(args, num_classes="--num-classes")

    registry = plugins_for(args).registry
    if is_checkpoint_file(args.config):  # the model a checkpoint holds
        state = check_model_state(load_checkpoint(args.config), args.config)
        config = stored_config(state, args.config, registry, args.overrides)
        classes = args.num_classes or state["num_classes"]
    else:
        config = load_config(args.config, args.overrides, registry=registry)
        classes = args.num_classes
    print_summary(config, args.input, console, registry, classes)
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from segkit.infer import refine

    return refine.run(args, plugins_for(args).registry)


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

    p = sub.add_parser("run", help="train, evaluate and predict as the config says")
    _add_config_args(p)
    p.add_argument("--run-dir", type=Path, default=None, help="default: runs/<config>/<time>/")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a run: the one in --run-dir (which must hold a last.pt), else the "
        "latest of this config",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --run-dir: its files are removed and a new run starts",
    )
    p.set_defaults(func=cmd_run)

    add_inference_commands(sub)

    p = sub.add_parser("plugins", help="list installed plugins and what they register")
    p.add_argument(
        "--markdown", action="store_true", help="print README.md's plugin table (markdown)"
    )
    p.add_argument(
        "--timm",
        nargs="?",
        const="",
        default=None,
        metavar="PATTERN",
        help="list the timm model names the 'timm' backbone takes (filtered by PATTERN)",
    )
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("config", help="print the resolved config")
    _add_config_args(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("summary", help="per-module output shapes and parameter counts")
    _add_config_args(p)
    p.description = "CONFIG may also be a checkpoint (.pt): the model it holds is described."
    p.add_argument("--input", default="3x375x500", help="input size CxHxW (default 3x375x500)")
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        metavar="N",
        help="classes to describe (default: the config's model.num_classes, else 21)",
    )
    p.set_defaults(func=cmd_summary)

    from segkit.infer import refine

    p = sub.add_parser("refine", help="refine a rough label image with a dense CRF")
    refine.add_arguments(p)
    p.set_defaults(func=cmd_refine)
    return parser


def _version() -> str:
    from segkit import __version__

    return __version__


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
        err_console.print(Text.assemble(("error: ", "bold red"), one_line(exc)), soft_wrap=True)
        return 2
    except KeyboardInterrupt as exc:  # SIGINT (130) or SIGTERM (143), see core.interrupts
        err_console.print(Text(str(exc) or "interrupted"), soft_wrap=True)
        return getattr(exc, "exit_code", 130)
    except Exception as exc:
        if args.debug:
            raise
        if (storage := storage_error(exc)) is not None:  # a full disk is no internal error
            err_console.print(Text.assemble(("error: ", "bold red"), str(storage)), soft_wrap=True)
            return 2
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err_console.print(
            Text.assemble(
                ("internal error: ", "bold red"),
                f"{type(exc).__name__}: {message} (run with --debug for the traceback)",
            ),
            soft_wrap=True,
        )
        return 1
    finally:
        if previous is None:
            os.environ.pop(DISABLE_ENV, None)
        else:
            os.environ[DISABLE_ENV] = previous


if __name__ == "__main__":
    sys.exit(main())
