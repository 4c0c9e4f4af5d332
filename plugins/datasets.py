"""Datasets: PASCAL VOC 2012, a folder of images and masks, and generated shapes.

``voc``        VOCdevkit/VOC2012 with its split lists, optionally the SBD-augmented
               SegmentationClassAug masks and train_aug list used by DeepLab.
``folder``     ``root/images`` and ``root/masks`` with matching file stems.
``synthetic``  shapes on cluttered, textured backgrounds, generated from a seed: the
               class is carried by the shape only, never by the colour or texture.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from segkit import DataError, Param, hookimpl
from segkit.data import (
    FileDataset,
    Sample,
    SegmentationDataset,
    as_palette,
    read_mask,
    select_split,
    voc_palette,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
MASK_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm"}


def _few(names: list[str], count: int = 3) -> str:
    shown = ", ".join(names[:count])
    return shown + (f" and {len(names) - count} more" if len(names) > count else "")


def _read_list(path: Path) -> list[str]:
    """Stems listed in a split file: one per line, or DeepLab's ``/JPEGImages/x.jpg ...`` lines."""
    stems = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name = Path(line.split()[0])
            known_suffix = name.suffix.lower() in IMAGE_SUFFIXES | MASK_SUFFIXES
            stems.append(name.stem if known_suffix else name.name)
    return stems


# -- PASCAL VOC 2012 --------------------------------------------------------------

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
VOC_LAYOUT = "VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/train.txt}"


def _voc_base(root: Path) -> Path:
    for base in (root / "VOC2012", root):
        if (base / "JPEGImages").is_dir() and (base / "ImageSets" / "Segmentation").is_dir():
            return base
    if not root.is_dir():
        problem = "does not exist"
    else:
        base = root / "VOC2012" if (root / "VOC2012").is_dir() else root
        missing = [p for p in ("JPEGImages", "ImageSets/Segmentation") if not (base / p).is_dir()]
        problem = f"has no {' or '.join(missing)}"
    raise DataError(
        f"voc: root {root} {problem}; expected {VOC_LAYOUT} "
        f"(set root to the VOCdevkit or VOC2012 folder)"
    )


def build_voc(split: str, root: str, augmented: bool | Literal["auto"] = "auto") -> FileDataset:
    """PASCAL VOC 2012 segmentation; with the SBD masks, ``train`` means ``train_aug``."""
    base = _voc_base(Path(root).expanduser())
    lists = base / "ImageSets" / "Segmentation"
    plain_masks, aug_masks = base / "SegmentationClass", base / "SegmentationClassAug"
    has_aug = aug_masks.is_dir() and (lists / "train_aug.txt").is_file()
    if augmented is True and not has_aug:
        raise DataError(
            f"voc: augmented = true but {base} lacks SegmentationClassAug/ or "
            f"ImageSets/Segmentation/train_aug.txt; add the SBD masks or set augmented = false"
        )
    use_aug = has_aug and augmented is not False
    if not use_aug and not plain_masks.is_dir():
        raise DataError(f"voc: {base} has no SegmentationClass folder; expected {VOC_LAYOUT}")
    # Each split's list file and mask folder; with the SBD masks, "train" is train_aug.
    default_masks = plain_masks if plain_masks.is_dir() else aug_masks
    sources = {p.stem: (p, default_masks) for p in sorted(lists.glob("*.txt"))}
    sources.pop("train_aug", None)
    if use_aug:
        sources["train"] = sources["train_aug"] = (lists / "train_aug.txt", aug_masks)
    stems_by_split = {name: _read_list(list_file) for name, (list_file, _) in sources.items()}
    stems = select_split(f"voc ({base})", split, stems_by_split)
    mask_dir = sources[split][1]

    images = [base / "JPEGImages" / f"{stem}.jpg" for stem in stems]
    missing = [p.name for p in images if not p.is_file()]
    if missing:
        raise DataError(
            f"voc: {len(missing)} images of split '{split}' are missing from "
            f"{base / 'JPEGImages'} ({_few(missing)}); re-extract the VOC archive"
        )
    masks: list[Path] | None = [mask_dir / f"{stem}.png" for stem in stems]
    absent = [p.name for p in masks if not p.is_file()]
    if len(absent) == len(masks):
        masks = None  # an unannotated split such as test: images only
    elif absent:
        raise DataError(
            f"voc: {len(absent)} masks of split '{split}' are missing from {mask_dir} "
            f"({_few(absent)}); re-extract the annotations"
        )
    return FileDataset(
        images, masks, VOC_CLASSES, voc_palette(256), split=split, splits=sorted(sources)
    )


# -- a folder of images and masks -------------------------------------------------


def _files_by_stem(folder: Path, suffixes: set[str], what: str) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in suffixes:
            continue
        if path.stem in files:
            raise DataError(
                f"folder: two {what} share the stem '{path.stem}' ({files[path.stem].name}, "
                f"{path.name}); keep one"
            )
        files[path.stem] = path
    return files


