"""The engine: devices, processes, the training loop and evaluation.

One code path serves a CPU, one GPU and several processes: under ``torchrun`` the
model is wrapped in DistributedDataParallel, each process reads its own shard of
the data, and confusion matrices are summed across processes before metrics.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

from segkit.errors import SegkitError
from segkit.metrics import IGNORE_INDEX, ConfusionMatrix
from segkit.postprocess import PostprocessChain


@dataclass(frozen=True)
class Processes:
    """This process's place among the ``torchrun`` processes (rank 0 of 1 alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init_processes(device: torch.device) -> Processes:
    """Join the ``torchrun`` process group when launched by it (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present; each ``torchrun`` process takes its own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SegkitError(f"train.device: unknown device '{name}'; use auto, cpu or cuda") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SegkitError("train.device is 'cuda' but no GPU is visible; use device = 'auto'")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


class ShardSampler(Sampler[int]):
    """Indices for one process: a seeded shuffle per epoch, split across processes.

    Training pads the permutation so every process takes the same number of steps
    (DDP needs that); evaluation (``pad=False``) gives each image to exactly one
    process so summed confusion matrices count every pixel once.  ``skip`` resumes
    an epoch in the middle, without reading the skipped batches.
    """

    def __init__(
        self,
        size: int,
        processes: Processes,
        seed: int = 0,
        shuffle: bool = True,
        pad: bool = True,
    ) -> None:
        self.size, self.processes, self.seed = size, processes, seed
        self.shuffle, self.pad = shuffle, pad
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        world = self.processes.world
        if self.pad and self.size % world:
            order += order[: world - self.size % world]
        return order[self.processes.rank :: world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.skip :])

    def __len__(self) -> int:
        return max(0, len(self._indices()) - self.skip)


def sync_buffers(model: nn.Module, processes: Processes) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics are kept per process)."""
    if processes.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def poly_lambda(max_iterations: int, power: float) -> Callable[[int], float]:
    """The DeepLab "poly" schedule: lr * (1 - it / max_it) ** power."""
    return lambda it: max(0.0, 1 - it / max(1, max_iterations)) ** power


def set_base_lrs(optimizer: torch.optim.Optimizer, scheduler: Any, base_lrs: list[float]) -> None:
    """Put the config's learning rates back after a resume (a user may lower them to resume)."""
    scheduler.base_lrs = list(base_lrs)
    for group, base, factor in zip(
        optimizer.param_groups, base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["initial_lr"] = base
        group["lr"] = base * factor(scheduler.last_epoch)


def make_optimizer(
    model: nn.Module, lr: float, momentum: float, weight_decay: float, head_lr_mult: float
) -> torch.optim.SGD:
    groups = model.param_groups()
    return torch.optim.SGD(
        [
            {"params": groups["backbone"], "lr": lr},
            {"params": groups["head"], "lr": lr * head_lr_mult},
        ],
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
    )


class NonFiniteLoss(SegkitError):
    """The loss became NaN or infinite."""


@dataclass
class StepResult:
    loss: float
    images: int


def train_step(
    model: nn.Module,
    images: Tensor,
    masks: Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    amp: bool,
) -> StepResult:
    """One SGD step; raises :class:`NonFiniteLoss` before touching the weights."""
    autocast = torch.autocast(images.device.type, dtype=torch.float16) if amp else nullcontext()
    with autocast:
        logits = model(images)
    loss = F.cross_entropy(logits.float(), masks, ignore_index=IGNORE_INDEX)
    value = loss.item()
    if not math.isfinite(value):
        raise NonFiniteLoss(f"the loss became {value}")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return StepResult(value, images.shape[0])


def to_device(
    images: Tensor, masks: Tensor, device: torch.device, channels_last: bool
) -> tuple[Tensor, Tensor]:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
    return images, masks.to(device, non_blocking=True)


def make_loader(
    dataset: Any,
    sampler: Sampler[int],
    batch_size: int,
    workers: int,
    device: torch.device,
    collate_fn: Callable[..., Any] | None = None,
    drop_last: bool = False,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        collate_fn=collate_fn,
        drop_last=drop_last,
    )


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    device: torch.device,
    postprocessors: PostprocessChain | None = None,
    amp: bool = False,
    channels_last: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, ConfusionMatrix]:
    """Confusion matrices of the raw prediction and after each post-processor.

    Post-processors chain: the matrix named ``"densecrf"`` scores the raw
    probabilities refined by every post-processor up to and including it.
    """
    model.eval()
    matrices = {"raw": ConfusionMatrix(num_classes, device)}
    chain = postprocessors or PostprocessChain()
    for name in chain.names():
        matrices[name] = ConfusionMatrix(num_classes, device)
    for batch in loader:
        images, masks = to_device(batch["image"], batch["mask"], device, channels_last)
        autocast = torch.autocast(device.type, dtype=torch.float16) if amp else nullcontext()
        with autocast:
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


class Throughput:
    """Images per second since the epoch began, for the progress bar and the metrics."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.images = 0

    def add(self, images: int) -> float:
        self.images += images
        return self.images / max(1e-9, time.perf_counter() - self.start)
