"""Reading image and mask files into numpy arrays, with one clear error per bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from segkit.core.errors import DataError

# A truncated file must fail loudly instead of training on grey half-images.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def _open(path: str | Path, what: str) -> Image.Image:
    """Open and fully decode an image file, or raise a :class:`DataError` naming it."""
    path = Path(path)
    try:
        image = Image.open(path)
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{what} path is a folder, not a file: {path}") from None
    except UnidentifiedImageError:
        raise DataError(
            f"{what} {path} is not an image file Pillow can read; convert it to PNG/JPEG "
            f"or remove it"
        ) from None
    except (OSError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot open {what} {path}: {exc}") from None
    try:
        image.load()  # decode everything now: truncation only shows up here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        image.close()
        raise DataError(
            f"{what} {path} is truncated or corrupt ({exc}); re-copy or remove the file"
        ) from None
    return image


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an H×W×3 uint8 RGB array.

    Grayscale, palette, CMYK and 16-bit images are converted (16-bit values are
    scaled to 8 bits: ``v / 257``); an alpha channel is dropped, as torchvision
    does; EXIF orientation is not applied, so images stay aligned with their masks.
    A missing, unreadable or truncated file raises :class:`DataError` naming it.
    """
    with _open(path, "image") as image:
        mode = image.mode
        if mode in _SIXTEEN_BIT_MODES:
            values = np.asarray(image).astype(np.int64)
            gray = np.clip((values + 128) // 257, 0, 255).astype(np.uint8)
            return np.repeat(gray[:, :, None], 3, axis=2)
        if mode == "F":
            gray = np.clip(np.asarray(image), 0, 255).round().astype(np.uint8)
            return np.repeat(gray[:, :, None], 3, axis=2)
        try:
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
                image = image.convert("RGBA")
            if image.mode != "RGB":
                image = image.convert("RGB")
        except ValueError as exc:
            raise DataError(
                f"image {path} has mode {mode}, which cannot be converted to RGB ({exc}); "
                f"save it as an RGB PNG or JPEG"
            ) from None
        return np.array(image, dtype=np.uint8)


def read_mask(path: str | Path, palette: np.ndarray | None = None) -> np.ndarray:
    """Read a label mask as an H×W uint8 array of class indices (255 = ignore).

    Palette PNGs are read as their indices and grayscale ('L', 16-bit) files as
    their values.  RGB(A) masks are mapped colour -> index through ``palette``
    (row ``i`` is the colour of label ``i``); without a palette, or with a colour
    the palette lacks, they raise :class:`DataError`.
    """
    with _open(path, "mask") as mask:
        mode = mask.mode
        if mode in ("P", "L", "1"):
            return np.array(mask, dtype=np.uint8)
        if mode in ("PA", "LA"):
            return np.array(mask.getchannel(0), dtype=np.uint8)
        if mode in _SIXTEEN_BIT_MODES:
            values = np.asarray(mask).astype(np.int64)
            if values.size and (values.min() < 0 or values.max() > 255):
                raise DataError(
                    f"mask {path} has label values up to {values.max()}, above 255; "
                    f"save masks as 8-bit PNGs of class indices (255 = ignore)"
                )
            return values.astype(np.uint8)
        if mode in ("RGB", "RGBA"):
            if palette is None:
                raise DataError(
                    f"mask {path} is an RGB image and the dataset has no palette to map its "
                    f"colours; save masks as palette or grayscale PNGs of class indices"
                )
            rgb = np.asarray(mask.convert("RGB"))
            return _colours_to_indices(rgb, np.asarray(palette, dtype=np.uint8), path)
    raise DataError(
        f"mask {path} has image mode {mode}, which cannot hold class indices; save it as a "
        f"palette or grayscale PNG"
    )


def _colour_codes(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _colours_to_indices(rgb: np.ndarray, palette: np.ndarray, path: str | Path) -> np.ndarray:
    palette_codes = _colour_codes(palette[:256])
    # np.unique keeps the first row of a repeated colour, so the lowest label wins.
    known, labels = np.unique(palette_codes, return_index=True)
    codes, inverse = np.unique(_colour_codes(rgb), return_inverse=True)
    position = np.clip(np.searchsorted(known, codes), 0, len(known) - 1)
    found = known[position] == codes
    if not found.all():
        unknown = codes[~found][:3]
        colours = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in unknown)
        raise DataError(
            f"mask {path} has {int((~found).sum())} colours not in the dataset palette "
            f"(e.g. {colours}); give the dataset the palette the masks were drawn with"
        )
    return labels[position][inverse].reshape(rgb.shape[:2]).astype(np.uint8)
