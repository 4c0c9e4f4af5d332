"""Naming the lattice points that the points' simplices touch, and listing what the
lattice's gathers read.

Pixels of a colour-homogeneous region mostly share one simplex, so the lattice points
are found from the distinct simplices (one sort of one key per point), not from every
point's d+1 vertices.  A lattice point with remainder r (all its coordinates are
r modulo d+1) is named by r and its coordinates' quotients by d+1: a code that usually
fits in int32, where the coordinates themselves would need int64, so that the sorts
read half the bytes.  The lattice points are numbered in order of their codes,
remainder first: each remainder has as many points as the others, and every point has
one vertex of each remainder, so that threads splatting the first and the second half
of the points (or each third) get equal work, and neighbouring points, whose codes are
close, are splatted one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from segkit_plugins.crf.simplices import Simplices
from segkit_plugins.crf.wide_lattice import index_rows
from torch import Tensor

#: Codes at or above this take the slower path that names lattice points by rows.
LARGEST_CODE = 2**62


@dataclass
class LatticeIndex:
    """What the lattice's gathers read, for L lattice points.

    ``vertices``: the lattice point of each vertex, points × (d+1); ``members``: the
    points of all vertices grouped by lattice point, which the splat reads; the weights
    of those vertices are ``weights.index_select(0, order).view(-1)[slots]`` for
    weights given points × (d+1) (:meth:`splat_weights`); ``counts``: the vertices of
    each lattice point; ``up``: each lattice point's neighbour one step along each of
    the d+1 directions, (d+1) × L, where L stands for a neighbour that no point touches.
    """

    vertices: Tensor
    members: Tensor
    order: Tensor | None
    slots: Tensor
    counts: Tensor
    up: Tensor

    @property
    def lattice_points(self) -> int:
        return self.counts.numel()

    def splat_weights(self, weights: Tensor) -> Tensor:
        """``weights`` (points × (d+1)) of the vertices in the order of ``members``."""
        if self.order is not None:  # rows in order of the simplices: the slots run on
            weights = weights.index_select(0, self.order)
        return weights.view(-1).index_select(0, self.slots)


def index_lattice(simplices: Simplices, group: Tensor | None, groups: int) -> LatticeIndex:
    """The lattice points of ``simplices``; points of different ``group`` (an int64 per
    point, or None for one group) never share one."""
    corner, rank = simplices.corner, simplices.rank
    d, points = corner.shape
    low, high = corner.amin(1).tolist(), corner.amax(1).tolist()
    # a vertex's quotients lie within one of its corner's, a neighbour's within one more
    radix = [top - bottom + 4 for bottom, top in zip(low, high, strict=True)]
    strides = [1]
    for size in radix:
        strides.append(strides[-1] * size)
    bound = (d + 1) * strides[-1] * groups
    # one key per simplex: its corner, its group and the order of its coordinates
    permutations = (d + 1) ** d
    if strides[-1] * groups * max(d + 1, permutations) >= LARGEST_CODE:
        return _index_wide(simplices, group)
    corner_code = torch.zeros(points, dtype=torch.int64, device=corner.device)
    for j in range(d):
        corner_code.add_(corner[j] - (low[j] - 2), alpha=strides[j])
    if group is not None:
        corner_code.add_(group, alpha=strides[d])
    simplex_key = corner_code * permutations
    for i in range(d):
        simplex_key.add_(rank[i], alpha=(d + 1) ** i)
    narrow = strides[-1] * groups * permutations < 2**31
    by_simplex, starts, simplex_of = _group(simplex_key.to(torch.int32) if narrow else simplex_key)
    first = by_simplex.index_select(0, starts)
    sizes = torch.diff(starts, append=starts.new_full((1,), points))

    code_type = torch.int32 if bound < 2**31 else torch.int64
    quotients = strides[-1] * groups
    codes = _vertex_codes(
        corner_code.index_select(0, first), rank, first, strides[:-1], quotients, code_type
    )
    sorted_keys, by_key = torch.sort(codes.view(-1))
    is_first = torch.ones_like(sorted_keys, dtype=torch.bool)
    is_first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    heads = is_first.nonzero()[:, 0]
    simplices_count = first.numel()
    lattice_of = torch.empty(codes.numel(), dtype=torch.int32, device=corner.device)
    lattice_of.scatter_(0, by_key, torch.cumsum(is_first, 0, dtype=torch.int32) - 1)
    vertices = lattice_of.view(d + 1, simplices_count).t().contiguous().index_select(0, simplex_of)

    members, slots, counts = _expand_simplices(by_key, heads, by_simplex, starts, sizes, d + 1)
    up = _neighbours(sorted_keys.index_select(0, heads), strides, groups)
    return LatticeIndex(vertices, members, by_simplex, slots, counts, up)


def _group(keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The points in order of their key, where each key's run starts in that order, and
    each point's key number (in order of the keys)."""
    sorted_keys, by_key = torch.sort(keys)
    first = torch.ones_like(sorted_keys, dtype=torch.bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    numbers = torch.empty(keys.numel(), dtype=torch.int32, device=keys.device)
    numbers.scatter_(0, by_key, torch.cumsum(first, 0, dtype=torch.int32) - 1)
    return by_key, first.nonzero()[:, 0], numbers


def _vertex_codes(
    corner_code: Tensor,
    rank: Tensor,
    first: Tensor,
    strides: list[int],
    quotients: int,
    dtype: torch.dtype,
) -> Tensor:
    """The code of each vertex r of each simplex (given by one of its points, ``first``,
    and the code of its corner's quotients), (d+1) × simplices: r · Q + (the quotients'
    code), where Q bounds the quotients' codes.

    Vertex r is the corner times d+1, plus r, less d+1 on the coordinates ranked above
    d - r: its quotients are the corner's, less 1 on those coordinates.  Going from
    vertex r-1 to r takes 1 off the coordinate ranked d - r + 1 (the last coordinate has
    no digit of its own)."""
    d = rank.shape[0] - 1
    # row by row: a two-dimensional index_select along the columns is three times slower
    rank = torch.stack([row.index_select(0, first) for row in rank])
    digit_of = torch.tensor([*strides, 0], dtype=dtype, device=rank.device)
    digit_by_rank = torch.empty_like(rank, dtype=dtype)
    digit_by_rank.scatter_(0, rank.long(), digit_of[:, None].expand(d + 1, rank.shape[1]))
    codes = torch.empty_like(digit_by_rank)
    codes[0] = corner_code
    codes[1:] = corner_code.to(dtype) - torch.cumsum(digit_by_rank.flip(0)[:d], 0, dtype=dtype)
    codes += torch.arange(0, (d + 1) * quotients, quotients, dtype=dtype, device=rank.device)[
        :, None
    ]
    return codes


def _expand_simplices(
    by_key: Tensor, heads: Tensor, by_simplex: Tensor, starts: Tensor, sizes: Tensor, k: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The points of all vertices grouped by lattice point, the slot i·k + r of each
    (point number i in ``by_simplex``, vertex r), and the vertex count of each lattice
    point, from the simplex vertices (numbered r · simplices + s) grouped by lattice
    point: each stands for all the points of its simplex, which lie together in
    ``by_simplex``.

    The slots of one simplex vertex run from k·starts[s] + r in steps of k: all the
    slots, one run after the other, are a running sum of k's with a jump at each run's
    first."""
    points = by_simplex.numel()
    device = by_simplex.device
    index = torch.int32 if points * k < 2**31 else torch.int64
    lengths = sizes.to(index).repeat(k).index_select(0, by_key)
    vertex_starts = (
        starts.to(index)[None] * k + torch.arange(k, dtype=index, device=device)[:, None]
    )
    sources = vertex_starts.view(-1).index_select(0, by_key)
    ends = torch.cumsum(lengths, 0, dtype=index)
    run_starts = ends - lengths
    # a run's first slot less the last slot of the run before, less the step k
    jumps = sources.clone()
    jumps[1:] -= sources[:-1]
    lengths -= 1
    jumps[1:] -= lengths[:-1] * k
    steps = torch.full((points * k,), k, dtype=index, device=device)
    steps.scatter_(0, run_starts.long(), jumps)
    slots = torch.cumsum(steps, 0, dtype=index)
    ordered = by_simplex.to(index)[:, None].expand(points, k).reshape(-1)
    members = ordered.index_select(0, slots)
    counts = torch.diff(run_starts.index_select(0, heads), append=ends[-1:])
    return members, slots, counts


def _neighbours(codes: Tensor, strides: list[int], groups: int) -> Tensor:
    """Each lattice point's neighbour one step along each direction, (d+1) × L (L: none),
    for the lattice points' codes (sorted).

    A step along direction j adds d to coordinate j and takes 1 off the others: from
    remainder r ≥ 1 to r - 1 with quotient j one up; from remainder 0 to d with all
    quotients but j's one down (the last coordinate has no digit).  The wanted codes are
    sorted together with the points' (the points' first at equal codes): each finds its
    point just before it, where there is one."""
    d = len(strides) - 1
    lattice_points = codes.numel()
    quotients = strides[-1] * groups  # the codes of one remainder
    total = sum(strides[:d])
    step_down = [s - quotients for s in strides[:d]] + [-quotients]
    step_wrap = [d * quotients - total + s for s in strides[:d]] + [d * quotients - total]
    device = codes.device
    moves = torch.where(
        codes[None] >= quotients,
        torch.tensor(step_down, device=device)[:, None],
        torch.tensor(step_wrap, device=device)[:, None],
    )
    wanted = codes[None] + moves.to(codes.dtype)
    tagged = torch.int32 if 2 * (d + 1) * quotients < 2**31 else torch.int64
    both = torch.cat([codes.to(tagged) * 2, wanted.view(-1).to(tagged) * 2 + 1])
    sorted_both, by_both = torch.sort(both)
    is_point = (sorted_both & 1) == 0
    last_point = (torch.cumsum(is_point, 0, dtype=torch.int32) - 1).clamp_(min=0)
    found = (codes.index_select(0, last_point).to(tagged) * 2 + 1 == sorted_both) & ~is_point
    numbers = torch.where(found, last_point, lattice_points)
    up = torch.empty_like(numbers).scatter_(0, by_both, numbers)
    return up[lattice_points:].view(d + 1, lattice_points)


def _index_wide(simplices: Simplices, group: Tensor | None) -> LatticeIndex:
    """Lattice points named by their coordinate rows (``wide_lattice``)."""
    corner, rank = simplices.corner.long(), simplices.rank.long()
    d, points = corner.shape
    device = corner.device
    steps = torch.arange(d + 1, device=device)
    high = rank[None, :d] > (d - steps)[:, None, None]  # vertex × coordinate × point
    keys = (d + 1) * corner[None] + steps[:, None, None] - (d + 1) * high.long()
    if group is None:
        group = torch.zeros(points, dtype=torch.long, device=device)
    keys = torch.cat([keys, group.expand(d + 1, 1, points)], 1)
    lattice_of, order, counts, up = index_rows(keys.permute(0, 2, 1).reshape(-1, d + 1), d)
    members = order % points
    up = torch.stack(up)
    return LatticeIndex(
        lattice_of.view(d + 1, points).t().contiguous(),
        members,
        None,
        members * (d + 1) + order // points,
        counts,
        torch.where(up >= 0, up, counts.numel()),
    )
