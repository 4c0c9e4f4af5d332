"""The inference commands: ``segkit predict``, ``segkit eval`` and ``segkit export``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from segkit.core.errors import ConfigError, DataError, SegkitError
from segkit.core.outputs import check_outputs, is_read_only, write_text_atomically


def _inference_settings(args: argparse.Namespace, options: Any, base: Any) -> Any:
    """``base`` settings with --tta/--tile/--overlap applied (``options``: the config section)."""
    check_flags(args, tile="--tile", overlap="--overlap")
    return base.override(options, tta=args.tta, tile=args.tile, overlap=args.overlap)


#: The config key whose range each numeric flag shares.
FLAG_RANGES = {
    "tile": "eval.tile",
    "overlap": "eval.tile_overlap",
    "max_images": "eval.max_images",
    "batch_size": "eval.batch_size",
    "num_classes": "model.num_classes",
}


def check_flags(args: argparse.Namespace, **flags: str) -> None:
    """Check the given flags (attribute name -> flag) against their config key's range,
    so that a mistake names the flag the user typed, not a key they never wrote."""
    from segkit.core.ranges import RANGES

    for name, flag in flags.items():
        value = getattr(args, name, None)
        if value is not None:
            RANGES[FLAG_RANGES[name]].check(value, flag)


def cmd_predict(args: argparse.Namespace) -> int:
    from segkit.cli import console, err_console, plugins_for
    from segkit.core.progress import progress_display
    from segkit.core.ranges import Range
    from segkit.data import read_image
    from segkit.infer import Segmenter
    from segkit.infer.batch import batches_by_size, collect_images, unique_stems
    from segkit.infer.device import resolve_device
    from segkit.infer.pictures import prediction_paths, write_prediction
    from segkit.train import prepare_output_dir

    check_flags(args, tile="--tile", overlap="--overlap", batch_size="--batch-size")
    Range(0, integer=False, low_open=True).check(args.max_megapixels, "--max-megapixels")
    resolve_device(args.device, what="--device")
    plugins = plugins_for(args)
    paths = collect_images(args.images)
    names = unique_stems(paths)
    outputs = [
        output
        for path in paths
        for output in prediction_paths(args.out, names[path], args.save_probs)
    ]
    check_outputs(outputs, [*paths, args.checkpoint], args.overwrite)
    segmenter = Segmenter.from_checkpoint(args.checkpoint, args.device, plugins.registry)
    segmenter.inference = _inference_settings(args, segmenter.config.predict, segmenter.inference)
    segmenter.inference.check(segmenter.model)
    _check_image_sizes(paths, segmenter, args, err_console)
    prepare_output_dir(args.out, "--out")
    if args.postprocess and not segmenter.postprocessors:
        err_console.print("[yellow]note:[/] the checkpoint's config has no post-processors")
    with progress_display(console) as progress:
        task = progress.add_task("predicting", total=len(paths), info="")
        for batch in batches_by_size(paths, args.batch_size):
            images = [read_image(path) for path in batch]
            pairs = segmenter.predict_batch(images, postprocess=args.postprocess)
            for path, pair in zip(batch, pairs, strict=True):
                write_prediction(
                    args.out,
                    names[path],
                    pair,
                    segmenter.palette,
                    class_names=segmenter.class_names,
                    save_probs=args.save_probs,
                )
            progress.update(task, advance=len(batch))
    kinds = "_mask.png (label indices), _overlay.png, _panel.png"
    if args.save_probs:
        kinds += ", _probs.npy (float16 C×H×W probabilities)"
    console.print(
        f"{len(paths)} image(s) predicted ({segmenter.inference.describe()}) -> "
        f"{args.out}/<name>{kinds}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _check_image_sizes(
    paths: list[Path], segmenter: Any, args: argparse.Namespace, out: Any
) -> None:
    """Refuse images too large for one go before any work, and say what a large one costs."""
    from segkit.infer.budget import DEFAULT_CRF_ITERATIONS, Work, check_size, header_size

    refined = bool(args.postprocess and segmenter.postprocessors)
    iterations = [
        int(part.params.get("iterations", DEFAULT_CRF_ITERATIONS))
        for part in segmenter.config.postprocessors
    ]
    work = Work(
        whole_image_pass=segmenter.inference.tiling is None,
        crf_iterations=max(iterations, default=DEFAULT_CRF_ITERATIONS) if refined else None,
        classes=len(segmenter.class_names),
    )
    alternatives = ("--tile 512 (the network in windows)",) if work.whole_image_pass else ()
    alternatives += ("--no-crf",) if refined else ()
    for path in paths:
        width, height = header_size(path)
        note = check_size(str(path), width, height, work, args.max_megapixels, alternatives)
        if note:
            out.print(note, markup=False, highlight=False, soft_wrap=True)


def cmd_eval(args: argparse.Namespace) -> int:
    import time

    from segkit.cli import console, plugins_for
    from segkit.core.progress import progress_display
    from segkit.data.dataset import build_dataset
    from segkit.infer import Precision, Segmenter
    from segkit.infer.evaluate import Evaluator, metrics_table, summarize
    from segkit.infer.inference import InferenceSettings
    from segkit.infer.postprocess import PostprocessChain

    plugins = plugins_for(args)
    registry = plugins.registry
    overrides = list(args.overrides)
    from segkit.infer.device import resolve_device

    check_flags(args, max_images="--max-images", tile="--tile", overlap="--overlap")
    resolve_device(args.device, what="--device")
    if args.max_images is not None:
        overrides.append(f"eval.max_images={args.max_images}")
    if args.json is not None:
        _check_writable(args.json, "--json")
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
    if dataset.num_classes != len(segmenter.class_names):
        raise DataError(
            f"{part.name}/{split} has {dataset.num_classes} classes but the checkpoint predicts "
            f"{len(segmenter.class_names)}; evaluate on the dataset it was trained for"
        )
    inference = _inference_settings(args, config.eval, InferenceSettings.from_options(config.eval))
    inference.check(segmenter.model)
    postprocess = config.eval.postprocess if args.postprocess is None else args.postprocess
    chain = segmenter.postprocessors if postprocess else PostprocessChain()
    device = segmenter.device
    precision = Precision.for_device(device, None, None)
    evaluator = Evaluator(
        segmenter.model, dataset, segmenter.class_names, config, device, precision, inference
    )
    count = evaluator.loader()[1]
    started = time.perf_counter()
    with progress_display(console) as progress:
        results = evaluator.metrics(progress, chain, f"evaluating {split}", inference)
    elapsed = time.perf_counter() - started
    summary = summarize(results, chain.names())
    console.print(
        f"{args.checkpoint} on {part.name}/{split}", markup=False, highlight=False, soft_wrap=True
    )
    console.print(metrics_table(summary, segmenter.class_names))
    console.print(
        f"{count} images in {elapsed:.1f} s ({elapsed / max(count, 1):.3f} s/image"
        f"{', post-processing included' if chain else ''}); {inference.describe()}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if args.json is not None:
        import json

        write_text_atomically(args.json, json.dumps(summary, indent=2))
        console.print(f"summary written to {args.json}", markup=False, highlight=False)
    return 0


def _check_writable(path: Path, option: str) -> None:
    """Fail before any work when ``path`` cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise SegkitError(f"{option}: {path} is a folder; give a file name such as {path}/x.json")
    if not parent.is_dir():
        raise SegkitError(f"{option}: the folder {parent} does not exist; create it first")
    if is_read_only(parent):
        raise SegkitError(
            f"{option}: {path} lies on a read-only file system; choose a writable folder"
        )
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SegkitError(f"{option}: {path} is not writable; choose another place")


