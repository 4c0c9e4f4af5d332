"""The CRF as a trained layer (CRF-as-RNN, Zheng et al. 2015).

:class:`CRFLayer` follows a model's upsampler: it unrolls ``iterations`` mean-field
updates of a CRF whose unaries are the network's scores, and returns the last update's
scores, so cross-entropy on its output trains network and CRF together.  The two
kernel weights and the C×C compatibility matrix are parameters, initialised to the
post-processor's weights and to the Potts model (μ = 1 - I); the kernels' widths stay
fixed.  The message passing is the post-processor's own: :class:`ConvMessages`
(``convcrf``) or the permutohedral lattice (``densecrf_torch``).

With ``iterations = 0`` the layer returns the scores unchanged.  With ``warmup_steps``
the plain model trains alone for that many training forward passes first (and is
evaluated alone meanwhile); the count is a buffer, so it is saved in checkpoints and a
resumed run continues where it stopped.

The CRF's parameters learn at ``lr_mult`` times the run's learning rate (default 100)
and without weight decay.  They are a handful of numbers of order 1 to 40, where the
network's weights are of order 0.01: at the network's rate an Adam step moves them by
a thousandth of their size, so that over a fine-tuning stage they stay where they
started.  Weight decay would pull the compatibility towards zero, that is towards no
CRF at all, not towards the Potts model it starts from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from segkit_plugins.crf.params import CRFParams
from torch import Tensor, nn

from segkit import ConfigError, IncompatiblePartsError

#: Builds the message passing of a batch: (images 0..255, params) -> messages(q, weights).
MessagesFactory = Callable[[Tensor, CRFParams], Callable[[Tensor, Tensor], Tensor]]


class CRFLayer(nn.Module):
    """Mean-field CRF on a model's N×C×H×W scores, given the normalised N×3×H×W images."""

    def __init__(
        self,
        name: str,
        params: CRFParams,
        messages: MessagesFactory,
        num_classes: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        warmup_steps: int = 0,
        lr_mult: float = 100.0,
    ) -> None:
        super().__init__()
        if warmup_steps < 0:
            raise ConfigError(f"model.crf: warmup_steps must be >= 0, got {warmup_steps}")
        if not math.isfinite(lr_mult) or lr_mult <= 0:
            raise ConfigError(f"model.crf: lr_mult must be a positive number, got {lr_mult}")
        self.name = name
        self.params = params
        self.messages = messages
        self.iterations = params.iterations
        self.warmup_steps = warmup_steps
        self.lr_mult = lr_mult
        self.kernel_weights = nn.Parameter(
            torch.tensor([params.gaussian_compat, params.bilateral_compat])
        )
        self.compatibility = nn.Parameter(1 - torch.eye(num_classes))
        # the images arrive normalised; the kernels compare colours in 0..255
        self.register_buffer("image_mean", 255 * torch.tensor(image_mean).view(1, 3, 1, 1))
        self.register_buffer("image_std", 255 * torch.tensor(image_std).view(1, 3, 1, 1))
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (
            f"{self.name}, iterations={self.iterations}, classes={self.compatibility.shape[0]}, "
            f"warmup_steps={self.warmup_steps}"
        )

    def forward(self, scores: Tensor, images: Tensor) -> Tensor:
        if scores.shape[-2:] != images.shape[-2:]:
            raise IncompatiblePartsError(
                f"model.crf: the CRF layer needs scores at the input resolution, got "
                f"{'×'.join(map(str, scores.shape[-2:]))} for "
                f"{'×'.join(map(str, images.shape[-2:]))} images; use an upsampler that "
                f"returns the input size"
            )
        # during the warm-up the model is the plain model, in training and in evaluation
        if self.training:
            self.steps_seen += 1
            warming_up = bool(self.steps_seen <= self.warmup_steps)
        else:
            warming_up = bool(self.steps_seen < self.warmup_steps)
        if warming_up or self.iterations == 0:
            return scores
        # The CRF computes in float32 (float64 for gradient checks), also under autocast:
        # the exp of the kernels, and the lattice's sums of many small weights, would
        # lose in half precision the small weights that make up most of a message.
        dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
        with torch.autocast(scores.device.type, enabled=False):
            unary = scores.to(dtype)
            colours = (images.to(dtype) * self.image_std + self.image_mean).clamp(0, 255)
            messages = self.messages(colours.detach(), self.params)
            weights = self.kernel_weights.to(dtype)
            compatibility = self.compatibility.to(dtype)
            q = torch.softmax(unary, 1)
            for _ in range(self.iterations):
                message = messages(q, weights)
                logits = unary - torch.einsum("kc,nchw->nkhw", compatibility, message)
                q = torch.softmax(logits, 1)
        return logits.to(scores.dtype)
