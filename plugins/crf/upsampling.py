"""How ``convcrf`` brings messages from its coarse grid back to the pixels.

Each pixel takes the messages of the four coarse cells around it, with bilinear
weights times the colour affinity between the pixel and each cell's mean colour (a
joint bilateral upsampling), so that a coarse grid does not blur the edges.  The
weights of a batch form one fixed sparse matrix, applied once per mean-field update
and differentiable with respect to the messages.
"""

from __future__ import annotations

import warnings

import torch
from segkit_plugins.crf.lattice import _csr
from torch import Tensor


class SparseMatrix:
    """A sparse matrix for :class:`SparseProduct` with a fixed number of entries a row,
    in CSR; its transpose is made when a gradient first needs it."""

    def __init__(self, columns: Tensor, values: Tensor, shape: tuple[int, int]) -> None:
        rows, per_row = columns.shape
        index = torch.int32 if columns.numel() < 2**31 else torch.int64
        starts = torch.arange(0, rows * per_row + 1, per_row, device=columns.device)
        self.matrix = _csr(starts, columns.reshape(-1), values.reshape(-1), shape, index)
        self._transpose: Tensor | None = None

    def transpose(self) -> Tensor:
        if self._transpose is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
                coo = self.matrix.to_sparse_coo()
                self._transpose = (
                    torch.sparse_coo_tensor(
                        coo.indices().flip(0),
                        coo.values(),
                        tuple(reversed(coo.shape)),
                        check_invariants=False,
                    )
                    .coalesce()
                    .to_sparse_csr()
                )
        return self._transpose


class SparseProduct(torch.autograd.Function):
    """``matrix @ x`` for a fixed sparse matrix, differentiable with respect to ``x``."""

    @staticmethod
    def forward(ctx, x: Tensor, matrix: SparseMatrix) -> Tensor:
        ctx.matrix = matrix
        return matrix.matrix @ x

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return ctx.matrix.transpose() @ grad.contiguous(), None


def edge_aware_upsampling(full: Tensor, coarse: Tensor, factor: int) -> SparseMatrix:
    """How each pixel takes the messages of the four coarse cells around it.

    Bilinear weights times the colour affinity of the pixel and each cell's mean colour
    (both already divided by θβ), normalised: a pixel on one side of an edge listens to
    the cells on its own side, so the coarse grid does not blur the edges.  Returns the
    (N·H·W)×(N·h·w) matrix that maps coarse rows to pixel rows.
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
    weights, columns = [], []
    image_offset = torch.arange(n, device=device).view(n, 1, 1) * (cells_y * cells_x)
    for r, c in ((0, 0), (0, 1), (1, 0), (1, 1)):
        bilinear = (fy if r else 1 - fy)[:, None] * (fx if c else 1 - fx)[None, :]
        cell = coarse[:, :, rows[r]][:, :, :, cols[c]]
        affinity = (full - cell).square_().sum(1).mul_(-0.5).exp_()
        weights.append(affinity * bilinear)
        columns.append(image_offset + (rows[r][:, None] * cells_x + cols[c][None, :]))
    weights = torch.stack(weights, -1)
    weights /= weights.sum(-1, keepdim=True).clamp_min_(1e-20)
    # at the image's border two corners can be the same cell: the product adds them
    columns = torch.stack(columns, -1).expand(n, height, width, 4).reshape(-1, 4)
    shape = (n * height * width, n * cells_y * cells_x)
    return SparseMatrix(columns, weights.reshape(-1, 4), shape)
