"""``segkit refine IMAGE LABELS --out OUT``: sharpen a rough label image with a dense CRF.

It works as pydensecrf's own example does.  Every colour of LABELS is a class and
black means "unknown"; a labelled pixel gets probability ``--gt-prob`` (0.7) for its
class and shares the rest evenly among the others, an unknown pixel gets uniform
probabilities.  A post-processor (``densecrf`` or ``densecrf_torch``) refines these
with the photograph, and every pixel takes the colour of its most probable class.
Kernel defaults are the example's: 5 iterations, Gaussian sxy 3 compat 3, bilateral
sxy 80 srgb 13 compat 10.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segkit.core.config import parse_value
from segkit.core.errors import ConfigError, DataError
from segkit.core.outputs import check_outputs, write_bytes_atomically
from segkit.core.ranges import Range
from segkit.core.registry import Registry
from segkit.infer.budget import (
    DEFAULT_CRF_ITERATIONS,
    MAX_MEGAPIXELS,
    Work,
    check_size,
    header_size,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

# PyTorch, numpy and Pillow load when a refinement runs, not when the CLI builds its
# parser from here: `segkit --help` starts without them.

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
        help="densecrf (pydensecrf, default) or densecrf_torch (PyTorch)",
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


def run(args: argparse.Namespace, registry: Registry) -> int:
    """Refine ``args.labels`` with ``args.image`` and write ``args.out``; returns 0.

    ``args.options`` holds the post-processor's options, as :func:`postprocessor_options`
    reads them.
    """
    import numpy as np
    import torch
    from PIL import Image
    from rich.console import Console

    from segkit.infer.postprocess import build_postprocessor

    err_console = Console(stderr=True)

    component = registry.get("postprocessor", args.postprocessor)
    own = {p.name for p in component.params}
    params = {k: v for k, v in EXAMPLE_KERNELS.items() if k in own}
    params.update(postprocessor_options(getattr(args, "options", [])))
    component.bind(params)  # an unknown option or a wrong type fails before any work
    if not 0 < args.gt_prob < 1:
        raise ConfigError(f"--gt-prob must lie strictly between 0 and 1, got {args.gt_prob}")
    Range(0, integer=False, low_open=True).check(args.max_megapixels, "--max-megapixels")
    out_format = image_format(args.out)
    width, height = _same_size(args.image, args.labels)  # the inputs exist and fit
    check_outputs([args.out], [args.image, args.labels], getattr(args, "overwrite", False))
    annotation = read_rgb(args.labels, "labels")
    colors, labels, has_unknown = split_colors(annotation)
    check_label_colours(args.labels, colors)
    work = Work(False, params.get("iterations", DEFAULT_CRF_ITERATIONS), len(colors))
    note = check_size(
        str(args.image), width, height, work, args.max_megapixels, ("downscale the images",)
    )
    if note:
        err_console.print(note, markup=False, highlight=False, soft_wrap=True)
    image = read_rgb(args.image, "image")
    probs = probabilities_from_labels(labels, len(colors), args.gt_prob, has_unknown)
    postprocessor = build_postprocessor(args.postprocessor, registry, **params)
    images = torch.from_numpy(image).permute(2, 0, 1)[None]
    with err_console.status(f"refining {width}×{height} with {args.postprocessor}"):
        refined = postprocessor(probs, images)
    result = colors[refined[0].argmax(0).cpu().numpy()]
    buffer = io.BytesIO()
    Image.fromarray(result).save(buffer, format=out_format)
    write_bytes_atomically(args.out, buffer.getvalue())
    labelled = labels > 0 if has_unknown else np.ones(labels.shape, dtype=bool)
    changed = float((result != annotation).any(2)[labelled].mean())
    print(
        f"{args.out}: {len(colors)} classes, {args.postprocessor}, "
        f"{100 * changed:.1f}% of labelled pixels changed"
    )
    return 0


def image_format(path: Path) -> str:
    """The Pillow format that ``path``'s suffix names, or a :class:`ConfigError`."""
    from PIL import Image

    known = Image.registered_extensions()
    suffix = path.suffix.lower()
    if suffix not in known or known[suffix] not in Image.SAVE:
        shown = f"'{suffix}'" if suffix else "no suffix"
        raise ConfigError(
            f"--out {path}: {shown} is not an image format segkit can write; "
            f"use a .png path (lossless, as labels need)"
        )
    return known[suffix]


#: The most colours a label image may have: more are a photograph's or a JPEG's.
MAX_LABEL_COLOURS = 64


def check_label_colours(path: Path, colors: np.ndarray) -> None:
    """Refuse an annotation that cannot be a label image: too few or too many colours."""
    if len(colors) < 2:
        found = "no labelled pixels" if not len(colors) else f"a single label colour {colors[0]}"
        raise DataError(
            f"{path} has {found}; mark at least two classes in different colours "
            f"(black means unknown)"
        )
    if len(colors) > MAX_LABEL_COLOURS:
        raise DataError(
            f"{path} has {len(colors)} colours, more than the {MAX_LABEL_COLOURS} classes a label "
            f"image may have: it looks like a photograph or a JPEG-compressed annotation (JPEG "
            f"blurs the edges between colours); save the annotation as a PNG with one exact "
            f"colour per class"
        )


def _same_size(image: Path, labels: Path) -> tuple[int, int]:
    """The photograph's (width, height), from the headers: the annotation must match it."""
    size, label_size = header_size(image, "image"), header_size(labels, "labels")
    if size != label_size:
        raise DataError(
            f"{labels} is {label_size[0]}×{label_size[1]} but {image} is {size[0]}×{size[1]}; "
            f"the annotation must have the photograph's size"
        )
    return size


def read_rgb(path: Path, what: str) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB, or a :class:`DataError` naming the file."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{what} path is a folder, not an image: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read {what} {path}: {exc}") from None


def split_colors(annotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The class colours of an H×W×3 annotation, in pydensecrf's example order.

    Returns the colours (K×3, sorted by 0xRRGGBB, black left out), the label of each
    pixel (0 for black when black is present, else 0..K-1 as classes), and whether
    black (unknown) is present.
    """
    import numpy as np

    rgb = annotation.astype(np.uint32)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    unique, labels = np.unique(codes, return_inverse=True)
    has_unknown = bool(unique[0] == 0)
    colors = np.stack([(unique >> 16) & 255, (unique >> 8) & 255, unique & 255], 1)
    colors = colors[1:] if has_unknown else colors
    return colors.astype(np.uint8), labels.reshape(codes.shape), has_unknown


def probabilities_from_labels(
    labels: np.ndarray, classes: int, gt_prob: float, has_unknown: bool
) -> torch.Tensor:
    """1×C×H×W probabilities: ``gt_prob`` for the labelled class, the rest shared evenly;
    uniform where the label is 0 and ``has_unknown`` (then labels 1..C are the classes)."""
    import numpy as np
    import torch

    index = torch.from_numpy(labels.astype(np.int64))
    if has_unknown:
        known = index > 0
        index = (index - 1).clamp_min(0)
    probs = torch.full((classes, *labels.shape), (1 - gt_prob) / (classes - 1))
    probs.scatter_(0, index[None], gt_prob)
    if has_unknown:
        probs[:, ~known] = 1.0 / classes
    return probs[None]