def _largest_label(masks: list[Path], palette: np.ndarray) -> int:
    largest = 0
    for path in masks:
        labels = np.unique(read_mask(path, palette))
        labels = labels[labels != 255]
        if labels.size:
            largest = max(largest, int(labels.max()))
    return largest


def build_folder(
    split: str,
    root: str,
    class_names: list[str] | None = None,
    num_classes: int | None = None,
    palette: list[list[int]] | None = None,
    splits_dir: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> FileDataset:
    """``root/images`` + ``root/masks`` (index PNGs), split by lists or a seeded shuffle."""
    root_path = Path(root).expanduser()
    image_dir, mask_dir = root_path / "images", root_path / "masks"
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(
                f"folder: {folder} does not exist; expected {root_path}/{{images,masks}}/ "
                f"with matching file stems (a.jpg <-> a.png)"
            )
    images = _files_by_stem(image_dir, IMAGE_SUFFIXES, "images")
    masks = _files_by_stem(mask_dir, MASK_SUFFIXES, "masks")
    if not images:
        raise DataError(
            f"folder: {image_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    unmatched_images = sorted(set(images) - set(masks))
    unmatched_masks = sorted(set(masks) - set(images))
    if unmatched_images:
        raise DataError(
            f"folder: {len(unmatched_images)} images in {image_dir} have no mask in {mask_dir} "
            f"({_few(unmatched_images)}); add the masks or remove the images"
        )
    if unmatched_masks:
        raise DataError(
            f"folder: {len(unmatched_masks)} masks in {mask_dir} have no image in {image_dir} "
            f"({_few(unmatched_masks)}); add the images or remove the masks"
        )

    colours = as_palette(palette)
    if class_names is None:
        if num_classes is None:
            num_classes = _largest_label(list(masks.values()), colours) + 1
        class_names = [f"class{i}" for i in range(max(num_classes, 2))]
    elif num_classes is not None and num_classes != len(class_names):
        raise DataError(
            f"folder: num_classes = {num_classes} but class_names has {len(class_names)} "
            f"names; give one of them"
        )

    where = f"folder ({root_path})"
    if splits_dir is not None:
        lists = Path(splits_dir).expanduser()
        if not lists.is_absolute() and not lists.exists():
            lists = root_path / lists
        list_files = sorted(lists.glob("*.txt")) if lists.is_dir() else []
        if not list_files:
            raise DataError(
                f"folder: splits_dir {lists} holds no <split>.txt lists; write one file stem "
                f"per line in e.g. train.txt and val.txt"
            )
        by_split = {p.stem: _read_list(p) for p in list_files}
        chosen = list(select_split(where, split, by_split))
        unknown = [stem for stem in chosen if stem not in images]
        if unknown:
            raise DataError(
                f"folder: {len(unknown)} names in {lists / (split + '.txt')} have no image in "
                f"{image_dir} ({_few(unknown)}); fix the list"
            )
    else:
        if not 0 <= val_fraction < 1:
            raise DataError(f"folder: val_fraction must be in [0, 1), got {val_fraction}")
        stems = sorted(images)
        order = [stems[i] for i in np.random.default_rng(seed).permutation(len(stems))]
        val_count = round(len(stems) * val_fraction)
        if val_fraction > 0 and len(stems) > 1:
            val_count = max(1, val_count)
        by_split = {"train": order[val_count:], "val": order[:val_count], "all": order}
        chosen = list(select_split(where, split, by_split))
    return FileDataset(
        [images[s] for s in chosen],
        [masks[s] for s in chosen],
        class_names,
        colours,
        split=split,
        splits=list(by_split),
    )


# -- generated shapes -------------------------------------------------------------

SHAPES = ("circle", "square", "triangle", "cross", "ring", "star")


def _polygon(center: tuple[float, float], radius: float, angle: float, points: int) -> list:
    cy, cx = center
    return [
        (cx + radius * math.cos(angle + 2 * math.pi * k / points),
         cy + radius * math.sin(angle + 2 * math.pi * k / points))
        for k in range(points)
    ]  # fmt: skip


def _rotated(center: tuple[float, float], corners: list, angle: float) -> list:
    cy, cx = center
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in corners]


# Each shape has about the same area (2 to 2.4 r²) so that no class dominates the pixels;
# EXTENT is how far it reaches from its centre, in units of r.
EXTENT = {"circle": 0.8, "square": 1.0, "triangle": 1.24, "cross": 1.07, "ring": 0.92, "star": 1.2}


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, center: tuple, r: float, angle: float):
    cy, cx = center
    if shape == "circle":
        radius = EXTENT["circle"] * r
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=1)
    elif shape == "ring":
        outer, inner = EXTENT["ring"] * r, 0.5 * EXTENT["ring"] * r
        draw.ellipse((cx - outer, cy - outer, cx + outer, cy + outer), fill=1)
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    elif shape == "square":
        draw.polygon(_polygon(center, r, angle, 4), fill=1)
    elif shape == "triangle":
        draw.polygon(_polygon(center, EXTENT["triangle"] * r, angle, 3), fill=1)
    elif shape == "cross":
        arm, half = r, 0.36 * r  # arms wide enough to survive a stride-8 head
        corners = [
            (half, -arm), (half, -half), (arm, -half), (arm, half), (half, half), (half, arm),
            (-half, arm), (-half, half), (-arm, half), (-arm, -half), (-half, -half), (-half, -arm),
        ]  # fmt: skip
        draw.polygon(_rotated(center, corners, angle), fill=1)
    elif shape == "star":
        outer = EXTENT["star"] * r
        tips = _polygon(center, outer, angle, 5)
        valleys = _polygon(center, 0.5 * outer, angle + math.pi / 5, 5)
        draw.polygon([p for pair in zip(tips, valleys, strict=True) for p in pair], fill=1)


