"""Checkpoints: written atomically, loaded with ``weights_only=True``.

A checkpoint carries its config, class names and palette, so ``segkit predict``
needs nothing else.  Writing goes to a temporary file in the same folder, is
fsynced and renamed over the old file: a crash at any moment leaves either the old
or the new checkpoint on disk, never a torn one.
"""

from __future__ import annotations

import copy
import glob
import os
import pickle
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segkit.core.config import Config, apply_overrides, config_from_dict
from segkit.core.errors import CheckpointError, ConfigError, first_line, unprintable
from segkit.core.outputs import explained_write_errors, save_with_torch
from segkit.core.registry import Registry
from segkit.model.weights import check_state_dict

FORMAT = "segkit-checkpoint"
VERSION = 1


def model_payload(
    config: Config, model: nn.Module, class_names: list[str], palette: Any
) -> dict[str, Any]:
    """What every segkit checkpoint holds of a model: its config, classes, palette and
    weights (a run's ``last.pt`` adds its training state beside them)."""
    return {
        "config": config.to_dict(),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "palette": np.asarray(palette).tolist(),
        "model": model.state_dict(),
    }


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
    """Load a segkit checkpoint; anything else is a :class:`CheckpointError`.

    Only the file's envelope is checked here (readable, segkit's marker, a version this
    segkit knows); :func:`check_model_state` and :func:`check_resume_state` check what
    predicting and resuming read from it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}; give the path of a .pt file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch reports a truncated zip as EOFError, OSError, ...
        raise CheckpointError(
            f"{path} is not a readable segkit checkpoint: {_why_unreadable(exc)} "
            f"({_first_line(exc)}); use last.pt or best.pt from a run directory"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a segkit checkpoint ({_what_it_is(payload)}); "
            f"use last.pt or best.pt from a segkit run directory"
        )
    version = payload.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(
            f"{path}: its format version is {version!r}, not a number; the file was edited "
            f"or written by another tool"
        )
    if version > VERSION:
        raise CheckpointError(
            f"{path} was written by a newer segkit (format {payload['version']}); upgrade segkit"
        )
    return payload


def _why_unreadable(exc: Exception) -> str:
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
        return "it holds objects other than tensors and plain data, which segkit never loads"
    return "it is truncated, damaged or not a PyTorch file"


def _first_line(exc: BaseException) -> str:
    return first_line(exc, 120) or type(exc).__name__


def _what_it_is(payload: Any) -> str:
    """What a foreign file holds, so the user knows which tool wrote it."""
    if (
        isinstance(payload, dict)
        and payload
        and all(isinstance(v, torch.Tensor) for v in payload.values())
    ):
        first = next(iter(payload))
        return (
            f"it holds a plain state dict of {len(payload)} tensors such as {first!r}, "
            f"written by another tool; load such weights with a backbone's 'weights' parameter"
        )
    if isinstance(payload, dict):
        keys = ", ".join(repr(k) for k in list(payload)[:5])
        return f"no '{FORMAT}' marker; it holds the keys {keys or 'none'}"
    return f"it holds a {type(payload).__name__}, not a dict with a '{FORMAT}' marker"


#: What predicting reads from a checkpoint, beside the weights, and its type.
MODEL_KEYS = {"config": dict, "num_classes": int, "class_names": list, "palette": list}


def check_model_state(payload: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """``payload`` holds what building and filling its model needs, consistently.

    A checkpoint edited by hand or assembled by another tool fails here with one line
    naming the key, not later as an internal error of whichever command reads it.
    """
    for key, kind in MODEL_KEYS.items():
        if key not in payload:
            raise _edited(path, f"it has no '{key}'")
        if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
            raise _edited(path, f"its '{key}' is {_kind(payload[key])}, not {kind.__name__}")
    weights = payload.get("model")
    if not isinstance(weights, dict) or not weights:
        raise _edited(
            path,
            "it has no 'model' weights"
            if weights is None
            else f"its 'model' is {_kind(weights)}, not a dict of tensors",
        )
    for name, tensor in weights.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise _edited(path, f"its weight {name!r} is {_kind(tensor)}, not a tensor")
    _check_classes(payload, path)
    return payload


def _check_classes(payload: dict[str, Any], path: str | Path) -> None:
    classes, names, palette = payload["num_classes"], payload["class_names"], payload["palette"]
    if classes < 2:
        raise _edited(path, f"its num_classes is {classes}; a model has at least 2 classes")
    if len(names) != classes or not all(isinstance(n, str) for n in names):
        raise _edited(
            path, f"its class_names ({len(names)} entries) do not name its {classes} classes"
        )
    for name in names:
        if unprintable(name):
            raise _edited(
                path, f"its class name {name!r:.60} holds {unprintable(name)}, not printable text"
            )
    if len(palette) < classes:
        raise _edited(path, f"its palette has {len(palette)} colours for {classes} classes")
    for index, colour in enumerate(palette):
        if not (
            isinstance(colour, list | tuple)
            and len(colour) == 3
            and all(isinstance(c, int) and 0 <= c <= 255 for c in colour)
        ):
            raise _edited(
                path, f"its palette entry {index} is {colour!r:.40}, not an RGB triple 0-255"
            )


def stored_config(
    payload: dict[str, Any],
    path: str | Path,
    registry: Registry,
    overrides: Iterable[str] = (),
) -> Config:
    """The config a checked checkpoint carries, validated, with ``overrides`` applied.

    A mistake in an override is the user's (a :class:`ConfigError` naming ``--set``); a
    stored config that no longer validates is the checkpoint's.
    """
    raw = apply_overrides(copy.deepcopy(payload["config"]), overrides)
    try:
        return config_from_dict(raw, registry=registry)
    except ConfigError as exc:
        if overrides:
            raise
        raise CheckpointError(f"{path}: its stored config is not usable here ({exc})") from None


def load_weights(model: nn.Module, payload: dict[str, Any], problem: str, fix: str) -> None:
    """Fill ``model`` with a checked checkpoint's weights, or say which keys do not fit.

    ``problem`` and ``fix`` frame the line: ``"<problem> (missing a, b; shape c ...); <fix>"``.
    """
    weights = payload["model"]
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    check_state_dict(weights, expected, problem, fix)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:  # what the key and shape comparison cannot see
        raise CheckpointError(f"{problem} ({_first_line(exc)}); {fix}") from None


def is_checkpoint_file(path: str | Path) -> bool:
    """Whether ``path`` is a file ``torch.save`` wrote (a checkpoint) rather than a config:
    its zip format, or the older pickle format ``torch.load`` reads as well."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would wait for a writer
            return False
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    legacy = len(head) == 4 and head[0] == PICKLE_PROTO and head[1] in (2, 3, 4, 5)
    return head == ZIP_MAGIC or legacy


