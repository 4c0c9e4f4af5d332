"""Pictures of label maps: palette PNGs, colour overlays, side-by-side panels with a
legend, and the files one prediction leaves behind."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from segkit.core.interrupts import uninterruptible
from segkit.core.outputs import safe_name, write_bytes_atomically
from segkit.data.dataset import IGNORE_INDEX, voc_palette
from segkit.infer.segmenter import PredictionPair


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
    save_image(Path(path), image)


def save_image(path: Path, image: Image.Image) -> None:
    """Write ``image`` whole or not at all, in the format of ``path``'s suffix."""
    buffer = io.BytesIO()
    image.save(buffer, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
    write_bytes_atomically(path, buffer.getvalue())


def _titled(image: np.ndarray, title: str) -> Image.Image:
    tile = Image.fromarray(image)
    canvas = Image.new("RGB", (tile.width, tile.height + 16), "white")
    canvas.paste(tile, (0, 16))
    ImageDraw.Draw(canvas).text((3, 2), title, fill="black")
    return canvas


def legend(
    labels: Iterable[int], palette: np.ndarray, class_names: Sequence[str] | None, width: int
) -> Image.Image:
    """A strip of colour swatches with the names of ``labels``, wrapped to ``width``."""
    colours = _full_palette(palette)
    entries = []
    for label in sorted(set(labels)):
        name = class_names[label] if class_names and label < len(class_names) else f"class {label}"
        if label == IGNORE_INDEX:
            name = "ignore"
        entries.append((tuple(int(c) for c in colours[label]), name))
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows: list[list[tuple[tuple[int, ...], str, int]]] = [[]]
    x = 4
    for colour, name in entries:
        entry_width = 12 + 4 + int(draw.textlength(name)) + 12
        if rows[-1] and x + entry_width > width:
            rows.append([])
            x = 4
        rows[-1].append((colour, name, x))
        x += entry_width
    strip = Image.new("RGB", (width, 4 + 16 * len(rows)), "white")
    canvas = ImageDraw.Draw(strip)
    for row_index, row in enumerate(rows):
        y = 4 + 16 * row_index
        for colour, name, left in row:
            canvas.rectangle((left, y, left + 11, y + 11), fill=colour, outline="black")
            canvas.text((left + 16, y), name, fill="black")
    return strip


@uninterruptible()  # a stop signal waits: no half-written picture
def write_prediction(
    out_dir: Path,
    stem: str,
    pair: PredictionPair,
    palette: np.ndarray,
    mask: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    save_probs: bool = False,
) -> list[Path]:
    """Write the palette mask, a colour overlay and a side-by-side panel for one image.

    The panel ends with a legend of the classes it shows (``class_names``, else
    numbers); ``save_probs`` also writes the final probabilities as a float16
    C×H×W ``.npy``.
    """
    image, final = pair.image, pair.final.labels
    mask_path, overlay_path, panel_path, probs_path = prediction_paths(out_dir, stem)
    save_mask_png(mask_path, final, palette)
    save_image(overlay_path, Image.fromarray(overlay(image, final, palette)))
    shown = [pair.raw.labels]
    tiles = [
        _titled(image, "image"),
        _titled(colorize(pair.raw.labels, palette), "prediction"),
    ]
    if pair.refined is not None:
        tiles.append(_titled(colorize(pair.refined.labels, palette), "refined"))
        shown.append(pair.refined.labels)
    if mask is not None:
        tiles.append(_titled(colorize(mask, palette), "ground truth"))
        shown.append(np.asarray(mask))
    width = sum(t.width for t in tiles) + 4 * (len(tiles) - 1)
    labels = np.unique(np.concatenate([np.unique(m) for m in shown])).tolist()
    key = legend(labels, palette, class_names, width)
    panel = Image.new("RGB", (width, tiles[0].height + key.height), "white")
    x = 0
    for tile in tiles:
        panel.paste(tile, (x, 0))
        x += tile.width + 4
    panel.paste(key, (0, tiles[0].height))
    save_image(panel_path, panel)
    written = [mask_path, overlay_path, panel_path]
    if save_probs:
        buffer = io.BytesIO()
        np.save(buffer, pair.final.probs.astype(np.float16))
        write_bytes_atomically(probs_path, buffer.getvalue())
        written.append(probs_path)
    return written


def prediction_paths(out_dir: Path, stem: str, save_probs: bool = True) -> list[Path]:
    """What :func:`write_prediction` writes for ``stem``: mask, overlay, panel (and probs).

    ``stem`` comes from an input's name; it is made a plain file name, so that no
    name can place a file outside ``out_dir``.
    """
    stem = safe_name(stem)
    kinds = ["mask.png", "overlay.png", "panel.png"] + (["probs.npy"] if save_probs else [])
    return [out_dir / f"{stem}_{kind}" for kind in kinds]
