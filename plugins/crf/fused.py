"""One image's mean-field update on the CPU (``densecrf_torch`` without autograd): the
logits as a single weighted gather by blocks of pixels, in base 2, and the softmax
written into Q in place."""

from __future__ import annotations

import math

import torch
from segkit_plugins.crf.lattice import Gather, LatticeFilter, joined_rows
from segkit_plugins.crf.tasks import Tasks
from torch import Tensor
from torch.profiler import record_function

#: The logits of the updates without autograd are kept in base 2: e^x = 2^(x·log2 e).
LOG2_E = math.log2(math.e)


def softmax2_rows_(logits: Tensor) -> Tensor:
    """2^logits normalised along dim 1 of (pixels × classes) rows, in place: the softmax
    of logits given in base 2 (times log2 e), whose rows' maxima are above -60.

    As :func:`softmax_rows_`: the whole buffer is exponentiated at once and each row
    summed with a matrix-vector product; no shift by each row's maximum is needed while
    no logit reaches 80 (checked on the whole buffer), and no row underflows to zeros
    while its maximum is above -60; otherwise it falls back to torch.softmax."""
    if logits.dim() != 2 or not float(logits.amax()) < 80:
        return torch.softmax(logits * math.log(2.0), 1)
    logits.exp2_()
    totals = logits @ logits.new_ones(logits.shape[1], 1)
    return logits.div_(totals)


class FusedUpdate:
    """One image's update Q ← softmax(-ψ_u + Σ_k w_k K̃_k Q), in place in Q.

    The logits, in base 2 (times log2 e, as -ψ_u is given), are a single weighted gather:
    each pixel reads its vertices on every lattice (whose slicing weights carry w_k) and
    its own -ψ_u from one table.  Slicing each lattice apart and adding up the messages
    would write and read the pixels' rows once per lattice more; the table's lattice rows
    are few (a few percent of the pixels) and are copied into it at each update.

    The splats go in pieces, and the gather and the softmax by blocks of pixels, which
    ``tasks`` share out between threads; each block's logits are written into Q as they
    are normalised: a fresh buffer for all the logits at each update cost as much in page
    faults as the softmax itself (the allocator maps a buffer of that size afresh each
    time, where it reuses smaller ones)."""

    #: Logits per block (2 MB in float32): enough blocks to share out evenly, each a few
    #: milliseconds of work.
    BLOCK = 2**19

    def __init__(
        self, filters: list[tuple[LatticeFilter, int]], like: Tensor, tasks: Tasks
    ) -> None:
        """For one image's rows of -unary (its pixels' rows, or its probabilities), whose
        -unary, in base 2, goes into :attr:`unary`."""
        self.lattices = [lattice.to(like.dtype) for lattice, _ in filters]
        self.tasks = tasks
        pixels, classes = filters[0][1], like.shape[1]
        sizes = [lattice.value_rows for lattice in self.lattices]
        self.starts = [sum(sizes[:k]) for k in range(len(sizes) + 1)]
        self.table = like.new_empty(self.starts[-1] + pixels, classes)
        self.unary = self.table[self.starts[-1] :]
        self.splats = [
            (k, part)
            for k, lattice in enumerate(self.lattices)
            for part in lattice.splat_pieces(tasks.workers)
        ]
        widths = [1] + [lattice.slice.indices.numel() // pixels for lattice in self.lattices]
        columns = [sum(widths[:k]) for k in range(len(widths) + 1)]
        slices = [lattice.slice for lattice in self.lattices]
        device = like.device
        indices = torch.empty(pixels, columns[-1], dtype=slices[0].indices.dtype, device=device)
        weights = like.new_empty(pixels, columns[-1])
        indices[:, 0] = torch.arange(pixels, device=device) + self.starts[-1]
        weights[:, 0] = 1
        for k, (gather, start) in enumerate(zip(slices, self.starts, strict=False)):
            part = slice(columns[k + 1], columns[k + 2])
            torch.add(gather.indices.view(pixels, -1), start, out=indices[:, part])
            torch.mul(gather.weights.view(pixels, -1), LOG2_E, out=weights[:, part])
        step = columns[-1]
        block = min(max(self.BLOCK // classes, 1), pixels)
        offsets = torch.arange(0, block * step, step, dtype=indices.dtype, device=device)
        self.blocks = [
            (
                first,
                Gather(
                    indices[first : first + block].view(-1),
                    offsets[: min(block, pixels - first)],
                    weights[first : first + block].view(-1),
                ),
            )
            for first in range(0, pixels, block)
        ]

    def __call__(self, q: Tensor) -> Tensor:
        with record_function("lattice splat"):
            splatted = self.tasks.map(lambda job: job[1](q), self.splats)
        values = [
            joined_rows([out for (k, _), out in zip(self.splats, splatted, strict=True) if k == i])
            for i in range(len(self.lattices))
        ]
        self.tasks.map(lambda k: self._blur(k, values[k]), range(len(self.lattices)))
        self.tasks.map(lambda block: self._slice(q, *block), self.blocks)
        return q

    def _blur(self, k: int, values: Tensor) -> None:
        self.table[self.starts[k] : self.starts[k + 1]] = self.lattices[k].blur(values)

    def _slice(self, q: Tensor, first: int, gather: Gather) -> None:
        with record_function("lattice slice"):
            logits = gather(self.table)
        with record_function("softmax"):
            _softmax2_into(logits, q[first : first + logits.shape[0]], gather, self.table)


def _softmax2_into(logits: Tensor, out: Tensor, gather: Gather, table: Tensor) -> None:
    """``out`` ← the softmax of base-2 ``logits`` (whose rows' maxima are above -60),
    exponentiated in place: 2^logits over their row sums, with no shift by each row's
    maximum.  Whether a logit overflowed (a sum is infinite) or a row underflowed (a sum
    is 0) shows in the sums, after the fact; then the logits, gathered again, take
    torch.softmax."""
    logits.exp2_()
    # one thread sums rows fastest by a matrix-vector product, several by a reduction
    if torch.get_num_threads() == 1:
        totals = logits @ logits.new_ones(logits.shape[1], 1)
    else:
        totals = logits.sum(1, keepdim=True)
    low, high = torch.aminmax(totals)
    if float(low) > 0 and float(high) < math.inf:
        torch.div(logits, totals, out=out)
    else:
        out.copy_(torch.softmax(gather(table) * math.log(2.0), 1))
