"""Prediction: a trained model plus its post-processors, from a checkpoint alone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from segkit.core.config import Config
from segkit.core.errors import ConfigError, DataError
from segkit.core.manager import default_registry
from segkit.core.registry import Registry
from segkit.data.files import read_image
from segkit.data.transforms import normalize
from segkit.infer.device import resolve_device
from segkit.infer.inference import InferenceSettings, predict_probs
from segkit.infer.postprocess import PostprocessChain
from segkit.model.assembly import build_model
from segkit.model.checkpoint import (
    check_model_state,
    load_checkpoint,
    load_weights,
    stored_config,
)


class Prediction(NamedTuple):
    """A label map (H×W) and class probabilities (C×H×W), after post-processing if asked."""

    labels: np.ndarray
    probs: np.ndarray


@dataclass
class PredictionPair:
    """One image with its raw prediction and, when post-processors ran, the refined one."""

    image: np.ndarray
    raw: Prediction
    refined: Prediction | None

    @property
    def final(self) -> Prediction:
        return self.refined or self.raw


class Segmenter:
    """Segments images with a trained model; ``postprocess=True`` applies the post-processors.

    ``inference`` (default: the config's ``[predict]`` section) chooses test-time
    augmentation and tiling; ``predict(..., tta=True)`` switches TTA for one call.

    >>> segmenter = Segmenter.from_checkpoint("runs/deeplab_crf/.../best.pt")
    >>> labels, probs = segmenter.predict("photo.jpg", postprocess=True, tta=True)
    """

    def __init__(
        self,
        model: nn.Module,
        config: Config,
        class_names: list[str],
        palette: np.ndarray,
        device: torch.device,
        postprocessors: PostprocessChain,
        inference: InferenceSettings | None = None,
    ) -> None:
        self.model = model.eval()
        self.config = config
        self.class_names = class_names
        self.palette = np.asarray(palette, dtype=np.uint8)
        self.device = device
        self.postprocessors = postprocessors
        self.inference = inference or InferenceSettings.from_options(config.predict)
        self.inference.check(self.model)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        registry: Registry | None = None,
        overrides: Iterable[str] = (),
    ) -> Segmenter:
        """The model, classes and post-processors a checkpoint describes.

        Every part is built from ``registry`` (default: the installed plugins);
        ``overrides`` (``"predict.tta=true"`` ...) change the stored config first.
        """
        registry = default_registry(registry)
        state = check_model_state(load_checkpoint(path), path)
        config = stored_config(state, path, registry, overrides)
        torch_device = resolve_device(device, what="device")
        model = build_model(config, state["num_classes"], registry)
        problem = f"{path}: weights do not match the model its config describes"
        load_weights(model, state, problem, "use a last.pt or best.pt as segkit wrote it")
        return cls(
            model.to(torch_device),
            config,
            list(state["class_names"]),
            np.asarray(state["palette"], dtype=np.uint8),
            torch_device,
            PostprocessChain.from_parts(config.postprocessors, registry),
        )

    def settings(self, tta: bool | None = None) -> InferenceSettings:
        """The inference settings, with TTA switched on or off when ``tta`` is not None."""
        return self.inference.override(self.config.predict, tta=tta)

    @torch.inference_mode()
    def predict_batch(
        self,
        images: list[np.ndarray | str | Path | Image.Image],
        postprocess: bool = True,
        tta: bool | None = None,
    ) -> list[PredictionPair]:
        """Raw and (with ``postprocess``) post-processed predictions of images of one size."""
        if not isinstance(images, list | tuple) or not images:
            raise DataError(
                f"predict_batch takes a non-empty list of images, got {_describe(images)}; "
                f"use predict for one image"
            )
        _check_switch(postprocess, "postprocess")
        _check_switch(tta, "tta", may_be_none=True)
        arrays = [_as_array(image) for image in images]
        if len({a.shape for a in arrays}) > 1:
            raise DataError("predict_batch takes images of one size; predict others one by one")
        batch = torch.stack(
            [normalize(a, self.config.data.mean, self.config.data.std) for a in arrays]
        )
        probs = predict_probs(self.model, batch.to(self.device), self.settings(tta))
        refined = None
        if postprocess and self.postprocessors:
            originals = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
            refined = self.postprocessors(probs, originals.to(self.device))
        return [
            PredictionPair(
                array, _prediction(probs[i]), None if refined is None else _prediction(refined[i])
            )
            for i, array in enumerate(arrays)
        ]

    def predict_pair(
        self,
        image: np.ndarray | str | Path | Image.Image,
        postprocess: bool = True,
        tta: bool | None = None,
    ) -> PredictionPair:
        """The raw and (with ``postprocess``) the post-processed prediction of one image."""
        return self.predict_batch([image], postprocess, tta)[0]

    def predict(
        self,
        image: np.ndarray | str | Path | Image.Image,
        postprocess: bool = True,
        tta: bool | None = None,
    ) -> Prediction:
        """Label map and probabilities for one RGB image (array H×W×3 uint8, path or PIL).

        ``tta`` switches test-time augmentation on or off for this call (default: as
        the config's ``[predict]`` section says).
        """
        return self.predict_pair(image, postprocess, tta).final


def _as_array(image: np.ndarray | str | Path | Image.Image) -> np.ndarray:
    if isinstance(image, str | Path):
        return read_image(image)
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    return check_image_array(image)


def check_image_array(image: object, what: str = "image") -> np.ndarray:
    """``image`` when it is an H×W×3 uint8 RGB array with pixels, else a :class:`DataError`
    saying what it is instead and how to convert it."""
    expected = f"{what} must be an H×W×3 uint8 RGB array (or a path or PIL image)"
    if not isinstance(image, np.ndarray):
        raise DataError(f"{expected}, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = "×".join(map(str, image.shape)) or "a scalar"
        raise DataError(
            f"{expected}, got shape {shape} of {image.dtype}; convert it, e.g. "
            f"np.asarray(PIL.Image.open(path).convert('RGB'))"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise DataError(f"{what} is empty ({image.shape[1]}×{image.shape[0]} pixels)")
    return image


def _check_switch(value: object, name: str, may_be_none: bool = False) -> None:
    if not isinstance(value, bool) and not (may_be_none and value is None):
        allowed = "True, False or None" if may_be_none else "True or False"
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")


def _describe(value: object) -> str:
    return "an empty list" if isinstance(value, list | tuple) else type(value).__name__


def _prediction(probs: torch.Tensor) -> Prediction:
    """The prediction of one image's C×H×W probabilities."""
    return Prediction(probs.argmax(0).cpu().numpy().astype(np.uint8), probs.cpu().numpy())
