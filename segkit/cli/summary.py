"""``segkit summary CONFIG``: per-module output shapes and parameter counts."""

from __future__ import annotations

import argparse
from typing import Any

from segkit.cli import terminal
from segkit.cli.arguments import add_config_args, check_flags


def add_parser(sub: Any) -> None:
    p = sub.add_parser("summary", help="per-module output shapes and parameter counts")
    add_config_args(p, "TOML config file, or a checkpoint (.pt)")
    p.description = "CONFIG may also be a checkpoint (.pt): the model it holds is described."
    p.add_argument("--input", default="3x375x500", help="input size CxHxW (default 3x375x500)")
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        metavar="N",
        help="classes to describe (default: the config's model.num_classes, else 21)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segkit.core.config import load_config
    from segkit.model.checkpoint import (
        check_model_state,
        is_checkpoint_file,
        load_checkpoint,
        stored_config,
    )
    from segkit.model.summary import print_summary

    check_flags(args, num_classes="--num-classes")
    registry = terminal.plugins_for(args).registry
    if is_checkpoint_file(args.config):  # the model a checkpoint holds
        state = check_model_state(load_checkpoint(args.config), args.config)
        config = stored_config(state, args.config, registry, args.overrides)
        classes = args.num_classes or state["num_classes"]
    else:
        config = load_config(args.config, args.overrides, registry=registry)
        classes = args.num_classes
    print_summary(config, args.input, terminal.console, registry, classes)
    return 0
