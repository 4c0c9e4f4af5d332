"""How ``convcrf`` brings messages from its coarse grid back to the pixels.

Each pixel takes the messages of the four coarse cells around it, with bilinear
weights times the colour affinity between the pixel and each cell's mean colour (a
joint bilateral upsampling), so that a coarse grid does not blur the edges.  The
weights of a batch are fixed; each mean-field update applies them as one weighted
gather (``embedding_bag``: four rows of the coarse messages, weighted and summed, per
pixel), which is differentiable with respect to the messages and about 3× faster on
the CPU than the same weights as a sparse matrix product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class EdgeAwareUpsampling:
    """Coarse message rows (N·h·w)×C to pixel rows (N·H·W)×C: each pixel's four cells
    (``cells``, (N·H·W)×4 row indices) and their weights (``weights``, same shape)."""

    def __init__(self, cells: Tensor, weights: Tensor) -> None:
        self.cells = cells
        self.weights = weights

    def __call__(self, coarse: Tensor) -> Tensor:
        return F.embedding_bag(self.cells, coarse, per_sample_weights=self.weights, mode="sum")


def edge_aware_upsampling(full: Tensor, coarse: Tensor, factor: int) -> EdgeAwareUpsampling:
    """How each pixel takes the messages of the four coarse cells around it.

    Bilinear weights times the colour affinity of the pixel and each cell's mean colour
    (both already divided by θβ), normalised: a pixel on one side of an edge listens to
    the cells on its own side, so the coarse grid does not blur the edges.  ``full`` is
    N×3×H×W, ``coarse`` N×3×h×w.
    """
    n, _, height, width = full.shape
    cells_y, cells_x = coarse.shape[-2:]
    device = full.device

    def neighbours(size: int, cells: int) -> tuple[tuple[Tensor, Tensor], Tensor]:
        centre = (torch.arange(size, device=device, dtype=full.dtype) + 0.5) / factor - 0.5
        low = centre.floor().clamp_(0, cells - 1)
        fraction = (centre - low).clamp_(0, 1)
        low = low.long()
        return (low, (low + 1).clamp_(max=cells - 1)), fraction

    rows, fy = neighbours(height, cells_y)
    cols, fx = neighbours(width, cells_x)
    logits, indices = [], []
    image_offset = torch.arange(n, device=device).view(n, 1, 1) * (cells_y * cells_x)
    for r, c in ((0, 0), (0, 1), (1, 0), (1, 1)):
        bilinear = (fy if r else 1 - fy)[:, None] * (fx if c else 1 - fx)[None, :]
        cell = coarse[:, :, rows[r]][:, :, :, cols[c]]
        affinity = (full - cell).square_().sum(1).mul_(-0.5)
        logits.append(affinity + bilinear.log())
        indices.append(image_offset + (rows[r][:, None] * cells_x + cols[c][None, :]))
    # normalised in the log domain: a pixel whose colour is far from all four cells
    # (a speck, a thin line) would see every affinity underflow to 0 and take no
    # message at all; this way it takes its most similar cell's.  Corner-major for the
    # softmax: over a last dimension of four it is ~20× slower.
    weights = torch.stack(logits).softmax(0).permute(1, 2, 3, 0)
    # at the image's border two corners can be the same cell: the gather adds them
    indices = torch.stack(indices, -1).expand(n, height, width, 4).reshape(-1, 4)
    return EdgeAwareUpsampling(indices, weights.reshape(-1, 4))
