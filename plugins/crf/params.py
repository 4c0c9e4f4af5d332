"""The dense CRF's parameters and unaries, shared by its post-processors.

Light on purpose: the plugin registers its parameters and checks their values from
here without importing PyTorch, which the post-processors' own modules need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from segkit import ConfigError, Param

if TYPE_CHECKING:
    import torch
    from torch import Tensor

#: Probabilities are floored here before taking -log, as pydensecrf's unary_from_softmax does.
PROBABILITY_FLOOR = 1e-5


@dataclass(frozen=True)
class CRFParams:
    """Kernel widths and weights of the dense CRF, and the number of mean-field updates."""

    iterations: int = 10
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 121.0
    bilateral_srgb: float = 5.0
    bilateral_compat: float = 4.0

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ConfigError(f"dense CRF: iterations must be >= 0, got {self.iterations}")
        for name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
            value = getattr(self, name)
            if not value > 0 or not math.isfinite(value):
                raise ConfigError(f"dense CRF: {name} must be a positive width, got {value}")
        for name in ("gaussian_compat", "bilateral_compat"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"dense CRF: {name} must be finite, got {getattr(self, name)}")


@dataclass(frozen=True)
class ConvCRFParams(CRFParams):
    """The dense CRF's parameters plus the window and the coarse grid of the messages.

    The kernel widths are pydensecrf's example's; the rest was chosen on the left halves
    of its three example photographs, with unaries degraded as in ``benchmarks/crf.py``
    (both kinds of noise, several draws each), against pydensecrf's outputs as labels:
    bilateral weight 40 (tried 5 to 160; 20 to 80 within 0.002), Gaussian weight 1 (0.5
    to 10), 5 iterations (5 to 20; 10 within 0.002).  The grid and the window: nearly
    all the errors left lie within a few pixels of an edge, and a finer grid places
    edges better as long as the window still reaches about 20 px.  With pydensecrf's
    specks ignored (see the benchmark), a 3× coarser grid and window 13 (18 px) gain
    0.006 mIoU more than the paper's 4× grid with the reference's window 11 (20 px);
    window 15 the same, a 2× grid with window 21 0.009 more at about 3× the time.
    Sampling window 13's outer ring beyond 3 cells (``dense_radius``) changes that by
    less than 0.001 (2 cells: the same) with 88 products an update instead of 168.  On
    the right halves, held out, window 13 on the 3× grid, sampled, gains as much as
    window 11 on the 4× grid (within 0.0005) and both more than ``densecrf_torch``
    (with the specks counted, both less).
    """

    iterations: int = 5
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 1.0
    bilateral_sxy: float = 80.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 40.0
    window: int = 13
    downsample: int = 3
    dense_radius: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window < 3 or self.window % 2 == 0:
            raise ConfigError(
                f"convcrf: window must be an odd size of at least 3 (a centre pixel and its "
                f"neighbours), got {self.window}; use e.g. window = 13"
            )
        if self.dense_radius < 0:
            raise ConfigError(
                f"convcrf: dense_radius must be at least 0 (cells around the centre that "
                f"all pass messages), got {self.dense_radius}; use e.g. dense_radius = 3"
            )
        if self.downsample < 1:
            raise ConfigError(
                f"convcrf: downsample must be at least 1 (1: messages at full resolution), "
                f"got {self.downsample}"
            )


_DEFAULTS = CRFParams()
KERNEL_PARAMS = [
    Param("iterations", int, _DEFAULTS.iterations, "mean-field iterations"),
    Param("gaussian_sxy", float, _DEFAULTS.gaussian_sxy, "θγ: smoothness kernel width (pixels)"),
    Param("gaussian_compat", float, _DEFAULTS.gaussian_compat, "w_g: smoothness kernel weight"),
    Param("bilateral_sxy", float, _DEFAULTS.bilateral_sxy, "θα: appearance kernel width (pixels)"),
    Param("bilateral_srgb", float, _DEFAULTS.bilateral_srgb, "θβ: appearance kernel colour width"),
    Param("bilateral_compat", float, _DEFAULTS.bilateral_compat, "w_b: appearance kernel weight"),
]


def unary_from_probabilities(probs: Tensor) -> Tensor:
    """The unary energies -log p of N×C×H×W probabilities, floored at ``PROBABILITY_FLOOR``."""
    return -probs.clamp_min(PROBABILITY_FLOOR).log()


def check_workers(workers: int | None) -> None:
    """``densecrf``'s worker processes: at least one, or None for one per CPU core."""
    if workers is not None and workers < 1:
        raise ConfigError(f"densecrf: workers must be at least 1, got {workers}")


def check_device(name: str, device: str) -> str:
    """A post-processor's ``device`` setting, refused in one line when CUDA is absent."""
    import torch  # only once a post-processor is built: this module registers the plugin

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{name}: device 'cuda' asked for but CUDA is not available; "
            f"use device = 'auto' or 'cpu'"
        )
    return device


def compute_device(device: str, probs: Tensor) -> torch.device:
    """Where to refine ``probs``: ``auto`` keeps CUDA inputs there and prefers CUDA."""
    import torch

    if device == "auto":
        if probs.is_cuda:
            return probs.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def softmax_rows_(logits: Tensor) -> Tensor:
    """The softmax along dim 1 of (pixels × classes) rows whose maxima are at least 0,
    computed in place in ``logits``.

    torch.softmax over rows of a few dozen classes spends most of its time per row; this
    exponentiates the whole buffer at once and sums each row with a matrix-vector
    product: 3–4× faster on the CPU.  The shift by each row's maximum that keeps a
    softmax from overflowing is not needed while no logit reaches 80 (checked on the
    whole buffer, which is cheap), and none underflows to an all-zero row because each
    row's maximum is at least 0 (the callers' unaries are shifted so, and their messages
    are non-negative); otherwise it falls back to torch.softmax.
    """
    import torch

    if logits.dim() != 2 or not float(logits.amax()) < 80:
        return torch.softmax(logits, 1)
    logits.exp_()
    totals = logits @ logits.new_ones(logits.shape[1], 1)
    return logits.div_(totals)
