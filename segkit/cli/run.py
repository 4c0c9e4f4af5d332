"""``segkit run CONFIG``: train, evaluate and predict as the config says."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from segkit.cli import terminal
from segkit.cli.arguments import add_config_args
from segkit.core.config import Config, load_config
from segkit.core.errors import SegkitError
from segkit.core.manager import Plugins


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="train, evaluate and predict as the config says")
    add_config_args(p)
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segkit.train import run_config

    plugins = terminal.plugins_for(args)
    # --resume asks to continue: it wins over a config's train.resume = false
    if args.resume:
        args.overrides = [*args.overrides, "train.resume=true"]
    config = load_runnable(args, plugins)
    if args.resume and args.run_dir is None:
        args.run_dir = latest_run_dir(config.name)
    if args.overwrite and args.run_dir is not None:
        from segkit.train.run_files import check_inputs_kept

        check_inputs_kept(args.run_dir, [args.config])
    run_config(config, args.run_dir, plugins, terminal.console, args.overwrite, args.resume)
    return 0


def load_runnable(args: argparse.Namespace, plugins: Plugins) -> Config:
    """The config as ``segkit run`` checks it: ``segkit config`` refuses the same configs."""
    from segkit.train.preflight import check_config

    config = load_config(args.config, args.overrides, registry=plugins.registry)
    check_config(config, plugins.registry)
    return config


def latest_run_dir(name: str) -> Path:
    """The run of config ``name`` under ``runs/`` whose ``last.pt`` was written last."""
    runs = [p for p in (Path("runs") / name).glob("*") if (p / "last.pt").is_file()]
    if not runs:
        raise SegkitError(
            f"--resume: no run of '{name}' with a last.pt under runs/{name}/; give the "
            f"run's folder with --run-dir, or drop --resume to start a new run"
        )
    return max(runs, key=lambda p: (p / "last.pt").stat().st_mtime)
