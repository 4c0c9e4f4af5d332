"""ONNX export of the paper models: onnxruntime against PyTorch, and the time it takes.

    python benchmarks/export.py                     # FCN-8s VGG16, FCN-8s ResNet-18, quickstart
    python benchmarks/export.py configs/voc/fcn32s.toml

Each config's network is built with 21 classes and random weights (no ImageNet file
is needed); the score layers, which FCN initialises to zero, get small random
values so the logits vary.  The export is checked as ``segkit export`` checks it:
on 333×497 and 64×64 inputs, largest absolute difference of the logits.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from segkit.core import load_plugins
from segkit.core.config import config_from_dict, read_config
from segkit.infer.export import export, metadata
from segkit.model.assembly import build_model

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ["configs/voc/fcn8s.toml", "configs/voc/fcn8s_resnet18.toml", "configs/deeplab_crf.toml"]


def network(path: Path, registry):
    raw = read_config(path)
    raw["model"]["backbone"].pop("weights", None)  # random init: no download
    config = config_from_dict(raw, registry=registry)
    torch.manual_seed(0)
    model = build_model(config, 21, registry).eval()
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=DEFAULT)
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args()
    torch.set_num_threads(2)
    registry = load_plugins().registry
    print(f"CPU: {platform.processor() or 'see lscpu'}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.configs:
            model, config = network(ROOT / name, registry)
            info = metadata(["c"] * 21, config.data.mean, config.data.std, np.zeros((21, 3)))
            out = Path(folder) / "model.onnx"
            started = time.perf_counter()
            result = export(model, out, info, "onnx", args.opset)
            seconds = time.perf_counter() - started
            diffs = ", ".join(f"{h}×{w}: {d:.2g}" for (h, w), d in result.differences.items())
            params = sum(p.numel() for p in model.parameters())
            size = out.stat().st_size / 2**20
            print(
                f"{name}: {params:,} parameters, {size:.0f} MiB, export+check {seconds:.1f} s; "
                f"max |onnxruntime - PyTorch| {diffs}"
            )


if __name__ == "__main__":
    main()
