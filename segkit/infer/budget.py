"""How large an image ``segkit predict`` and ``segkit refine`` take in one go.

A network's whole-image pass and the dense CRF both grow with the pixels: on a
24-megapixel photograph the CRF alone needs gigabytes and minutes.  Each image's size
is read from its file's header before any work; above :data:`MAX_MEGAPIXELS` the
command refuses with the estimate and the alternatives (``--tile`` for the network,
``--no-crf``, a smaller image, or a higher ``--max-megapixels``), and above
:data:`WARN_MEGAPIXELS` it says what to expect before it starts.

The estimates are rough, measured on one CPU thread with pydensecrf: about 160 MB per
megapixel plus 36 MB per megapixel and class, and 0.3 µs per pixel, class and
mean-field iteration.  They say which order of magnitude to expect, not more.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segkit.core.errors import DataError

#: Images above this many megapixels are refused unless ``--max-megapixels`` is raised.
MAX_MEGAPIXELS = 16.0

#: Images above this many megapixels get a line with the cost estimate before the work.
WARN_MEGAPIXELS = 4.0

#: Mean-field iterations assumed when a post-processor's parameters do not say.
DEFAULT_CRF_ITERATIONS = 10

_CRF_BYTES_PER_PIXEL = 160
_CRF_BYTES_PER_PIXEL_AND_CLASS = 36
_CRF_SECONDS_PER_STEP = 3e-7  # one pixel, one class, one iteration


class ImageTooLarge(DataError):
    """An image over the size taken in one go, or over Pillow's decompression-bomb limit."""


@dataclass(frozen=True)
class Work:
    """What one go over an image involves: a whole-image network pass and/or a CRF."""

    whole_image_pass: bool
    crf_iterations: int | None  # None: no CRF
    classes: int

    def describe(self) -> str:
        parts = ["a whole-image pass"] if self.whole_image_pass else []
        if self.crf_iterations is not None:
            parts.append("the dense CRF")
        return " and ".join(parts)

    @classmethod
    def planned(cls, segmenter: Any, postprocess: bool) -> Work:
        """What ``segmenter`` (a :class:`~segkit.infer.Segmenter`) does to one image."""
        iterations = [
            int(part.params.get("iterations", DEFAULT_CRF_ITERATIONS))
            for part in segmenter.config.postprocessors
        ]
        refined = bool(postprocess and segmenter.postprocessors)
        return cls(
            whole_image_pass=segmenter.inference.tiling is None,
            crf_iterations=max(iterations, default=DEFAULT_CRF_ITERATIONS) if refined else None,
            classes=len(segmenter.class_names),
        )


def crf_cost(pixels: int, classes: int, iterations: int) -> tuple[int, float]:
    """Rough (bytes, seconds) of a dense CRF on ``pixels`` pixels."""
    memory = pixels * (_CRF_BYTES_PER_PIXEL + _CRF_BYTES_PER_PIXEL_AND_CLASS * classes)
    return memory, _CRF_SECONDS_PER_STEP * pixels * classes * iterations


def header_size(path: Path, what: str = "image") -> tuple[int, int]:
    """(width, height) of an image file from its header, without decoding the pixels;
    a missing or unreadable file is a :class:`DataError` naming it as ``what``."""
    from PIL import Image, UnidentifiedImageError  # here: the CLI's parser reads this module

    try:
        with warnings.catch_warnings():
            # the size is what is checked here: Pillow's own bomb warning would be a second
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(
            f"{what} {path} is too large to read safely ({exc}); downscale it or split it"
        ) from None
    except FileNotFoundError:
        raise DataError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{what} path is a folder, not an image: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read {what} {path}: {exc}") from None


def check_size(
    name: str,
    width: int,
    height: int,
    work: Work,
    limit: float = MAX_MEGAPIXELS,
    alternatives: tuple[str, ...] = (),
) -> str | None:
    """Refuse an image above ``limit`` megapixels for ``work`` (a :class:`DataError` with
    the size, the estimate and ``alternatives``); return a line to show before a large
    image's work, or None for an ordinary one."""
    if not work.describe():
        return None  # tiled and not refined: memory stays bounded by the tile
    megapixels = width * height / 1e6
    size = f"{name} is {width}×{height} ({megapixels:.1f} MP)"
    cost = f"{work.describe()}{_estimate(work, width * height)}"
    if megapixels > limit:
        ways = [*alternatives, f"raise the limit with --max-megapixels {math.ceil(megapixels)}"]
        raise ImageTooLarge(f"{size}, over the {limit:g} MP limit for {cost}; {', or '.join(ways)}")
    if megapixels > WARN_MEGAPIXELS:
        return f"note: {size}: {cost}"
    return None


def _estimate(work: Work, pixels: int) -> str:
    if work.crf_iterations is None:
        return ""
    memory, seconds = crf_cost(pixels, work.classes, work.crf_iterations)
    return f" (the CRF needs about {memory / 2**30:.1f} GiB and {_duration(seconds)})"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
