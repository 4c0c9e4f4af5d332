"""``densecrf_torch``: mean-field inference in PyTorch on the permutohedral lattice.

The lattice's splatting, blurring and slicing are weighted gathers built once per
image (:mod:`segkit_plugins.crf.lattice`); the batch runs on the CPU or on CUDA, and
the result is differentiable with respect to the unaries (:func:`dense_crf`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from segkit_plugins.crf.fused import LOG2_E, FusedUpdate, softmax2_rows_
from segkit_plugins.crf.lattice import (
    FilterFunction,
    LatticeFilter,
    bilateral_filter,
    spatial_filter,
)
from segkit_plugins.crf.layer import CRFLayer
from segkit_plugins.crf.params import (
    _DEFAULTS,
    PROBABILITY_FLOOR,
    CRFParams,
    check_device,
    compute_device,
)
from segkit_plugins.crf.tasks import Tasks, cpu_tasks
from torch import Tensor, nn
from torch.profiler import record_function

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
            _refine(
                probs[i : i + chunk].to(device, dtype),
                images[i : i + chunk].to(device),
                self.params,
            )
            for i in range(0, n, chunk)
        ]
        # one image stays in the rows' channels-last layout, as convcrf returns it (but
        # autograd's softmax wants its gradient in the usual layout)
        out = refined[0] if len(refined) == 1 else torch.cat(refined)
        out = out.contiguous() if out.requires_grad else out
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
    about 80 bytes each); and the gathers that stay (about 300 bytes).
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


def _refine(probs: Tensor, images: Tensor, params: CRFParams) -> Tensor:
    """:func:`_mean_field` of N×C×H×W probabilities (-unary = log p, floored).

    Without autograd the updates run in base 2 (exp2 is about three times faster than exp
    on the CPU), from log2 p; their first Q, the softmax of log p, is p over its sum,
    taken before the logarithm.  One image's floored probabilities are laid out straight
    into the table that its updates gather from."""
    if _differentiable(probs) or not _non_negative_messages(params):
        return _mean_field(_log_probability_rows(probs), images, params)
    n, classes, height, width = probs.shape
    filters = _filters(images, params, classes, probs.device)
    if n != 1 or not filters:
        rows = probs.new_empty(height * width * n, classes)
        q = _first_q(probs, rows)
        return _mean_field(rows.log2_(), images, params, start=q, filters=filters)
    with cpu_tasks(probs.device) as tasks:
        fused = FusedUpdate(filters, probs, tasks)
        pixel_rows = probs[0].permute(1, 2, 0).reshape(-1, classes)  # a view: one image
        q = torch.empty_like(fused.unary)
        tasks.map(
            lambda span: _first_q_rows(pixel_rows[span], fused.unary[span], q[span]),
            tasks.pieces(height * width),
        )
        for _ in range(params.iterations):
            q = fused(q)
    return q.view(height, width, n, classes).permute(2, 3, 0, 1)


def _first_q_rows(probs: Tensor, unary: Tensor, q: Tensor) -> None:
    """:func:`_first_q` of rows of probabilities, into ``q``, with their floored log2
    into ``unary``."""
    torch.clamp_min(probs, PROBABILITY_FLOOR, out=unary)
    torch.div(unary, unary @ unary.new_ones(unary.shape[1], 1), out=q)
    unary.log2_()


def _first_q(probs: Tensor, rows: Tensor) -> Tensor:
    """The first Q of N×C×H×W probabilities, the softmax of log p (floored): p over its
    sum; the floored probabilities go into ``rows``, pixel-major and image-minor, laid out
    in the same pass."""
    n, classes, height, width = probs.shape
    torch.clamp_min(
        probs.permute(2, 3, 0, 1), PROBABILITY_FLOOR, out=rows.view(height, width, n, classes)
    )
    return rows / (rows @ rows.new_ones(classes, 1))


def _filters(
    images: Tensor, params: CRFParams, classes: int, device: torch.device
) -> list[tuple[LatticeFilter, int]]:
    """The kernels' lattices, each with the number of rows it filters Q as."""
    n, _, height, width = images.shape
    filters = []
    if params.gaussian_compat != 0 and params.iterations > 0:
        spatial = spatial_filter(
            height, width, params.gaussian_sxy, params.gaussian_compat, str(device)
        )
        filters.append((spatial, height * width))
    if params.bilateral_compat != 0 and params.iterations > 0:
        bilateral = bilateral_filter(
            images, params.bilateral_sxy, params.bilateral_srgb, params.bilateral_compat, classes
        )
        filters.append((bilateral, height * width * n))
    return filters


