"""Tiled inference of a large image: peak memory and time, against one full-image pass.

    python benchmarks/tiling.py                         # 3000×4000, 512-pixel tiles, CPU
    python benchmarks/tiling.py --size 1500x2000 --tile 256 --overlap 0.5
    python benchmarks/tiling.py --checkpoint runs/deeplab_crf/<time>/best.pt

The network is the quickstart's (configs/deeplab_crf.toml) with seeded random weights,
or a checkpoint's.  Each case runs in a fresh process, so its peak resident set size
(ru_maxrss) is its own; "above inputs" subtracts what the process held once the
model and the image were in memory.  The agreement section compares tiled and
full-image probabilities on a smaller image in one process: the largest difference
and the share of pixels with the same label.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def build(args: argparse.Namespace):
    import torch

    from segkit.core import load_plugins
    from segkit.core.config import load_config
    from segkit.infer import Segmenter
    from segkit.model.assembly import build_model

    torch.set_num_threads(args.threads)
    if args.checkpoint:
        return Segmenter.from_checkpoint(args.checkpoint, "cpu").model
    registry = load_plugins().registry
    config = load_config(ROOT / "configs" / "deeplab_crf.toml", registry=registry)
    torch.manual_seed(0)
    return build_model(config, args.classes, registry).eval()


def image(height: int, width: int):
    import torch

    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))


def run_case(args: argparse.Namespace) -> dict:
    """One measurement in this process: ``args.case`` is ``tiled`` or ``full``."""
    import torch

    from segkit.infer.inference import InferenceSettings, predict_probs
    from segkit.infer.tiling import Tiling

    model = build(args)
    height, width = args.size
    images = image(height, width)
    before = peak_rss_mib()
    tiling = Tiling(args.tile, args.overlap) if args.case == "tiled" else None
    started = time.perf_counter()
    with torch.inference_mode():
        probs = predict_probs(model, images, InferenceSettings(tiling=tiling))
    seconds = time.perf_counter() - started
    peak = peak_rss_mib()
    return {
        "case": args.case,
        "size": f"{height}x{width}",
        "classes": int(probs.shape[1]),
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak),
        "peak_above_inputs_mib": round(peak - before),
        "probabilities_mib": round(probs.numel() * 4 / 2**20),
    }


def agreement(args: argparse.Namespace) -> dict:
    import torch

    from segkit.infer.inference import InferenceSettings, predict_probs
    from segkit.infer.tiling import Tiling

    model = build(args)
    height, width = args.agreement_size
    images = image(height, width)
    with torch.inference_mode():
        full = predict_probs(model, images)
        tiled = predict_probs(
            model, images, InferenceSettings(tiling=Tiling(args.tile, args.overlap))
        )
    same = (full.argmax(1) == tiled.argmax(1)).float().mean().item()
    return {
        "size": f"{height}x{width}",
        "max_abs_difference": float((full - tiled).abs().max()),
        "same_label": round(same, 5),
    }


def size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=size, default=(3000, 4000), help="HxW (3000x4000)")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--no-full", action="store_true", help="skip the full-image pass")
    parser.add_argument("--agreement-size", type=size, default=(768, 1024))
    parser.add_argument("--case", choices=("tiled", "full", "agreement"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        result = agreement(args) if args.case == "agreement" else run_case(args)
        print(json.dumps(result))
        return
    print(f"CPU: {cpu_model()}, {args.threads} threads")
    cases = ["tiled", "agreement"] if args.no_full else ["tiled", "full", "agreement"]
    for case in cases:
        argv = [sys.executable, __file__, *sys.argv[1:], "--case", case]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["killed"])[-1]
            print(json.dumps({"case": case, "failed": last}))
        else:
            print(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
