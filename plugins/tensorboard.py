"""TensorBoard logging of a run's per-epoch metrics, active when tensorboard is installed.

Install it with ``pip install segkit[tensorboard]``; the scalars land in
``<run dir>/tensorboard``.  Without tensorboard this plugin registers nothing.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

from segkit import hookimpl

try:
    from torch.utils.tensorboard import SummaryWriter
except ImportError:  # tensorboard is optional
    SummaryWriter = None

_writers: dict[int, Any] = {}


def _writer(run: Any) -> Any:
    if SummaryWriter is None or not run.is_main:
        return None
    if id(run) not in _writers:
        _writers[id(run)] = SummaryWriter(log_dir=str(run.run_dir / "tensorboard"))
    return _writers[id(run)]


@hookimpl
def on_epoch_end(run: Any, epoch: int, metrics: dict[str, Any]) -> None:
    writer = _writer(run)
    if writer is None:
        return
    for key, value in metrics.items():
        if isinstance(value, Real) and key != "epoch":
            writer.add_scalar(f"train/{key}", value, epoch)
    writer.flush()


@hookimpl
def on_run_end(run: Any, summary: dict[str, Any]) -> None:
    writer = _writers.pop(id(run), None) if SummaryWriter is not None else None
    if writer is None:
        return
    for name, result in {"raw": summary, **summary.get("postprocessed", {})}.items():
        if result.get("miou") is not None:
            writer.add_scalar(f"final/miou/{name}", result["miou"])
    writer.close()
