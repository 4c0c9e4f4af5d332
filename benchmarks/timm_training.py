"""FCN-8s on a timm backbone learns: a short CPU training run on the synthetic shapes.

The run is ``segkit run`` on the config below (random initialisation, no download):
the per-epoch training loss must fall, and the validation mIoU after training is
reported beside that of the untrained model (FCN's zero-initialised score layers
predict one class everywhere).  Exits with status 1 when the loss does not fall.

    python benchmarks/timm_training.py [--model mobilenetv3_large_100] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from segkit.core import get_plugins, load_config
from segkit.train import run_config

CONFIG = """
name = "timm_fcn8s_synthetic"

[model]
backbone = {{ name = "timm", model = "{model}", weights = "none" }}
head = {{ name = "fcn8s" }}
upsampler = {{ name = "interpolate" }}

[data]
dataset = {{ name = "synthetic", seed = 0, train_size = {train_size}, val_size = 24 }}
batch_size = 8
crop_size = 80
scale_range = [0.7, 1.3]
workers = 1

[train]
epochs = {epochs}
lr = 0.02
momentum = 0.9
weight_decay = 1e-4
poly_power = 0.9
head_lr_mult = 1.0
device = "cpu"
threads = {threads}

[eval]
every = {epochs}
postprocess = false

[run]
steps = ["train", "evaluate"]
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv3_large_100", help="a timm model name")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=96)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_text(
            CONFIG.format(
                model=args.model,
                epochs=args.epochs,
                train_size=args.train_size,
                threads=args.threads,
            )
        )
        plugins = get_plugins()
        config = load_config(path, registry=plugins.registry)
        started = time.perf_counter()
        summary = run_config(config, Path(folder) / "run", plugins, console)
        seconds = time.perf_counter() - started
        lines = (Path(folder) / "run" / "metrics.jsonl").read_text().splitlines()
        losses = [json.loads(line)["loss"] for line in lines]
    console.print(
        f"FCN-8s on timm {args.model}, {args.epochs} epochs of {args.train_size} synthetic "
        f"images (80x80 crops) in {seconds:.0f} s: training loss per epoch "
        f"{' -> '.join(f'{v:.3f}' for v in losses)}; val mIoU {summary['miou']:.3f}"
    )
    if not losses[-1] < losses[0]:
        console.print("[red]the training loss did not fall[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
