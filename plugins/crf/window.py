"""The window of ``convcrf``: which offsets pass messages (:func:`window_offsets`) and
the product of Q shifted by each with its weight map (:class:`WindowProduct`)."""

from __future__ import annotations

import torch
from torch import Tensor


class WindowProduct(torch.autograd.Function):
    """Σ_o kernel[o] · (q shifted by offset o), of a zero-padded N×C×h×w ``padded`` q and
    (offsets)×N×1×h×w weight maps, computed in place; its backward does the same in
    place, where autograd through the shifted views would allocate a padded gradient
    for each offset."""

    @staticmethod
    def forward(
        ctx, padded: Tensor, kernel: Tensor, offsets: list[tuple[int, int]], half: int
    ) -> Tensor:
        ctx.save_for_backward(padded, kernel)
        ctx.offsets, ctx.half = offsets, half
        height, width = padded.shape[-2] - 2 * half, padded.shape[-1] - 2 * half
        message = padded.new_zeros(*padded.shape[:2], height, width)
        for index, (dy, dx) in enumerate(offsets):
            neighbour = padded[..., half + dy : half + dy + height, half + dx : half + dx + width]
            message.addcmul_(kernel[index], neighbour)
        return message

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        padded, kernel = ctx.saved_tensors
        half = ctx.half
        height, width = grad.shape[-2:]
        grad_padded = torch.zeros_like(padded) if ctx.needs_input_grad[0] else None
        grad_kernel = torch.empty_like(kernel) if ctx.needs_input_grad[1] else None
        for index, (dy, dx) in enumerate(ctx.offsets):
            rows = slice(half + dy, half + dy + height)
            cols = slice(half + dx, half + dx + width)
            if grad_padded is not None:
                grad_padded[..., rows, cols].addcmul_(kernel[index], grad)
            if grad_kernel is not None:
                torch.sum(grad * padded[..., rows, cols], 1, keepdim=True, out=grad_kernel[index])
        return grad_padded, grad_kernel, None, None


def window_offsets(window: int, dense_radius: int) -> list[tuple[int, int, float]]:
    """The offsets (dy, dx) of a window that pass messages, row-major, and how many
    offsets each stands for: every offset within ``dense_radius`` cells of the centre
    (in both directions) for itself; beyond, those at even dy and dx, each for the four
    of its 2×2 block.  Most of a window lies in its outer ring, where the kernels
    change slowly: sampling it costs half the products for the same reach."""
    half = window // 2
    offsets = []
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            if (dy, dx) == (0, 0):
                continue
            if max(abs(dy), abs(dx)) <= dense_radius:
                offsets.append((dy, dx, 1.0))
            elif dy % 2 == 0 and dx % 2 == 0:
                offsets.append((dy, dx, 4.0))
    return offsets
