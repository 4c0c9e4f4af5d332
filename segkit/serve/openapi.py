"""The OpenAPI 3.1 description of the API, served at ``/openapi.json`` and shown at ``/docs``."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from segkit.serve.limits import Limits
from segkit.serve.options import FORMATS
from segkit.serve.uploads import IMAGE_FIELD

_SWITCH = {"type": "boolean"}
_ERROR = {
    "description": "refused, with one line saying why",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            }
        }
    },
}
_CLASS = {
    "type": "object",
    "properties": {
        "index": {"type": "integer"},
        "name": {"type": "string"},
        "colour": {"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": 3},
    },
}


def openapi_schema(limits: Limits) -> dict[str, Any]:
    """The description of ``POST /predict``, ``GET /info`` and ``GET /health``."""
    megabytes = f"{limits.max_upload_bytes / 2**20:g} MB"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "segkit serve",
            "version": version("segkit"),
            "description": "Semantic segmentation with one trained segkit model; the "
            "checkpoint's post-processors (the dense CRF) switched per request.",
        },
        "paths": {
            "/predict": {"post": _predict(megabytes, limits)},
            "/info": {
                "get": {
                    "summary": "the model: classes, palette, post-processors, normalisation",
                    "responses": {
                        "200": {
                            "description": "what the server holds",
                            "content": {"application/json": {"schema": _INFO}},
                        }
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "whether the server answers, and how full its queue is",
                    "responses": {
                        "200": {
                            "description": "the server is up",
                            "content": {"application/json": {"schema": _HEALTH}},
                        }
                    },
                }
            },
        },
    }


def _predict(megabytes: str, limits: Limits) -> dict[str, Any]:
    return {
        "summary": "segment one image",
        "description": "The mask as a palette PNG (the pixel values are the class indices, "
        "the colours the palette), the colour overlay, or the numbers as JSON; the same "
        "file `segkit predict` writes for the same image and settings. Requests run one "
        f"at a time on one model; at most {limits.queue} wait or run, more get 503 with "
        f"Retry-After. Uploads over {megabytes} or {limits.max_megapixels:g} megapixels "
        "are refused (413).",
        "parameters": [
            _query(
                "postprocess",
                _SWITCH,
                "apply the checkpoint's post-processors (the dense "
                "CRF); `crf` is the same switch; default: the checkpoint's predict.postprocess",
            ),
            _query(
                "tta",
                _SWITCH,
                "test-time augmentation over scales and flips; default: "
                "the checkpoint's predict.tta",
            ),
            _query(
                "format",
                {"type": "string", "enum": list(FORMATS), "default": "png"},
                "png: the palette mask; overlay: the colours over the image; json: numbers",
            ),
            _query(
                "masks",
                _SWITCH,
                "with format=json: also the masks as base64 PNGs "
                "(mask_png; raw_mask_png before post-processing)",
            ),
        ],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {IMAGE_FIELD: {"type": "string", "format": "binary"}},
                        "required": [IMAGE_FIELD],
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": "the prediction",
                "content": {
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": _PREDICTION},
                },
            },
            "400": _ERROR,
            "413": _ERROR,
            "415": _ERROR,
            "422": _ERROR,
            "503": _ERROR,
        },
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


_PREDICTION = {
    "type": "object",
    "properties": {
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "postprocess": {"type": "boolean", "description": "whether post-processors ran"},
        "postprocessors": {"type": "array", "items": {"type": "string"}},
        "tta": {"type": "boolean"},
        "inference": {"type": "string"},
        "classes": {
            "type": "array",
            "items": {
                "allOf": [
                    _CLASS,
                    {
                        "properties": {
                            "pixels": {"type": "integer"},
                            "share": {"type": "number", "description": "of the image's pixels"},
                        }
                    },
                ]
            },
        },
        "raw_shares": {
            "type": ["array", "null"],
            "items": {"type": "number"},
            "description": "each class's share before post-processing (null without)",
        },
        "changed_share": {
            "type": ["number", "null"],
            "description": "share of the pixels the post-processors changed",
        },
        "timing_ms": {
            "type": "object",
            "properties": {n: {"type": "number"} for n in ("queued", "predict", "total")},
        },
        "mask_png": {"type": "string", "contentEncoding": "base64"},
        "raw_mask_png": {"type": "string", "contentEncoding": "base64"},
    },
}

_INFO = {
    "type": "object",
    "properties": {
        "model": {"type": "object"},
        "classes": {"type": "array", "items": _CLASS},
        "palette": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
        "postprocessors": {"type": "array", "items": {"type": "object"}},
        "postprocess_default": {"type": "boolean"},
        "tta": {"type": "object"},
        "inference": {"type": "string"},
        "normalisation": {
            "type": "object",
            "properties": {
                "mean": {"type": "array", "items": {"type": "number"}},
                "std": {"type": "array", "items": {"type": "number"}},
            },
        },
        "formats": {"type": "array", "items": {"type": "string"}},
        "limits": {"type": "object"},
    },
}

_HEALTH = {
    "type": "object",
    "properties": {"status": {"const": "ok"}, "queue": {"type": "object"}},
}
