"""``segkit eval CHECKPOINT``: score a checkpoint on a split of its dataset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from segkit.cli import terminal
from segkit.cli.arguments import (
    add_checkpoint_arg,
    add_device_arg,
    add_inference_args,
    add_overwrite_arg,
    add_postprocess_arg,
    add_set_arg,
    check_flags,
    check_writable,
    inference_settings,
)
from segkit.core.errors import ConfigError, DataError
from segkit.core.outputs import check_outputs, write_text_atomically


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split")
    add_checkpoint_arg(p)
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="the dataset's folder, when it is elsewhere than the checkpoint's config says",
    )
    add_set_arg(p, "override a value of the checkpoint's config, e.g. --set data.dataset.root=...")
    p.add_argument(
        "--split", default=None, help="split to evaluate (default: the config's data.val_split)"
    )
    add_postprocess_arg(p, "also evaluate", default=None)
    add_inference_args(p, "eval")
    p.add_argument(
        "--max-images", type=int, default=None, metavar="N", help="evaluate the first N images"
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the metrics as JSON, in the format of a run's summary.json",
    )
    add_device_arg(p)
    add_overwrite_arg(p, "an existing --json file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from segkit.core.progress import progress_display
    from segkit.data.dataset import build_dataset
    from segkit.infer import Precision, Segmenter
    from segkit.infer.device import resolve_device
    from segkit.infer.evaluate import Evaluator, metrics_table, summarize
    from segkit.infer.inference import InferenceSettings
    from segkit.infer.postprocess import PostprocessChain

    plugins = terminal.plugins_for(args)
    registry = plugins.registry
    overrides = list(args.overrides)
    check_flags(args, max_images="--max-images", tile="--tile", overlap="--overlap")
    resolve_device(args.device, what="--device")
    if args.max_images is not None:
        overrides.append(f"eval.max_images={args.max_images}")
    if args.json is not None:
        check_writable(args.json, "--json", "metrics.json")
        check_outputs([args.json], [args.checkpoint], args.overwrite, "--json")
    segmenter = Segmenter.from_checkpoint(args.checkpoint, args.device, registry, overrides)
    config = segmenter.config
    part = config.data.dataset
    params = dict(part.params)
    if args.data_root is not None:
        takes = {p.name for p in registry.get("dataset", part.name).params}
        if "root" not in takes:
            raise ConfigError(
                f"--data-root: the checkpoint's dataset '{part.name}' has no root folder; "
                f"choose another dataset with --set data.dataset.name=..."
            )
        params["root"] = str(args.data_root)
    split = args.split or config.data.val_split
    dataset = build_dataset(part.name, split, params, registry)
    if args.json is not None:  # every file the split reads is an input, kept whatever --json says
        check_outputs(
            [args.json], [args.checkpoint, *dataset.source_files()], args.overwrite, "--json"
        )
    if dataset.num_classes != len(segmenter.class_names):
        raise DataError(
            f"{part.name}/{split} has {dataset.num_classes} classes but the checkpoint predicts "
            f"{len(segmenter.class_names)}; evaluate on the dataset it was trained for"
        )
    inference = inference_settings(args, config.eval, InferenceSettings.from_options(config.eval))
    inference.check(segmenter.model)
    postprocess = config.eval.postprocess if args.postprocess is None else args.postprocess
    chain = segmenter.postprocessors if postprocess else PostprocessChain()
    device = segmenter.device
    precision = Precision.for_device(device, None, None)
    report = terminal.console_beside(args.json)  # not on the JSON's way, when that is stdout
    evaluator = Evaluator(
        segmenter.model, dataset, segmenter.class_names, config, device, precision, inference
    )
    count = evaluator.loader()[1]
    started = time.perf_counter()
    with progress_display(report) as progress:
        results = evaluator.metrics(progress, chain, f"evaluating {split}", inference)
    elapsed = time.perf_counter() - started
    summary = summarize(results, chain.names())
    terminal.say(f"{args.checkpoint} on {part.name}/{split}", report)
    report.print(metrics_table(summary, segmenter.class_names))
    terminal.say(
        f"{count} images in {elapsed:.1f} s ({elapsed / max(count, 1):.3f} s/image"
        f"{', post-processing included' if chain else ''}); {inference.describe()}",
        report,
    )
    if args.json is not None:
        write_text_atomically(args.json, json.dumps(summary, indent=2) + "\n")
        terminal.say(f"summary written to {args.json}", report)
    return 0
