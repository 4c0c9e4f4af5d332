"""``segkit predict`` on folders of many small images: time to the first output, and
total time against the image count (it must grow linearly).

    python benchmarks/predict_scaling.py                       # 1,000 to 10,000 images
    python benchmarks/predict_scaling.py --counts 2000 --size 24

Each count runs ``segkit predict CHECKPOINT FOLDER --no-crf`` in a fresh process on
that many distinct PNG images of SIZE×SIZE pixels, as a user would.  The checkpoint
holds the quickstart's network (configs/deeplab_crf.toml) with seeded random weights.
"First output" is the time from the command's start until its first ``_mask.png``
exists; "per image" is the total wall time divided by the count, which stays flat
when the work is linear.  The CPU columns count the command's own CPU seconds, which
other work on a shared machine does not inflate as it does wall time.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from tiling import cpu_model  # noqa: E402


def write_checkpoint(folder: Path) -> Path:
    import torch

    from segkit.core import load_plugins
    from segkit.core.config import load_config
    from segkit.data.dataset import voc_palette
    from segkit.model.assembly import build_model
    from segkit.model.checkpoint import model_payload, save_checkpoint

    registry = load_plugins().registry
    config = load_config(ROOT / "configs" / "deeplab_crf.toml", registry=registry)
    torch.manual_seed(0)
    names = ["background", "circle", "square", "triangle", "cross"]
    model = build_model(config, len(names), registry)
    payload = model_payload(config, model, names, voc_palette(len(names)))
    return save_checkpoint(folder / "model.pt", payload)


def write_images(folder: Path, count: int, size: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:05}.png", compress_level=1)


def predict(checkpoint: Path, images: Path, out: Path) -> tuple[float, float, float]:
    """(seconds to the first mask, total seconds, CPU seconds) of one ``segkit predict``."""
    command = [sys.executable, "-m", "segkit", "predict", str(checkpoint), str(images)]
    command += ["--out", str(out), "--no-crf", "--batch-size", "16", "--device", "cpu"]
    cpu_before = _children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = None
    while process.poll() is None:
        if first is None and out.is_dir() and next(out.glob("*_mask.png"), None) is not None:
            first = time.perf_counter() - started
        time.sleep(0.02)
    total = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(process.stderr.read().decode()[-2000:])
    return (first if first is not None else total), total, _children_cpu() - cpu_before


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes: unlike wall time, not
    inflated by other work sharing the machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    parser.add_argument("--size", type=int, default=16, help="image side in pixels")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}; images {args.size}×{args.size}, no CRF, batches of 16")
    header = f"{'images':>7} {'first output (s)':>17} {'total (s)':>10} {'per image (ms)':>15}"
    print(f"{header} {'CPU (s)':>8} {'CPU per image (ms)':>19}")
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        checkpoint = write_checkpoint(folder)
        for count in args.counts:
            images, out = folder / f"images{count}", folder / f"out{count}"
            write_images(images, count, args.size)
            first, total, cpu = predict(checkpoint, images, out)
            assert len(list(out.glob("*_mask.png"))) == count
            row = f"{count:>7} {first:>17.2f} {total:>10.1f} {1000 * total / count:>15.2f}"
            print(f"{row} {cpu:>8.1f} {1000 * cpu / count:>19.2f}")


if __name__ == "__main__":
    main()
