"""``convcrf``: the convolutional CRF (Teichmann & Cipolla 2018).

The dense CRF's two kernels, the smoothness kernel over pixel positions and the
appearance kernel over positions and colours, are truncated to a ``window``×``window``
neighbourhood.  Within a window, a message is then a convolution whose filter changes
from pixel to pixel: one weight map per offset, computed once per image, and each
mean-field update is one multiply-add of Q shifted by each offset.  Beyond
``dense_radius`` cells from the centre only every second offset in each direction
takes part, weighing as the four it stands for: the outer ring is most of a window, so
this halves the work of a 13×13 window for the same reach (:func:`window_offsets`).
Optionally the messages are passed on a grid ``downsample`` times coarser (the paper's
"blur"), which lets a 13×13 window span 13·``downsample`` pixels: the probabilities and
the image are average-pooled and the messages computed there, while the unaries stay
at full resolution.  Where the paper upsamples the messages bilinearly, here each pixel
weighs the four coarse cells around it also by how close their mean colour is to its
own (a joint bilateral upsampling, ``upsampling.py``), so that a coarse grid does not
blur the edges: on the tuning photographs below this is worth about +0.01 mIoU at
downsample 4.

As in pydensecrf, each kernel is normalised symmetrically (D^-½ K D^-½), so a message
is a weighted average of the neighbours' Q and the kernel weights mean the same as the
dense CRF's; the compatibility is Potts.  Memory is linear in the pixels (a weight
map per offset on the coarse grid plus a few N×C×H×W buffers), everything is
batched, runs on the CPU or CUDA, and is differentiable with respect to the unaries and
to the kernel weights (:func:`conv_crf`, :class:`ConvMessages`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from segkit_plugins.crf.layer import CRFLayer
from segkit_plugins.crf.params import (
    PROBABILITY_FLOOR,
    ConvCRFParams,
    CRFParams,
    check_device,
    compute_device,
    softmax_rows_,
)
from segkit_plugins.crf.upsampling import edge_aware_upsampling
from segkit_plugins.crf.window import WindowProduct, window_offsets
from torch import Tensor, nn
from torch.profiler import record_function

from segkit import DataError, check_postprocess_inputs


class ConvCRF:
    """The ``convcrf`` post-processor: :func:`conv_crf` on probabilities."""

    name = "convcrf"

    def __init__(self, params: ConvCRFParams | None = None, device: str = "auto") -> None:
        self.params = params or ConvCRFParams()
        self.device = check_device("convcrf", device)

    def compute_device(self, probs: Tensor) -> torch.device:
        return compute_device(self.device, probs)

    def __call__(self, probs: Tensor, images: Tensor) -> Tensor:
        if probs.dim() != 4 or images.dim() != 4:
            check_postprocess_inputs(probs, images)  # raises the shape error
        device = self.compute_device(probs)
        n, classes, height, width = probs.shape
        check_window(self.params, height, width)
        value_bytes = 8 if probs.dtype == torch.float64 else 4
        required = estimate_conv_memory(n, classes, height, width, self.params, value_bytes)
        check_postprocess_inputs(probs, images, required_bytes=required, device=device)
        dtype = torch.float64 if probs.dtype == torch.float64 else torch.float32
        # On the CPU one image at a time: a batch's buffers fall out of the cache, which
        # costs more than batching saves.  On a GPU the whole batch goes at once.
        chunk = 1 if device.type == "cpu" else max(n, 1)
        refined = []
        for i in range(0, n, chunk):
            logp = probs[i : i + chunk].to(device, dtype).clamp_min(PROBABILITY_FLOOR).log()
            refined.append(conv_crf(-logp, images[i : i + chunk].to(device), self.params))
        out = refined[0] if len(refined) == 1 else torch.cat(refined)
        return out.to(probs.device, probs.dtype)

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
            conv_messages,
            num_classes,
            image_mean,
            image_std,
            warmup_steps,
            lr_mult,
        )


def check_window(params: ConvCRFParams, height: int, width: int) -> None:
    """A :class:`DataError` when the window is larger than the image: a window that
    cannot fit says the parameters were meant for other images.  (On the coarse grid a
    window may overhang the image; neighbours outside simply send nothing.)"""
    if params.window > min(height, width):
        raise DataError(
            f"convcrf: window {params.window} is larger than the {height}×{width} image; "
            f"use a window of at most {min(height, width) - (min(height, width) + 1) % 2}"
        )


def estimate_conv_memory(
    n: int, classes: int, height: int, width: int, params: ConvCRFParams, value_bytes: int = 4
) -> int:
    """Bytes :func:`conv_crf` needs: six N×C×H×W buffers, the upsampling (four cells and
    their weights a pixel), and on the coarse grid the weight maps of both kernels and
    of their weighted sum, and Q and messages."""
    coarse = math.ceil(height / params.downsample) * math.ceil(width / params.downsample)
    maps = 3 * (len(window_offsets(params.window, params.dense_radius)) + 1) * coarse
    values = 6 * classes * height * width + maps + 4 * classes * coarse
    return n * (value_bytes * values + 48 * height * width)


def conv_crf(unary: Tensor, images: Tensor, params: ConvCRFParams | None = None) -> Tensor:
    """Mean-field inference of the convolutional CRF; returns Q, N×C×H×W.

    ``unary`` are N×C×H×W energies (-log p; any real values), ``images`` N×3×H×W uint8
    RGB on the same device.  Differentiable with respect to ``unary``.  Q is returned in
    channels-last memory layout.
    """
    params = params or ConvCRFParams()
    n, classes, height, width = unary.shape
    if images.dtype != torch.uint8 or tuple(images.shape) != (n, 3, height, width):
        raise DataError(
            f"conv_crf: images must be {n}×3×{height}×{width} uint8 to match the unaries, "
            f"got {'×'.join(map(str, images.shape))} {images.dtype}"
        )
    check_window(params, height, width)
    if params.iterations == 0:
        return torch.softmax(-unary, 1)
    # pixels as rows, classes as columns: softmax, messages and upsampling run along rows
    # rows whole in memory (of one image the permuted view has its classes H·W apart)
    neg_unary = -unary.permute(0, 2, 3, 1).reshape(-1, classes).contiguous()
    with record_function("window weights"):
        messages = ConvMessages(images, params, dtype=unary.dtype)
    kernel = messages.kernel(unary.new_tensor([params.gaussian_compat, params.bilateral_compat]))
    grad = torch.is_grad_enabled() and neg_unary.requires_grad
    # without autograd, and with messages that cannot be negative, each row's logits have
    # a maximum of at least 0 once the unaries are shifted so: a faster softmax applies
    in_place = not grad and params.gaussian_compat >= 0 and params.bilateral_compat >= 0
    if in_place:
        neg_unary = neg_unary - neg_unary.amax(1, keepdim=True)
    q = torch.softmax(neg_unary, 1)
    for _ in range(params.iterations):
        logits = messages(q, kernel)
        if not in_place:
            q = torch.softmax(logits + neg_unary if grad else logits.add_(neg_unary), 1)
            continue
        with record_function("softmax"):
            q = softmax_rows_(logits.add_(neg_unary))
    # channels-last memory, as computed: a copy into the usual layout would cost a pass
    return q.view(n, height, width, classes).permute(0, 3, 1, 2)


def conv_messages(images: Tensor, params: CRFParams) -> Callable[[Tensor, Tensor], Tensor]:
    """The message passing of :class:`CRFLayer` for images in 0..255: ``messages(q,
    weights)`` on N×C×H×W probabilities, with the two kernel weights as a tensor."""
    assert isinstance(params, ConvCRFParams)
    check_window(params, *images.shape[-2:])
    passing = ConvMessages(images, params, dtype=images.dtype)

    def messages(q: Tensor, weights: Tensor) -> Tensor:
        n, classes, height, width = q.shape
        rows = q.permute(0, 2, 3, 1).reshape(-1, classes)
        out = passing(rows, passing.kernel(weights))
        return out.view(n, height, width, classes).permute(0, 3, 1, 2)

    return messages


class ConvMessages:
    """The two truncated kernels of a batch of images, normalised, on the coarse grid.

    ``images`` are N×3×H×W RGB values in 0..255 (uint8, or floats).  ``kernel(weights)``
    combines the kernels with their two weights (a tensor, so they can be learnt) into
    one weight map per offset; ``messages(q, kernel)`` passes the messages
    Σ_j k(i, j) q_j, j ≠ i, of probabilities given as (N·H·W)×C rows (image-major,
    then row-major pixels) and returns them in the same layout.
    """

    def __init__(
        self, images: Tensor, params: ConvCRFParams, dtype: torch.dtype = torch.float32
    ) -> None:
        self.window = params.window
        self.downsample = params.downsample
        # listed once: the weight maps are built along them, every update walks them
        self._sampled = window_offsets(self.window, params.dense_radius)
        self._offsets = [(dy, dx) for dy, dx, _ in self._sampled]
        self.shape = (images.shape[0], *images.shape[-2:])
        with torch.no_grad():
            colours = self._pool(images.to(dtype)) / params.bilateral_srgb
            n, _, height, width = colours.shape
            # offset-major N×1×h×w maps: each offset's weights broadcast over the classes
            self.gaussian = colours.new_empty(len(self._offsets), n, 1, height, width)
            self.bilateral = torch.empty_like(self.gaussian)
            padded_colours = self._padded(colours)
            padded_inside = self._padded(torch.ones_like(colours[:, :1]))
            half = self.window // 2
            dx = torch.arange(-half, half + 1, dtype=dtype, device=colours.device)
            for dy, columns, rows, stands_for in self._window_rows():
                # a whole row of the window at once (one op where there were `window`),
                # on N×…×h×w×window views of each cell's neighbours at (dy, -half..half)
                distance2 = (dy * dy + dx * dx) * self.downsample**2
                inside = self._row(padded_inside, dy)[:, 0]
                gaussian = inside * (distance2 / (-2 * params.gaussian_sxy**2)).exp()
                difference = colours.unsqueeze(-1) - self._row(padded_colours, dy)
                exponent = difference.square_().sum(1).mul_(-0.5)
                exponent -= distance2 / (2 * params.bilateral_sxy**2)
                bilateral = exponent.exp_().mul_(inside)
                # a sampled offset of the outer ring weighs as the ones it stands for
                counts = colours.new_tensor(stands_for).view(-1, 1, 1, 1, 1)
                self.gaussian[rows] = _offset_major(gaussian, columns).mul_(counts)
                self.bilateral[rows] = _offset_major(bilateral, columns).mul_(counts)
            self._normalise(self.gaussian)
            self._normalise(self.bilateral)
            self.upsampling = None
            if self.downsample > 1:
                full = images.to(dtype) / params.bilateral_srgb
                self.upsampling = edge_aware_upsampling(full, colours, self.downsample)

    def offsets(self) -> list[tuple[int, int]]:
        """The offsets (dy, dx) that pass messages, in the order of the weight maps."""
        return self._offsets

    def kernel(self, weights: Tensor) -> Tensor:
        """(offsets)×N×1×h×w: the weight of the neighbour at each offset, both kernels."""
        return weights[0] * self.gaussian + weights[1] * self.bilateral

    def __call__(self, q: Tensor, kernel: Tensor) -> Tensor:
        n, height, width = self.shape
        classes = q.shape[1]
        pixels = q.view(n, height, width, classes).permute(0, 3, 1, 2)
        # N×C×h×w: each offset's weight map broadcasts over the classes along whole rows
        with record_function("pool"):
            coarse = self._pool(pixels).contiguous()
        # the kernel is zero where a neighbour falls outside, so zero padding is exact
        padded = self._padded(coarse)
        with record_function("window product"):
            message = WindowProduct.apply(padded, kernel, self.offsets(), self.window // 2)
        message = message.permute(0, 2, 3, 1).reshape(-1, classes).contiguous()
        if self.upsampling is None:
            return message
        with record_function("upsampling"):
            return self.upsampling(message)

    def _pool(self, x: Tensor) -> Tensor:
        """The mean of each downsample×downsample block (of its pixels inside the image)."""
        if self.downsample == 1:
            return x
        return F.avg_pool2d(x, self.downsample, ceil_mode=True)

    def _padded(self, x: Tensor) -> Tensor:
        half = self.window // 2
        return F.pad(x, (half, half, half, half))

    def _window_rows(self) -> list[tuple[int, list[int], slice, list[float]]]:
        """For each row dy of the window with offsets in use: their columns (0 for
        dx = -half), where they lie in :meth:`offsets`, and how many offsets each
        stands for."""
        half = self.window // 2
        rows, start = [], 0
        for dy in range(-half, half + 1):
            in_row = [(dx, stands_for) for y, dx, stands_for in self._sampled if y == dy]
            if in_row:
                columns = [dx + half for dx, _ in in_row]
                used = slice(start, start + len(columns))
                rows.append((dy, columns, used, [stands_for for _, stands_for in in_row]))
                start += len(columns)
        return rows

    def _row(self, padded: Tensor, dy: int) -> Tensor:
        """Of an N×C×h×w map padded by ``_padded``: an N×C×h×w×window view of each
        cell's neighbours at (dy, dx) for dx from -half to half."""
        half = self.window // 2
        height = padded.shape[-2] - 2 * half
        return padded[..., half + dy : half + dy + height, :].unfold(-1, self.window, 1)

    def _normalise(self, kernel: Tensor) -> None:
        """D^-½ K D^-½ in place, with D the kernel's row sums counting the cell itself."""
        scale = kernel.sum(0).add_(1).rsqrt_()
        padded_scale = self._padded(scale)
        for dy, columns, rows, _ in self._window_rows():
            neighbour_scale = _offset_major(self._row(padded_scale, dy)[:, 0], columns)
            kernel[rows] *= neighbour_scale.mul_(scale)


def _offset_major(row: Tensor, columns: list[int]) -> Tensor:
    """A row of weight maps, N×h×w×window, as (columns)×N×1×h×w."""
    return row.permute(3, 0, 1, 2)[columns].unsqueeze(2)
