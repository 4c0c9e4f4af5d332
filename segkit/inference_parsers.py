"""The argument parsers of ``segkit predict``, ``segkit eval`` and ``segkit export``;
the commands themselves are in :mod:`segkit.inference_commands`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from segkit.infer.budget import MAX_MEGAPIXELS
from segkit.inference_commands import cmd_eval, cmd_export, cmd_predict


def add_inference_commands(sub: Any) -> None:
    """Add predict, eval and export to the ``segkit`` sub-command parsers ``sub``."""
    p = sub.add_parser("predict", help="segment images with a checkpoint")
    p.add_argument("checkpoint", type=Path, help="a run's best.pt or last.pt")
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
    _add_postprocess_arg(p, "apply")
    _add_inference_args(p, "predict")
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
    _add_device_arg(p)
    _add_overwrite_arg(p, "existing files in --out")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split")
    p.add_argument("checkpoint", type=Path, help="a run's best.pt or last.pt")
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="the dataset's folder, when it is elsewhere than the checkpoint's config says",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the checkpoint's config, e.g. --set data.dataset.root=...",
    )
    p.add_argument(
        "--split", default=None, help="split to evaluate (default: the config's data.val_split)"
    )
    _add_postprocess_arg(p, "also evaluate", default=None)
    _add_inference_args(p, "eval")
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
    _add_device_arg(p)
    _add_overwrite_arg(p, "an existing --json file")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="export a checkpoint's network to ONNX or TorchScript")
    p.add_argument("checkpoint", type=Path, help="a run's best.pt or last.pt")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="the file to write (.onnx, or .pt for TorchScript)",
    )
    p.add_argument(
        "--format",
        choices=("onnx", "torchscript"),
        default=None,
        help="default: torchscript for a .pt/.ts file, else onnx",
    )
    p.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset (default 17)")
    p.add_argument(
        "--postprocess",
        "--crf",
        dest="postprocess",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="post-processors cannot be exported: --no-crf exports the network of a "
        "checkpoint that has them",
    )
    p.add_argument(
        "--no-check",
        action="store_true",
        help="skip running the exported file against PyTorch",
    )
    _add_overwrite_arg(p, "an existing --out file")
    p.set_defaults(func=cmd_export)


def _add_postprocess_arg(
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


def _add_inference_args(parser: argparse.ArgumentParser, section: str) -> None:
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


def _add_overwrite_arg(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} (never an input of the command)",
    )


def _add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="auto (a GPU when present), cpu, cuda or cuda:N"
    )
