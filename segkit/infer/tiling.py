"""Sliding-window (tiled) inference: large images in overlapping windows.

Each window is predicted on its own and the windows' probabilities are blended with
weights that fall off linearly across the overlap, so seams do not show and memory
for the network stays bounded by the window size whatever the image size.  Where a
pixel's receptive field fits inside every window that covers it, each window gives
the same probabilities as one full-image pass, and so does their weighted mean.
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
        if self.size < 1:
            raise ConfigError(f"tile size must be a positive number of pixels, got {self.size}")
        if not 0 <= self.overlap <= MAX_OVERLAP:
            raise ConfigError(
                f"tile overlap must lie in [0, {MAX_OVERLAP}] (a share of the tile), "
                f"got {self.overlap}"
            )

    @property
    def overlap_pixels(self) -> int:
        return round(self.size * self.overlap)

    @property
    def step(self) -> int:
        return max(1, self.size - self.overlap_pixels)

    def check_stride(self, stride: int) -> None:
        """A window smaller than the network's output stride cannot be predicted."""
        if self.size < stride:
            raise ConfigError(
                f"tile size {self.size} is smaller than the model's output stride {stride}; "
                f"use a tile of at least {stride} pixels (--tile 512 blends well)"
            )

    def starts(self, length: int) -> list[int]:
        """Window starts along one axis of ``length`` pixels; the last window ends flush."""
        if length <= self.size:
            return [0]
        starts = list(range(0, length - self.size, self.step))
        return [*starts, length - self.size]

    def windows(self, height: int, width: int) -> list[tuple[slice, slice]]:
        tile_h, tile_w = min(self.size, height), min(self.size, width)
        return [
            (slice(top, top + tile_h), slice(left, left + tile_w))
            for top in self.starts(height)
            for left in self.starts(width)
        ]

    def weights(self, height: int, width: int, device: torch.device) -> Tensor:
        """A window's blending weights: 1 inside, falling linearly across the overlap.

        Every weight stays positive, so a pixel only one window covers (an image
        border) keeps that window's probabilities exactly.
        """
        ramp = self.overlap_pixels + 1

        def profile(n: int) -> Tensor:
            x = torch.arange(n, device=device, dtype=torch.float32)
            return torch.minimum((x + 1) / ramp, (n - x) / ramp).clamp(max=1.0)

        return profile(height)[:, None] * profile(width)[None, :]

    def __call__(self, probabilities: ProbabilityFn, images: Tensor) -> Tensor:
        """N×C×H×W probabilities of N×3×H×W ``images``, window by window.

        ``probabilities`` maps a batch of image windows to their class probabilities.
        """
        height, width = images.shape[-2:]
        if height <= self.size and width <= self.size:
            return probabilities(images)
        total: Tensor | None = None
        weight_sum = torch.zeros(height, width, device=images.device)
        for rows, cols in self.windows(height, width):
            window = probabilities(images[..., rows, cols])
            if total is None:
                total = window.new_zeros(*window.shape[:2], height, width)
            weights = self.weights(*window.shape[-2:], device=window.device)
            total[..., rows, cols] += window * weights
            weight_sum[rows, cols] += weights
        assert total is not None, "an image has at least one window"
        return total.div_(weight_sum)
