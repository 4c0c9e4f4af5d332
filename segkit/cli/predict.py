"""``segkit predict CHECKPOINT IMAGES...``: segment images with a checkpoint."""

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
    check_flags,
    inference_settings,
)
from segkit.core.outputs import check_outputs
from segkit.infer.budget import MAX_MEGAPIXELS


def add_parser(sub: Any) -> None:
    p = sub.add_parser("predict", help="segment images with a checkpoint")
    add_checkpoint_arg(p)
    p.add_argument(
        "images",
        nargs="+",
        help="image files, folders (their images) or glob patterns ('photos/**/*.jpg')",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("predictions"),
        help="output folder (default: ./predictions); per image NAME_mask.png (label "
        "indices), NAME_overlay.png and NAME_panel.png",
    )
    add_postprocess_arg(p, "apply")
    add_inference_args(p, "predict")
    p.add_argument(
        "--save-probs",
        action="store_true",
        help="also write the class probabilities as NAME_probs.npy (float16, C×H×W)",
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=MAX_MEGAPIXELS,
        metavar="MP",
        help="refuse larger images unless tiled and without the CRF: a whole-image pass and "
        f"the dense CRF grow with the pixels (default {MAX_MEGAPIXELS:g})",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=4,
        metavar="N",
        help="images of one size predicted together (default 4)",
    )
    add_device_arg(p)
    add_overwrite_arg(p, "existing files in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segkit.core.interrupts import Interrupted, uninterruptible
    from segkit.core.outputs import prepare_output_dir
    from segkit.core.progress import progress_display
    from segkit.core.ranges import Range
    from segkit.data import read_image
    from segkit.infer import Segmenter
    from segkit.infer.batch import batches_by_size, collect_images, unique_stems
    from segkit.infer.device import resolve_device
    from segkit.infer.pictures import prediction_paths, write_prediction

    check_flags(args, tile="--tile", overlap="--overlap", batch_size="--batch-size")
    Range(0, integer=False, low_open=True).check(args.max_megapixels, "--max-megapixels")
    resolve_device(args.device, what="--device")
    plugins = terminal.plugins_for(args)
    paths = collect_images(args.images)
    names = unique_stems(paths)
    outputs = [
        output
        for path in paths
        for output in prediction_paths(args.out, names[path], args.save_probs)
    ]
    check_outputs(outputs, [*paths, args.checkpoint], args.overwrite)
    segmenter = Segmenter.from_checkpoint(args.checkpoint, args.device, plugins.registry)
    segmenter.inference = inference_settings(args, segmenter.config.predict, segmenter.inference)
    segmenter.inference.check(segmenter.model)
    sizes = check_image_sizes(paths, segmenter, args)
    prepare_output_dir(args.out, "--out")
    if args.postprocess and not segmenter.postprocessors:
        note = "[yellow]note:[/] the checkpoint's config has no post-processors"
        terminal.err_console.print(note)
    done = 0
    try:
        with progress_display(terminal.console) as progress:
            task = progress.add_task("predicting", total=len(paths), info="")
            for batch in batches_by_size(sizes, args.batch_size):
                images = [read_image(path) for path in batch]
                pairs = segmenter.predict_batch(images, postprocess=args.postprocess)
                with uninterruptible():  # an image's files are written all or none
                    for path, pair in zip(batch, pairs, strict=True):
                        write_prediction(
                            args.out,
                            names[path],
                            pair,
                            segmenter.palette,
                            class_names=segmenter.class_names,
                            save_probs=args.save_probs,
                        )
                        done += 1
                progress.update(task, advance=len(batch))
    except Interrupted as stop:
        kept = f"{done} of {len(paths)} image(s) predicted, their files complete in {args.out}"
        raise stop.explained(f"while predicting; {kept}; the others were not written") from None
    kinds = "_mask.png (label indices), _overlay.png, _panel.png"
    if args.save_probs:
        kinds += ", _probs.npy (float16 C×H×W probabilities)"
    terminal.say(
        f"{len(paths)} image(s) predicted ({segmenter.inference.describe()}) -> "
        f"{args.out}/<name>{kinds}"
    )
    return 0


def check_image_sizes(
    paths: list[Path], segmenter: Any, args: argparse.Namespace
) -> dict[Path, tuple[int, int]]:
    """Each image's (width, height), from its header; images too large for one go are
    refused before any work, and a large one is told what it costs."""
    from segkit.infer.budget import Work, check_size, header_size

    work = Work.planned(segmenter, args.postprocess)
    refined = work.crf_iterations is not None
    alternatives = ("--tile 512 (the network in windows)",) if work.whole_image_pass else ()
    alternatives += ("--no-crf",) if refined else ()
    sizes = {}
    for path in paths:
        width, height = sizes[path] = header_size(path)
        note = check_size(str(path), width, height, work, args.max_megapixels, alternatives)
        if note:
            terminal.err_console.print(note, markup=False, highlight=False, soft_wrap=True)
    return sizes
