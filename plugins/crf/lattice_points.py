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
from segkit_plugins.crf.tasks import Tasks
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

    def splat_weights(self, weights: Tensor, tasks: Tasks) -> Tensor:
        """``weights`` (points × (d+1)) of the vertices in the order of ``members``."""
        if self.order is not None:  # rows in order of the simplices: the slots run on
            ordered = torch.empty_like(weights)
            tasks.map(
                lambda span: torch.index_select(weights, 0, self.order[span], out=ordered[span]),
                tasks.pieces(self.order.numel()),
            )
            weights = ordered
        selected = weights.new_empty(self.slots.numel())
        tasks.map(
            lambda span: torch.index_select(
                weights.view(-1), 0, self.slots[span], out=selected[span]
            ),
            tasks.pieces(self.slots.numel()),
        )
        return selected


@dataclass
class _Layout:
    """How lattice points are coded: quotient j (of coordinate j by d+1, offset so that
    every vertex's and neighbour's is at least 0) has weight ``strides[j]``, the group
    ``strides[d]``, the remainder r ``quotients`` (all codes of one remainder lie below
    it)."""

    low: list[int]
    strides: list[int]
    groups: int

    @classmethod
    def of(cls, parts: list[Simplices], groups: int) -> _Layout:
        low = torch.stack([part.corner.amin(1) for part in parts]).amin(0).tolist()
        high = torch.stack([part.corner.amax(1) for part in parts]).amax(0).tolist()
        # a vertex's quotients lie within one of its corner's, a neighbour's within one more
        strides = [1]
        for bottom, top in zip(low, high, strict=True):
            strides.append(strides[-1] * (top - bottom + 4))
        return cls(low, strides, groups)

    @property
    def quotients(self) -> int:
        return self.strides[-1] * self.groups

    @property
    def bound(self) -> int:
        return len(self.strides) * self.quotients


@dataclass
class _Part:
    """One part's points grouped by simplex: their numbers in order of simplex, where
    each simplex's run starts, each point's simplex, and the codes of the simplices'
    vertices, (d+1) × simplices."""

    by_simplex: Tensor
    starts: Tensor
    simplex_of: Tensor
    codes: Tensor


def index_lattice(
    parts: list[Simplices], spans: list[slice], group: Tensor | None, groups: int, tasks: Tasks
) -> LatticeIndex:
    """The lattice points of the simplices of the points, given in ``parts`` (the points
    of ``spans``); points of different ``group`` (an int64 per point, or None for one
    group) never share one.  The parts are grouped by simplex apart, and the lattice
    points are named and listed in two runs of codes apart."""
    d = parts[0].corner.shape[0]
    points = spans[-1].stop
    layout = _Layout.of(parts, groups)
    permutations = (d + 1) ** d
    if layout.quotients * max(d + 1, permutations) >= LARGEST_CODE:
        return _index_wide(parts, group)
    grouped = tasks.map(
        lambda i: _group_part(parts[i], None if group is None else group[spans[i]], layout),
        range(len(parts)),
    )
    # the parts' simplices one after the other
    codes = torch.cat([part.codes for part in grouped], 1)
    by_simplex = torch.cat(
        [part.by_simplex + span.start for part, span in zip(grouped, spans, strict=True)]
    )
    starts = torch.cat(
        [part.starts + span.start for part, span in zip(grouped, spans, strict=True)]
    )
    sizes = torch.diff(starts, append=starts.new_full((1,), points))
    named = tasks.map(lambda side: _Named(codes.view(-1), side), _sides(codes.view(-1), tasks))
    heads_before = 0
    for entry in named:
        entry.first_id = heads_before
        heads_before += entry.heads.numel()
    device = codes.device
    simplices = codes.shape[1]
    lattice_of = torch.empty(d + 1, simplices, dtype=torch.int32, device=device)
    index = torch.int32 if points * (d + 1) < 2**31 else torch.int64
    ordered = by_simplex.to(index)[:, None].expand(points, d + 1).reshape(-1)
    listed = tasks.map(lambda entry: entry.list(lattice_of, ordered, starts, sizes, d + 1), named)
    offsets = [0]
    for part in grouped:
        offsets.append(offsets[-1] + part.codes.shape[1])
    vertices = torch.empty(points, d + 1, dtype=torch.int32, device=device)
    tasks.map(
        lambda i: torch.index_select(
            lattice_of[:, offsets[i] : offsets[i + 1]].t().contiguous(),
            0,
            grouped[i].simplex_of,
            out=vertices[spans[i]],
        ),
        range(len(parts)),
    )
    members = torch.cat([entry[0] for entry in listed])
    slots = torch.cat([entry[1] for entry in listed])
    counts = torch.cat([entry[2] for entry in listed])
    unique = torch.cat([entry.unique for entry in named])
    up = _neighbours(unique, layout.strides)
    return LatticeIndex(vertices, members, by_simplex, slots, counts, up)