def _texture(rng: np.random.Generator, height: int, width: int, smooth: bool) -> np.ndarray:
    """A height×width×3 float texture blending two colours drawn uniformly from the RGB cube.

    Every region draws its colours from that same law, so colour says nothing about the
    class.  Backgrounds may also be striped or strongly blotched; shapes (``smooth``) are
    flat or softly blotched, so that their outline, not their inside, is what stands out.
    """
    first, second = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    kind = rng.integers(2 if smooth else 3)
    if kind == 0:  # flat colour with a soft shading ramp
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        direction = rng.uniform(0, 2 * math.pi)
        ramp = (xx * math.cos(direction) + yy * math.sin(direction)) / max(height, width)
        weight = 0.25 * (ramp - ramp.mean())
    elif kind == 1:  # blotches: coarse noise, smoothly enlarged
        cells = rng.random((int(rng.integers(3, 7)), int(rng.integers(3, 7)))).astype(np.float32)
        weight = np.asarray(Image.fromarray(cells, "F").resize((width, height), Image.BILINEAR))
        if smooth:
            weight = 0.35 * weight
    else:  # stripes of random angle, period and sharpness
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        direction = rng.uniform(0, math.pi)
        period = rng.uniform(5, 18)
        wave = np.sin(
            (xx * math.cos(direction) + yy * math.sin(direction)) * (2 * math.pi / period)
            + rng.uniform(0, 2 * math.pi)
        )
        weight = np.clip(0.5 + rng.uniform(0.5, 3) * wave, 0, 1)
    return first + weight[..., None] * (second - first)


def _clutter(rng: np.random.Generator, canvas: Image.Image) -> None:
    """Background distractors: thin lines and small blobs, far smaller than any shape."""
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    for _ in range(int(rng.integers(0, 5))):
        x0, x1 = rng.uniform(0, width, 2)
        y0, y1 = rng.uniform(0, height, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(0, 6))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(1.5, 4.5, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)


