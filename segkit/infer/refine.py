"""Sharpen a rough label image with a dense CRF (``segkit refine IMAGE LABELS --out OUT``).

It works as pydensecrf's own example does.  Every colour of LABELS is a class and
black means "unknown"; a labelled pixel gets probability ``--gt-prob`` (0.7) for its
class and shares the rest evenly among the others, an unknown pixel gets uniform
probabilities.  A post-processor (``densecrf`` or ``densecrf_torch``) refines these
with the photograph, and every pixel takes the colour of its most probable class.
``segkit refine`` uses the example's kernel parameters by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from segkit.core.errors import ConfigError, DataError
from segkit.infer.budget import header_size

if TYPE_CHECKING:
    import torch

# PyTorch loads when a refinement runs.


@dataclass(frozen=True)
class Annotation:
    """A rough label image split into classes: every colour but black is one."""

    colors: np.ndarray  # K×3 uint8, sorted by 0xRRGGBB, black left out
    labels: np.ndarray  # H×W: 1..K for the classes and 0 for black if black is present
    has_unknown: bool  # whether black (unknown) is present

    @property
    def classes(self) -> int:
        return len(self.colors)


def read_annotation(path: Path) -> Annotation:
    """The annotation in ``path``, or a :class:`DataError` when it cannot be one."""
    annotation = Annotation(*split_colors(read_rgb(path, "labels")))
    check_label_colours(path, annotation.colors)
    return annotation


def refine_labels(
    image: np.ndarray, annotation: Annotation, postprocessor: Any, gt_prob: float
) -> tuple[np.ndarray, float]:
    """The annotation refined with ``image`` (H×W×3 uint8) by ``postprocessor``.

    Returns the refined label image in the annotation's colours and the share of the
    labelled pixels whose class changed.
    """
    import torch

    labels, has_unknown = annotation.labels, annotation.has_unknown
    probs = probabilities_from_labels(labels, annotation.classes, gt_prob, has_unknown)
    images = torch.from_numpy(image).permute(2, 0, 1)[None]
    refined = postprocessor(probs, images)[0].argmax(0).cpu().numpy()
    labelled = labels > 0 if has_unknown else np.ones(labels.shape, dtype=bool)
    given = labels - 1 if has_unknown else labels
    changed = float((refined != given)[labelled].mean())
    return annotation.colors[refined], changed


#: The formats Pillow writes without loss: labels must keep every pixel's exact colour.
LOSSLESS_FORMATS = ("PNG", "BMP", "TIFF", "PPM", "GIF")


def image_format(path: Path) -> str:
    """The lossless Pillow format that ``path``'s suffix names, or a :class:`ConfigError`."""
    known = Image.registered_extensions()
    suffix = path.suffix.lower()
    if suffix not in known or known[suffix] not in Image.SAVE:
        shown = f"'{suffix}'" if suffix else "no suffix"
        raise ConfigError(
            f"--out {path}: {shown} is not an image format segkit can write; "
            f"use a .png path (lossless, as labels need)"
        )
    if known[suffix] not in LOSSLESS_FORMATS:
        raise ConfigError(
            f"--out {path}: {known[suffix]} compresses with loss, which would blur the edges "
            f"between label colours into new colours; use a .png path (lossless)"
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


def same_size(image: Path, labels: Path) -> tuple[int, int]:
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
