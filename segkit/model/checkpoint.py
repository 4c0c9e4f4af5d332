"""Checkpoints: written atomically, loaded with ``weights_only=True``.

A checkpoint carries its config, class names and palette, so ``segkit predict``
needs nothing else.  Writing goes to a temporary file in the same folder, is
fsynced and renamed over the old file: a crash at any moment leaves either the old
or the new checkpoint on disk, never a torn one.
"""

from __future__ import annotations

import glob
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from segkit.core.errors import CheckpointError
from segkit.core.outputs import explained_write_errors, save_with_torch

FORMAT = "segkit-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors, numbers, strings, lists, dicts) atomically to ``path``."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    with explained_write_errors(path):  # a full disk or a read-only folder: one line
        path.parent.mkdir(parents=True, exist_ok=True)
        # A process killed while writing leaves its temporary file; the next write clears it.
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                save_with_torch(lambda file: torch.save(payload, file), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform can open a directory
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a segkit checkpoint; anything else is a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}; give the path of a .pt file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} is not a readable segkit checkpoint ({first[:120]}); "
            f"use last.pt or best.pt from a run directory"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a segkit checkpoint (no '{FORMAT}' marker); "
            f"use last.pt or best.pt from a segkit run directory"
        )
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path} was written by a newer segkit (format {payload['version']}); upgrade segkit"
        )
    return payload
