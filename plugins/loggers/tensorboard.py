"""TensorBoard logging of a run's per-epoch metrics, active when tensorboard is installed.

Install it with ``pip install segkit[tensorboard]``; the scalars land in
``<run dir>/tensorboard``.  Without tensorboard this plugin registers nothing.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

from segkit import hookimpl
from segkit.train import Run

try:
    from torch.utils.tensorboard import SummaryWriter
except ImportError:  # tensorboard is optional
    SummaryWriter = None

_writers: dict[int, Any] = {}


def _writer(run: Run) -> Any:
    if SummaryWriter is None or not run.is_main:
        return None
    if id(run) not in _writers:
        _writers[id(run)] = SummaryWriter(log_dir=str(run.run_dir / "tensorboard"))
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
    writer = _writers.pop(id(run), None) if SummaryWriter is not None else None
    if writer is None:
        return
    if error is not None:  # the scalars written so far stay; there is no final evaluation
        writer.close()
        return
    for name, result in {"raw": summary, **summary.get("postprocessed", {})}.items():
        if result.get("miou") is not None:
            writer.add_scalar(f"final/miou/{name}", result["miou"])
    writer.close()
