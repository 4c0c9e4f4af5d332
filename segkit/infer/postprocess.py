"""Post-processing: refine class probabilities with the original images.

A post-processor is any callable ``postprocessor(probs, images) -> probs`` registered
through the ``register_postprocessors`` hook: ``probs`` are N×C×H×W float class
probabilities at image resolution, ``images`` the original N×3×H×W uint8 RGB images,
and the result has the shape of ``probs``.  Post-processors chain, each refining the
output of the one before (:class:`PostprocessChain`).

:func:`check_postprocess_inputs` is the one place that validates what a
post-processor receives; every built-in post-processor calls it first, so a bad
input fails with one line that names the problem and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from segkit.core.errors import DataError
from segkit.infer.device import ensure_memory
from segkit.model.contracts import check_postprocessed

if TYPE_CHECKING:
    from segkit.core.config import Part
    from segkit.core.registry import Registry

Postprocessor = Callable[[Tensor, Tensor], Tensor]

#: How far the class probabilities of a pixel may sum from one.
SUM_TOLERANCE = 1e-3


def build_postprocessor(name: str, registry: Registry, **params: Any) -> Postprocessor:
    """Build the post-processor ``name`` (for example ``"densecrf"``) from ``registry``."""
    return registry.get("postprocessor", name).build(params=params)


class PostprocessChain:
    """Post-processors applied one after the other.

    >>> chain = PostprocessChain([("densecrf", segkit.build_postprocessor("densecrf"))])
    >>> refined = chain(probs, images)
    """

    def __init__(self, steps: Iterable[tuple[str, Postprocessor] | Postprocessor] = ()) -> None:
        self.steps: list[tuple[str, Postprocessor]] = []
        for index, step in enumerate(steps):
            if isinstance(step, tuple):
                name, postprocessor = step
            else:
                name, postprocessor = getattr(step, "name", f"step{index}"), step
            self.steps.append((str(name), postprocessor))

    @classmethod
    def from_parts(cls, parts: Iterable[Part], registry: Registry) -> PostprocessChain:
        """The chain ``config.postprocessors`` describes, built from ``registry``."""
        return cls(
            (part.name, build_postprocessor(part.name, registry, **part.params)) for part in parts
        )

    def __len__(self) -> int:
        return len(self.steps)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def names(self) -> list[str]:
        return [name for name, _ in self.steps]

    def each(self, probs: Tensor, images: Tensor) -> Iterator[tuple[str, Tensor]]:
        """Yield ``(name, probs)`` after each step, for scoring every stage of the chain."""
        for name, postprocessor in self.steps:
            probs = check_postprocessed(name, postprocessor(probs, images), probs)
            yield name, probs

    def __call__(self, probs: Tensor, images: Tensor) -> Tensor:
        for name, postprocessor in self.steps:
            probs = check_postprocessed(name, postprocessor(probs, images), probs)
        return probs


def check_postprocess_inputs(
    probs: Tensor,
    images: Tensor,
    *,
    required_bytes: int | None = None,
    device: torch.device | str | None = None,
) -> None:
    """Raise :class:`segkit.DataError` (one line) unless the inputs fit the contract.

    ``probs`` must be N×C×H×W floats with C >= 2, finite, in [0, 1] and summing to one
    over C; ``images`` N×3×H×W uint8 of the same N, H and W.  ``required_bytes`` is the
    post-processor's own estimate of the memory it needs on ``device`` (default: the
    device of ``probs``); without it, four copies of the probabilities are assumed.
    """
    for name, value in (("probabilities", probs), ("images", images)):
        if not isinstance(value, Tensor):
            raise DataError(
                f"post-processing: {name} must be a torch.Tensor, got {type(value).__name__}; "
                f"convert with torch.from_numpy"
            )
    if probs.dim() != 4:
        raise DataError(
            f"post-processing: probabilities must be N×C×H×W, got shape {_shape(probs)}; "
            f"add the batch dimension with probs[None]"
        )
    if images.dim() != 4 or images.shape[1] != 3:
        raise DataError(
            f"post-processing: images must be N×3×H×W RGB, got shape {_shape(images)}; "
            f"pass the original images channels-first (image.permute(2, 0, 1)[None])"
        )
    n, classes, height, width = probs.shape
    if images.shape[0] != n or images.shape[2:] != probs.shape[2:]:
        raise DataError(
            f"post-processing: probabilities {_shape(probs)} and images {_shape(images)} "
            f"differ in size; resize the probabilities to the image size (N×C×H×W with the "
            f"images' N, H and W) before post-processing"
        )
    if classes < 2:
        raise DataError(
            f"post-processing: probabilities have a single class ({_shape(probs)}); a dense CRF "
            f"needs at least two classes to choose between"
        )
    if not probs.is_floating_point():
        raise DataError(
            f"post-processing: probabilities must be floats, got {probs.dtype}; "
            f"apply softmax to the model's scores first"
        )
    if images.dtype != torch.uint8:
        raise DataError(
            f"post-processing: images must be uint8 RGB (0..255), got {images.dtype}; pass the "
            f"original images, or convert with (x * 255).round().clamp(0, 255).to(torch.uint8)"
        )
    if n == 0 or height == 0 or width == 0:
        raise DataError(f"post-processing: empty input {_shape(probs)}; nothing to refine")
    with torch.no_grad():
        _check_probability_values(probs.detach(), classes)
    if required_bytes is None:
        required_bytes = 4 * probs.numel() * probs.element_size()
    ensure_memory(
        required_bytes,
        probs.device if device is None else device,
        f"refining {n} image(s) of {height}×{width} with {classes} classes",
    )


def _check_probability_values(values: Tensor, classes: int) -> None:
    """Finite, in [0, 1] and summing to one over dim 1.  Two passes over the values when
    they are right (the extremes at once, where NaN and infinities show too; the sums in
    the values' precision, float32 at least, which errs by far less than the tolerance);
    the errors' details are looked for only when something is wrong."""
    low, high = (float(x) for x in torch.aminmax(values))
    if not (math.isfinite(low) and math.isfinite(high)):
        finite = torch.isfinite(values)
        bad = int((~finite).sum())
        kind = "NaN" if bool(torch.isnan(values).any()) else "infinite values"
        raise DataError(
            f"post-processing: probabilities contain {kind} ({bad} of {values.numel()} "
            f"entries); check the model's output (diverged training or a bad checkpoint)"
        )
    if low < -SUM_TOLERANCE or high > 1 + SUM_TOLERANCE:
        raise DataError(
            f"post-processing: probabilities must lie in [0, 1], got values from {low:.3g} "
            f"to {high:.3g}; apply softmax over the class dimension (dim 1) first"
        )
    wide = torch.float64 if values.dtype == torch.float64 else torch.float32
    deviation = float((values.sum(1, dtype=wide) - 1).abs().max())
    if deviation > SUM_TOLERANCE:
        raise DataError(
            f"post-processing: probabilities do not sum to one over the {classes} classes "
            f"(off by up to {deviation:.3g}); apply softmax over dim 1, not another dimension"
        )


def _shape(x: Tensor) -> str:
    return "×".join(str(s) for s in x.shape) or "scalar"
