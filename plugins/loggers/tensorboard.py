"""TensorBoard logging of a run's per-epoch metrics, active when tensorboard is installed.

Install it with ``pip install segkit[tensorboard]``; the scalars land in
``<run dir>/tensorboard``.  Without tensorboard it does nothing.
"""

from __future__ import annotations

import functools
from numbers import Real
from typing import TYPE_CHECKING, Any

from segkit import hookimpl

if TYPE_CHECKING:
    from segkit.train import Run

_writers: dict[int, Any] = {}


@functools.cache
def _summary_writer() -> Any:
    """tensorboard's writer class, or None without tensorboard (imported by a run only)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter


def _writer(run: Run) -> Any:
    writer_class = _summary_writer()
    if writer_class is None or not run.is_main:
        return None
    if id(run) not in _writers:
        _writers[id(run)] = writer_class(log_dir=str(run.run_dir / "tensorboard"))
    return _writers[id(run)]


@hookimpl
def on_epoch_end(run: Run, epoch: int, metrics: dict[str, Any]) -> None:
    writer = _writer(run)
    if writer is None:
        return
    for key, value in metrics.items():
        if isinstance(value, Real) and key != "epoch":
            writer.add_scalar(f"train/{key}", value, epoch)
    writer.flush()


@hookimpl
def on_run_end(run: Run, summary: dict[str, Any], error: BaseException | None) -> None:
    writer = _writers.pop(id(run), None)
    if writer is None:
        return
    if error is not None:  # the scalars written so far stay; there is no final evaluation
        writer.close()
        return
    for name, result in {"raw": summary, **summary.get("postprocessed", {})}.items():
        if result.get("miou") is not None:
            writer.add_scalar(f"final/miou/{name}", result["miou"])
    writer.close()
