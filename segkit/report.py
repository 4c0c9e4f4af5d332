"""What a run shows and leaves behind: the metrics table and the training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

_SUMMARY_ROWS = (
    ("mIoU", "miou"),
    ("pixel acc", "pixel_acc"),
    ("mean class acc", "mean_class_acc"),
    ("fw IoU", "fw_iou"),
)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def metrics_table(summary: dict[str, Any], class_names: list[str]) -> Table:
    """Per-class IoU and the summary metrics, raw and after each post-processor."""
    columns = {"raw": summary, **summary.get("postprocessed", {})}
    table = Table(title="final evaluation", show_lines=False)
    table.add_column("class")
    for name in columns:
        table.add_column(name, justify="right")
    for name in class_names:
        table.add_row(name, *(_fmt(c["per_class_iou"].get(name)) for c in columns.values()))
    table.add_section()
    for label, key in _SUMMARY_ROWS:
        table.add_row(f"[bold]{label}", *(f"[bold]{_fmt(c[key])}" for c in columns.values()))
    return table


def write_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and validation mIoU per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, loss_axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    loss_axis.plot(epochs, [r["loss"] for r in history], color="tab:blue", marker="o", label="loss")
    loss_axis.set_xlabel("epoch")
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
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
