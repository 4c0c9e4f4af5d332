"""segkit's training loop against a bare PyTorch loop on the same model, data and batch.

Both loops train the quickstart model for one epoch on the same synthetic images,
with the same DataLoader settings, loss, optimizer and schedule (the config's, built
by the recipe's plugins: the quickstart's cross-entropy plus half a Lovasz-softmax
term); the segkit side is
``Runner.train()`` as ``segkit run`` calls it (progress bars, checkpoint at the end
of the epoch, metrics line).  Rounds are interleaved (segkit, bare, segkit, bare...)
and the median images/s of each side is compared.  Both loops are timed the same way,
from the first batch request to the last optimizer step; the segkit epoch's whole
time, with its end-of-epoch checkpoint and curve drawing, is shown too.  The
DataLoader's own images/s (iterating it without a model) is reported beside them.

    python benchmarks/train_throughput.py [--config configs/deeplab_crf.toml] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from segkit.core import get_plugins, load_config
from segkit.train import LossTask, Runner, build_loss, build_optimizer, build_schedule


def bare_epoch(runner: Runner, loader: torch.utils.data.DataLoader, steps: int) -> float:
    """One epoch of the plainest loop that trains the same way; returns images/s."""
    cfg = runner.config.train
    model, device = runner.model, runner.run.device
    registry = runner.run.plugins.registry
    optimizer = build_optimizer(model, cfg, registry)
    scheduler = build_schedule(optimizer, cfg.schedule, steps, cfg.warmup_iterations, registry)
    loss_fn = build_loss(cfg.loss, LossTask(runner.splits.num_classes), registry)
    model.train()
    images_seen = 0
    start = time.perf_counter()
    for images, masks in loader:
        images, masks = images.to(device), masks.to(device)
        loss = loss_fn(model(images), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        images_seen += images.shape[0]
    return images_seen / (time.perf_counter() - start)


def loader_only(loader: torch.utils.data.DataLoader) -> float:
    start, images_seen = time.perf_counter(), 0
    for images, _ in loader:
        images_seen += images.shape[0]
    return images_seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/deeplab_crf.toml")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=320, help="training images per epoch")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    overrides = [
        "train.epochs=1",
        "eval.every=0",
        'run.steps=["train"]',
        f"data.dataset.train_size={args.images}",
        f'train.device="{args.device}"',
        "train.resume=false",
        # the quickstart's 200-step warm-up is longer than this short epoch
        f"train.warmup_iterations={args.images // 80}",
    ]
    plugins = get_plugins()
    config = load_config(args.config, overrides, plugins.registry)
    quiet = Console(quiet=True)
    segkit_rates, epoch_rates, bare_rates, loader_rates = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            runner = Runner(config, Path(tmp) / f"run{round_index}", plugins, quiet)
            batch = config.data.batch_size
            steps = len(runner.splits.train) // batch
            start = time.perf_counter()
            runner.trainer().fit()
            epoch_rates.append(steps * batch / (time.perf_counter() - start))
            # The loop's own rate, measured like the bare loop's: first batch request to last step.
            segkit_rates.append(runner.run.history[-1]["images_per_s"])

            # The bare loop gets a freshly built model with the same seed and the same data.
            runner = Runner(config, Path(tmp) / f"bare{round_index}", plugins, quiet)
            _, _, loader = runner.training_data()
            bare_rates.append(bare_epoch(runner, loader, steps))
            loader_rates.append(loader_only(loader))

    table = Table(title=f"training throughput, {config.name}, {args.rounds} interleaved rounds")
    for column in ("loop", "median images/s", "all rounds"):
        table.add_column(column)
    rows = (
        ("segkit loop", segkit_rates),
        ("bare PyTorch loop", bare_rates),
        ("segkit epoch incl. checkpoint + curves", epoch_rates),
    )
    for name, rates in rows:
        table.add_row(name, f"{statistics.median(rates):.2f}", ", ".join(f"{r:.2f}" for r in rates))
    table.add_row(
        "DataLoader alone",
        f"{statistics.median(loader_rates):.1f}",
        ", ".join(f"{r:.1f}" for r in loader_rates),
    )
    console = Console()
    console.print(table)
    ratio = statistics.median(segkit_rates) / statistics.median(bare_rates)
    console.print(f"segkit / bare images/s ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
