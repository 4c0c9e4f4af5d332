"""What segkit shows and leaves behind: the metrics table, training curves, and pictures
of label maps (palette PNGs, overlays and side-by-side panels)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from rich.table import Table

from segkit.data.dataset import IGNORE_INDEX, voc_palette
from segkit.infer.segmenter import PredictionPair

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


def _full_palette(palette: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """``palette`` extended to 256 rows with the VOC colours (255 draws the ignore colour)."""
    full = voc_palette(256)
    given = np.asarray(palette, dtype=np.uint8)[:256]
    full[: len(given)] = given
    return full


def colorize(mask: np.ndarray, palette: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """An H×W×3 uint8 picture of an H×W label mask; labels beyond the palette use VOC colours."""
    return _full_palette(palette)[np.asarray(mask, dtype=np.uint8)]


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    palette: np.ndarray | Sequence[Sequence[int]],
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend the mask's colours over the image (``alpha`` = colour weight); ignore pixels stay."""
    colours = colorize(mask, palette).astype(np.float32)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colours
    blended = np.where((np.asarray(mask) == IGNORE_INDEX)[..., None], image, blended)
    return np.clip(blended.round(), 0, 255).astype(np.uint8)


def save_mask_png(
    path: str | Path, mask: np.ndarray, palette: np.ndarray | Sequence[Sequence[int]] | None = None
) -> None:
    """Write an H×W label mask as a palette PNG (indices kept, colours from ``palette``)."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or (mask.size and (mask.min() < 0 or mask.max() > 255)):
        raise ValueError(f"a mask is H×W with labels 0..255, got shape {mask.shape}")
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(_full_palette(voc_palette() if palette is None else palette).tobytes())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _titled(image: np.ndarray, title: str) -> Image.Image:
    tile = Image.fromarray(image)
    canvas = Image.new("RGB", (tile.width, tile.height + 16), "white")
    canvas.paste(tile, (0, 16))
    ImageDraw.Draw(canvas).text((3, 2), title, fill="black")
    return canvas


def write_prediction(
    out_dir: Path,
    stem: str,
    pair: PredictionPair,
    palette: np.ndarray,
    mask: np.ndarray | None = None,
) -> list[Path]:
    """Write the palette mask, a colour overlay and a side-by-side panel for one image."""
    out_dir.mkdir(parents=True, exist_ok=True)
    image, final = pair.image, pair.final.labels
    mask_path = out_dir / f"{stem}_mask.png"
    overlay_path = out_dir / f"{stem}_overlay.png"
    panel_path = out_dir / f"{stem}_panel.png"
    save_mask_png(mask_path, final, palette)
    Image.fromarray(overlay(image, final, palette)).save(overlay_path)
    tiles = [
        _titled(image, "image"),
        _titled(colorize(pair.raw.labels, palette), "prediction"),
    ]
    if pair.refined is not None:
        tiles.append(_titled(colorize(pair.refined.labels, palette), "refined"))
    if mask is not None:
        tiles.append(_titled(colorize(mask, palette), "ground truth"))
    panel = Image.new(
        "RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white"
    )
    x = 0
    for tile in tiles:
        panel.paste(tile, (x, 0))
        x += tile.width + 4
    panel.save(panel_path)
    return [mask_path, overlay_path, panel_path]