def _differentiable(x: Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def _non_negative_messages(params: CRFParams) -> bool:
    return params.gaussian_compat >= 0 and params.bilateral_compat >= 0


def _log_probability_rows(probs: Tensor) -> Tensor:
    """-unary of N×C×H×W probabilities, as rows of :func:`_mean_field`, in one buffer."""
    rows = probs.permute(2, 3, 0, 1).reshape(-1, probs.shape[1])
    if _differentiable(probs):
        return rows.clamp_min(PROBABILITY_FLOOR).log()
    if rows.data_ptr() == probs.data_ptr():
        # of one image, a view with the classes far apart (clone would keep that layout)
        rows = rows.clone(memory_format=torch.contiguous_format)
    return rows.clamp_min_(PROBABILITY_FLOOR).log_()


def _mean_field(
    neg_unary: Tensor,
    images: Tensor,
    params: CRFParams,
    start: Tensor | None = None,
    filters: list[tuple[LatticeFilter, int]] | None = None,
) -> Tensor:
    """Mean-field updates from -unary given as (H·W·N)×C rows: pixel-major, image-minor,
    so that the smoothness lattice sees (H·W)×(N·C) and the appearance lattice
    (H·W·N)×C over the same memory.  With ``start``, the first Q, -unary is in base 2
    (log2 p) and each row's maximum is above -60."""
    n, _, height, width = images.shape
    classes = neg_unary.shape[1]
    if filters is None:
        filters = _filters(images, params, classes, neg_unary.device)
    # Rows must lie whole in memory: the lattices gather them.  Of one image, rows made
    # by permuting N×C×H×W are a view with each row's classes H·W apart, and every
    # gather of such rows, and every sum with them, ran 5–8× slower.
    neg_unary = neg_unary.contiguous()
    grad = _differentiable(neg_unary)
    # without autograd, and with messages that cannot be negative, each row's logits keep
    # their -unary's maximum or more: an in-place softmax in base 2 applies
    in_place = not grad and _non_negative_messages(params)
    if start is not None:
        q = start
    elif in_place:
        neg_unary = (neg_unary - neg_unary.amax(1, keepdim=True)).mul_(LOG2_E)
        q = softmax2_rows_(neg_unary.clone())
    else:
        q = torch.softmax(neg_unary, 1)
    fused = None
    if in_place and n == 1 and filters:
        fused = FusedUpdate(filters, neg_unary, Tasks(0))
        fused.unary.copy_(neg_unary)
    for _ in range(params.iterations if filters else 0):
        if fused is not None:
            q = fused(q)
            continue
        logits = neg_unary
        for lattice, rows in filters:
            if grad:
                message = FilterFunction.apply(q.view(rows, -1), lattice).view_as(q)
                logits = logits + message
                continue
            message = lattice(q.view(rows, -1)).view_as(q)
            with record_function("compatibility"):
                scale = LOG2_E if in_place else 1.0
                logits = torch.add(
                    logits, message, alpha=scale, out=message if logits is neg_unary else logits
                )
        with record_function("softmax"):
            q = softmax2_rows_(logits) if in_place else torch.softmax(logits, 1)
    # in the rows' memory layout: the caller's one copy into its own layout is enough
    return q.reshape(height, width, n, classes).permute(2, 3, 0, 1)


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