def _group_part(simplices: Simplices, group: Tensor | None, layout: _Layout) -> _Part:
    """One part's points grouped by simplex, and the codes of the simplices' vertices."""
    corner, rank = simplices.corner, simplices.rank
    d, points = corner.shape
    corner_code = torch.zeros(points, dtype=torch.int64, device=corner.device)
    for j in range(d):
        corner_code.add_(corner[j] - (layout.low[j] - 2), alpha=layout.strides[j])
    if group is not None:
        corner_code.add_(group, alpha=layout.strides[d])
    # one key per simplex: its corner, its group and the order of its coordinates
    permutations = (d + 1) ** d
    simplex_key = corner_code * permutations
    for i in range(d):
        simplex_key.add_(rank[i], alpha=(d + 1) ** i)
    if layout.quotients * permutations < 2**31:
        simplex_key = simplex_key.to(torch.int32)
    by_simplex, starts, simplex_of = _group(simplex_key)
    first = by_simplex.index_select(0, starts)
    code_type = torch.int32 if layout.bound < 2**31 else torch.int64
    codes = _vertex_codes(
        corner_code.index_select(0, first),
        rank,
        first,
        layout.strides[:-1],
        layout.quotients,
        code_type,
    )
    return _Part(by_simplex, starts, simplex_of, codes)


