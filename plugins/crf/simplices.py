"""Where points lie in the permutohedral lattice (Adams, Baek & Davis 2010, sections 3
and 4): the simplex that encloses each point, and its barycentric weights.

The float32 arithmetic follows pydensecrf's SSE code step by step, so that both put
every point in the same simplex with the same weights.  Everything is coordinate-major
(d+1 rows of points), so that each step is one vector operation over the points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class Simplices:
    """The enclosing simplex of each point and the point's place in it.

    ``corner`` is the simplex's remainder-0 vertex divided by d+1 (d × points, integers;
    the last coordinate follows from a zero sum), ``rank`` the rank of each of the d+1
    coordinates (a permutation of 0..d per point, int8), ``barycentric`` the d+1 weights
    (points × (d+1), float32, in the layout the slicing reads; weight r belongs to
    vertex r).
    """

    corner: Tensor
    rank: Tensor
    barycentric: Tensor

    @property
    def points(self) -> int:
        return self.rank.shape[1]


def enclosing_simplices(features: Tensor) -> Simplices:
    """The simplices enclosing the points given as columns of the d × points float32
    ``features`` (already divided by the kernel widths)."""
    d, points = features.shape
    device = features.device
    inv_std_dev = float(np.float32(math.sqrt(2.0 / 3.0) * (d + 1)))
    elevated = torch.empty(d + 1, points, dtype=torch.float32, device=device)
    partial = torch.zeros(points, dtype=torch.float32, device=device)
    for j in range(d, 0, -1):
        scale = float(np.float32(1.0 / math.sqrt(j * (j + 1)) * inv_std_dev))
        scaled = features[j - 1] * scale
        torch.sub(partial, scaled * j, out=elevated[j])
        partial += scaled
    elevated[0] = partial

    down = float(np.float32(1.0 / (d + 1)))
    nearest = torch.round(elevated * down)  # ties to even, like _mm_round_ps
    remainder0 = nearest * (d + 1)
    residual = elevated - remainder0
    # pydensecrf's ranking: for i < j, i ranks up if r_i < r_j, else j does.  Bytes:
    # the d(d+1)/2 comparisons add up three times faster than in int64.
    rank = torch.zeros(d + 1, points, dtype=torch.int8, device=device)
    for i in range(d):
        for j in range(i + 1, d + 1):
            less = residual[i] < residual[j]
            rank[i] += less
            rank[j] += ~less
    rank += nearest.sum(0).to(torch.int8)  # the sum lies in -(d+1)..d+1
    wrap = (rank < 0).to(torch.int8) - (rank > d).to(torch.int8)
    rank += (d + 1) * wrap
    remainder0 += (d + 1) * wrap
    corner = nearest[:d] + wrap[:d]

    # Vertex k = d - rank_i gains weight v_i and vertex k + 1 loses it: with u_k the v of
    # the coordinate ranked d - k, weight k is u_k - u_{k-1}, and weight 0 wraps around
    # to u_0 + (1 - u_d), the same sums in the same order as pydensecrf's.
    v = (elevated - remainder0) * down
    u = torch.empty_like(v).scatter_(0, (d - rank).long(), v)
    barycentric = torch.empty(points, d + 1, dtype=torch.float32, device=device)
    torch.sub(u[1:].t(), u[:-1].t(), out=barycentric[:, 1:])
    torch.add(u[0], 1 - u[d], out=barycentric[:, 0])
    return Simplices(corner.to(torch.int32), rank, barycentric)
