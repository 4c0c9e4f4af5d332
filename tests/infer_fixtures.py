"""Small models and checkpoints for the inference tests: built in a second, no training."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segkit.core.config import Config, config_from_dict, read_toml
from segkit.core.registry import Registry
from segkit.data.dataset import voc_palette
from segkit.model.assembly import build_model
from segkit.model.checkpoint import model_payload, save_checkpoint

from .tiny import write_tiny_config

CLASS_NAMES = ["background", "circle", "square", "triangle", "cross"]


class LocalNet(nn.Module):
    """Class scores at stride 4 with a receptive field of a few pixels, brought back to
    the input size: tiled and full-image passes agree wherever a window's edge is
    farther away than that field reaches."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, classes, 1),
        )
        self.head = SimpleNamespace(stride=4)  # what tiling reads of a segkit model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scores = F.interpolate(
            self.features(images), scale_factor=4, mode="bilinear", align_corners=False
        )
        return 3 * scores[..., : images.shape[-2], : images.shape[-1]]


def tiny_config(folder: Path, registry: Registry, extra: str = "") -> Config:
    path = write_tiny_config(folder, extra=extra)
    return config_from_dict(read_toml(path), "tiny", registry)


def tiny_checkpoint(folder: Path, registry: Registry, extra: str = "") -> Path:
    """A checkpoint of the tiny config's model with random (seeded) weights."""
    config = tiny_config(folder, registry, extra)
    torch.manual_seed(0)
    model = build_model(config, len(CLASS_NAMES), registry)
    with torch.no_grad():  # random class scores, not the zero-initialised classifier
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    payload = model_payload(config, model, CLASS_NAMES, voc_palette(len(CLASS_NAMES)))
    return save_checkpoint(folder / "tiny.pt", payload)


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
