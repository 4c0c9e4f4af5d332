"""``segkit refine IMAGE LABELS --out OUT``: sharpen a rough label image with a dense CRF.

The refinement itself is :mod:`segkit.infer.refine`; this module reads the command
line, including the chosen post-processor's own parameters as ``--name VALUE``.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

from segkit.cli import terminal
from segkit.core.config import parse_value
from segkit.core.errors import ConfigError
from segkit.core.outputs import check_outputs, write_bytes_atomically
from segkit.infer.budget import MAX_MEGAPIXELS

#: pydensecrf's example values, which differ from DeepLab's VOC defaults; they apply to
#: the parameters of that name the chosen post-processor has.
EXAMPLE_KERNELS = {
    "iterations": 5,
    "gaussian_sxy": 3.0,
    "gaussian_compat": 3.0,
    "bilateral_sxy": 80.0,
    "bilateral_srgb": 13.0,
    "bilateral_compat": 10.0,
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("refine", help="refine a rough label image with a dense CRF")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``segkit refine``; the post-processor's own come as ``--name VALUE``."""
    parser.add_argument("image", type=Path, help="the photograph (RGB; any format Pillow reads)")
    parser.add_argument(
        "labels",
        type=Path,
        help="rough annotation of the same size: a colour per class, black = unknown",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="where to write the refined labels (an image file, e.g. refined.png)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out file (never IMAGE or LABELS)",
    )
    parser.add_argument(
        "--postprocessor",
        default="densecrf",
        metavar="NAME",
        help="densecrf (pydensecrf, default), densecrf_torch (PyTorch) or convcrf (a window "
        "around each pixel); `segkit plugins` lists every post-processor",
    )
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=MAX_MEGAPIXELS,
        metavar="MP",
        help=f"refuse larger images: the CRF's memory and time grow with the pixels "
        f"(default {MAX_MEGAPIXELS:g})",
    )
    parser.add_argument(
        "--gt-prob",
        type=float,
        default=0.7,
        help="probability given to a labelled pixel's own class (default 0.7)",
    )
    parser.epilog = (
        "Any parameter of the post-processor is an option: --iterations 5, --bilateral-sxy 80, "
        "--device cpu ... (`segkit plugins` lists them).  Defaults: pydensecrf's example kernels "
        + ", ".join(f"{k} {v:g}" for k, v in EXAMPLE_KERNELS.items())
        + "; the post-processor's own defaults otherwise."
    )


def postprocessor_options(options: list[str]) -> dict[str, Any]:
    """Post-processor options as parameters: ``--bilateral-sxy 80 --device=cpu`` gives
    ``{"bilateral_sxy": 80, "device": "cpu"}`` (values in TOML syntax)."""
    params: dict[str, Any] = {}
    items = iter(options)
    for item in items:
        if not item.startswith("--") or len(item) < 3:
            raise ConfigError(
                f"unexpected argument '{item}'; post-processor options are --name VALUE"
            )
        name, sep, text = item[2:].partition("=")
        if not sep:
            text = next(items, None)
            if text is None:
                raise ConfigError(f"option {item} needs a value, e.g. {item} 5")
        params[name.replace("-", "_")] = parse_value(text)
    return params


def run(args: argparse.Namespace) -> int:
    """Refine ``args.labels`` with ``args.image`` and write ``args.out``; returns 0.

    ``args.options`` holds the post-processor's options, as :func:`postprocessor_options`
    reads them.
    """
    from PIL import Image

    from segkit.core.interrupts import Interrupted
    from segkit.core.ranges import Range
    from segkit.infer.budget import DEFAULT_CRF_ITERATIONS, Work, check_size
    from segkit.infer.postprocess import build_postprocessor
    from segkit.infer.refine import (
        image_format,
        read_annotation,
        read_rgb,
        refine_labels,
        same_size,
    )

    registry = terminal.plugins_for(args).registry
    component = registry.get("postprocessor", args.postprocessor)
    own = {p.name for p in component.params}
    params = {k: v for k, v in EXAMPLE_KERNELS.items() if k in own}
    params.update(postprocessor_options(getattr(args, "options", [])))
    component.bind(params)  # an unknown option or a wrong type fails before any work
    if not 0 < args.gt_prob < 1:
        raise ConfigError(f"--gt-prob must lie strictly between 0 and 1, got {args.gt_prob}")
    Range(0, integer=False, low_open=True).check(args.max_megapixels, "--max-megapixels")
    out_format = image_format(args.out)
    width, height = same_size(args.image, args.labels)  # the inputs exist and fit
    check_outputs([args.out], [args.image, args.labels], getattr(args, "overwrite", False))
    annotation = read_annotation(args.labels)
    work = Work(False, params.get("iterations", DEFAULT_CRF_ITERATIONS), annotation.classes)
    note = check_size(
        str(args.image), width, height, work, args.max_megapixels, ("downscale the images",)
    )
    if note:
        terminal.err_console.print(note, markup=False, highlight=False, soft_wrap=True)
    image = read_rgb(args.image, "image")
    postprocessor = build_postprocessor(args.postprocessor, registry, **params)
    try:
        with terminal.err_console.status(f"refining {width}×{height} with {args.postprocessor}"):
            result, changed = refine_labels(image, annotation, postprocessor, args.gt_prob)
    except Interrupted as stop:
        raise stop.explained(f"while refining; {args.out} was not written") from None
    buffer = io.BytesIO()
    Image.fromarray(result).save(buffer, format=out_format)
    write_bytes_atomically(args.out, buffer.getvalue())
    terminal.say(
        f"{args.out}: {annotation.classes} classes, {args.postprocessor}, "
        f"{100 * changed:.1f}% of labelled pixels changed",
        terminal.console_beside(args.out),
    )
    return 0
