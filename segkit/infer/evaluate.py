"""Scoring a model on a dataset: confusion matrices of the raw prediction and after each
post-processor, summed over every ``torchrun`` process."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from segkit.data.loading import to_device
from segkit.infer.device import Precision
from segkit.infer.metrics import ConfusionMatrix
from segkit.infer.postprocess import PostprocessChain


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    device: torch.device,
    postprocessors: PostprocessChain | None = None,
    precision: Precision | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, ConfusionMatrix]:
    """Confusion matrices of the raw prediction and after each post-processor.

    Post-processors chain: the matrix named ``"densecrf"`` scores the raw
    probabilities refined by every post-processor up to and including it.
    """
    precision = precision or Precision()
    model.eval()
    matrices = {"raw": ConfusionMatrix(num_classes, device)}
    chain = postprocessors or PostprocessChain()
    for name in chain.names():
        matrices[name] = ConfusionMatrix(num_classes, device)
    for batch in loader:
        images, masks = to_device(batch["image"], batch["mask"], device, precision.channels_last)
        with precision.autocast(device):
            logits = model(images)
        for i, (height, width) in enumerate(batch["size"]):
            scores = logits[i : i + 1, :, :height, :width].float()
            target = masks[i : i + 1, :height, :width]
            matrices["raw"].update(scores.argmax(1), target)
            if chain:
                original = batch["original"][i : i + 1, :, :height, :width].to(device)
                for name, probs in chain.each(scores.softmax(1), original):
                    matrices[name].update(probs.argmax(1), target)
        if on_batch is not None:
            on_batch(len(batch["size"]))
    for matrix in matrices.values():
        matrix.all_reduce()
    return matrices
