"""The algorithm of ConvCRF's reference implementation, as a baseline for ``crf.py``.

Teichmann & Cipolla's published code (github.com/MarvinTeichmann/ConvCRF) cannot be
installed from a package index, and it insists on a GPU; this module re-implements its
inference with its default configuration so that ``benchmarks/crf.py`` can set
segkit's ``convcrf`` beside it on the CPU.  What it does, and how that differs from
segkit's ``convcrf``:

* The input is taken as scores and log-softmaxed (the reference's demo passes it its
  synthetic probabilities, so a class's unary varies by at most 1 between 0 and 1).
  segkit takes -log p, as pydensecrf does.
* Both kernels are evaluated on a grid ``blur`` (4) times coarser, over a
  ``filter_size``×``filter_size`` window (11; its demo uses 7) that includes the centre:
  a smoothness kernel exp(-|Δp|² / 2θγ²) with θγ = 3 and weight 3, and an appearance
  kernel over colour alone, exp(-|ΔI|² / 2θβ²) with θβ = 13 and weight 10 (no spatial
  falloff within the window).  The kernels are not normalised.
* Im2col: the coarse Q is unfolded into a C×k²×h×w tensor, multiplied by the kernel
  and summed, and the coarse messages are upsampled bilinearly.
* Each of the 5 updates is ``0.8 · log p + 0.2 · message``, softmaxed except after the
  last; the first update's messages are computed on the log-probabilities themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class ReferenceConvCRF:
    """Probabilities N×C×H×W and uint8 images N×3×H×W in, probabilities out."""

    def __init__(
        self,
        filter_size: int = 11,
        blur: int = 4,
        iterations: int = 5,
        gaussian_sxy: float = 3.0,
        gaussian_compat: float = 3.0,
        bilateral_srgb: float = 13.0,
        bilateral_compat: float = 10.0,
        message_weight: float = 0.2,
    ) -> None:
        self.filter_size = filter_size
        self.blur = blur
        self.iterations = iterations
        self.gaussian_sxy = gaussian_sxy
        self.gaussian_compat = gaussian_compat
        self.bilateral_srgb = bilateral_srgb
        self.bilateral_compat = bilateral_compat
        self.message_weight = message_weight

    def __call__(self, probs: Tensor, images: Tensor) -> Tensor:
        return self.scores(probs.float(), images).softmax(1)

    def scores(self, scores: Tensor, images: Tensor) -> Tensor:
        n, _, height, width = scores.shape
        log_probs = F.log_softmax(scores, 1)
        ys = torch.arange(height, dtype=torch.float32, device=scores.device)
        xs = torch.arange(width, dtype=torch.float32, device=scores.device)
        positions = torch.stack(torch.meshgrid(ys, xs, indexing="ij")).expand(n, 2, -1, -1)
        kernel = self.gaussian_compat * self._gaussian(positions / self.gaussian_sxy)
        kernel += self.bilateral_compat * self._gaussian(images.float() / self.bilateral_srgb)
        prediction = log_probs
        for step in range(self.iterations):
            coarse = self._pool(prediction)
            neighbours = self._unfold(coarse)
            message = (kernel * neighbours).sum(2)
            if self.blur > 1:
                message = F.interpolate(message, scale_factor=self.blur, mode="bilinear")
                message = message[..., :height, :width]
            prediction = (1 - self.message_weight) * log_probs + self.message_weight * message
            if step < self.iterations - 1:
                prediction = prediction.softmax(1)
        return prediction

    def _pool(self, x: Tensor) -> Tensor:
        if self.blur == 1:
            return x
        return F.avg_pool2d(x, self.blur, ceil_mode=True, count_include_pad=False)

    def _unfold(self, x: Tensor) -> Tensor:
        """N×C×h×w to N×C×k²×h×w: each cell's window, zeros beyond the border."""
        n, channels, height, width = x.shape
        columns = F.unfold(x, self.filter_size, padding=self.filter_size // 2)
        return columns.view(n, channels, self.filter_size**2, height, width)

    def _gaussian(self, features: Tensor) -> Tensor:
        """N×1×k²×h×w: exp(-½|f_i - f_j|²) over each coarse cell's window, 0 outside."""
        coarse = self._pool(features)
        difference = self._unfold(coarse) - coarse.unsqueeze(2)
        inside = self._unfold(torch.ones_like(coarse[:, :1]))
        return difference.square().sum(1, keepdim=True).mul(-0.5).exp() * inside
