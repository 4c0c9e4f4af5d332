"""A run's training curves: loss and validation mIoU per epoch, as ``curves.png``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from segkit.core.outputs import write_bytes_atomically


def write_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and validation mIoU per epoch, as a PNG."""
    import matplotlib.pyplot as plt

    fig = curves_figure(history)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes_atomically(path, buffer.getvalue())


def curves_figure(history: list[dict[str, Any]]) -> Any:
    """The matplotlib figure of :func:`write_curves` (close it with ``plt.close``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig, loss_axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    loss_axis.plot(epochs, [r["loss"] for r in history], color="tab:blue", marker="o", label="loss")
    loss_axis.set_xlabel("epoch")
    # epochs are whole numbers: no 0.5-epoch ticks on short runs
    loss_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_axis.set_ylabel("training loss", color="tab:blue")
    scored = [r for r in history if r.get("miou") is not None]
    if scored:
        miou_axis = loss_axis.twinx()
        miou_axis.plot(
            [r["epoch"] for r in scored], [r["miou"] for r in scored], color="tab:red", marker="s"
        )
        miou_axis.set_ylabel("validation mIoU", color="tab:red")
        miou_axis.set_ylim(0, 1)
    fig.tight_layout()
    return fig
