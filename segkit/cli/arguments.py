"""Arguments several commands share, and the checks of their values.

A numeric flag shares the range of the config key it stands for, so ``--tile -3``
and ``eval.tile = -3`` are refused alike; the message names the flag the user typed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from segkit.core.errors import SegkitError
from segkit.core.outputs import is_read_only

#: The config key whose range each numeric flag shares.
FLAG_RANGES = {
    "tile": "eval.tile",
    "overlap": "eval.tile_overlap",
    "max_images": "eval.max_images",
    "batch_size": "eval.batch_size",
    "num_classes": "model.num_classes",
}


def check_flags(args: argparse.Namespace, **flags: str) -> None:
    """Check the given flags (attribute name -> flag) against their config key's range."""
    from segkit.core.ranges import RANGES

    for name, flag in flags.items():
        value = getattr(args, name, None)
        if value is not None:
            RANGES[FLAG_RANGES[name]].check(value, flag)


def add_config_args(parser: argparse.ArgumentParser, what: str = "TOML config file") -> None:
    parser.add_argument("config", type=Path, help=what)
    add_set_arg(parser, "override a config value (TOML syntax), e.g. --set train.epochs=5")


def add_set_arg(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def add_checkpoint_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a run's best.pt or last.pt")


def add_postprocess_arg(
    parser: argparse.ArgumentParser, verb: str, default: bool | None = True
) -> None:
    when = "default: yes" if default else "default: as the config's eval.postprocess"
    parser.add_argument(
        "--postprocess",
        "--crf",
        dest="postprocess",
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"{verb} the checkpoint's post-processors, e.g. the dense CRF ({when}); "
        "--crf/--no-crf is the same switch",
    )


def add_inference_args(parser: argparse.ArgumentParser, section: str) -> None:
    """--tta, --tile and --overlap; their defaults come from the config's ``section``."""
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="test-time augmentation: average the probabilities over scales and horizontal "
        f"flips (scales from {section}.tta_scales, default 0.5-1.5; default: {section}.tta)",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="SIZE",
        help="predict large images in overlapping SIZE×SIZE windows, blended (0: whole "
        f"image; default: {section}.tile)",
    )
    parser.add_argument(
        "--overlap",
        type=float,
        default=None,
        metavar="FRACTION",
        help=f"overlap of neighbouring tiles in [0, 0.9] (default: {section}.tile_overlap, 0.25)",
    )


def inference_settings(args: argparse.Namespace, options: Any, base: Any) -> Any:
    """``base`` settings with --tta/--tile/--overlap applied (``options``: the config section)."""
    check_flags(args, tile="--tile", overlap="--overlap")
    return base.override(options, tta=args.tta, tile=args.tile, overlap=args.overlap)


def add_overwrite_arg(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} (never an input of the command)",
    )


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="auto (a GPU when present), cpu, cuda or cuda:N"
    )


def check_writable(path: Path, option: str, example: str) -> None:
    """Fail before any work when ``path`` cannot be written (``example``: a file name
    of the kind the option takes, suggested when ``path`` is a folder)."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise SegkitError(
            f"{option}: {path} is a folder; give a file name such as {path / example}"
        )
    if not parent.is_dir():
        raise SegkitError(f"{option}: the folder {parent} does not exist; create it first")
    if is_read_only(parent):
        raise SegkitError(
            f"{option}: {path} lies on a read-only file system; choose a writable folder"
        )
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SegkitError(f"{option}: {path} is not writable; choose another place")
