"""How a model's class probabilities are computed: in one pass, in tiles, with TTA.

Evaluation, ``segkit predict`` and :class:`~segkit.infer.Segmenter` all go through
:func:`predict_probs`, so a config's ``[eval]``/``[predict]`` options and the
``--tta``/``--tile`` flags mean the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from segkit.infer.device import Precision
from segkit.infer.finite import check_finite_scores
from segkit.infer.tiling import Tiling
from segkit.infer.tta import TestTimeAugmentation


@dataclass(frozen=True)
class InferenceSettings:
    """Test-time augmentation and tiling; both off by default (one plain pass)."""

    tta: TestTimeAugmentation | None = None
    tiling: Tiling | None = None

    @classmethod
    def from_options(cls, options: Any) -> InferenceSettings:
        """From a config's ``[eval]`` or ``[predict]`` section."""
        tta = TestTimeAugmentation(options.tta_scales, options.tta_flip) if options.tta else None
        tiling = Tiling(options.tile, options.tile_overlap) if options.tile else None
        return cls(tta, tiling)

    def override(
        self,
        options: Any,
        tta: bool | None = None,
        tile: int | None = None,
        overlap: float | None = None,
    ) -> InferenceSettings:
        """These settings with command-line choices applied (None: keep the config's).

        ``options`` is the config section, for the scales and overlap the flags do
        not state.  ``tile=0`` turns tiling off.
        """
        settings = self
        if tta is not None:
            augment = TestTimeAugmentation(options.tta_scales, options.tta_flip) if tta else None
            settings = replace(settings, tta=augment)
        if tile is not None or overlap is not None:
            size = tile if tile is not None else (self.tiling.size if self.tiling else 0)
            if overlap is not None and not size:
                Tiling(1, overlap)  # still report an out-of-range overlap
            share = overlap if overlap is not None else options.tile_overlap
            settings = replace(settings, tiling=Tiling(size, share) if size else None)
        return settings

    @property
    def plain(self) -> bool:
        """One forward pass of the whole image."""
        return self.tta is None and self.tiling is None

    def check(self, model: nn.Module) -> None:
        """Fail early when the tile is smaller than the model's output stride."""
        if self.tiling is not None:
            self.tiling.check_stride(output_stride(model))

    def describe(self) -> str:
        parts = []
        if self.tta is not None:
            scales = ", ".join(f"{s:g}" for s in self.tta.scales)
            parts.append(f"TTA scales {scales}{' + flip' if self.tta.flip else ''}")
        if self.tiling is not None:
            parts.append(f"tiles {self.tiling.size} px, overlap {self.tiling.overlap:g}")
        return "; ".join(parts) or "one pass"


def output_stride(model: nn.Module) -> int:
    """The stride of a segkit model's class scores (its head's); 1 for other networks."""
    stride = getattr(getattr(model, "head", None), "stride", 1)
    return stride if isinstance(stride, int) and stride > 0 else 1


def predict_probs(
    model: nn.Module,
    images: Tensor,
    settings: InferenceSettings | None = None,
    precision: Precision | None = None,
) -> Tensor:
    """N×C×H×W class probabilities (float32) of normalised N×3×H×W ``images``."""
    settings = settings or InferenceSettings()
    precision = precision or Precision()

    def one_pass(batch: Tensor) -> Tensor:
        if precision.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with precision.autocast(batch.device):
            logits = model(batch)
        check_finite_scores(logits, model)
        return logits.float().softmax(1)

    tiling, align = settings.tiling, output_stride(model)
    forward = one_pass if tiling is None else (lambda batch: tiling(one_pass, batch, align))
    return forward(images) if settings.tta is None else settings.tta(forward, images)
