"""Devices: choosing one, and how much memory it has free before a large allocation."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from segkit.core.errors import DataError, SegkitError

#: Memory a computation may plan to use, as a share of what the device has free.
MEMORY_HEADROOM = 0.9


def resolve_device(name: str, local_rank: int = 0, what: str = "train.device") -> torch.device:
    """``auto`` picks CUDA when present; each ``torchrun`` process takes its own GPU.

    ``what`` names the setting in messages: a config key, a flag or an argument.
    """
    if not isinstance(name, str):
        raise SegkitError(f"{what} must be a device name such as 'cpu', got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SegkitError(f"{what}: unknown device '{name}'; use auto, cpu or cuda") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise SegkitError(
            f"{what}: segkit computes on cpu, cuda or mps, not on '{name}'; use auto, cpu or cuda"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SegkitError(
            f"{what} is '{name}' but this machine or PyTorch build has no MPS (Apple GPU) "
            f"support; use auto or cpu"
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SegkitError(f"{what} is '{name}' but no GPU is visible; use auto or cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        count = torch.cuda.device_count()
        if device.index >= count:
            raise SegkitError(
                f"{what}: there is no GPU {device} ({count} visible: cuda:0 to "
                f"cuda:{count - 1}); choose one of them"
            )
    return device


@dataclass(frozen=True)
class Precision:
    """Mixed precision (autocast) and the channels_last memory layout.

    On CUDA mixed precision is float16, with a gradient scaler against underflow; on
    the CPU it is bfloat16, which has float32's range and needs none.  The CPU's is
    rarely faster (only CPUs with bfloat16 instructions gain), but it runs the same
    autocast path as a GPU, so that path is tested where there is no GPU.
    """

    amp: bool = False
    channels_last: bool = False
    dtype: torch.dtype = torch.float16

    @classmethod
    def for_device(
        cls, device: torch.device, amp: bool | None, channels_last: bool | None
    ) -> Precision:
        """Both on for CUDA and off elsewhere, unless the config says otherwise."""
        on_gpu = device.type == "cuda"
        amp = on_gpu if amp is None else amp
        dtype = torch.float16 if on_gpu else torch.bfloat16
        return cls(amp, on_gpu if channels_last is None else channels_last, dtype)

    @property
    def scales_gradients(self) -> bool:
        """float16's gradients underflow without a scaler; bfloat16's do not."""
        return self.amp and self.dtype == torch.float16

    def autocast(self, device: torch.device) -> AbstractContextManager:
        return torch.autocast(device.type, dtype=self.dtype) if self.amp else nullcontext()


def ensure_memory(required_bytes: int, device: torch.device | str, what: str) -> None:
    """Raise :class:`segkit.DataError` if ``required_bytes`` exceed what ``device`` has free."""
    available = available_memory(device)
    if available is None or required_bytes <= MEMORY_HEADROOM * available:
        return
    raise DataError(
        f"{what} needs about {_gib(required_bytes)} of {torch.device(device).type.upper()} "
        f"memory but only {_gib(available)} is available; downscale the images, refine fewer "
        f"at a time, or free memory"
    )


def available_memory(device: torch.device | str) -> int | None:
    """Bytes free on ``device`` (MemAvailable for the CPU), or None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, _ = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free + cached)
    if device.type == "cpu":
        return _mem_available(Path("/proc/meminfo"))
    return None


def _mem_available(meminfo: Path) -> int | None:
    try:
        text = meminfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1]) * 1024
    return None


def _gib(size: float) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"
