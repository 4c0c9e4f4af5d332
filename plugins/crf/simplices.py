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


def enclosing_simplices(features: Tensor, barycentric: Tensor | None = None) -> Simplices:
    """The simplices enclosing the points given as columns of the d × points float32
    ``features`` (already divided by the kernel widths); the barycentric weights go into
    ``barycentric`` (points × (d+1)) when it is given."""
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
    # pydensecrf's ranking: for i < j, i ranks up if r_i < r_j, else j does: coordinate j
    # starts at j and loses one for each earlier i that it beats.  Small integers in
    # float32: its comparisons and sums run several times faster than in int8.
    rank = torch.arange(d + 1, dtype=torch.float32, device=device)[:, None].repeat(1, points)
    less = torch.empty(d, points, dtype=torch.float32, device=device)
    for i in range(d):
        beaten = torch.lt(residual[i], residual[i + 1 :], out=less[: d - i])
        rank[i] += beaten.sum(0)
        rank[i + 1 :] -= beaten
    rank += nearest.sum(0)  # now in -(d+1)..2d+1: wrap it into 0..d
    wrap = torch.floor((rank + 0.5) * (1.0 / (d + 1))).neg_()
    rank.addcmul_(wrap, torch.tensor(float(d + 1), device=device))
    remainder0.addcmul_(wrap, torch.tensor(float(d + 1), device=device))
    corner = nearest[:d] + wrap[:d]

    # Vertex k = d - rank_i gains weight v_i and vertex k + 1 loses it: with u_k the v of
    # the coordinate ranked d - k, weight k is u_k - u_{k-1}, and weight 0 wraps around
    # to u_0 + (1 - u_d), the same sums in the same order as pydensecrf's.  The ranks
    # order the v, so u is the v sorted, which a sorting network of minima and maxima
    # does faster than a scatter by rank.
    u = _sorted_rows(list((elevated - remainder0) * down))
    if barycentric is None:
        barycentric = torch.empty(points, d + 1, dtype=torch.float32, device=device)
    for k in range(1, d + 1):
        torch.sub(u[k], u[k - 1], out=barycentric[:, k])
    torch.add(u[0], 1 - u[d], out=barycentric[:, 0])
    return Simplices(corner.to(torch.int32), rank.to(torch.int8), barycentric)


def _sorted_rows(rows: list[Tensor]) -> list[Tensor]:
    """The columns of ``rows`` sorted ascending, by odd-even transposition: as many
    rounds as rows, each putting the minimum and the maximum of neighbouring rows in
    their places."""
    for round_ in range(len(rows)):
        for i in range(round_ % 2, len(rows) - 1, 2):
            rows[i], rows[i + 1] = (
                torch.minimum(rows[i], rows[i + 1]),
                torch.maximum(rows[i], rows[i + 1]),
            )
    return rows
