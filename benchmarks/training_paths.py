"""The GPU's training options, on the CPU or a GPU: time per step and agreement with float32.

Trains the quickstart model (or ``--config``'s) for a few steps of batch 8 of its
training crops (112×112) in each of: plain float32, channels_last, mixed precision
(``train.amp``: float16 with a gradient scaler on CUDA, bfloat16 on the CPU),
``torch.compile`` (Inductor) and, with ``--crf``, the ``crf_rnn`` config's model (its
CRF layer on from the start) in float32 and in mixed precision.  Each variant starts
from the same weights and sees the same batches; the table gives the median seconds
per step, its ratio to float32, and the relative difference of the loss from
float32's at the first step and the largest over the steps (the trajectories part as
the weights take different steps).  The first two steps (and compilation) are timed
apart::

    python benchmarks/training_paths.py [--steps 10] [--threads 2] [--crf]
    python benchmarks/training_paths.py --device cuda --crf
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from segkit.core import get_plugins, load_config
from segkit.data import build_dataset
from segkit.data.loading import TrainingSet
from segkit.data.transforms import build_train_transform
from segkit.infer import Precision
from segkit.model import build_model
from segkit.train import LossTask, build_loss
from segkit.train.step import train_step


def steps_of(
    model: torch.nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    loss_fn,
    precision: Precision,
) -> tuple[list[float], list[float]]:
    """Seconds and loss of each of segkit's training steps (SGD at a constant rate, so
    that no optimizer state or schedule differs between the variants)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    device = batches[0][0].device
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scales_gradients)
    model.train()
    seconds, losses = [], []
    for images, masks in batches:
        if precision.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        start = time.perf_counter()
        result = train_step(model, images, masks, loss_fn, optimizer, scheduler, scaler, precision)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the optimizer step runs on after the call returns
        seconds.append(time.perf_counter() - start)
        losses.append(result.loss)
    return seconds, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/deeplab_crf.toml")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--crf", action="store_true", help="also the crf_rnn model")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    device = torch.device(args.device)

    plugins = get_plugins()
    registry = plugins.registry
    config = load_config(args.config, [f'train.device="{args.device}"'], registry)
    # batches of the config's own training images, augmented and cropped as in training
    data = config.data
    dataset = build_dataset(data.dataset.name, data.train_split, data.dataset.params, registry)
    classes = dataset.num_classes
    torch.manual_seed(0)
    start = build_model(config, classes, registry).to(device)
    loss_fn = build_loss(config.train.loss, LossTask(classes), registry)
    training = TrainingSet(dataset, build_train_transform(data, registry), seed=0)
    samples = [training[i] for i in range(8 * (args.steps + 2))]
    batches = [
        (
            torch.stack([s[0] for s in samples[i : i + 8]]).to(device),
            torch.stack([s[1] for s in samples[i : i + 8]]).to(device),
        )
        for i in range(0, len(samples), 8)
    ]
    # what train.amp means on this device: float16 with a scaler on CUDA, else bfloat16
    mixed = Precision.for_device(device, True, False)
    mixed_name = f"{str(mixed.dtype).removeprefix('torch.')} autocast"
    variants: list[tuple[str, torch.nn.Module, Precision]] = [
        ("float32", copy.deepcopy(start), Precision()),
        (
            "channels_last",
            copy.deepcopy(start).to(memory_format=torch.channels_last),
            Precision(channels_last=True),
        ),
        (mixed_name, copy.deepcopy(start), mixed),
        ("torch.compile", torch.compile(copy.deepcopy(start)), Precision()),
    ]
    if args.crf:
        crf_config = load_config("configs/crf_rnn.toml", ["model.crf.warmup_steps=0"], registry)
        torch.manual_seed(0)
        with_crf = build_model(crf_config, classes, registry).to(device)
        variants.append(("CRF layer, float32", with_crf, Precision()))
        variants.append((f"CRF layer, {mixed_name}", copy.deepcopy(with_crf), mixed))

    results = {}
    for name, model, precision in variants:
        # the first two steps warm up (and compile); the rest are timed
        seconds, losses = steps_of(model, batches, loss_fn, precision)
        results[name] = (statistics.median(seconds[2:]), losses, sum(seconds[:2]))
        Console().print(f"{name}: {results[name][0]:.3f} s/step", highlight=False)

    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"the CPU, {torch.get_num_threads()} threads"
    )
    table = Table(title=f"training steps on {where}, batch 8 at 112×112, {args.steps} steps")
    columns = ("variant", "s / step", "× float32", "loss vs float32: first", "largest")
    for column in (*columns, "first 2 steps (s)"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, (seconds, losses, warm) in results.items():
        reference = results["CRF layer, float32" if name.startswith("CRF") else "float32"]
        differences = [abs(a - b) / abs(b) for a, b in zip(losses, reference[1], strict=True)]
        table.add_row(
            name,
            f"{seconds:.3f}",
            f"{seconds / reference[0]:.2f}",
            f"{differences[0]:.1e}",
            f"{max(differences):.1e}",
            f"{warm:.1f}",
        )
    Console(width=max(110, Console().width)).print(table)


if __name__ == "__main__":
    main()
