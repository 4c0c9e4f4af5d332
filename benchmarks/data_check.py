"""`segkit data check` on a folder of images, and what the same checks add to the
start of `segkit run`.

    python benchmarks/data_check.py                      # 1,000 images of 384×512
    python benchmarks/data_check.py --images 1000 --rounds 3 --folder /tmp/dc

The folder (JPEG images, grayscale PNG masks of 5 classes and a 255 line) is written
once and kept.  Each round runs `segkit data check` in a fresh process, as a user
would, and reports its wall and CPU time; then the checks `segkit run` makes before
training are timed in this process on the quickstart's synthetic data and on the
folder.  The medians are printed with the CPU model and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from startup import cpu_model  # noqa: E402


def write_folder(folder: Path, count: int, height: int = 384, width: int = 512) -> Path:
    data = folder / "data"
    if (data / "masks").is_dir() and len(list((data / "masks").glob("*.png"))) == count:
        return data
    (data / "images").mkdir(parents=True, exist_ok=True)
    (data / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:height, 0:width]
    for index in range(count):
        image = np.full((height, width, 3), (90, 110, 80), np.uint8)
        mask = np.zeros((height, width), np.uint8)
        for label in range(1, 6):
            x, y = rng.integers(40, width - 40), rng.integers(40, height - 40)
            r = rng.integers(15, 70)
            disc = (cols - x) ** 2 + (rows - y) ** 2 < r * r
            mask[disc], image[disc] = label, rng.integers(0, 255, 3)
        mask[::97] = 255
        image = np.clip(image + rng.integers(0, 30, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(data / "images" / f"img_{index:05}.jpg", quality=90)
        Image.fromarray(mask).save(data / "masks" / f"img_{index:05}.png")
    return data


def time_command(data: Path, picture: Path) -> tuple[float, float]:
    segkit = Path(sys.executable).with_name("segkit")
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(segkit), "data", "check", str(data), "--out", str(picture)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"segkit data check {data} failed")
    return wall, usage.ru_utime + usage.ru_stime


def time_run_checks(config: Path, overrides: list[str], rounds: int) -> float:
    """Median seconds of the data checks `segkit run` makes before training."""
    from segkit.core import load_config, load_plugins
    from segkit.data.dataset import build_splits
    from segkit.train.preflight import check_run_data

    plugins = load_plugins()
    loaded = load_config(config, overrides, registry=plugins.registry)
    times = []
    for _ in range(rounds):
        splits = build_splits(loaded, plugins.registry)  # fresh: no sample cached
        started = time.perf_counter()
        check_run_data(loaded, splits, plugins.registry, None)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/segkit_data_check"))
    args = parser.parse_args()
    data = write_folder(args.folder, args.images)
    walls, cpus = [], []
    for _ in range(args.rounds):
        wall, cpu = time_command(data, args.folder / "data_check.png")
        walls.append(wall)
        cpus.append(cpu)
    print(f"{cpu_model()}; load average {os.getloadavg()[0]:.1f}")
    rounds = ", ".join(f"{wall:.1f}" for wall in walls)
    print(
        f"segkit data check, {args.images} images of 384×512: median "
        f"{statistics.median(walls):.1f} s wall, {statistics.median(cpus):.1f} s CPU "
        f"(rounds: {rounds})"
    )
    print(f"picture: {args.folder / 'data_check.png'}")
    quickstart = time_run_checks(ROOT / "configs" / "deeplab_crf.toml", [], args.rounds)
    print(f"segkit run's data checks, the quickstart (synthetic): {quickstart:.2f} s")
    folder = time_run_checks(
        ROOT / "configs" / "folder.toml", [f"data.dataset.root={data}"], args.rounds
    )
    print(f"segkit run's data checks, this folder (256 + 100 items): {folder:.2f} s")


if __name__ == "__main__":
    main()
