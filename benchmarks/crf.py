"""CRF post-processors side by side: time per image, accuracy, agreement and peak memory.

    python benchmarks/crf.py                              # CPU, 500×375, 21 classes, 10 iterations
    python benchmarks/crf.py --unaries paper --iterations 5   # ConvCRF paper's noisy unaries
    python benchmarks/crf.py --device cuda --batch 8      # densecrf_torch on a GPU, 8 per batch
    python benchmarks/crf.py --memory                     # also peak memory at 0.25, 1 and 4 MP

The images are pydensecrf's example photographs resized to the benchmark size when
``../shared/data/densecrf_examples`` is beside the checkout (or where
``SEGKIT_DENSECRF_EXAMPLES`` points), otherwise synthetic scenes
of coloured shapes.  With the photographs, the probabilities are their labels
(pydensecrf's reference outputs) degraded in one of two ways:

* ``--unaries network`` (default), as a stride-8 network would see them: class scores
  averaged over 8×8 blocks, scaled, with Gaussian noise on that coarse grid, bilinearly
  upsampled and passed through a softmax;
* ``--unaries paper``, the ConvCRF paper's synthetic protocol: the one-hot labels
  averaged over 8×8 blocks, a fifth of the blocks replaced by a random class (one-hot),
  bilinearly upsampled (confident, wrong blobs that no softmax softens).

The table then gives each post-processor's mIoU against those labels (over the
dataset: IoU of each class present in the labels, accumulated over all images), its
gain over the unaries, and the share of pixels given a class absent from the image's
labels (specks a per-image mIoU would punish hard).  The labels come from pydensecrf
itself, which favours ``densecrf``: they are strewn with its own specks (reflections in
the water labelled goose, blades of grass labelled bench), 0.4% of the pixels, that no
annotator would draw.  A second gain ignores the pixels of label regions smaller than
0.1% of the image, as PASCAL VOC ignores its void pixels.  A third is measured against
the rough human annotations pydensecrf's example starts from (annoN.png; 88% of the
pixels marked, the rest ignored): drawn by a person, but with a coarse brush that fills
small openings (the bench's backrest is one blob).  Without the photographs the
probabilities are smooth random scores.  ``densecrf``, ``densecrf_torch`` and
``convcrf`` run with the same kernel widths (pydensecrf's example: θα 80, θβ 13, θγ 3)
and iterations; the dense CRFs with that example's weights, ``convcrf`` with its own
defaults.  ``densecrf`` runs once with one
worker (pydensecrf as it is) and once with one worker per core (as the plugin runs a
batch).  The last rows are the algorithm of ConvCRF's reference implementation with its
default window (11) and its demo's (7), re-implemented in ``convcrf_reference.py``.
The PyTorch CRFs and the reference run interleaved, each keeping its best of
``--rounds`` (2), so that a shared machine's load falls on all alike.
OpenMP threads wait passively unless OMP_WAIT_POLICY says otherwise (see below).
Peak memory is measured in a fresh process per case: the high-water resident set size
above what the inputs already take (CPU), or torch.cuda.max_memory_allocated (CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

# Spinning OpenMP threads wait for cores that other processes hold; on a shared machine
# that costs densecrf_torch up to ten times its time.  Set before torch starts OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F
from convcrf_reference import ReferenceConvCRF
from PIL import Image
from rich.console import Console
from rich.table import Table

import segkit

EXAMPLES = Path(
    os.environ.get(
        "SEGKIT_DENSECRF_EXAMPLES",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "densecrf_examples",
    )
)
MEGAPIXELS = (0.25, 1.0, 4.0)
#: pydensecrf's example kernel widths, shared by all three post-processors here.
WIDTHS = {"gaussian_sxy": 3.0, "bilateral_sxy": 80.0, "bilateral_srgb": 13.0}
#: pydensecrf's example weights, for the two dense CRFs.
DENSE_WEIGHTS = {"gaussian_compat": 3.0, "bilateral_compat": 10.0}
#: Label regions below this share of their image are pydensecrf's specks (see
#: :func:`without_specks`): 0.1%, 188 pixels at 500×375.
SPECK_FRACTION = 0.001


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
    classes = probs.shape[1]
    counted = labels >= 0
    pairs = labels[counted] * classes + probs.argmax(1)[counted]
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


def timed(postprocessor, probs, images, batch: int, device: str) -> tuple[float, torch.Tensor]:
    outputs = []
    start = time.perf_counter()
    for i in range(0, len(probs), batch):
        outputs.append(postprocessor(probs[i : i + batch], images[i : i + batch]).cpu())
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(probs), torch.cat(outputs)


def run_timing(args: argparse.Namespace, console: Console) -> None:
    height, width = args.height, args.width
    probs, images, labels = make_labelled_inputs(
        args.images, args.classes, height, width, unaries=args.unaries
    )
    dense = {"iterations": args.iterations, **WIDTHS, **DENSE_WEIGHTS}
    torch_crf = segkit.build_postprocessor("densecrf_torch", device=args.device, **dense)
    conv_crf = segkit.build_postprocessor(
        "convcrf", device=args.device, iterations=args.iterations, **WIDTHS
    )
    rows = [("unaries", "—", "—", args.images, None, probs)]
    reference = None
    if not args.skip_pydensecrf:
        serial = segkit.build_postprocessor("densecrf", workers=1, **dense)
        seconds, reference = timed(serial, probs, images, 1, "cpu")
        rows.append(("densecrf", "1 process", "cpu", 1, seconds, reference))
        parallel = segkit.build_postprocessor("densecrf", **dense)
        timed(parallel, probs[:2], images[:2], 2, "cpu")  # starts the worker processes
        workers = min(args.batch_cpu, len(probs))
        seconds, out = timed(parallel, probs, images, workers, "cpu")
        rows.append(("densecrf", "a process per core", "cpu", workers, seconds, out))
    on_device_probs = probs.to(args.device)
    on_device_images = images.to(args.device)
    threads = f"{torch.get_num_threads()} threads" if args.device == "cpu" else "GPU"
    for name, crf in (("densecrf_torch", torch_crf), ("convcrf", conv_crf)):
        start = time.perf_counter()
        crf(on_device_probs[:1], on_device_images[:1]).cpu()
        first = time.perf_counter() - start
        rows.append((name, f"first call, {threads}", args.device, 1, first, None))
    # one at a time and in batches, the PyTorch CRFs interleaved so that a shared
    # machine's load falls on all alike, each its best of --rounds
    segkit_crfs = [("densecrf_torch", threads, torch_crf), ("convcrf", threads, conv_crf)]
    # the reference implementation refines one image at a time: timed in batches of 1 only
    references = [
        ("ConvCRF reference", how, ReferenceConvCRF(filter_size=window, iterations=args.iterations))
        for window, how in ((11, "window 11 (its default)"), (7, "window 7 (its demo)"))
    ]
    for batch in sorted({1, args.batch}):
        runs = segkit_crfs + (references if batch == 1 else [])
        best: dict[int, tuple[float, torch.Tensor]] = {}
        for _ in range(args.rounds):
            for index, (_, _, crf) in enumerate(runs):
                seconds, out = timed(crf, on_device_probs, on_device_images, batch, args.device)
                if index not in best or seconds < best[index][0]:
                    best[index] = (seconds, out)
        for index, (name, how, _) in enumerate(runs):
            rows.append((name, how, args.device, batch, *best[index]))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table = Table(
        title=f"CRFs, {width}×{height}, {args.classes} classes, {args.iterations} iterations, "
        f"{args.images} images (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"load {load:.1f} on {os.cpu_count()} cores)"
    )
    columns = ["post-processor", "how", "device", "batch", "s / image", "× pydensecrf"]
    columns += ["× densecrf_torch", "same label as pydensecrf", "mIoU", "gain"]
    columns += ["gain, specks ignored", "gain, human marks", "spurious"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("post-processor", "how") else "right")
    base = rows[1][4] if reference is not None else None
    torch_times = {r[3]: r[4] for r in rows if r[0] == "densecrf_torch" and "first" not in r[1]}
    unary_iou = mean_iou(probs, labels) if labels is not None else None
    if labels is not None:
        speckless = without_specks(labels)
        annotated = annotation_labels(args.images, height, width)
        unary_speckless_iou = mean_iou(probs, speckless)
        unary_annotated_iou = mean_iou(probs, annotated)
    for name, how, device, batch, seconds, out in rows:
        ratio = f"{seconds / base:.2f}" if base and seconds else "—"
        torch_ratio = "—"
        if seconds and "first" not in how and batch in torch_times:
            torch_ratio = f"{seconds / torch_times[batch]:.2f}"
        same = "—"
        if reference is not None and out is not None and name != "unaries":
            same = f"{100 * float((out.argmax(1) == reference.argmax(1)).float().mean()):.2f}%"
        miou = gain = speckless_gain = annotated_gain = spurious = "—"
        if unary_iou is not None and out is not None:
            value = mean_iou(out, labels)
            miou, gain = f"{value:.4f}", f"{value - unary_iou:+.4f}"
            speckless_gain = f"{mean_iou(out, speckless) - unary_speckless_iou:+.4f}"
            annotated_gain = f"{mean_iou(out, annotated) - unary_annotated_iou:+.4f}"
            spurious = f"{100 * spurious_share(out, labels):.3f}%"
        time_text = f"{seconds:.3f}" if seconds else "—"
        table.add_row(
            *(name, how, device, str(batch), time_text, ratio, torch_ratio, same),
            *(miou, gain, speckless_gain, annotated_gain, spurious),
        )
    console.print(table)


def measure_peak(args: argparse.Namespace) -> None:
    """In this fresh process: refine one image once and print the peak memory as JSON."""
    if args.measure == "densecrf":
        args.device = "cpu"
    height, width = size_of(args.measure_megapixels)
    probs, images = make_inputs(1, args.classes, height, width)
    params = {"iterations": args.iterations, **WIDTHS}
    if args.measure != "convcrf":
        params.update(DENSE_WEIGHTS)
    if args.measure == "densecrf":
        params["workers"] = 1
    else:
        params["device"] = args.device
    postprocessor = segkit.build_postprocessor(args.measure, **params)
    # a tiny first call pages in the libraries' code, which is no part of the peak
    tiny_probs, tiny_images = make_inputs(1, args.classes, 24, 32, seed=1)
    postprocessor(tiny_probs.to(args.device), tiny_images.to(args.device))
    if args.device == "cuda" and args.measure != "densecrf":
        probs, images = probs.cuda(), images.cuda()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        postprocessor(probs, images)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        postprocessor(probs, images)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    print(json.dumps({"height": height, "width": width, "peak": peak}))


def run_memory(args: argparse.Namespace, console: Console) -> None:
    table = Table(title=f"peak memory above the inputs, {args.classes} classes, one image")
    for column in ("post-processor", "device", "megapixels", "size", "peak", "bytes / pixel"):
        table.add_column(
            column, justify="left" if column in ("post-processor", "device") else "right"
        )
    plugins = ["densecrf_torch", "convcrf"] + ([] if args.skip_pydensecrf else ["densecrf"])
    for name in plugins:
        device = args.device if name != "densecrf" else "cpu"
        for megapixels in MEGAPIXELS:
            command = [
                sys.executable,
                __file__,
                "--measure",
                name,
                "--measure-megapixels",
                str(megapixels),
                "--device",
                device,
                "--classes",
                str(args.classes),
                "--iterations",
                str(args.iterations),
            ]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                table.add_row(name, device, f"{megapixels:g}", "—", "failed", done.stderr[-80:])
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            pixels = result["height"] * result["width"]
            table.add_row(
                name,
                device,
                f"{megapixels:g}",
                f"{result['width']}×{result['height']}",
                f"{result['peak'] / 2**20:.0f} MiB",
                f"{result['peak'] / pixels:.0f}",
            )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--batch",
        type=int,
        default=8,
        help="densecrf_torch and convcrf images per call, besides one at a time (default 8)",
    )
    parser.add_argument(
        "--batch-cpu",
        type=int,
        default=8,
        help="densecrf images per call when run with a process per core",
    )
    parser.add_argument("--images", type=int, default=8, help="images timed")
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds; each keeps its best"
    )
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument(
        "--unaries",
        choices=["network", "paper"],
        default="network",
        help="how the photographs' labels are degraded (see above; default network)",
    )
    parser.add_argument("--size", default="500x375", help="WIDTHxHEIGHT")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory")
    parser.add_argument("--memory-only", action="store_true", help="only measure peak memory")
    parser.add_argument("--skip-pydensecrf", action="store_true")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--measure-megapixels", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.measure:
        measure_peak(args)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    args.width, args.height = (int(v) for v in args.size.lower().split("x"))
    console = Console(width=max(180, Console().width))
    if not args.memory_only:
        run_timing(args, console)
    if args.memory or args.memory_only:
        run_memory(args, console)


if __name__ == "__main__":
    main()
