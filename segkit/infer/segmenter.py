"""Prediction: a trained model plus its post-processors, from a checkpoint alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from segkit.core.config import Config, config_from_dict
from segkit.core.errors import CheckpointError, ConfigError
from segkit.core.manager import default_registry
from segkit.core.registry import Registry
from segkit.data.files import read_image
from segkit.data.transforms import normalize
from segkit.infer.device import resolve_device
from segkit.infer.postprocess import PostprocessChain
from segkit.model.assembly import build_model
from segkit.model.checkpoint import load_checkpoint


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

    >>> segmenter = Segmenter.from_checkpoint("runs/deeplab_crf/.../best.pt")
    >>> labels, probs = segmenter.predict("photo.jpg", postprocess=True)
    """

    def __init__(
        self,
        model: nn.Module,
        config: Config,
        class_names: list[str],
        palette: np.ndarray,
        device: torch.device,
        postprocessors: PostprocessChain,
    ) -> None:
        self.model = model.eval()
        self.config = config
        self.class_names = class_names
        self.palette = np.asarray(palette, dtype=np.uint8)
        self.device = device
        self.postprocessors = postprocessors

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", registry: Registry | None = None
    ) -> Segmenter:
        """The model, classes and post-processors a checkpoint describes.

        Every part is built from ``registry`` (default: the installed plugins).
        """
        registry = default_registry(registry)
        state = load_checkpoint(path)
        try:
            config = config_from_dict(state["config"], registry=registry)
        except (KeyError, ConfigError) as exc:
            raise CheckpointError(f"{path}: its stored config is not usable here ({exc})") from None
        torch_device = resolve_device(device)
        model = build_model(config, state["num_classes"], registry)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path}: weights do not match the model its config describes "
                f"({str(exc).splitlines()[0][:100]})"
            ) from None
        return cls(
            model.to(torch_device),
            config,
            list(state["class_names"]),
            np.asarray(state["palette"], dtype=np.uint8),
            torch_device,
            PostprocessChain.from_parts(config.postprocessors, registry),
        )

    @torch.inference_mode()
    def predict_pair(
        self, image: np.ndarray | str | Path | Image.Image, postprocess: bool = True
    ) -> PredictionPair:
        """The raw and (with ``postprocess``) the post-processed prediction of one image."""
        if isinstance(image, str | Path):
            image = read_image(image)
        elif isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
        tensor = normalize(image, self.config.data.mean, self.config.data.std)
        logits = self.model(tensor[None].to(self.device))
        probs = logits.float().softmax(1)
        raw = _prediction(probs)
        refined = None
        if postprocess and self.postprocessors:
            original = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
            refined = _prediction(self.postprocessors(probs, original.to(self.device)))
        return PredictionPair(image, raw, refined)

    def predict(
        self, image: np.ndarray | str | Path | Image.Image, postprocess: bool = True
    ) -> Prediction:
        """Label map and probabilities for one RGB image (array H×W×3 uint8, path or PIL)."""
        return self.predict_pair(image, postprocess).final


def _prediction(probs: torch.Tensor) -> Prediction:
    return Prediction(probs.argmax(1)[0].cpu().numpy().astype(np.uint8), probs[0].cpu().numpy())