def cmd_export(args: argparse.Namespace) -> int:
    from segkit.cli import console, plugins_for
    from segkit.infer import Segmenter
    from segkit.infer.export import TOLERANCE, ExportError, export, metadata

    plugins = plugins_for(args)
    fmt = args.format or ("onnx" if args.out.suffix.lower() == ".onnx" else None)
    if fmt is None:
        fmt = "torchscript" if args.out.suffix.lower() in (".pt", ".ts", ".pth") else "onnx"
    _check_writable(args.out, "--out")
    check_outputs([args.out], [args.checkpoint], args.overwrite)
    segmenter = Segmenter.from_checkpoint(args.checkpoint, "cpu", plugins.registry)
    if segmenter.postprocessors and args.postprocess is not False:
        names = ", ".join(segmenter.postprocessors.names())
        raise ExportError(
            f"the checkpoint's post-processor ({names}) cannot be exported: it runs outside "
            f"the network; add --no-crf to export the network alone"
        )
    data = segmenter.config.data
    info = metadata(segmenter.class_names, data.mean, data.std, segmenter.palette)
    result = export(segmenter.model, args.out, info, fmt, args.opset, check=not args.no_check)
    size = args.out.stat().st_size / 2**20
    what = f"ONNX opset {args.opset}" if fmt == "onnx" else "TorchScript"
    console.print(f"wrote {args.out} ({what}, {size:.1f} MiB)", markup=False, highlight=False)
    if result.max_difference is None:
        reason = "--no-check" if args.no_check else "onnxruntime is not installed"
        console.print(
            f"not checked against PyTorch ({reason}; pip install 'segkit[export]')",
            markup=False,
            highlight=False,
        )
        return 0
    sizes = ", ".join(f"{h}×{w} {d:.2g}" for (h, w), d in result.differences.items())
    verdict = "ok" if result.max_difference <= TOLERANCE else f"ABOVE {TOLERANCE:g}"
    console.print(
        f"checked with {result.checked_with}: max |logits - PyTorch| {sizes} ({verdict})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return 0 if result.max_difference <= TOLERANCE else 1
