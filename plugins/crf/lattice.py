"""A permutohedral lattice (Adams, Baek & Davis 2010) as sparse weighted gathers, for
Gaussian filtering in a 5-dimensional (position and colour) or 2-dimensional (position)
space.

A filter is built once per image: splatting each pixel onto the d+1 vertices of its
enclosing simplex, blurring along each of the d+1 lattice directions, and slicing
back are weighted gathers (:class:`Gather`), so that filtering C channels gathers rows
of C values.  Pixels of a colour-homogeneous region mostly share one simplex: the
lattice points are found from the distinct simplices, not from every pixel's d+1
vertices, which spares sorting (d+1)·pixels codes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from segkit_plugins.crf.wide_lattice import index_rows
from torch import Tensor
from torch.profiler import record_function

from segkit import ensure_memory

#: Lattice points are named by one int64 code below this; wider coordinates take a slower path.
_LARGEST_CODE = 2**62


class Gather:
    """A sparse matrix applied as a weighted gather: row i of the product is
    Σ weights[k] · x[indices[k]] over the k of its bag, ``offsets[i]`` to ``offsets[i+1]``.

    ``embedding_bag`` computes exactly this; on the CPU, measured apart at 0.25 MP with
    21 classes, it splats 2–5× and slices about 2× faster than the same matrices as CSR
    products, and needs no padding of the classes to whole vectors.
    """

    def __init__(self, indices: Tensor, offsets: Tensor, weights: Tensor) -> None:
        self.indices, self.offsets, self.weights = indices, offsets, weights

    @property
    def rows(self) -> int:
        return self.offsets.numel()

    def to(self, dtype: torch.dtype) -> Gather:
        return Gather(self.indices, self.offsets, self.weights.to(dtype))

    def __call__(self, x: Tensor) -> Tensor:
        return F.embedding_bag(
            self.indices, x, self.offsets, mode="sum", per_sample_weights=self.weights
        )


class LatticeFilter:
    """A symmetric-normalised, weighted Gaussian filter on a permutohedral lattice.

    ``filter(x)`` maps rows of ``x`` (one per point) to ``weight · D^-½ S^T B S D^-½ x``:
    splat ``S`` spreads each point onto the d+1 vertices of its enclosing simplex with
    barycentric weights, ``B = B_d ⋯ B_0`` blurs with [½ 1 ½] along each lattice
    direction, slicing reads back with the same weights, and ``D`` is the filter of a
    constant.  The normalisation and the weight are folded into the splat and slice
    weights.  The filter is symmetric up to the order of the blurs, so its transpose
    is the same gathers with the blurs reversed.
    """

    def __init__(self, splat: Gather, blurs: list[Gather], slice_: Gather) -> None:
        self.splat, self.blurs, self.slice = splat, blurs, slice_
        self._by_dtype: dict[torch.dtype, LatticeFilter] = {splat.weights.dtype: self}

    @property
    def lattice_points(self) -> int:
        return self.splat.rows

    def to(self, dtype: torch.dtype) -> LatticeFilter:
        """The same filter computing in ``dtype`` (float64 for gradient checks)."""
        if dtype not in self._by_dtype:
            blurs = [blur.to(dtype) for blur in self.blurs]
            converted = LatticeFilter(self.splat.to(dtype), blurs, self.slice.to(dtype))
            self._by_dtype[dtype] = converted
        return self._by_dtype[dtype]

    def __call__(self, x: Tensor, transpose: bool = False) -> Tensor:
        values = self.lattice_values(x, transpose)
        with record_function("lattice slice"):
            return self.to(x.dtype).slice(values)

    def lattice_values(self, x: Tensor, transpose: bool = False) -> Tensor:
        """``x`` splatted onto the lattice and blurred: what slicing reads back."""
        ops = self.to(x.dtype)
        with record_function("lattice splat"):
            values = ops.splat(x)
        with record_function("lattice blur"):
            for blur in reversed(ops.blurs) if transpose else ops.blurs:
                values = blur(values)
        return values


class FilterFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, lattice: LatticeFilter) -> Tensor:
        ctx.lattice = lattice
        return lattice(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return ctx.lattice(grad.contiguous(), transpose=True), None


def spatial_filter(
    height: int, width: int, sxy: float, weight: float, device: str
) -> LatticeFilter:
    """The smoothness kernel's filter, which depends on the image size alone: kept for the
    last few sizes up to 2 megapixels (about 50 bytes a pixel)."""
    if height * width <= _CACHED_PIXELS:
        return _cached_spatial_filter(height, width, sxy, weight, device)
    return _build_spatial_filter(height, width, sxy, weight, device)


_CACHED_PIXELS = 2**21


def _build_spatial_filter(
    height: int, width: int, sxy: float, weight: float, device: str
) -> LatticeFilter:
    with torch.inference_mode(False), torch.no_grad():
        ys, xs = _pixel_grid(height, width, torch.device(device))
        features = torch.stack([xs / np.float32(sxy), ys / np.float32(sxy)], 1)
        return build_lattice_filter(features, weight=weight)


_cached_spatial_filter = functools.lru_cache(maxsize=4)(_build_spatial_filter)


def bilateral_filter(
    images: Tensor, sxy: float, srgb: float, weight: float, classes: int
) -> LatticeFilter:
    n, _, height, width = images.shape

    def check_lattice_size(lattice_points: int) -> None:
        # the blurs and the values on the lattice are still to come
        ensure_memory(
            lattice_points * ((d + 1) * 32 + 12 * classes),
            images.device,
            f"the dense CRF's lattice for {n} image(s) of {height}×{width} "
            f"({lattice_points} points)",
        )

    d = 5
    with torch.inference_mode(False), torch.no_grad():
        ys, xs = _pixel_grid(height, width, images.device)
        rgb = images.permute(2, 3, 0, 1).reshape(height * width * n, 3).float() / np.float32(srgb)
        positions = torch.stack([xs / np.float32(sxy), ys / np.float32(sxy)], 1)
        if n == 1:  # one image: no copies of the positions, no groups
            features, group = torch.cat([positions, rgb], 1), None
        else:
            features = torch.cat([positions.repeat_interleave(n, 0), rgb], 1)
            group = torch.arange(n, device=images.device).repeat(height * width)
        return build_lattice_filter(features, weight, group, n, on_lattice_size=check_lattice_size)


def _pixel_grid(height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    ys = torch.arange(height, device=device, dtype=torch.float32).repeat_interleave(width)
    xs = torch.arange(width, device=device, dtype=torch.float32).repeat(height)
    return ys, xs


def build_lattice_filter(
    features: Tensor,
    weight: float = 1.0,
    group: Tensor | None = None,
    groups: int = 1,
    normalize: bool = True,
    on_lattice_size: Callable[[int], None] | None = None,
) -> LatticeFilter:
    """The lattice filter of points with float32 ``features`` (points × d, already divided
    by the kernel widths); points of different ``group`` never interact.
    ``on_lattice_size`` hears the number of lattice points before the blurs are built."""
    points, d = features.shape
    device = features.device
    if group is None:
        group = torch.zeros(points, dtype=torch.long, device=device)
    with record_function("lattice build"):
        # Coordinate-major (d+1 rows of points) keeps every step a contiguous vector
        # operation; vertex r of point p is number r * points + p.
        remainder0, rank, barycentric = _enclosing_simplices(features.t().float().contiguous())
        vertices, by_lattice_point, counts, up = _index_vertices(remainder0, rank, group, groups)
        lattice_points = counts.numel()
        index = torch.int32 if points * (d + 1) < 2**31 - 1 else torch.int64
        # pydensecrf's lattice scales by this constant so that a blurred constant stays near 1
        alpha = 1.0 / (1.0 + 2.0 ** (-d))
        if on_lattice_size is not None:
            on_lattice_size(lattice_points)
        blurs = [_blur_gather(neighbour, index) for neighbour in up]
        if normalize:
            mass = torch.zeros(lattice_points, device=device)
            mass.index_add_(0, vertices.reshape(-1), barycentric.reshape(-1))
            for blur in blurs:
                mass = blur(mass[:, None])[:, 0]
            constant = (barycentric * mass.take(vertices)).sum(0) * alpha
            barycentric = barycentric * torch.rsqrt(constant + 1e-20)
        vertex_weights = barycentric.reshape(-1)
        member, vertex = by_lattice_point
        splat = Gather(
            member.to(index),
            _bag_starts(counts).to(index),
            vertex_weights.take(vertex.mul_(points).add_(member)),
        )
        slice_ = Gather(
            vertices.t().reshape(-1).to(index),
            torch.arange(0, points * (d + 1), d + 1, device=device, dtype=index),
            barycentric.t().reshape(-1) * (alpha * weight),
        )
        return LatticeFilter(splat, blurs, slice_)


def _bag_starts(counts: Tensor) -> Tensor:
    return torch.cumsum(counts, 0) - counts


def _enclosing_simplices(features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For each point (a column of the d × points ``features``): the remainder-0 lattice
    point of its simplex (d × points, the last coordinate follows from a zero sum), the
    rank of each of its d+1 coordinates, and its d+1 barycentric weights (Adams et al.
    2010, sections 3 and 4).

    The float32 arithmetic follows pydensecrf's SSE code step by step, so that both put
    every point in the same simplex with the same weights.
    """
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
    # pydensecrf's ranking: for i < j, i ranks up if r_i < r_j, else j does
    rank = torch.zeros(d + 1, points, dtype=torch.long, device=device)
    for i in range(d):
        for j in range(i + 1, d + 1):
            less = residual[i] < residual[j]
            rank[i] += less
            rank[j] += ~less
    rank += nearest.sum(0).long()
    wrap = (rank < 0).long() - (rank > d).long()
    rank += (d + 1) * wrap
    remainder0 += (d + 1) * wrap

    weights = (elevated - remainder0) * down
    barycentric = torch.zeros(d + 2, points, dtype=torch.float32, device=device)
    barycentric.scatter_add_(0, d - rank, weights)
    barycentric.scatter_add_(0, d - rank + 1, -weights)
    barycentric[0] += 1 + barycentric[d + 1]
    return remainder0[:d].long(), rank, barycentric[: d + 1]