def _sides(codes: Tensor, tasks: Tasks) -> list[Tensor | None]:
    """Which of ``codes`` to name apart: the numbers of those below a middle code and of
    the others, or all of them (None) without helpers."""
    if not tasks.helpers or codes.numel() < 2**16:
        return [None]
    middle = torch.sort(codes[:: max(codes.numel() // 1024, 1)]).values[512]
    low = codes < middle
    return tasks.map(lambda side: side.nonzero()[:, 0], [low, ~low])


class _Named:
    """Some simplex vertices (``entries`` of all, numbered r · simplices + s; None: all)
    in order of their codes: where each lattice point's run starts, and the lattice
    points' codes."""

    def __init__(self, codes: Tensor, entries: Tensor | None) -> None:
        self.sorted_codes, self.by_code = torch.sort(
            codes if entries is None else codes.index_select(0, entries)
        )
        if entries is not None:
            self.by_code = entries.index_select(0, self.by_code)
        self.is_first = torch.ones_like(self.sorted_codes, dtype=torch.bool)
        self.is_first[1:] = self.sorted_codes[1:] != self.sorted_codes[:-1]
        self.heads = self.is_first.nonzero()[:, 0]
        self.unique = self.sorted_codes.index_select(0, self.heads)
        self.first_id = 0

    def list(
        self, lattice_of: Tensor, ordered: Tensor, starts: Tensor, sizes: Tensor, k: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Fill in ``lattice_of`` for these vertices, and list them
        (:func:`_expand_simplices`)."""
        numbers = torch.cumsum(self.is_first, 0, dtype=torch.int32)
        numbers += self.first_id - 1
        lattice_of.view(-1).scatter_(0, self.by_code, numbers)
        return _expand_simplices(self.by_code, self.heads, ordered, starts, sizes, k)


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
    codes *= d + 1
    codes += torch.arange(d + 1, dtype=dtype, device=rank.device)[:, None]
    return codes


def _expand_simplices(
    by_key: Tensor, heads: Tensor, ordered: Tensor, starts: Tensor, sizes: Tensor, k: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The points of the simplex vertices ``by_key`` (numbered r · simplices + s, grouped
    by lattice point, each lattice point's first at ``heads``), the slot i·k + r of each
    (point number i in the order of the simplices, vertex r), and the vertex count of
    each lattice point: each simplex vertex stands for all the points of its simplex,
    which lie together in that order.  ``ordered`` holds the point of each slot.

    The slots of one simplex vertex run from k·starts[s] + r in steps of k: all the
    slots, one run after the other, are a running sum of k's with a jump at each run's
    first."""
    index = ordered.dtype
    device = ordered.device
    vertex = torch.arange(k, dtype=index, device=device)
    lengths = sizes.to(index).repeat(k).index_select(0, by_key)
    sources = (starts.to(index)[None] * k + vertex[:, None]).view(-1).index_select(0, by_key)
    ends = torch.cumsum(lengths, 0, dtype=index)
    run_starts = ends - lengths
    # a run's first slot less the last slot of the run before, less the step k
    jumps = sources.clone()
    jumps[1:] -= sources[:-1]
    lengths -= 1
    jumps[1:] -= lengths[:-1] * k
    steps = torch.full((int(ends[-1]),), k, dtype=index, device=device)
    steps.scatter_(0, run_starts.long(), jumps)
    slots = torch.cumsum(steps, 0, dtype=index)
    members = ordered.index_select(0, slots)
    counts = torch.diff(run_starts.index_select(0, heads), append=ends[-1:])
    return members, slots, counts


def _neighbours(codes: Tensor, strides: list[int]) -> Tensor:
    """Each lattice point's neighbour one step along each direction, (d+1) × L (L: none),
    for the lattice points' codes (sorted).

    A step along direction j adds d to coordinate j and takes 1 off the others: from
    remainder r ≥ 1 to r - 1 with quotient j one up; from remainder 0 to d with all
    quotients but j's one down (the last coordinate has no digit).  The wanted codes are
    sorted together with the points' (the points' first at equal codes): each finds its
    point just before it, where there is one."""
    d = len(strides) - 1
    k = d + 1
    lattice_points = codes.numel()
    total = sum(strides[:d])
    step_down = [k * s - 1 for s in strides[:d]] + [-1]
    step_wrap = [d - k * (total - s) for s in strides[:d]] + [d - k * total]
    device = codes.device
    moves = torch.where(
        codes[None] % k > 0,
        torch.tensor(step_down, device=device)[:, None],
        torch.tensor(step_wrap, device=device)[:, None],
    )
    wanted = codes[None] + moves.to(codes.dtype)
    tagged = torch.int32 if 2 * int(codes[-1]) + 2 * k * total < 2**31 else torch.int64
    both = torch.cat([codes.to(tagged) * 2, wanted.view(-1).to(tagged) * 2 + 1])
    sorted_both, by_both = torch.sort(both)
    is_point = (sorted_both & 1) == 0
    last_point = (torch.cumsum(is_point, 0, dtype=torch.int32) - 1).clamp_(min=0)
    found = (codes.index_select(0, last_point).to(tagged) * 2 + 1 == sorted_both) & ~is_point
    numbers = torch.where(found, last_point, lattice_points)
    up = torch.empty_like(numbers).scatter_(0, by_both, numbers)
    return up[lattice_points:].view(k, lattice_points)


def _index_wide(parts: list[Simplices], group: Tensor | None) -> LatticeIndex:
    """Lattice points named by their coordinate rows (``wide_lattice``)."""
    corner = torch.cat([part.corner for part in parts], 1).long()
    rank = torch.cat([part.rank for part in parts], 1).long()
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
