"""The pictures a request gets back, written by the same code as ``segkit predict``'s files.

This module is the one place the server takes the picture writers from, so that an
answer's PNG is byte for byte the file ``segkit predict`` writes for the same image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from segkit.infer.pictures import overlay, save_image, save_mask_png


def mask_png(mask: np.ndarray, palette: np.ndarray, folder: Path) -> bytes:
    """The palette PNG of an H×W label mask (``NAME_mask.png``), written in ``folder``."""
    path = folder / "mask.png"
    save_mask_png(path, mask, palette)
    return path.read_bytes()


def overlay_png(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, folder: Path) -> bytes:
    """The mask's colours blended over the image (``NAME_overlay.png``), written in ``folder``."""
    path = folder / "overlay.png"
    save_image(path, Image.fromarray(overlay(image, mask, palette)))
    return path.read_bytes()
