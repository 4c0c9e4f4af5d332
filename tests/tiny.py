"""A tiny config of built-in parts that trains in seconds on a CPU, for engine tests."""

from __future__ import annotations

from pathlib import Path

TINY_CONFIG = """
name = "tiny"

[model]
backbone = {{ name = "deeplab_vgg16", width = 0.0625, batch_norm = true }}
head = {{ name = "deeplab_largefov", fc_channels = 16 }}
upsampler = {{ name = "interpolate", align_corners = true }}

[data]
batch_size = 2
crop_size = 48
workers = 0

[data.dataset]
name = "synthetic"
seed = 3
train_size = {train_size}
val_size = 6
min_size = 48
max_size = 61

[train]
epochs = {epochs}
lr = {lr}
device = "cpu"
threads = 1

[eval]
every = {every}

[run]
steps = {steps}
"""


def write_tiny_config(
    folder: Path,
    epochs: int = 1,
    train_size: int = 8,
    every: int = 1,
    steps: str = '["train", "evaluate"]',
    extra: str = "",
    lr: float = 0.01,
) -> Path:
    path = folder / "tiny.toml"
    text = TINY_CONFIG.format(epochs=epochs, train_size=train_size, every=every, steps=steps, lr=lr)
    path.write_text(text + extra)
    return path


def write_tiny_config_on(folder: Path, dataset: str, steps: str = '["train", "evaluate"]') -> Path:
    """The tiny config trained for one epoch on another dataset: ``dataset`` is the body
    of its ``[data.dataset]`` table (``name = "folder"`` and the parameters)."""
    text = TINY_CONFIG.format(epochs=1, train_size=8, every=1, steps=steps, lr=0.01)
    head, rest = text.split("[data.dataset]")
    path = folder / "tiny.toml"
    path.write_text(f"{head}[data.dataset]\n{dataset}\n\n{rest[rest.index('[train]') :]}")
    return path
