"""Test-time augmentation: class probabilities averaged over scales and flips.

As in DeepLab's multi-scale inputs, the image is predicted at several scales (and
mirrored), each prediction is resized back to the image size and the softmax
probabilities are averaged; post-processors then see the average.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from segkit.core.errors import ConfigError

DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5)

ProbabilityFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class TestTimeAugmentation:
    """Average probabilities over ``scales`` and, with ``flip``, horizontal mirrors."""

    __test__ = False  # a name pytest would otherwise collect

    scales: Sequence[float] = DEFAULT_SCALES
    flip: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.scales:
            raise ConfigError("tta_scales is empty; give at least one scale, e.g. [1.0]")
        bad = [s for s in self.scales if not 0 < s <= 8]
        if bad:
            raise ConfigError(f"tta_scales must lie in (0, 8], got {bad[0]}")

    @property
    def passes(self) -> int:
        """Forward passes per image."""
        return len(self.scales) * (2 if self.flip else 1)

    def __call__(self, probabilities: ProbabilityFn, images: Tensor) -> Tensor:
        """N×C×H×W averaged probabilities of N×3×H×W ``images``."""
        size = tuple(images.shape[-2:])
        total: Tensor | None = None
        for scale in self.scales:
            scaled = images
            if scale != 1.0:
                target = tuple(max(1, round(side * scale)) for side in size)
                scaled = F.interpolate(images, size=target, mode="bilinear", align_corners=False)
            for mirrored in (False, True) if self.flip else (False,):
                probs = probabilities(scaled.flip(-1) if mirrored else scaled)
                if mirrored:
                    probs = probs.flip(-1)
                if tuple(probs.shape[-2:]) != size:
                    # bilinear weights are convex, so each pixel still sums to one
                    probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
                total = probs.clone() if total is None else total.add_(probs)
        assert total is not None, "there is at least one scale"
        return total.div_(self.passes)
