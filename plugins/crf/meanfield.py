"""``densecrf_torch``: mean-field inference in PyTorch on the permutohedral lattice.

The lattice's splatting, blurring and slicing are sparse matrix products built once
per image (:mod:`segkit_plugins.crf.lattice`); the batch runs on the CPU or on CUDA,
and the result is differentiable with respect to the unaries (:func:`dense_crf`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from segkit_plugins.crf.lattice import FilterFunction, bilateral_filter, spatial_filter
from segkit_plugins.crf.layer import CRFLayer
from segkit_plugins.crf.params import (
    _DEFAULTS,
    PROBABILITY_FLOOR,
    CRFParams,
    check_device,
    compute_device,
)
from torch import Tensor, nn

from segkit import DataError, check_postprocess_inputs


class TorchDenseCRF:
    """The ``densecrf_torch`` post-processor: :func:`dense_crf` on probabilities."""

    name = "densecrf_torch"

    def __init__(self, params: CRFParams = _DEFAULTS, device: str = "auto") -> None:
        self.params = params
        self.device = check_device("densecrf_torch", device)

    def compute_device(self, probs: Tensor) -> torch.device:
        return compute_device(self.device, probs)

    def __call__(self, probs: Tensor, images: Tensor) -> Tensor:
        if probs.dim() != 4 or images.dim() != 4:
            check_postprocess_inputs(probs, images)  # raises the shape error
        device = self.compute_device(probs)
        n, classes, height, width = probs.shape
        value_bytes = 8 if probs.dtype == torch.float64 else 4
        # On the CPU one image at a time: a batch's buffers fall out of the cache, which
        # costs more than batching saves.  On a GPU the whole batch goes at once.
        chunk = 1 if device.type == "cpu" else max(n, 1)
        required = estimate_torch_memory(
            chunk,
            classes,
            height,
            width,
            iterations=self.params.iterations if probs.requires_grad else 0,
            value_bytes=value_bytes,
        )
        required += 2 * n * classes * height * width * value_bytes  # inputs and result
        check_postprocess_inputs(probs, images, required_bytes=required, device=device)
        dtype = torch.float64 if probs.dtype == torch.float64 else torch.float32
        refined = [
            _mean_field(
                _log_probability_rows(probs[i : i + chunk].to(device, dtype)),
                images[i : i + chunk].to(device),
                self.params,
            )
            for i in range(0, n, chunk)
        ]
        return torch.cat(refined).to(probs.device, probs.dtype)

    def layer(
        self,
        num_classes: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        warmup_steps: int = 0,
        lr_mult: float = 100.0,
    ) -> nn.Module:
        """This CRF as a trainable layer after a model (:class:`CRFLayer`)."""
        return CRFLayer(
            self.name,
            self.params,
            lattice_messages,
            num_classes,
            image_mean,
            image_std,
            warmup_steps,
            lr_mult,
        )


def estimate_torch_memory(
    n: int, classes: int, height: int, width: int, iterations: int = 0, value_bytes: int = 4
) -> int:
    """Bytes :func:`dense_crf` needs for a batch, assuming at most one lattice point per pixel
    (the lattice size is checked again once it is known).

    Per pixel: seven N×C buffers of the mean-field update, plus one per ``iterations``
    when autograd keeps each update's Q; the lattice construction (six vertices of
    about 80 bytes each); and the sparse matrices that stay (about 300 bytes).
    """
    buffers = 7 + iterations
    return n * height * width * (value_bytes * classes * buffers + 6 * 80 + 300)


def dense_crf(unary: Tensor, images: Tensor, params: CRFParams = _DEFAULTS) -> Tensor:
    """Mean-field inference of the dense CRF on a batch; returns Q, N×C×H×W.

    ``unary`` are N×C×H×W energies (-log p; any real values), ``images`` the N×3×H×W
    uint8 RGB images on the same device.  The result is differentiable with respect to
    ``unary``; the kernels depend on the images alone and are built once per call (the
    smoothness kernel, which depends only on the image size, once per size).
    """
    n, classes, height, width = unary.shape
    if images.dtype != torch.uint8 or tuple(images.shape) != (n, 3, height, width):
        raise DataError(
            f"dense_crf: images must be {n}×3×{height}×{width} uint8 to match the unaries, "
            f"got {'×'.join(map(str, images.shape))} {images.dtype}"
        )
    return _mean_field(-unary.permute(2, 3, 0, 1).reshape(-1, classes), images, params)


def _log_probability_rows(probs: Tensor) -> Tensor:
    """-unary of N×C×H×W probabilities, as rows of :func:`_mean_field`, in one buffer."""
    rows = probs.permute(2, 3, 0, 1).reshape(-1, probs.shape[1])
    if torch.is_grad_enabled() and probs.requires_grad:
        return rows.clamp_min(PROBABILITY_FLOOR).log()
    if rows.data_ptr() == probs.data_ptr():
        rows = rows.clone()
    return rows.clamp_min_(PROBABILITY_FLOOR).log_()


def _mean_field(neg_unary: Tensor, images: Tensor, params: CRFParams) -> Tensor:
    """Mean-field updates from -unary given as (H·W·N)×C rows: pixel-major, image-minor,
    so that the smoothness lattice sees (H·W)×(N·C) and the appearance lattice
    (H·W·N)×C over the same memory."""
    n, _, height, width = images.shape
    classes = neg_unary.shape[1]
    pixels = height * width
    device = neg_unary.device
    spatial = bilateral = None
    if params.gaussian_compat != 0 and params.iterations > 0:
        spatial = spatial_filter(
            height, width, params.gaussian_sxy, params.gaussian_compat, str(device)
        )
    if params.bilateral_compat != 0 and params.iterations > 0:
        bilateral = bilateral_filter(
            images, params.bilateral_sxy, params.bilateral_srgb, params.bilateral_compat, classes
        )
    filters = [(f, pixels) for f in (spatial,) if f is not None]
    filters += [(f, pixels * n) for f in (bilateral,) if f is not None]
    padding = _class_padding(classes, device) if filters and params.iterations else 0
    if padding:  # classes that can never win: probability 0, so they send no message
        neg_unary = torch.nn.functional.pad(neg_unary, (0, padding), value=-math.inf)
    q = torch.softmax(neg_unary, 1)
    grad = torch.is_grad_enabled() and q.requires_grad
    # without autograd, each iteration's messages reuse the same buffers
    buffers = [None] * len(filters) if grad else [torch.empty_like(q) for _ in filters]
    for _ in range(params.iterations if filters else 0):
        logits = neg_unary
        for (lattice, rows), buffer in zip(filters, buffers, strict=True):
            if grad:
                logits = logits + FilterFunction.apply(q.view(rows, -1), lattice).view_as(q)
            else:
                lattice(q.view(rows, -1), out=buffer.view(rows, -1))
                logits = buffer.add_(logits) if logits is neg_unary else logits.add_(buffer)
        q = torch.softmax(logits, 1)
    q = q[:, :classes] if padding else q
    return q.reshape(height, width, n, classes).permute(2, 3, 0, 1).contiguous()


def _class_padding(classes: int, device: torch.device) -> int:
    """Extra classes that make the CPU's sparse products faster.

    MKL's sparse-times-dense products run on whole 8-float vectors: with 21 classes
    padded to 24 the lattice filters take a fifth less time, while a pad of more than
    half a vector costs more than it saves (measured on AVX2).
    """
    if device.type != "cpu" or classes <= 16 or classes % 8 < 4:
        return 0
    return -classes % 8


def lattice_messages(images: Tensor, params: CRFParams) -> Callable[[Tensor, Tensor], Tensor]:
    """The message passing of :class:`CRFLayer` for images in 0..255: ``messages(q,
    weights)`` with the two kernel weights as a tensor (the lattices have unit weight)."""
    n, _, height, width = images.shape
    spatial = spatial_filter(height, width, params.gaussian_sxy, 1.0, str(images.device))
    bilateral = bilateral_filter(
        images, params.bilateral_sxy, params.bilateral_srgb, 1.0, classes=1
    )

    def messages(q: Tensor, weights: Tensor) -> Tensor:
        classes = q.shape[1]
        # rows pixel-major, image-minor: the smoothness lattice sees (H·W)×(N·C) and
        # the appearance lattice (H·W·N)×C over the same memory
        rows = q.permute(2, 3, 0, 1).reshape(-1, classes).contiguous()
        smooth = FilterFunction.apply(rows.view(height * width, -1), spatial).view_as(rows)
        appearance = FilterFunction.apply(rows, bilateral)
        message = weights[0] * smooth + weights[1] * appearance
        return message.view(height, width, n, classes).permute(2, 3, 0, 1)

    return messages
