"""Exporting a trained network for deployment: ONNX or TorchScript.

The exported graph maps normalised N×3×H×W float32 images to N×C×H×W logits for any
H and W, exactly as the PyTorch model does.  What a runtime needs to use it travels
with the file: the normalisation (``mean``/``std`` of RGB values in 0..1), the class
names and the palette, as ONNX metadata or a TorchScript extra file
(``segkit.json``).  Post-processors (the dense CRF) are not part of the graph.

After writing, the file is run on test inputs of two sizes and compared with PyTorch
(ONNX with onnxruntime when it is installed), and the largest difference reported.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segkit.core.errors import ConfigError, SegkitError, first_line
from segkit.core.outputs import (
    explained_write_errors,
    write_bytes_atomically,
)

FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 17
#: Sizes the exported file is checked at: an odd photograph-like size and a small one.
CHECK_SIZES = ((333, 497), (64, 64))
#: Largest absolute logit difference accepted between the export and PyTorch.
TOLERANCE = 1e-4
EXTRA = "pip install 'segkit[export]'"


class ExportError(SegkitError):
    """The model cannot be exported as asked."""


@dataclass
class ExportResult:
    path: Path
    format: str
    size: int  # bytes written
    #: input size (H, W) -> largest absolute difference from PyTorch; empty if unchecked
    differences: dict[tuple[int, int], float] = field(default_factory=dict)
    checked_with: str | None = None

    @property
    def max_difference(self) -> float | None:
        return max(self.differences.values()) if self.differences else None


def metadata(class_names: list[str], mean: list[float], std: list[float], palette: Any) -> dict:
    """What a runtime needs beside the graph, as strings (ONNX metadata is string-valued)."""
    return {
        "segkit_input": "N×3×H×W float32 RGB: (pixel / 255 - mean) / std; any H and W",
        "segkit_output": "N×C×H×W logits at the input size; softmax over dim 1",
        "segkit_mean": json.dumps([float(v) for v in mean]),
        "segkit_std": json.dumps([float(v) for v in std]),
        "segkit_class_names": json.dumps(list(class_names)),
        "segkit_palette": json.dumps(np.asarray(palette).astype(int).tolist()),
    }


def export(
    model: nn.Module,
    out: Path,
    info: dict[str, str],
    format: str = "onnx",
    opset: int = DEFAULT_OPSET,
    check: bool = True,
) -> ExportResult:
    """Write ``model`` to ``out`` in ``format`` with ``info`` as metadata, then check it."""
    if format not in FORMATS:
        raise ConfigError(f"unknown export format '{format}'; use one of {', '.join(FORMATS)}")
    model = model.eval().cpu()
    with explained_write_errors(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    if format == "onnx":
        return _export_onnx(model, out, info, opset, check)
    return _export_torchscript(model, out, info, check)


def _example(height: int, width: int) -> torch.Tensor:
    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))


def _export_onnx(
    model: nn.Module, out: Path, info: dict[str, str], opset: int, check: bool
) -> ExportResult:
    if importlib.util.find_spec("onnx") is None:
        raise ExportError(f"ONNX export needs the onnx package; {EXTRA}")
    import onnx

    if not 7 <= opset <= 23:
        raise ConfigError(f"--opset must lie in 7..23 (ONNX opsets), got {opset}")
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        # the TorchScript-based exporter is deprecated but handles the models' dynamic
        # sizes in a second where torch.export needs minutes for the VGG networks
        warnings.simplefilter("ignore")
        buffer = io.BytesIO()
        try:
            with _native_output_silenced():  # a failed export dumps its whole graph
                torch.onnx.export(
                    model,
                    (_example(64, 64),),
                    buffer,
                    input_names=["images"],
                    output_names=["logits"],
                    dynamic_axes={"images": dynamic, "logits": dynamic},
                    opset_version=opset,
                    dynamo=False,
                )
        except Exception as exc:
            first = first_line(exc)
            raise ExportError(
                f"the network cannot be exported to ONNX opset {opset} ({type(exc).__name__}: "
                f"{first}); try another --opset or --format torchscript"
            ) from None
    graph = onnx.load_from_string(buffer.getvalue())
    for key, value in info.items():
        graph.metadata_props.add(key=key, value=value)
    data = graph.SerializeToString()
    write_bytes_atomically(out, data)  # whole, or the old file stays
    result = ExportResult(out, "onnx", len(data))
    if check and importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        # the bytes written, not the file read back: --out may be a pipe or a device
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        for size in CHECK_SIZES:
            images = _example(*size)
            with torch.inference_mode():
                expected = model(images).numpy()
            (actual,) = session.run(["logits"], {"images": images.numpy()})
            result.differences[size] = _difference(actual, expected, size)
        result.checked_with = f"onnxruntime {onnxruntime.__version__}"
    return result


@contextmanager
def _native_output_silenced() -> Iterator[None]:
    """Discard what native code writes to the standard output and error meanwhile: the
    exporter's C++ prints the graph it failed on there, past any Python redirection."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _export_torchscript(
    model: nn.Module, out: Path, info: dict[str, str], check: bool
) -> ExportResult:
    # torch.jit is deprecated in favour of torch.export, whose files need PyTorch to
    # load as well; TorchScript files still run in libtorch (C++) alone.
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # deprecation notices and trace's size-as-int notes
        traced = torch.jit.trace(model, _example(64, 64))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"segkit.json": json.dumps(info)})
        data = buffer.getvalue()
        write_bytes_atomically(out, data)  # whole, or the old file stays
        # the bytes written, not the file read back: --out may be a pipe or a device
        loaded = torch.jit.load(io.BytesIO(data)) if check else None
    result = ExportResult(out, "torchscript", len(data))
    if loaded is not None:
        # a trace fixes any size it saw as a constant: check at sizes it did not see
        for size in CHECK_SIZES:
            images = _example(*size)
            with torch.inference_mode():
                expected, actual = model(images).numpy(), loaded(images).numpy()
            result.differences[size] = _difference(actual, expected, size)
        result.checked_with = f"torch.jit {torch.__version__}"
    return result


def _difference(actual: np.ndarray, expected: np.ndarray, size: tuple[int, int]) -> float:
    if actual.shape != expected.shape:
        raise ExportError(
            f"the exported network gives {actual.shape} on a {size[0]}×{size[1]} input where "
            f"PyTorch gives {expected.shape}; it does not handle dynamic sizes"
        )
    return float(np.abs(actual - expected).max())
