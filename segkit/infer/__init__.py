"""The inference room: devices, post-processing, prediction (test-time augmentation,
tiling), evaluation (shared by ``segkit eval`` and a run's), pictures of label maps,
refinement and export."""

from __future__ import annotations

from typing import TYPE_CHECKING

from segkit.core.lazy import lazy_names

# Loaded on first use: `segkit --help` builds its parser from this room without PyTorch.
_LAZY = {
    "ConfusionMatrix": "segkit.infer.metrics",
    "Evaluator": "segkit.infer.evaluate",
    "InferenceSettings": "segkit.infer.inference",
    "PostprocessChain": "segkit.infer.postprocess",
    "Postprocessor": "segkit.infer.postprocess",
    "Precision": "segkit.infer.device",
    "Prediction": "segkit.infer.segmenter",
    "PredictionPair": "segkit.infer.segmenter",
    "Segmenter": "segkit.infer.segmenter",
    "TestTimeAugmentation": "segkit.infer.tta",
    "Tiling": "segkit.infer.tiling",
    "available_memory": "segkit.infer.device",
    "build_postprocessor": "segkit.infer.postprocess",
    "check_postprocess_inputs": "segkit.infer.postprocess",
    "colorize": "segkit.infer.pictures",
    "ensure_memory": "segkit.infer.device",
    "evaluate": "segkit.infer.evaluate",
    "legend": "segkit.infer.pictures",
    "metrics_table": "segkit.infer.evaluate",
    "overlay": "segkit.infer.pictures",
    "predict_probs": "segkit.infer.inference",
    "prediction_paths": "segkit.infer.pictures",
    "resolve_device": "segkit.infer.device",
    "save_mask_png": "segkit.infer.pictures",
    "summarize": "segkit.infer.evaluate",
    "write_prediction": "segkit.infer.pictures",
}

if TYPE_CHECKING:
    from segkit.infer.device import Precision, available_memory, ensure_memory, resolve_device
    from segkit.infer.evaluate import Evaluator, evaluate, metrics_table, summarize
    from segkit.infer.inference import InferenceSettings, predict_probs
    from segkit.infer.metrics import ConfusionMatrix
    from segkit.infer.pictures import (
        colorize,
        legend,
        overlay,
        prediction_paths,
        save_mask_png,
        write_prediction,
    )
    from segkit.infer.postprocess import (
        PostprocessChain,
        Postprocessor,
        build_postprocessor,
        check_postprocess_inputs,
    )
    from segkit.infer.segmenter import Prediction, PredictionPair, Segmenter
    from segkit.infer.tiling import Tiling
    from segkit.infer.tta import TestTimeAugmentation


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


__all__ = [
    "ConfusionMatrix",
    "Evaluator",
    "InferenceSettings",
    "PostprocessChain",
    "Postprocessor",
    "Precision",
    "Prediction",
    "PredictionPair",
    "Segmenter",
    "TestTimeAugmentation",
    "Tiling",
    "available_memory",
    "build_postprocessor",
    "check_postprocess_inputs",
    "colorize",
    "ensure_memory",
    "evaluate",
    "legend",
    "metrics_table",
    "overlay",
    "predict_probs",
    "prediction_paths",
    "resolve_device",
    "save_mask_png",
    "summarize",
    "write_prediction",
]