#: The first bytes of a file ``torch.save`` writes (a zip archive).
ZIP_MAGIC = b"PK\x03\x04"
#: The opcode a pickle of protocol 2 or later starts with (``torch.save``'s legacy format).
PICKLE_PROTO = 0x80

#: What resuming reads from ``last.pt`` beside the model, and its type.
RESUME_KEYS = {
    "optimizer": dict,
    "scheduler": dict,
    "scaler": dict,
    "rng": dict,
    "epoch": int,
    "step": int,
}


def check_resume_state(payload: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """``payload`` holds a training state to continue from (see :func:`check_model_state`)."""
    check_model_state(payload, path)
    for key, kind in RESUME_KEYS.items():
        if key not in payload:
            raise _edited(path, f"it has no '{key}' to resume from", resume=True)
        if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
            raise _edited(
                path, f"its '{key}' is {_kind(payload[key])}, not {kind.__name__}", resume=True
            )
    if payload["epoch"] < 0 or payload["step"] < 0:
        raise _edited(path, "its epoch or step is negative", resume=True)
    rng = payload["rng"]
    if not (
        isinstance(rng.get("torch"), torch.Tensor)
        and isinstance(rng.get("numpy"), list)
        and isinstance(rng.get("python"), list)
    ):
        raise _edited(path, "its 'rng' lacks the torch, numpy or python state", resume=True)
    return payload


def _edited(path: str | Path, problem: str, resume: bool = False) -> CheckpointError:
    fix = (
        "start a new --run-dir, or restore the last.pt segkit wrote"
        if resume
        else "use a last.pt or best.pt as segkit wrote it"
    )
    return CheckpointError(f"{path} is not a usable segkit checkpoint: {problem}; {fix}")


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.40}"
