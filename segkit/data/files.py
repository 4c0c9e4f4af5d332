"""Reading image and mask files into numpy arrays, with one clear error per bad file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from segkit.core.errors import DataError
from segkit.data.label_maps import LabelMap

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


#: Why a mask must be stored losslessly, for the messages that refuse one.
LOSSY_MASKS = (
    "masks must be lossless PNGs: JPEG compression changes the values along every edge, "
    "inventing labels that were never drawn"
)


@dataclass
class MaskFile:
    """A mask as read: its labels, the file's image mode and its own palette (P mode)."""

    labels: np.ndarray
    mode: str
    palette: np.ndarray | None = None


def read_mask(
    path: str | Path, palette: np.ndarray | None = None, label_map: LabelMap | None = None
) -> np.ndarray:
    """Read a label mask as an H×W uint8 array of class indices (255 = ignore).

    Palette PNGs are read as their indices and grayscale ('L', 16-bit) files as
    their values.  RGB(A) masks are mapped colour -> index through ``palette``
    (row ``i`` is the colour of label ``i``); an RGB mask whose colours are all grey
    and not all in the palette (a black-and-white mask saved as RGB) is read as
    grayscale.  ``label_map`` turns stored values into labels (see
    :class:`~segkit.data.label_maps.LabelMap`).  A JPEG file, a colour missing from
    the palette or a value above 255 raises :class:`DataError` naming the file.
    """
    return read_mask_file(path, palette, label_map).labels


def read_mask_file(
    path: str | Path, palette: np.ndarray | None = None, label_map: LabelMap | None = None
) -> MaskFile:
    """:func:`read_mask`, with the file's mode and own palette for the data checks."""
    with _open(path, "mask") as mask:
        if mask.format == "JPEG":
            raise DataError(f"mask {path} is a JPEG file; {LOSSY_MASKS}; re-export it as PNG")
        mode = mask.mode
        own_palette = None
        if mode in ("P", "PA"):
            colours = np.asarray(mask.getpalette() or [], dtype=np.uint8)
            own_palette = colours[: len(colours) // 3 * 3].reshape(-1, 3)
        values = _stored_values(mask, path, palette, label_map is not None)
    if label_map is not None:
        return MaskFile(label_map.apply(values, path), mode, own_palette)
    if values.dtype != np.uint8:
        if values.size and (values.min() < 0 or values.max() > 255):
            raise DataError(
                f"mask {path} has label values up to {values.max()}, above 255; save masks "
                f"as 8-bit PNGs of class indices (255 = ignore), or map the values with the "
                f"dataset's mask_values"
            )
        values = values.astype(np.uint8)
    return MaskFile(values, mode, own_palette)


def _stored_values(
    mask: Image.Image, path: str | Path, palette: np.ndarray | None, mapped: bool
) -> np.ndarray:
    """The values the file stores: indices, grey levels or, for colour, palette labels."""
    mode = mask.mode
    if mode in ("P", "L", "1"):
        return np.array(mask, dtype=np.uint8)
    if mode in ("PA", "LA"):
        return np.array(mask.getchannel(0), dtype=np.uint8)
    if mode in _SIXTEEN_BIT_MODES:
        return np.asarray(mask).astype(np.int64)
    if mode not in ("RGB", "RGBA"):
        raise DataError(
            f"mask {path} has image mode {mode}, which cannot hold class indices; save it "
            f"as a palette or grayscale PNG"
        )
    rgb = np.asarray(mask.convert("RGB"))
    grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    if mapped:
        if grey:
            return rgb[..., 0].copy()
        raise DataError(
            f"mask {path} is a colour image; mask_values and binary map the values of "
            f"grayscale masks: save it as grayscale, or give the dataset a palette instead"
        )
    if palette is None:
        if grey:
            return rgb[..., 0].copy()
        raise DataError(
            f"mask {path} is an RGB image and the dataset has no palette to map its "
            f"colours; save masks as palette or grayscale PNGs of class indices"
        )
    labels = _colours_to_indices(rgb, np.asarray(palette, dtype=np.uint8), path, grey)
    return rgb[..., 0].copy() if labels is None else labels


def _colour_codes(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _colours_to_indices(
    rgb: np.ndarray, palette: np.ndarray, path: str | Path, grey: bool
) -> np.ndarray | None:
    """Labels by colour; ``None`` for a grey mask with colours the palette lacks."""
    palette_codes = _colour_codes(palette[:256])
    # np.unique keeps the first row of a repeated colour, so the lowest label wins.
    known, labels = np.unique(palette_codes, return_index=True)
    codes, inverse = np.unique(_colour_codes(rgb), return_inverse=True)
    position = np.clip(np.searchsorted(known, codes), 0, len(known) - 1)
    found = known[position] == codes
    if found.all():
        return labels[position][inverse].reshape(rgb.shape[:2]).astype(np.uint8)
    if grey:
        return None
    unknown = codes[~found]
    colours = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in unknown[:3])
    if _near_palette(unknown, palette[:256]):
        raise DataError(
            f"mask {path} has {len(unknown)} colours not in the dataset palette, all close "
            f"to palette colours (e.g. {colours}): compression artefacts; {LOSSY_MASKS}; "
            f"export the masks again from the annotation tool as PNG"
        )
    raise DataError(
        f"mask {path} has {len(unknown)} colours not in the dataset palette "
        f"(e.g. {colours}); give the dataset the palette the masks were drawn with"
    )


def _near_palette(codes: np.ndarray, palette: np.ndarray, tolerance: int = 48) -> bool:
    """Whether the colours ``codes`` all lie within ``tolerance`` of a palette colour."""
    sample = codes[:: max(1, len(codes) // 512)]
    colours = np.stack([(sample >> 16) & 255, (sample >> 8) & 255, sample & 255], axis=1)
    distance = np.abs(colours[:, None, :] - palette[None, :, :].astype(np.int64)).max(axis=2)
    return bool((distance.min(axis=1) <= tolerance).all())


def read_image_header(path: str | Path) -> tuple[int, int, str]:
    """An image file's height, width and mode, from its header (nothing is decoded)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            return height, width, image.mode
    except FileNotFoundError:
        raise DataError(f"image not found: {path}; check the path") from None
    except IsADirectoryError:
        raise DataError(f"image path is a folder, not a file: {path}") from None
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"image {path} is not an image file Pillow can read ({exc}); convert it to "
            f"PNG/JPEG or remove it"
        ) from None