def _index_vertices(
    remainder0: Tensor, rank: Tensor, group: Tensor, groups: int
) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
    """Number the lattice points that the simplices touch and find their neighbours.

    Returns the lattice point of each vertex ((d+1) × points), the points and vertex
    numbers r of all vertices grouped by lattice point, the vertex
    count of each lattice point, and for each of the d+1 lattice directions the index
    of every lattice point's neighbour one step along it (-1 when no pixel touches that
    neighbour).  A lattice point is named by its first d coordinates (the last follows,
    as all sum to zero) plus the group.
    """
    d, points = remainder0.shape
    device = remainder0.device
    low = remainder0.min(1).values - 2 * (d + 1)
    radix = remainder0.max(1).values + 2 * (d + 1) - low + 1
    strides = [1]
    for size in radix.tolist():
        strides.append(strides[-1] * size)
    steps = torch.arange(d + 1, device=device)
    # a simplex is its remainder-0 point and the order of its coordinates (a permutation)
    orders = (d + 1) ** (d + 1)
    if strides[-1] * groups * orders < _LARGEST_CODE:
        stride = torch.tensor(strides[:-1], device=device)
        base = ((remainder0 - low[:, None]) * stride[:, None]).sum(0) + group * strides[-1]
        order = (rank * (d + 1) ** steps[:, None]).sum(0)
        points_by_simplex, simplex_starts, simplex_of = _group(base * orders + order)
        # the codes of the d+1 vertices of one point of each simplex stand for all of it
        first = points_by_simplex.take(simplex_starts)
        base, rank = base.take(first), rank.index_select(1, first)
        # Vertex r is remainder0 + r, less d+1 on the coordinates ranked above d - r, so
        # going from vertex r-1 to r adds r's step and takes d+1 off one more coordinate:
        # the one ranked d - r + 1 (the last coordinate has no place in the code).
        simplices = first.numel()
        by_rank = torch.empty_like(rank).scatter_(0, rank, steps[:, None].expand(d + 1, simplices))
        stride_of = torch.cat([stride, stride.new_zeros(1)])
        moves = int(stride.sum()) - (d + 1) * stride_of[by_rank[1:].flip(0)]
        codes = torch.cat([base[None], moves]).cumsum_(0)
        # one step along direction j: +d on coordinate j and -1 on all others
        total = sum(strides[:-1])
        neighbour_moves = [(d + 1) * size - total for size in strides[:d]] + [-total]
        lattice_of, entries, _, up = _index_codes(codes.reshape(-1), neighbour_moves)
        vertices = lattice_of.view(d + 1, simplices).index_select(1, simplex_of)
        by_point = _expand_simplices(entries, points_by_simplex, simplex_starts, points)
        counts = torch.bincount(vertices.reshape(-1), minlength=len(up[0]))
        return vertices, by_point, counts, up
    # coordinates too spread for one int64: name lattice points by unique rows instead
    high = rank[None, :d] > (d - steps)[:, None, None]  # vertex × coordinate × point
    keys = remainder0[None] + steps[:, None, None] - (d + 1) * high.long()
    keys = torch.cat([keys, group.expand(d + 1, 1, points)], 1)
    lattice_of, order, counts, up = index_rows(keys.permute(0, 2, 1).reshape(-1, d + 1), d)
    return lattice_of.view(d + 1, points), (order % points, order // points), counts, up


def _group(keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The points in order of their key (ascending within a key), where each key's run
    starts in that order, and each point's key number."""
    sorted_keys, by_key = torch.sort(keys, stable=True)
    first = torch.ones_like(sorted_keys, dtype=torch.bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    numbers = torch.empty_like(by_key)
    numbers[by_key] = first.cumsum(0) - 1
    return by_key, first.nonzero()[:, 0], numbers


def _expand_simplices(
    entries: Tensor, points_by_simplex: Tensor, simplex_starts: Tensor, points: int
) -> tuple[Tensor, Tensor]:
    """The points p and vertices r, grouped by lattice point, from the simplex vertices
    (numbered r * simplices + s) grouped by lattice point: each stands for its
    simplex's points."""
    simplices = simplex_starts.numel()
    sizes = torch.diff(simplex_starts, append=simplex_starts.new_tensor([points]))
    vertex, simplex = entries // simplices, entries % simplices
    lengths = sizes.take(simplex)
    total = points * (entries.numel() // simplices)
    # where each entry's run of points starts among the points grouped by simplex, less
    # where it starts among all the entries' runs: add the position to get the point
    shift = simplex_starts.take(simplex) - (torch.cumsum(lengths, 0) - lengths)
    position = torch.repeat_interleave(shift, lengths, output_size=total)
    position += torch.arange(total, device=entries.device)
    vertices = torch.repeat_interleave(vertex, lengths, output_size=total)
    return points_by_simplex.take(position), vertices


def _index_codes(codes: Tensor, moves: list[int]) -> tuple[Tensor, Tensor, Tensor, list]:
    """The lattice point of each code, the codes grouped by lattice point, each lattice
    point's code count, and each lattice point's neighbour after each move (-1: none).

    The lattice points are numbered in a fixed shuffled order, not in order of their
    codes: a few points of a flat region gather most pixels, and in code order they
    cluster, so that the threads splatting the first and the second half of the points
    got a sixth and five sixths of the work."""
    sorted_codes, order = torch.sort(codes)
    first = torch.ones_like(sorted_codes, dtype=torch.bool)
    first[1:] = sorted_codes[1:] != sorted_codes[:-1]
    unique = sorted_codes[first]
    points = unique.numel()
    shuffle = torch.randperm(points, generator=torch.Generator().manual_seed(0))
    shuffle = shuffle.to(codes.device)
    ids = shuffle.take(first.cumsum(0) - 1)
    regroup = torch.argsort(ids)
    order, ids = order.take(regroup), ids.take(regroup)
    offsets = torch.empty_like(ids)
    offsets[order] = ids
    counts = torch.bincount(ids, minlength=points)
    up = []
    for move in moves:
        wanted = unique + move
        found = torch.searchsorted(unique, wanted).clamp_(max=points - 1)
        neighbour = torch.where(unique[found] == wanted, shuffle.take(found), -1)
        up.append(torch.empty_like(neighbour).scatter_(0, shuffle, neighbour))
    return offsets, order, counts, up


def _blur_gather(up: Tensor, index: torch.dtype) -> Gather:
    """The [½ 1 ½] blur along one direction; a point's neighbour below is the point
    whose neighbour above it is."""
    lattice_points = up.numel()
    device = up.device
    own = torch.arange(lattice_points, device=device)
    down = torch.full_like(up, -1)
    has_up = up >= 0
    down[up[has_up]] = own[has_up]
    columns = torch.stack([down, own, up], 1)
    present = columns >= 0
    values = torch.tensor([0.5, 1.0, 0.5], device=device).expand(lattice_points, 3)
    return Gather(
        columns[present].to(index), _bag_starts(present.sum(1)).to(index), values[present]
    )
