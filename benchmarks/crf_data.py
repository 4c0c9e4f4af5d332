"""The inputs and accuracy measures of ``benchmarks/crf.py``: photographs at a chosen size,
their labels, noisy unaries of three kinds, and mIoU.

The photographs are pydensecrf's three example photographs (320×240; MIT licence), in
``../shared/data/densecrf_examples`` beside the checkout or where
``SEGKIT_DENSECRF_EXAMPLES`` points; resized (bilinearly) to the benchmark's size.  Their
labels are pydensecrf's reference outputs (outN.png), the unaries are made from those
labels, and ``annoN.png`` are the rough human marks they started from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

EXAMPLES = Path(
    os.environ.get(
        "SEGKIT_DENSECRF_EXAMPLES",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "densecrf_examples",
    )
)
#: Label regions below this share of their image are pydensecrf's specks (see
#: :func:`without_specks`): 0.1%, 188 pixels at 500×375.
SPECK_FRACTION = 0.001
#: The kinds of synthetic unaries (see :func:`photographs`).
KINDS = ("network", "paper", "demo")


@dataclass
class Photo:
    """One photograph at the benchmark's size with its unaries, labels and human marks.

    ``probs`` (1×C×H×W, summing to 1) go to segkit's CRFs and to pydensecrf;
    ``published_unary`` is what the published ConvCRF is given: log ``probs`` for the
    network unaries (its docstring asks for scores), the probabilities themselves for the
    paper's and its demo's (as its demo passes them).
    """

    name: str
    probs: torch.Tensor
    published_unary: torch.Tensor
    image: torch.Tensor
    labels: torch.Tensor
    marks: torch.Tensor


def photographs(
    megapixels: float,
    kind: str,
    seed: int,
    classes: int = 21,
    part: str = "whole",
    augment_label=None,
) -> list[Photo]:
    """The example photographs at about ``megapixels``, unaries of ``kind`` drawn with
    ``seed``: ``network`` and ``paper`` as in :func:`degrade` and :func:`paper_unaries`,
    ``demo`` by the published ConvCRF demo's own ``utils/synthetic.py``
    (``augment_label``, seeded through numpy's global generator as the demo leaves it).
    ``part`` keeps the ``left`` or ``right`` half of each (after the unaries are made),
    or the ``whole``."""
    height, width = size_of(megapixels)
    photos = example_photos()
    marks = annotation_labels(len(photos), height, width)
    out = []
    for index, path in enumerate(photos):
        picture = Image.open(path).convert("RGB").resize((width, height), Image.BILINEAR)
        image = torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)[None]
        labels = torch.from_numpy(photo_labels(beside(path, "out"), height, width)).long()
        rng = np.random.default_rng([seed, index])
        if kind == "demo":
            np.random.seed(seed * 1000 + index)
            noisy = augment_label(labels.numpy(), classes)  # H×W×C, float64
            published = torch.from_numpy(noisy).permute(2, 0, 1)[None].float()
            # its bilinear resizing fades towards 0 at the border: there the classes no
            # longer sum to 1, which the published code ignores (it log-softmaxes them)
            probs = published / published.sum(1, keepdim=True).clamp_min(1e-6)
        elif kind == "paper":
            probs = published = paper_unaries(labels[None], classes, rng)
        else:
            probs = degrade(labels[None], classes, rng)
            published = probs.clamp_min(1e-5).log()
        columns = {"whole": slice(None), "left": slice(0, width // 2)}
        keep = columns.get(part, slice(width // 2, None))
        out.append(
            Photo(
                path.stem,
                probs[..., keep].contiguous(),
                published[..., keep].contiguous(),
                image[..., keep].contiguous(),
                labels[:, keep].contiguous(),
                marks[index][:, keep].contiguous(),
            )
        )
    return out


def make_inputs(
    n: int, classes: int, height: int, width: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """N×C×H×W probabilities and N×3×H×W uint8 images."""
    probs, images, _ = make_labelled_inputs(n, classes, height, width, seed)
    return probs, images


def make_labelled_inputs(
    n: int, classes: int, height: int, width: int, seed: int = 0, unaries: str = "network"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Probabilities, images and, with the photographs, their N×H×W labels."""
    rng = np.random.default_rng(seed)
    photos = example_photos()
    images, labels = [], []
    for i in range(n):
        if photos:
            photo = Image.open(photos[i % len(photos)]).convert("RGB")
            images.append(np.asarray(photo.resize((width, height), Image.BILINEAR)))
            labels.append(photo_labels(beside(photos[i % len(photos)], "out"), height, width))
        else:
            images.append(synthetic_image(rng, height, width))
    images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    if not labels:
        coarse = rng.normal(0, 3, (n, classes, height // 16 + 2, width // 16 + 2))
        scores = F.interpolate(torch.from_numpy(coarse).float(), (height, width), mode="bilinear")
        return scores.softmax(1), images, None
    label_tensor = torch.from_numpy(np.stack(labels)).long()
    noisy = paper_unaries if unaries == "paper" else degrade
    return noisy(label_tensor, classes, rng), images, label_tensor


def example_photos() -> list[Path]:
    """pydensecrf's example photographs (imN.png), if they are there."""
    return sorted(EXAMPLES.glob("im*.png")) if EXAMPLES.is_dir() else []


def beside(photo: Path, kind: str) -> Path:
    """The example's file of that kind for a photograph: imN.png → outN.png, annoN.png."""
    return photo.with_name(photo.name.replace("im", kind, 1))


def photo_labels(path: Path, height: int, width: int) -> np.ndarray:
    """A colour-coded label image as class indices 0, 1, ... (in colour order)."""
    colours = np.asarray(Image.open(path).convert("RGB").resize((width, height), Image.NEAREST))
    _, index = np.unique(colours.reshape(-1, 3), axis=0, return_inverse=True)
    return index.reshape(height, width)


def annotation_labels(n: int, height: int, width: int) -> torch.Tensor | None:
    """The photographs' rough human annotations (annoN.png, beside the outputs) as
    N×H×W class indices in the labels' colour order, -1 where unmarked (black)."""
    photos = example_photos()
    if not photos:
        return None
    labels = []
    for i in range(n):
        photo = photos[i % len(photos)]
        outputs = np.asarray(Image.open(beside(photo, "out")).convert("RGB"))
        palette = np.unique(outputs.reshape(-1, 3), axis=0)
        marks = Image.open(beside(photo, "anno")).convert("RGB")
        colours = np.asarray(marks.resize((width, height), Image.NEAREST)).reshape(-1, 1, 3)
        matches = (colours == palette[None]).all(-1)
        index = np.where(matches.any(1), matches.argmax(1), -1)
        index[~colours.reshape(-1, 3).any(1)] = -1
        labels.append(index.reshape(height, width))
    return torch.from_numpy(np.stack(labels)).long()


def degrade(
    labels: torch.Tensor, classes: int, rng: np.random.Generator, stride: int = 8
) -> torch.Tensor:
    """Probabilities a stride-``stride`` network might give for ``labels``: block-averaged
    one-hot scores, scaled by 2.5, plus unit Gaussian noise on the coarse grid, upsampled.
    Classes absent from an image score 4 lower: a network rarely confuses a photo's
    objects with every other class at once."""
    height, width = labels.shape[-2:]
    onehot = F.one_hot(labels, classes).permute(0, 3, 1, 2).float()
    coarse = F.adaptive_avg_pool2d(onehot, (height // stride, width // stride))
    present = onehot.amax((2, 3), keepdim=True)
    noise = torch.from_numpy(rng.normal(0, 1, coarse.shape)).float()
    coarse = 2.5 * coarse + noise - 4 * (1 - present)
    return F.interpolate(coarse, (height, width), mode="bilinear").softmax(1)


def paper_unaries(
    labels: torch.Tensor, classes: int, rng: np.random.Generator, stride: int = 8, keep: float = 0.8
) -> torch.Tensor:
    """The ConvCRF paper's synthetic unaries: one-hot labels averaged over stride×stride
    blocks and a mask keeping each block with probability ``keep``, else a random class's
    one-hot; the three upsampled bilinearly and mixed by the mask.  Already probabilities
    (they sum to 1), with no softmax."""
    height, width = labels.shape[-2:]
    coarse_size = (height // stride, width // stride)
    onehot = F.one_hot(labels, classes).permute(0, 3, 1, 2).float()
    coarse = F.adaptive_avg_pool2d(onehot, coarse_size)
    random_class = torch.from_numpy(rng.integers(0, classes, (len(labels), *coarse_size)))
    noise = F.one_hot(random_class, classes).permute(0, 3, 1, 2).float()
    kept = torch.from_numpy(rng.random((len(labels), 1, *coarse_size)) < keep).float()
    coarse, noise, kept = (
        F.interpolate(x, (height, width), mode="bilinear") for x in (coarse, noise, kept)
    )
    return kept * coarse + (1 - kept) * noise


def mean_iou(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The IoU of each class present in the labels, accumulated over all the images (as
    PASCAL VOC's mIoU), averaged over those classes.  Labels below 0 are ignored."""
    return label_iou(probs.argmax(1), labels, probs.shape[1])


def label_iou(predicted: torch.Tensor, labels: torch.Tensor, classes: int) -> float:
    """:func:`mean_iou` of predicted labels rather than probabilities."""
    counted = labels >= 0
    pairs = labels[counted] * classes + predicted[counted]
    confusion = torch.bincount(pairs, minlength=classes * classes).view(classes, classes)
    intersection = confusion.diag().double()
    union = confusion.sum(0) + confusion.sum(1) - intersection
    present = confusion.sum(1) > 0
    return float((intersection[present] / union[present]).mean())


def without_specks(labels: torch.Tensor, fraction: float = SPECK_FRACTION) -> torch.Tensor:
    """The labels with every pixel of a region smaller than ``fraction`` of its image set
    to -1 (ignored): pydensecrf's outputs are strewn with such fragments (reflections in
    the water labelled goose, blades of grass labelled bench) that no annotator would
    draw and that only a CRF with pydensecrf's own long-range kernel reproduces."""
    sizes = torch.from_numpy(np.stack([region_sizes(image.numpy()) for image in labels]))
    return labels.masked_fill(sizes < fraction * labels[0].numel(), -1)


def region_sizes(labels: np.ndarray) -> np.ndarray:
    """For each pixel of an H×W label image, the size of its region: the 8-connected
    pixels of its class.  Union-find over the runs of equal labels in each row."""
    parent: list[int] = []
    run_size: list[int] = []

    def root(run: int) -> int:
        while parent[run] != run:
            parent[run] = parent[parent[run]]
            run = parent[run]
        return run

    rows = []  # per row: (start, end, label, run index) of each run
    for y, row in enumerate(labels):
        breaks = np.flatnonzero(np.diff(row)) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [len(row)]))
        runs = []
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            index = len(parent)
            parent.append(index)
            run_size.append(end - start)
            runs.append((start, end, row[start], index))
            # 8-connected: a run above touches this one if it reaches a column within one
            for above_start, above_end, label, above in rows[y - 1] if y else []:
                if label == row[start] and above_start <= end and start <= above_end:
                    parent[root(above)] = root(index)
        rows.append(runs)
    region_size = np.zeros(len(parent), dtype=np.int64)
    roots = [root(run) for run in range(len(parent))]
    np.add.at(region_size, roots, run_size)
    sizes = np.empty(labels.shape, dtype=np.int64)
    for y, runs in enumerate(rows):
        for start, end, _, index in runs:
            sizes[y, start:end] = region_size[roots[index]]
    return sizes


def spurious_share(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of pixels given a class that is absent from their image's labels."""
    predicted = probs.argmax(1)
    absent = [~torch.isin(p, truth.unique()) for p, truth in zip(predicted, labels, strict=True)]
    return float(torch.stack(absent).float().mean())


def synthetic_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    image = np.empty((height, width, 3))
    image[:] = rng.integers(0, 256, 3)
    ys, xs = np.mgrid[:height, :width]
    for _ in range(6):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(10, height // 2)
        image[(ys - cy) ** 2 + (xs - cx) ** 2 < r**2] = rng.integers(0, 256, 3)
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def size_of(megapixels: float) -> tuple[int, int]:
    """Height and width of a 4:3 image with about this many megapixels."""
    width = round((megapixels * 1e6 * 4 / 3) ** 0.5)
    return round(width * 3 / 4), width
