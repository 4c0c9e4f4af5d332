"""What every part of a run shares, and what run-event hooks see of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress

from segkit.core.config import Config
from segkit.core.manager import Plugins
from segkit.core.progress import progress_display
from segkit.infer.device import Precision
from segkit.train.distributed import Processes
from segkit.train.run_files import RunFiles


@dataclass
class Run:
    """One run: its config, folder, classes, processes, device and plugins.

    Run-event hooks (``on_run_start``, ``on_epoch_end``, ``on_run_end``) receive it
    and may rely on what :class:`segkit.core.RunView` declares of it; ``history``
    holds one record per finished epoch.
    """

    config: Config
    run_dir: Path
    class_names: list[str]
    palette: np.ndarray
    processes: Processes
    device: torch.device
    precision: Precision
    console: Console
    plugins: Plugins
    files: RunFiles  # what the run wrote in run_dir, for a later --overwrite
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_main(self) -> bool:
        return self.processes.is_main

    def log(self, *objects: Any) -> None:
        if self.is_main:
            self.console.print(*objects)

    def progress(self, everywhere: bool = False) -> Progress:
        """A progress display, shown by rank 0 only unless ``everywhere``: bars on a
        terminal, plain log lines when the output goes to a file."""
        return progress_display(self.console, disable=not (everywhere or self.is_main))


def default_run_dir(config: Config) -> Path:
    return Path("runs") / config.name / datetime.now().strftime("%Y%m%d-%H%M%S")
