"""Naming lattice points by their coordinate rows, for lattices whose coordinates are too
spread to name each point by one int64 code (``lattice.py`` takes this path then)."""

from __future__ import annotations

import torch
from torch import Tensor


def index_rows(keys: Tensor, d: int) -> tuple[Tensor, Tensor, Tensor, list]:
    """For vertices given as rows of d+1 keys: the lattice point of each, the vertices in
    order of their lattice point, each lattice point's vertex count, and for each
    direction every lattice point's neighbour one step along it (-1: none)."""
    offsets = _row_ids(keys)
    order = torch.argsort(offsets, stable=True)
    counts = torch.bincount(offsets)
    lattice_points = counts.numel()
    point_keys = torch.empty(lattice_points, d + 1, dtype=keys.dtype, device=keys.device)
    point_keys[offsets] = keys
    queries = [point_keys]
    for j in range(d + 1):
        step = _direction_step(j, d, keys.device)
        queries.append(point_keys + torch.cat([step, step.new_zeros(1)]))
    ids = _row_ids(torch.cat(queries)).view(d + 2, lattice_points)
    lookup = torch.full((int(ids.max()) + 1,), -1, dtype=torch.long, device=keys.device)
    lookup[ids[0]] = torch.arange(lattice_points, device=keys.device)
    return offsets, order, counts, [lookup[ids[j + 1]] for j in range(d + 1)]


def _row_ids(rows: Tensor) -> Tensor:
    """Dense ids 0..k-1 such that two rows get the same id exactly when they are equal."""
    ids = torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device)
    for column in rows.unbind(1):
        column = column - column.min()
        _, ids = torch.unique(ids * (int(column.max()) + 1) + column, return_inverse=True)
    return ids


def _direction_step(j: int, d: int, device: torch.device) -> Tensor:
    """The step to a point's neighbour along lattice direction j, on the first d coordinates."""
    step = torch.full((d,), -1, dtype=torch.long, device=device)
    if j < d:
        step[j] = d
    return step
