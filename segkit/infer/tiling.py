"""Sliding-window (tiled) inference: large images in overlapping windows.

Each window is predicted on its own, so memory for the network stays bounded by the
window size whatever the image size, and the windows' probabilities are blended:

* windows start on multiples of the network's output stride, so every window sees
  the same sampling grid as a full-image pass (the last window along an axis grows
  by less than a stride to reach the image's edge);
* inside the overlap of two windows, neither counts within a quarter of the overlap
  of its own inner edge (where zero padding changes its output), and the two fade
  linearly into each other across the middle half.  At the image's own edges a
  window keeps full weight.

So wherever the network's receptive field reaches no further than a quarter of the
overlap, the tiled probabilities equal those of one full-image pass, and elsewhere
the seams are blended rather than cut.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from segkit.core.errors import ConfigError

#: The largest overlap: beyond it windows would nearly repeat each other.
MAX_OVERLAP = 0.9

ProbabilityFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Tiling:
    """Windows of ``size``×``size`` pixels, neighbours sharing ``overlap`` of a window."""

    size: int
    overlap: float = 0.25

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(f"tile size must be a positive number of pixels, got {self.size}")
        if not 0 <= self.overlap <= MAX_OVERLAP:
            raise ConfigError(
                f"tile overlap must lie in [0, {MAX_OVERLAP}] (a share of the tile), "
                f"got {self.overlap}"
            )

    @property
    def overlap_pixels(self) -> int:
        return round(self.size * self.overlap)

    def check_stride(self, stride: int) -> None:
        """A window smaller than the network's output stride cannot be predicted."""
        if self.size < stride:
            raise ConfigError(
                f"tile size {self.size} is smaller than the model's output stride {stride}; "
                f"use a tile of at least {stride} pixels (--tile 512 blends well)"
            )

    def step(self, align: int = 1) -> int:
        """Distance between window starts: the overlap rounded up to keep ``align``."""
        return min(self.size, max(align, (self.size - self.overlap_pixels) // align * align))

    def spans(self, length: int, align: int = 1) -> list[tuple[int, int]]:
        """(start, stop) of the windows along an axis of ``length`` pixels.

        Starts are multiples of ``align``; the last window stretches to the end.
        """
        if length <= self.size:
            return [(0, length)]
        step = self.step(align)
        last = (length - self.size) // align * align
        starts = list(range(0, last, step))
        spans = [(start, start + self.size) for start in starts]
        return [*spans, (last, length)]

    def windows(self, height: int, width: int, align: int = 1) -> list[tuple[slice, slice]]:
        return [
            (slice(top, bottom), slice(left, right))
            for top, bottom in self.spans(height, align)
            for left, right in self.spans(width, align)
        ]

    def profile(
        self, start: int, stop: int, length: int, align: int, device: torch.device
    ) -> Tensor:
        """Blending weights along one axis of the window [start, stop) of ``length``."""
        overlap = self.size - self.step(align)  # at least this much, whatever the window
        margin = overlap // 4
        ramp = overlap - 2 * margin
        n = stop - start
        weights = torch.ones(n, device=device)
        fade = (torch.arange(ramp, device=device, dtype=torch.float32) + 0.5) / max(ramp, 1)
        if start > 0:  # an inner edge: another window covers this side
            weights[:margin] = 0
            weights[margin : margin + ramp] = fade
        if stop < length:
            weights[n - margin :] = 0
            weights[n - margin - ramp : n - margin] = torch.minimum(
                weights[n - margin - ramp : n - margin], fade.flip(0)
            )
        return weights

    def __call__(self, probabilities: ProbabilityFn, images: Tensor, align: int = 1) -> Tensor:
        """N×C×H×W probabilities of N×3×H×W ``images``, window by window.

        ``probabilities`` maps a batch of image windows to their class probabilities;
        ``align`` is the network's output stride.
        """
        height, width = images.shape[-2:]
        if height <= self.size and width <= self.size:
            return probabilities(images)
        total: Tensor | None = None
        weight_sum = torch.zeros(height, width, device=images.device)
        for rows, cols in self.windows(height, width, align):
            window = probabilities(images[..., rows, cols])
            if total is None:
                total = window.new_zeros(*window.shape[:2], height, width)
            weights = (
                self.profile(rows.start, rows.stop, height, align, window.device)[:, None]
                * self.profile(cols.start, cols.stop, width, align, window.device)[None, :]
            )
            total[..., rows, cols] += window * weights
            weight_sum[rows, cols] += weights
        assert total is not None, "an image has at least one window"
        return total.div_(weight_sum)
