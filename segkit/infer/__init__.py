"""The inference room: devices, post-processing, prediction, evaluation and refinement."""

from __future__ import annotations

from segkit.infer.device import Precision, available_memory, ensure_memory, resolve_device
from segkit.infer.evaluate import evaluate
from segkit.infer.metrics import ConfusionMatrix
from segkit.infer.postprocess import (
    PostprocessChain,
    Postprocessor,
    build_postprocessor,
    check_postprocess_inputs,
)
from segkit.infer.segmenter import Prediction, PredictionPair, Segmenter

__all__ = [
    "ConfusionMatrix",
    "PostprocessChain",
    "Postprocessor",
    "Precision",
    "Prediction",
    "PredictionPair",
    "Segmenter",
    "available_memory",
    "build_postprocessor",
    "check_postprocess_inputs",
    "ensure_memory",
    "evaluate",
    "resolve_device",
]
