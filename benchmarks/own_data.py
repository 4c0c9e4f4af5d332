"""Train on one's own data: ``configs/folder.toml`` against a plain smp loop, same wall time.

Writes a folder dataset of small objects (11 classes, a few percent foreground) on
textured backgrounds, runs ``segkit run configs/folder.toml`` on it with nothing
changed but ``data.dataset.root`` (and ``train.threads``), and meanwhile, in this
process, trains segmentation_models_pytorch's FPN on ResNet-18 (no pretrained
weights, AdamW 1e-3, flips) on the very same split until the segkit run ends; then
reports both val mIoU (segkit's metric for both).  The two run side by side with a
thread each, so a shared machine's load falls on both alike and each gets the same
wall time; segkit's includes its start, its evaluations and the dense CRF's::

    pip install segmentation-models-pytorch
    python benchmarks/own_data.py [--images 1000] [--out /tmp/own_data]

The generator is not segkit's synthetic shapes: other shapes, sizes, textures and
class count, so the recipe is measured on data it was not tuned on.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter

from segkit.core.manager import get_plugins
from segkit.data import IGNORE_INDEX, build_dataset, normalize
from segkit.infer.metrics import ConfusionMatrix

ROOT = Path(__file__).resolve().parents[1]

#: Ten object classes: a shape and a typical colour each; colours overlap between
#: classes and vary within one, so neither shape nor colour alone decides.
OBJECTS = [
    ("disc", (220, 60, 50)),
    ("square", (60, 160, 220)),
    ("triangle", (230, 200, 40)),
    ("ring", (220, 60, 50)),
    ("cross", (90, 200, 90)),
    ("bar", (60, 160, 220)),
    ("diamond", (200, 90, 200)),
    ("ellipse", (90, 200, 90)),
    ("star", (230, 200, 40)),
    ("hollow_square", (200, 90, 200)),
]


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Low-frequency colour noise plus stripes or blotches: texture without objects."""
    coarse = rng.uniform(40, 215, (rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.uint8)
    base = np.asarray(
        Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32
    )
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, period = rng.uniform(0, math.pi), rng.uniform(6, 30)
    stripes = np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period)
    base += rng.uniform(0, 25) * stripes[..., None]
    return base


def _draw(
    draw: ImageDraw.ImageDraw,
    kind: str,
    cx: float,
    cy: float,
    r: float,
    angle: float,
    fill: int | tuple[int, ...],
) -> None:
    def polygon(points: list[tuple[float, float]]) -> None:
        c, s = math.cos(angle), math.sin(angle)
        draw.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in points], fill=fill)

    if kind == "disc":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "ellipse":
        polygon([(r * math.cos(t), 0.5 * r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 24)])
    elif kind == "ring":
        width = max(2, round(r / 3))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=width)
    elif kind == "square":
        polygon([(-r, -r), (r, -r), (r, r), (-r, r)])
    elif kind == "hollow_square":
        w = max(2.0, r / 3)
        for a, b in (
            ((-r, -r), (r, -r + w)),
            ((-r, r - w), (r, r)),
            ((-r, -r), (-r + w, r)),
            ((r - w, -r), (r, r)),
        ):
            polygon([a, (b[0], a[1]), b, (a[0], b[1])])
    elif kind == "diamond":
        polygon([(0, -r), (0.7 * r, 0), (0, r), (-0.7 * r, 0)])
    elif kind == "triangle":
        polygon(
            [
                (r * math.cos(t), r * math.sin(t))
                for t in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
            ]
        )
    elif kind == "star":
        polygon(
            [
                (
                    (r if i % 2 == 0 else 0.45 * r) * math.cos(i * math.pi / 5),
                    (r if i % 2 == 0 else 0.45 * r) * math.sin(i * math.pi / 5),
                )
                for i in range(10)
            ]
        )
    elif kind == "cross":
        w = max(1.5, r / 3)
        polygon([(-r, -w), (r, -w), (r, w), (-r, w)])
        polygon([(-w, -r), (w, -r), (w, r), (-w, r)])
    elif kind == "bar":  # thin and long: the hardest class to find and to outline
        polygon([(-1.8 * r, -1.2), (1.8 * r, -1.2), (1.8 * r, 1.2), (-1.8 * r, 1.2)])


