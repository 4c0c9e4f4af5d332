"""``segkit data check CONFIG_OR_DIR``: read a dataset as a run would and report what it
holds and what would make training on it meaningless, before any training."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from segkit.cli import terminal
from segkit.cli.arguments import add_overwrite_arg, add_set_arg, check_writable
from segkit.core.errors import ConfigError

DEFAULT_PICTURE = Path("data_check.png")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("data", help="check a dataset before training on it")
    commands = p.add_subparsers(dest="data_command", required=True, metavar="check")
    check = commands.add_parser(
        "check",
        help="image and mask counts, class shares and the problems that would spoil a run",
        description="Reads the dataset of a config (its training and validation splits), or "
        "a folder read by --dataset, as a run would; prints counts, sizes, modes, each "
        "class's pixel share and the problems found, and writes a picture.  Exit 0 when "
        "the dataset is usable, 2 with the list of problems when it is not.",
    )
    check.add_argument(
        "source",
        type=Path,
        metavar="CONFIG_OR_DIR",
        help="a TOML config, or a dataset's folder (its root)",
    )
    check.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help="with a folder: the dataset that reads it (default: folder; see segkit plugins)",
    )
    add_set_arg(
        check,
        "a config value, or with a folder a dataset parameter, e.g. --set binary=true",
    )
    check.add_argument(
        "--split",
        dest="splits",
        action="append",
        default=None,
        metavar="NAME",
        help="a split to check (repeatable; default: the config's train and val splits)",
    )
    check.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_PICTURE,
        help="the picture (default: data_check.png; an earlier data check's is replaced)",
    )
    add_overwrite_arg(check, "an existing --out file that is not an earlier data check's")
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segkit.core.outputs import check_outputs
    from segkit.data.check_picture import (
        is_data_check_picture,
        overlay_samples,
        write_data_check_picture,
    )
    from segkit.data.checks import check_datasets

    registry = terminal.plugins_for(args).registry
    name, params, splits, inputs = _dataset_source(args, registry)
    check_writable(args.out, "--out", DEFAULT_PICTURE.name)
    datasets = _build(name, params, splits, registry)
    for dataset in datasets.values():
        inputs += dataset.source_files()
    overwrite = args.overwrite or is_data_check_picture(args.out)
    check_outputs([args.out], inputs, overwrite, "--out")

    fixes = {p.name for p in registry.get("dataset", name).params}
    report = check_datasets(datasets, fixes)
    reference = next(iter(datasets.values()))
    _print_report(name, params, datasets, report)
    title = f"segkit data check: dataset '{name}'" + (
        f", {len(report.problems)} problem{'s' if len(report.problems) > 1 else ''}"
        if report.problems
        else ", usable"
    )
    samples = overlay_samples(reference)
    write_data_check_picture(args.out, report, samples, reference.palette, title)
    terminal.say(f"picture written to {args.out}")
    if report.problems:
        for problem in report.problems:
            terminal.print_error(problem, "problem")
        terminal.say(f"not usable: {len(report.problems)} problem(s); fix them and check again")
        return 2
    terminal.say(
        "usable" + (f", with {len(report.warnings)} warning(s)" if report.warnings else "")
    )
    return 0


def _dataset_source(args: argparse.Namespace, registry: Any) -> tuple[str, dict, list, list]:
    """The dataset's name, parameters and splits, and the files that say so."""
    from segkit.core.config import load_config
    from segkit.core.config_files import parse_value

    source: Path = args.source
    if not source.exists():
        raise ConfigError(
            f"{source} does not exist; give the dataset's folder or a TOML config naming it"
        )
    if source.is_dir():
        name = args.dataset or "folder"
        params: dict[str, Any] = {"root": str(source)}
        for item in args.overrides:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--set '{item}': expected key=value, e.g. --set binary=true")
            params[key.strip().removeprefix("data.dataset.")] = parse_value(text)
        if "root" not in {p.name for p in registry.get("dataset", name).params}:
            raise ConfigError(
                f"--dataset {name} takes no root folder; check it through a config instead"
            )
        return name, params, args.splits or ["train", "val"], []
    if args.dataset is not None:
        raise ConfigError(
            "--dataset names the dataset of a folder; with a config, the config names it "
            "(or use --set data.dataset.name=...)"
        )
    config = load_config(source, args.overrides, registry=registry)
    data = config.data
    splits = args.splits or list(dict.fromkeys([data.train_split, data.val_split]))
    return data.dataset.name, dict(data.dataset.params), splits, [source]


def _build(name: str, params: dict, splits: list[str], registry: Any) -> dict[str, Any]:
    from segkit.data.dataset import build_dataset

    roles = ["train", "val"] + [f"split {i + 3}" for i in range(len(splits))]
    return {
        role: build_dataset(name, split, params, registry)
        for role, split in zip(roles, splits, strict=False)
    }


def _print_report(name: str, params: dict, datasets: dict, report: Any) -> None:
    from segkit.cli.data_report import print_report

    print_report(terminal.console, name, params, datasets, report)
