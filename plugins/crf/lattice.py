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
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from segkit_plugins.crf.lattice_points import index_lattice
from segkit_plugins.crf.simplices import enclosing_simplices
from segkit_plugins.crf.tasks import cpu_tasks
from torch import Tensor
from torch.profiler import record_function

from segkit import ensure_memory


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

    def split(self, pieces: int) -> list[Gather]:
        """The same rows, in ``pieces`` runs of rows of about equal numbers of entries."""
        total = self.indices.numel()
        if pieces == 1 or self.rows < pieces:
            return [self]
        wanted = torch.tensor([total * i // pieces for i in range(1, pieces)])
        cuts = torch.searchsorted(self.offsets.cpu().long(), wanted).tolist()
        bounds = [0, *cuts, self.rows]
        starts = [*self.offsets[bounds[:-1]].tolist(), total]
        return [
            Gather(
                self.indices[starts[i] : starts[i + 1]],
                self.offsets[bounds[i] : bounds[i + 1]] - starts[i],
                self.weights[starts[i] : starts[i + 1]],
            )
            for i in range(pieces)
        ]


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
        self._splat_pieces: dict[int, list[Gather]] = {}

    def splat_pieces(self, pieces: int) -> list[Gather]:
        """The splat in ``pieces`` of about equal work (:meth:`Gather.split`)."""
        if pieces not in self._splat_pieces:
            self._splat_pieces[pieces] = self.splat.split(pieces)
        return self._splat_pieces[pieces]

    @property
    def lattice_points(self) -> int:
        return self.splat.rows - 1

    @property
    def value_rows(self) -> int:
        """Rows of the values on the lattice: one per point and one more, always 0."""
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
        # in pieces of equal work: PyTorch's threads would split the lattice points evenly,
        # and a few points of flat regions take most pixels
        with record_function("lattice splat"), cpu_tasks(x.device) as tasks:
            values = joined_rows(tasks.map(lambda piece: piece(x), ops.splat_pieces(tasks.workers)))
        return ops.blur(values, transpose)

    def blur(self, values: Tensor, transpose: bool = False) -> Tensor:
        with record_function("lattice blur"):
            for blur in reversed(self.blurs) if transpose else self.blurs:
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
        features = torch.stack([xs / np.float32(sxy), ys / np.float32(sxy)])
        return _build(features, weight, None, 1, True, None)


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
        # coordinate-major, points pixel-major and image-minor: no transposed copies
        features = torch.empty(d, height * width * n, device=images.device)
        ys, xs = _pixel_grid(height, width, images.device)
        for row, values in enumerate((xs, ys)):
            values = values / np.float32(sxy)
            features[row] = values if n == 1 else values.repeat_interleave(n)
        rgb = images.permute(1, 2, 3, 0).reshape(3, -1)
        torch.div(rgb, np.float32(srgb), out=features[2:])
        group = None
        if n > 1:
            group = torch.arange(n, device=images.device).repeat(height * width)
        return _build(features, weight, group, n, True, check_lattice_size)


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
    features = features.t().float().contiguous()
    return _build(features, weight, group, groups, normalize, on_lattice_size)


def _build(
    features: Tensor,
    weight: float,
    group: Tensor | None,
    groups: int,
    normalize: bool,
    on_lattice_size: Callable[[int], None] | None,
) -> LatticeFilter:
    """:func:`build_lattice_filter` of coordinate-major features (d × points)."""
    d, points = features.shape
    device = features.device
    with record_function("lattice build"), cpu_tasks(device) as tasks:
        spans = tasks.pieces(points)
        barycentric = torch.empty(points, d + 1, device=device)  # as sliced
        parts = tasks.map(
            lambda span: enclosing_simplices(features[:, span], barycentric[span]), spans
        )
        found = index_lattice(parts, spans, group, groups, tasks)
        lattice_points = found.lattice_points
        index = torch.int32 if points * (d + 1) < 2**31 - 1 else torch.int64
        # pydensecrf's lattice scales by this constant so that a blurred constant stays near 1
        alpha = 1.0 / (1.0 + 2.0 ** (-d))
        if on_lattice_size is not None:
            on_lattice_size(lattice_points)
        blurs = _blur_gathers(found.up, index)
        vertices = found.vertices.view(-1).to(index)
        slice_offsets = torch.arange(0, points * (d + 1), d + 1, device=device, dtype=index)
        if normalize:
            mass = sum(
                tasks.map(
                    lambda span: torch.zeros(lattice_points + 1, device=device).index_add_(
                        0, found.vertices[span].view(-1), barycentric[span].view(-1)
                    ),
                    spans,
                )
            )
            for blur in blurs:
                mass = blur(mass[:, None])[:, 0]
            tasks.map(
                lambda span: _normalise(barycentric[span], found.vertices[span], mass, alpha), spans
            )
        splat = Gather(
            found.members.to(index),
            _bag_starts(torch.cat([found.counts, found.counts.new_zeros(1)])).to(index),
            found.splat_weights(barycentric, tasks),
        )
        slice_weights = torch.empty_like(barycentric)
        tasks.map(
            lambda span: torch.mul(barycentric[span], alpha * weight, out=slice_weights[span]),
            spans,
        )
        slice_ = Gather(vertices, slice_offsets, slice_weights.view(-1))
        return LatticeFilter(splat, blurs, slice_)


def _normalise(barycentric: Tensor, vertices: Tensor, mass: Tensor, alpha: float) -> None:
    """Scales the points' ``barycentric`` weights by D^-½ (the filter of a constant is D)."""
    points, k = barycentric.shape
    offsets = torch.arange(0, points * k, k, device=vertices.device, dtype=vertices.dtype)
    constant = Gather(vertices.view(-1), offsets, barycentric.view(-1))(mass[:, None])
    barycentric *= torch.rsqrt(constant * alpha + 1e-20)


def joined_rows(pieces: list[Tensor]) -> Tensor:
    """The rows of ``pieces`` one after the other (no copy of a single piece)."""
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def _bag_starts(counts: Tensor) -> Tensor:
    return torch.cumsum(counts, 0) - counts


def _blur_gathers(up: Tensor, index: torch.dtype) -> list[Gather]:
    """The [½ 1 ½] blur along each direction (a row of ``up``, where L, the number of
    lattice points, stands for no neighbour) of the L + 1 lattice values, the last 0.
    A point's neighbour below is the point whose neighbour above it is."""
    directions, lattice_points = up.shape
    device = up.device
    up = up.long()
    own = torch.arange(lattice_points, device=device).expand_as(up)
    # column L takes the writes of the points without a neighbour above
    down = torch.full((directions, lattice_points + 1), lattice_points, device=device)
    down.scatter_(1, up, own)
    bags = torch.full((directions, lattice_points + 1, 3), lattice_points, device=device)
    bags[:, :-1] = torch.stack([down[:, :-1], own, up], 2)
    offsets = torch.arange(0, 3 * (lattice_points + 1), 3, device=device, dtype=index)
    values = torch.tensor([0.5, 1.0, 0.5], device=device).repeat(lattice_points + 1)
    return [Gather(bag.view(-1).to(index), offsets, values) for bag in bags]
