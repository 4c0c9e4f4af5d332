"""The data layer: datasets, image and mask files, and the joint image/mask transforms.

A dataset plugin registers a factory through the ``register_datasets`` hook; it is
called as ``factory(split, **params)`` and returns a :class:`SegmentationDataset`,
whose items are :class:`Sample` objects (uint8 RGB image, uint8 class-index mask
with 255 = ignore, a name).  The engine wraps a dataset in :class:`TrainingSet`
(random scale, pad, crop and flip, reproducible from a seed) or :class:`EvalSet`
(full size, batched by :func:`collate_eval`).

Everything here works on numpy arrays and Pillow images and holds no model code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from segkit.errors import DataError, PluginError, did_you_mean

IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# A truncated file must fail loudly instead of training on grey half-images.
ImageFile.LOAD_TRUNCATED_IMAGES = False

T = TypeVar("T")


# -- samples and datasets ---------------------------------------------------------


@dataclass
class Sample:
    """One dataset item.

    ``image`` is H×W×3 uint8 RGB; ``mask`` is H×W uint8 class indices with 255 =
    ignore, or None when the split has no annotation; ``name`` is the file stem
    (or a generated name); ``path`` is the image file when read from disk and
    ``mask_path`` the mask file.
    """

    image: np.ndarray
    mask: np.ndarray | None
    name: str
    path: str | None = None
    mask_path: str | None = None


class SegmentationDataset(Dataset):
    """A split of a segmentation dataset: ``len(ds)`` samples, ``ds[i] -> Sample``.

    Attributes: ``class_names`` (index ``i`` names label ``i``), ``palette`` (K×3
    uint8 colours, K >= ``num_classes``; row ``i`` draws label ``i``), ``split``
    (this split's name), ``splits`` (the names of every split the dataset offers)
    and ``ignore_index`` (255).  Subclasses implement ``__len__`` and ``__getitem__``.
    """

    ignore_index: int = IGNORE_INDEX

    def __init__(
        self,
        class_names: Sequence[str],
        palette: np.ndarray | Sequence[Sequence[int]] | None = None,
        *,
        split: str = "",
        splits: Sequence[str] = (),
    ) -> None:
        self.class_names = list(class_names)
        if len(self.class_names) < 2:
            raise DataError(
                f"a dataset needs at least 2 classes, got {self.class_names}; "
                f"list the background class too"
            )
        self.palette = as_palette(palette, len(self.class_names))
        self.split = split
        self.splits = tuple(splits)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, {len(self)} samples, "
            f"{self.num_classes} classes)"
        )


class FileDataset(SegmentationDataset):
    """Images (and masks) read from disk, one pair per item.

    ``masks`` is a list of mask paths aligned with ``images`` (None entries for
    images without annotation), or None when the split has no masks at all.  RGB
    masks are mapped to class indices through the dataset palette.  Every sample
    is checked with :func:`check_sample` as it is read.
    """

    def __init__(
        self,
        images: Sequence[str | Path],
        masks: Sequence[str | Path | None] | None,
        class_names: Sequence[str],
        palette: np.ndarray | Sequence[Sequence[int]] | None = None,
        *,
        split: str = "",
        splits: Sequence[str] = (),
    ) -> None:
        super().__init__(class_names, palette, split=split, splits=splits)
        self.images = [Path(p) for p in images]
        if masks is None:
            masks = [None] * len(self.images)
        if len(masks) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(masks)} masks")
        self.masks = [None if m is None else Path(m) for m in masks]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        image_path, mask_path = self.images[index], self.masks[index]
        mask = None if mask_path is None else read_mask(mask_path, self.palette)
        sample = Sample(
            read_image(image_path),
            mask,
            image_path.stem,
            str(image_path),
            None if mask_path is None else str(mask_path),
        )
        check_sample(sample, self.num_classes)
        return sample


def select_split(dataset: str, split: str, splits: Mapping[str, Sequence[T]]) -> Sequence[T]:
    """The items of ``split``; an unknown or empty split is a :class:`DataError`.

    ``dataset`` names the dataset in the message, e.g. ``"voc (root /data/VOCdevkit)"``.
    """
    if split not in splits:
        listing = ", ".join(sorted(splits)) or "none"
        raise DataError(
            f"dataset {dataset} has no split '{split}'{did_you_mean(split, splits)} "
            f"(available: {listing}); set data.train_split / data.val_split to one of them"
        )
    items = splits[split]
    if len(items) == 0:
        raise DataError(
            f"split '{split}' of dataset {dataset} is empty; add images to it or pick "
            f"another split ({', '.join(sorted(splits))})"
        )
    return items


def build_dataset(
    name: str,
    split: str,
    params: Mapping[str, Any] | None = None,
    registry: Any = None,
) -> SegmentationDataset:
    """Build the registered dataset ``name`` for ``split`` with validated ``params``."""
    if registry is None:
        from segkit.plugins import get_plugins

        registry = get_plugins().registry
    component = registry.get("dataset", name)
    dataset = component.build(split, params=params)
    if not isinstance(dataset, SegmentationDataset):
        raise PluginError(
            f"dataset '{name}' (plugin '{component.plugin}') returned "
            f"{type(dataset).__name__}, not a segkit.SegmentationDataset; fix the plugin"
        )
    return dataset


# -- reading and checking files ---------------------------------------------------


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


def check_sample(sample: Sample, num_classes: int) -> None:
    """Raise :class:`DataError` if the mask does not fit the image or the classes.

    The mask must have the image's height and width, and hold only labels below
    ``num_classes`` or 255 (ignore).
    """
    if sample.mask is None:
        return
    where = sample.mask_path or sample.path or sample.name
    image_size, mask_size = sample.image.shape[:2], sample.mask.shape[:2]
    if image_size != mask_size:
        raise DataError(
            f"mask {where} is {mask_size[0]}×{mask_size[1]} (H×W) but its image "
            f"{sample.path or sample.name} is {image_size[0]}×{image_size[1]}; "
            f"re-export the mask at the image size"
        )
    if int(sample.mask.max(initial=0)) < num_classes:
        return
    values = np.unique(sample.mask)
    bad = [int(v) for v in values if num_classes <= v != IGNORE_INDEX]
    if bad:
        shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
        raise DataError(
            f"mask {where} has label values {shown} but the dataset has {num_classes} classes "
            f"(labels 0..{num_classes - 1}, 255 = ignore); declare more classes or set those "
            f"pixels to 255"
        )


# -- palettes and pictures --------------------------------------------------------


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: ``n``×3 uint8 (label 1 is (128, 0, 0), 255 is (224, 224, 192))."""
    labels = np.arange(n)
    palette = np.zeros((n, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            palette[:, channel] |= ((labels >> (3 * bit + channel)) & 1) << (7 - bit)
    return palette.astype(np.uint8)


def as_palette(
    palette: np.ndarray | Sequence[Sequence[int]] | None, num_classes: int = 0
) -> np.ndarray:
    """A K×3 uint8 palette from ``palette`` (None: the VOC palette), K >= ``num_classes``."""
    if palette is None:
        return voc_palette(256)
    array = np.asarray(palette)
    if (
        array.ndim != 2
        or array.shape[1] != 3
        or array.size == 0
        or array.min() < 0
        or array.max() > 255
    ):
        raise DataError(
            f"a palette must be a list of [r, g, b] colours with values 0..255, got shape "
            f"{array.shape}; fix the dataset's palette"
        )
    if len(array) < num_classes:
        raise DataError(
            f"the palette has {len(array)} colours but the dataset has {num_classes} classes; "
            f"give one colour per class"
        )
    return array.astype(np.uint8)


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


# -- transforms -------------------------------------------------------------------


def _stats(values: Sequence[float], name: str) -> Tensor:
    stats = torch.as_tensor(values, dtype=torch.float32)
    if stats.shape != (3,):
        raise DataError(f"data.{name} must have 3 values (R, G, B), got {list(values)}")
    return stats.view(3, 1, 1)


def normalize(
    image: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """H×W×3 uint8 RGB -> 3×H×W float32 tensor ``(image / 255 - mean) / std``."""
    _stats(mean, "mean")
    _stats(std, "std")
    # numpy, not torch: small per-sample tensors would pay torch's thread-pool overhead
    scale = 1 / (255 * np.asarray(std, dtype=np.float32))
    shift = np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)
    pixels = np.asarray(image, dtype=np.float32) * scale - shift
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def denormalize(
    tensor: Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """Undo :func:`normalize`: 3×H×W or N×3×H×W float -> uint8 tensor of the same layout."""
    mean_, std_ = _stats(mean, "mean").to(tensor.device), _stats(std, "std").to(tensor.device)
    pixels = (tensor.float() * std_ + mean_) * 255
    return pixels.round_().clamp_(0, 255).to(torch.uint8)


def _resize(array: np.ndarray, height: int, width: int, resample: Image.Resampling) -> np.ndarray:
    return np.array(Image.fromarray(array).resize((width, height), resample))


class TrainTransform:
    """Random scale, pad, crop and flip of an image and its mask, in that order.

    Called as ``transform(sample, rng)`` with a ``numpy.random.Generator``; returns
    ``(image, mask)``: a 3×crop×crop float32 normalised tensor and a crop×crop int64
    tensor.  The image is rescaled bilinearly and the mask by nearest neighbour by a
    factor drawn from ``scale_range``; where the result is smaller than the crop it
    is padded (bottom and right) with the mean colour and with 255 (ignored by the
    loss); then a random crop_size window is taken and, with ``flip``, mirrored
    left-right with probability 1/2.  The same ``rng`` state gives the same output.
    """

    def __init__(
        self,
        crop_size: int,
        scale_range: Sequence[float] = (0.5, 1.5),
        flip: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if crop_size < 1:
            raise DataError(f"data.crop_size must be positive, got {crop_size}")
        low, high = (float(s) for s in scale_range)
        if not 0 < low <= high:
            raise DataError(
                f"data.scale_range must be [low, high] with 0 < low <= high, got "
                f"{list(scale_range)}"
            )
        self.crop_size = crop_size
        self.scale_range = (low, high)
        self.flip = flip
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        _stats(self.mean, "mean")  # fail early on a malformed config
        _stats(self.std, "std")
        self._fill = np.array([round(255 * m) for m in self.mean], dtype=np.uint8)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        if sample.mask is None:
            raise DataError(
                f"training needs masks but {sample.path or sample.name} has none; train on a "
                f"split with annotations"
            )
        image, mask = sample.image, sample.mask
        height, width = mask.shape
        scale = rng.uniform(*self.scale_range)
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        if (new_h, new_w) != (height, width):
            image = _resize(image, new_h, new_w, Image.Resampling.BILINEAR)
            mask = _resize(mask, new_h, new_w, Image.Resampling.NEAREST)

        crop = self.crop_size
        if new_h < crop or new_w < crop:
            padded_h, padded_w = max(new_h, crop), max(new_w, crop)
            padded_image = np.empty((padded_h, padded_w, 3), dtype=np.uint8)
            padded_image[:] = self._fill
            padded_image[:new_h, :new_w] = image
            padded_mask = np.full((padded_h, padded_w), IGNORE_INDEX, dtype=np.uint8)
            padded_mask[:new_h, :new_w] = mask
            image, mask = padded_image, padded_mask

        top = int(rng.integers(0, mask.shape[0] - crop + 1))
        left = int(rng.integers(0, mask.shape[1] - crop + 1))
        image = image[top : top + crop, left : left + crop]
        mask = mask[top : top + crop, left : left + crop]
        if self.flip and rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        return (
            normalize(image, self.mean, self.std),
            torch.from_numpy(mask.astype(np.int64)),
        )


class EvalTransform:
    """Full-size evaluation input: ``transform(sample) -> (image, mask)``.

    ``image`` is the 3×H×W float32 normalised tensor, ``mask`` the H×W int64 tensor
    (None when the sample has no mask).
    """

    def __init__(
        self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        _stats(self.mean, "mean")  # fail early on a malformed config
        _stats(self.std, "std")

    def __call__(self, sample: Sample) -> tuple[Tensor, Tensor | None]:
        mask = None if sample.mask is None else torch.from_numpy(sample.mask.astype(np.int64))
        return normalize(sample.image, self.mean, self.std), mask


# -- what the engine iterates -----------------------------------------------------


class TrainingSet(Dataset):
    """A dataset seen through a :class:`TrainTransform`: ``ts[i] -> (image, mask)``.

    Sample ``i`` of epoch ``e`` is transformed with ``numpy.random.default_rng((seed,
    e, i))``, so a run is reproducible whatever the number of workers, and every
    sample and epoch draws differently.  Call :meth:`set_epoch` before creating each
    epoch's DataLoader iterator (workers copy the dataset when they start, so with
    ``persistent_workers=True`` the epoch would not reach them).
    """

    def __init__(self, dataset: SegmentationDataset, transform: TrainTransform, seed: int = 0):
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        return self.transform(self.dataset[index], rng)


@dataclass
class EvalItem:
    """One evaluation item: the transformed tensors plus what is needed to show them."""

    image: Tensor  # 3×H×W float32, normalised
    mask: Tensor | None  # H×W int64, 255 = ignore
    original: np.ndarray  # H×W×3 uint8 RGB
    name: str
    path: str | None


class EvalSet(Dataset):
    """A dataset seen through an :class:`EvalTransform`: ``es[i] -> EvalItem``."""

    def __init__(self, dataset: SegmentationDataset, transform: EvalTransform) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> EvalItem:
        sample = self.dataset[index]
        image, mask = self.transform(sample)
        return EvalItem(image, mask, sample.image, sample.name, sample.path)


def collate_eval(batch: Sequence[EvalItem]) -> dict[str, Any]:
    """Batch full-size items of different sizes, padded at the bottom and right.

    Returns a dict: ``"image"`` N×3×H×W float32 (padding 0, i.e. the mean colour),
    ``"mask"`` N×H×W int64 (padding and missing masks 255), ``"original"``
    N×3×H×W uint8 (padding 0), ``"size"`` the list of each item's (height, width) —
    item ``i`` occupies ``[:h, :w]`` —, ``"name"`` and ``"path"`` lists, and
    ``"has_mask"`` a list of bools.
    """
    height = max(item.image.shape[1] for item in batch)
    width = max(item.image.shape[2] for item in batch)
    count = len(batch)
    images = torch.zeros(count, 3, height, width, dtype=torch.float32)
    masks = torch.full((count, height, width), IGNORE_INDEX, dtype=torch.int64)
    originals = torch.zeros(count, 3, height, width, dtype=torch.uint8)
    sizes = []
    for i, item in enumerate(batch):
        h, w = item.image.shape[1:]
        images[i, :, :h, :w] = item.image
        if item.mask is not None:
            masks[i, :h, :w] = item.mask
        originals[i, :, :h, :w] = torch.as_tensor(item.original).permute(2, 0, 1)
        sizes.append((h, w))
    return {
        "image": images,
        "mask": masks,
        "original": originals,
        "size": sizes,
        "name": [item.name for item in batch],
        "path": [item.path for item in batch],
        "has_mask": [item.mask is not None for item in batch],
    }
