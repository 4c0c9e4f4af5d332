"""The picture of ``segkit data check``: each class's share of the labelled pixels per
split, and a few images with their masks laid over them, with the legend."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Patch

from segkit.core.errors import DataError
from segkit.core.outputs import write_bytes_atomically
from segkit.data.census import spread
from segkit.data.checks import DataReport, class_rows
from segkit.data.dataset import IGNORE_INDEX, Sample, SegmentationDataset, voc_palette

#: The PNG text that marks a picture as this command's (an earlier one is replaced).
SOFTWARE = "segkit data check"
#: The most classes drawn as bars; the rest are counted under the chart.
MOST_BARS = 30
OVERLAYS = 6


def overlay_samples(dataset: SegmentationDataset, count: int = OVERLAYS) -> list[Sample]:
    """``count`` annotated samples spread over ``dataset`` (unreadable ones skipped)."""
    samples = []
    for index in spread(len(dataset), count * 2):
        try:
            sample = dataset[index]
        except DataError:
            continue
        if sample.mask is not None:
            samples.append(sample)
        if len(samples) == count:
            break
    return samples


def blend(sample: Sample, palette: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """The image with its mask's colours laid over it; ignored pixels are left as they are."""
    colours = voc_palette(256)
    colours[: min(len(palette), 256)] = np.asarray(palette, np.uint8)[:256]
    mask = sample.mask if sample.mask is not None else np.full(sample.image.shape[:2], 255)
    painted = colours[mask].astype(np.float32)
    mixed = (1 - alpha) * sample.image.astype(np.float32) + alpha * painted
    # Ignored pixels, and those of a class drawn in black (VOC's background), are left
    # as they are: painting them black would hide the image.
    unpainted = (mask == IGNORE_INDEX) | (painted.max(axis=2) == 0)
    mixed = np.where(unpainted[..., None], sample.image, mixed)
    return np.clip(mixed.round(), 0, 255).astype(np.uint8)


def data_check_png(
    report: DataReport, samples: list[Sample], palette: np.ndarray, title: str
) -> bytes:
    """The picture as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = class_rows(report)
    shown = sorted(rows, key=lambda r: -max(s or 0 for s in r[2]))[:MOST_BARS]
    shown.sort(key=lambda r: r[0])
    bar_height = min(max(1.2, 0.3 * len(shown)), 9.0)
    overlay_rows = (min(len(samples), OVERLAYS) + 2) // 3
    heights = [bar_height] + [2.4] * overlay_rows
    # spacing in inches: the title and top axis above the chart, a title line above
    # each row of pictures, the legend below them
    top, gap, bottom = 1.2, 0.5, 0.5
    total = top + sum(heights) + gap * overlay_rows + bottom
    fig = plt.figure(figsize=(12, total), dpi=100)
    grid = fig.add_gridspec(
        len(heights), 3, height_ratios=heights, top=1 - top / total, bottom=bottom / total,
        hspace=gap / (sum(heights) / len(heights)),
    )  # fmt: skip
    _bars(fig.add_subplot(grid[0, :]), report, shown, len(rows), palette, title)
    for position, sample in enumerate(samples[:OVERLAYS]):
        axis = fig.add_subplot(grid[1 + position // 3, position % 3])
        axis.imshow(blend(sample, palette))
        axis.set_title(_short(sample.name, 40), fontsize=9)
        axis.set_axis_off()
    _legend(fig, samples, report.class_names, palette)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": SOFTWARE}, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _bars(
    axis: Any, report: DataReport, shown: list, total: int, palette: np.ndarray, title: str
) -> None:
    splits = list(report.censuses)
    height = 0.8 / max(len(splits), 1)
    positions = np.arange(len(shown))
    hatches = ("", "//", "..")
    for column in range(len(splits)):
        shares = [(r[2][column] or 0) * 100 for r in shown]
        colours = [np.asarray(palette[r[0]]) / 255 for r in shown]
        offsets = positions - 0.4 + height * (column + 0.5)
        axis.barh(
            offsets, [max(s, 1e-4) for s in shares], height, color=colours,
            edgecolor="black", linewidth=0.4, hatch=hatches[column % 3],
        )  # fmt: skip
        for y, share in zip(offsets, shares, strict=True):
            text = f"{share:.2f}%" if share else "never"
            axis.text(max(share, 1e-4) * 1.15, y, text, va="center", fontsize=7)
    axis.set_xscale("log")
    axis.set_xlim(1e-4, 400)
    axis.set_yticks(positions, [f"{r[0]}  {_short(r[1], 24)}" for r in shown], fontsize=8)
    axis.invert_yaxis()
    axis.xaxis.set_ticks_position("top")
    axis.xaxis.set_label_position("top")
    axis.set_xlabel("share of the labelled pixels (%, log scale)", fontsize=9)
    note = f" (the {len(shown)} largest of {total} classes)" if total > len(shown) else ""
    axis.set_title(f"{title}\nclass pixel share per split{note}", loc="left", pad=30)
    handles = [
        Patch(facecolor="lightgrey", edgecolor="black", hatch=hatches[column % 3], label=_split(
            report.censuses[split].split, split))
        for column, split in enumerate(splits)
    ]  # fmt: skip
    axis.legend(handles=handles, loc="lower right", fontsize=8)


def _split(name: str, role: str) -> str:
    return name if name == role else f"{name} ({role})"


def _legend(fig: Any, samples: list[Sample], names: list[str], palette: np.ndarray) -> None:
    present = sorted({int(v) for s in samples if s.mask is not None for v in np.unique(s.mask)})
    labels = [v for v in present if v != IGNORE_INDEX and v < len(names)][:24]
    handles = [
        Patch(facecolor=np.asarray(palette[v]) / 255, edgecolor="black", label=_label(names, v))
        for v in labels
    ]
    if IGNORE_INDEX in present:
        handles.append(
            Patch(facecolor="white", edgecolor="black", label="255 ignore (not painted)")
        )
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8,
                   bbox_to_anchor=(0.5, 0.0), frameon=False)  # fmt: skip


def _label(names: list[str], label: int) -> str:
    return f"{label} {_short(names[label], 20)}"


def _short(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def is_data_check_picture(path: Path) -> bool:
    """Whether ``path`` is a picture an earlier ``segkit data check`` wrote."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.info.get("Software") == SOFTWARE
    except (OSError, UnidentifiedImageError):
        return False


def write_data_check_picture(
    path: Path, report: DataReport, samples: list[Sample], palette: np.ndarray, title: str
) -> Path:
    return write_bytes_atomically(path, data_check_png(report, samples, palette, title))