def render_shapes(
    rng: np.random.Generator,
    num_classes: int,
    min_size: int,
    max_size: int,
    max_objects: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image (H×W×3 uint8) and its mask (H×W uint8) drawn from ``rng``."""
    height, width = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
    short = min(height, width)
    canvas = Image.fromarray(
        np.clip(_texture(rng, height, width, smooth=False), 0, 255).astype(np.uint8)
    )
    _clutter(rng, canvas)
    image = np.array(canvas)
    mask = np.zeros((height, width), dtype=np.uint8)

    placed: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(1, num_classes))
        shape = SHAPES[label - 1]
        angle = rng.uniform(0, 2 * math.pi)
        r = rng.uniform(0.17, 0.28) * short
        for _attempt in range(12):
            reach = EXTENT[shape] * r + 1
            if 2 * reach < short:
                cy, cx = rng.uniform(reach, height - reach), rng.uniform(reach, width - reach)
                if all(math.hypot(cy - y, cx - x) > reach + e + 3 for y, x, e in placed):
                    break
            r = max(0.9 * r, 0.15 * short)
        else:
            continue  # no room left for another shape
        placed.append((cy, cx, reach))

        top, left = max(0, int(cy - reach) - 1), max(0, int(cx - reach) - 1)
        bottom, right = min(height, int(cy + reach) + 2), min(width, int(cx + reach) + 2)
        stencil = Image.new("L", (right - left, bottom - top), 0)
        _draw_shape(ImageDraw.Draw(stencil), shape, (cy - top, cx - left), r, angle)
        inside = np.asarray(stencil, dtype=bool)
        under = image[top:bottom, left:right][inside].astype(np.float32).mean(0)
        for _tries in range(8):  # a shape must stand out from what it covers
            texture = _texture(rng, bottom - top, right - left, smooth=True)
            if np.linalg.norm(texture[inside].mean(0) - under) > 60:
                break
        image[top:bottom, left:right][inside] = np.clip(texture[inside], 0, 255)
        mask[top:bottom, left:right][inside] = label

    noisy = image + rng.normal(0, rng.uniform(2, 8), image.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).round().astype(np.uint8), mask


class SyntheticShapes(SegmentationDataset):
    """Generated shapes: sample ``i`` of a split is drawn from ``(seed, split, i)`` alone.

    Nothing is generated up front; samples are drawn when asked for and the latest
    ones are kept in a small per-process cache, so DataLoader workers only ever draw
    the indices they serve.
    """

    cache_size = 512

    def __init__(
        self,
        split: str,
        size: int,
        seed: int,
        num_classes: int,
        min_size: int,
        max_size: int,
        max_objects: int,
        splits: tuple[str, ...],
    ) -> None:
        names = ["background", *SHAPES[: num_classes - 1]]
        super().__init__(names, voc_palette(256), split=split, splits=splits)
        self.size = size
        self.seed = seed
        self.shape_args = (num_classes, min_size, max_size, max_objects)
        self._split_key = zlib.crc32(split.encode())
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} samples")
        if index in self._cache:
            self._cache.move_to_end(index)
            image, mask = self._cache[index]
        else:
            rng = np.random.default_rng((self.seed, self._split_key, index))
            image, mask = render_shapes(rng, *self.shape_args)
            self._cache[index] = (image, mask)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return Sample(image.copy(), mask.copy(), f"{self.split}_{index:05d}")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # workers start empty instead of copying arrays
        return state


def build_synthetic(
    split: str,
    seed: int = 0,
    num_classes: int = 5,
    train_size: int = 2000,
    val_size: int = 200,
    min_size: int = 97,
    max_size: int = 161,
    max_objects: int = 4,
) -> SyntheticShapes:
    """Shapes on textured clutter; ``train`` and ``val`` are drawn independently."""
    if not 2 <= num_classes <= len(SHAPES) + 1:
        raise DataError(
            f"synthetic: num_classes must be 2..{len(SHAPES) + 1} (background + "
            f"{', '.join(SHAPES)}), got {num_classes}"
        )
    if not 48 <= min_size <= max_size:
        raise DataError(
            f"synthetic: need 48 <= min_size <= max_size, got min_size {min_size}, "
            f"max_size {max_size}"
        )
    if max_objects < 1 or train_size < 0 or val_size < 0:
        raise DataError("synthetic: max_objects must be >= 1 and the split sizes >= 0")
    sizes = {"train": train_size, "val": val_size}
    splits = {name: range(size) for name, size in sizes.items()}
    count = len(select_split(f"synthetic (seed {seed})", split, splits))
    return SyntheticShapes(
        split, count, seed, num_classes, min_size, max_size, max_objects, tuple(sizes)
    )


@hookimpl
def register_datasets(register) -> None:
    register(
        "voc",
        build_voc,
        help="PASCAL VOC 2012 (VOCdevkit), with the SBD SegmentationClassAug masks when present",
        params=[
            Param("root", str, None, "the VOCdevkit (or VOCdevkit/VOC2012) folder", required=True),
            Param(
                "augmented",
                bool | Literal["auto"],
                "auto",
                "train on train_aug + SegmentationClassAug: true, false or 'auto' (when present)",
            ),
        ],
    )
    register(
        "folder",
        build_folder,
        help="root/images and root/masks with matching file stems (index PNG masks)",
        params=[
            Param("root", str, None, "folder holding images/ and masks/", required=True),
            Param("class_names", list[str] | None, None, "class names, label 0 first"),
            Param(
                "num_classes",
                int | None,
                None,
                "number of classes when no names are given (neither: scan the masks)",
            ),
            Param("palette", list[list[int]] | None, None, "[r, g, b] per class; none: VOC"),
            Param("splits_dir", str | None, None, "folder of <split>.txt stem lists"),
            Param("val_fraction", float, 0.1, "without split lists: share of images in 'val'"),
            Param("seed", int, 0, "shuffle seed of the train/val division"),
        ],
    )
    register(
        "synthetic",
        build_synthetic,
        help="shapes on cluttered textured backgrounds, generated from a seed (no download)",
        params=[
            Param("seed", int, 0, "generation seed: same seed, same images"),
            Param("num_classes", int, 5, f"background + the first shapes of {', '.join(SHAPES)}"),
            Param("train_size", int, 2000, "images in the train split"),
            Param("val_size", int, 200, "images in the val split"),
            Param("min_size", int, 97, "smallest image side"),
            Param("max_size", int, 161, "largest image side"),
            Param("max_objects", int, 4, "most shapes per image"),
        ],
    )