def render(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image (H×W×3 uint8, 88..136 px a side) and its index mask."""
    height, width = (int(v) for v in rng.integers(88, 137, 2))
    pixels = _background(rng, height, width)
    canvas = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    # distractors: background blobs in object colours
    for _ in range(int(rng.integers(0, 4))):
        colour = OBJECTS[rng.integers(len(OBJECTS))][1]
        x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(2, 6)
        draw.ellipse((x - r, y - 0.4 * r, x + r, y + 0.4 * r), fill=tuple(int(c) for c in colour))
    mask_image = Image.new("L", (width, height), 0)
    mask_draw = ImageDraw.Draw(mask_image)
    for _ in range(int(rng.integers(1, 6))):
        label = int(rng.integers(1, len(OBJECTS) + 1))
        kind, colour = OBJECTS[label - 1]
        r = rng.uniform(4.5, 10.5)
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        angle = rng.uniform(0, 2 * math.pi)
        jitter = rng.normal(0, 30, 3)
        fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(colour, jitter, strict=True))
        _draw(draw, kind, cx, cy, r, angle, fill)
        _draw(mask_draw, kind, cx, cy, r, angle, label)
    blurred = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))
    image = np.asarray(blurred, np.float32) + rng.normal(0, rng.uniform(2, 10), (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8), np.asarray(mask_image, np.uint8)


def write_dataset(root: Path, count: int, seed: int = 2024) -> float:
    """``root/images/*.jpg`` and ``root/masks/*.png``; returns the foreground share."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    foreground = total = 0
    for index in range(count):
        image, mask = render(np.random.default_rng((seed, index)))
        Image.fromarray(image).save(root / "images" / f"{index:05d}.jpg", quality=92)
        Image.fromarray(mask).save(root / "masks" / f"{index:05d}.png")
        foreground += int((mask > 0).sum())
        total += mask.size
    return foreground / total


def start_segkit(root: Path, run_dir: Path, extra: list[str]) -> subprocess.Popen:
    """``segkit run configs/folder.toml`` with only the root changed (and the threads)."""
    command = [
        sys.executable,
        "-m",
        "segkit",
        "run",
        str(ROOT / "configs" / "folder.toml"),
        "--set",
        f'data.dataset.root="{root}"',
        "--run-dir",
        str(run_dir),
        *extra,
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def run_smp(root: Path, segkit: subprocess.Popen, threads: int) -> tuple[float, int]:
    """The plain loop: FPN/ResNet-18 from scratch, AdamW 1e-3, flips, trained for as long
    as the ``segkit`` process runs."""
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    registry = get_plugins().registry
    train = build_dataset("folder", "train", {"root": str(root)}, registry)
    val = build_dataset("folder", "val", {"root": str(root)}, registry)
    classes = len(train.class_names)
    model = smp.FPN("resnet18", encoder_weights=None, classes=classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    samples = [train[i] for i in range(len(train))]
    rng = np.random.default_rng(0)
    crop, batch, passes = 96, 8, 0
    model.train()
    while segkit.poll() is None:
        images, masks = [], []
        for i in rng.choice(len(samples), batch):
            s = samples[i]
            h, w = s.mask.shape
            # images smaller than the crop are padded: black, and ignored by the loss
            ph, pw = max(0, crop - h), max(0, crop - w)
            image = np.pad(s.image, ((0, ph), (0, pw), (0, 0)))
            mask = np.pad(s.mask, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
            top = rng.integers(0, h + ph - crop + 1)
            left = rng.integers(0, w + pw - crop + 1)
            image = image[top : top + crop, left : left + crop]
            mask = mask[top : top + crop, left : left + crop]
            if rng.random() < 0.5:
                image, mask = image[:, ::-1], mask[:, ::-1]
            images.append(normalize(np.ascontiguousarray(image)))
            masks.append(torch.from_numpy(mask.astype(np.int64)))
        logits = model(torch.stack(images))
        loss = F.cross_entropy(logits, torch.stack(masks), ignore_index=IGNORE_INDEX)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        passes += batch
    model.eval()
    matrix = ConfusionMatrix(classes)
    with torch.no_grad():
        for i in range(len(val)):
            s = val[i]
            h, w = s.mask.shape
            ph, pw = -h % 32, -w % 32  # FPN needs sides divisible by 32
            image = F.pad(normalize(s.image)[None], (0, pw, 0, ph))
            pred = model(image)[0, :, :h, :w].argmax(0)
            matrix.update(pred, torch.from_numpy(s.mask.astype(np.int64)))
    return matrix.compute()["miou"], passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/segkit_own_data"))
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads for each of the two (default 1)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="extra --set for the segkit run (to try a variant)",
    )
    args = parser.parse_args()
    root = args.out / "data"
    if not (root / "images").is_dir():
        share = write_dataset(root, args.images)
        print(f"wrote {args.images} images to {root}: foreground {share:.1%}")
    run_dir = args.out / f"run-{time.strftime('%H%M%S')}"
    extra = [a for o in args.overrides for a in ("--set", o)]
    extra += ["--set", f"train.threads={args.threads}"]
    started = time.perf_counter()
    segkit = start_segkit(root, run_dir, extra)
    smp_miou, passes = run_smp(root, segkit, args.threads)
    seconds = time.perf_counter() - started
    if segkit.returncode != 0:
        sys.exit(f"segkit run failed (exit {segkit.returncode}); see {run_dir}")
    # the raw prediction's mIoU; the post-processors' are beside it in summary.json
    miou = json.loads((run_dir / "summary.json").read_text())["miou"]
    print(f"segkit configs/folder.toml: val mIoU {miou:.3f} in {seconds:.0f} s")
    print(
        f"smp FPN/ResNet-18 loop:     val mIoU {smp_miou:.3f} in the same {seconds:.0f} s "
        f"({passes} image passes)"
    )


if __name__ == "__main__":
    main()
