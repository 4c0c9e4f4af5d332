"""Prediction: a trained model plus its post-processors, from a checkpoint alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from segkit import data as segdata
from segkit.checkpoint import load_checkpoint
from segkit.config import Config, config_from_dict
from segkit.engine import resolve_device
from segkit.errors import CheckpointError, ConfigError
from segkit.model import build_model
from segkit.plugins import get_plugins
from segkit.postprocess import PostprocessChain


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
    """Segments images with a trained model; ``crf=True`` applies the post-processors.

    >>> segmenter = Segmenter.from_checkpoint("runs/deeplab_crf/.../best.pt")
    >>> labels, probs = segmenter.predict("photo.jpg", crf=True)
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
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> Segmenter:
        state = load_checkpoint(path)
        plugins = get_plugins()
        try:
            config = config_from_dict(state["config"], registry=plugins.registry)
        except (KeyError, ConfigError) as exc:
            raise CheckpointError(f"{path}: its stored config is not usable here ({exc})") from None
        torch_device = resolve_device(device)
        model = build_model(config, state["num_classes"], registry=plugins.registry)
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
            PostprocessChain.from_parts(config.postprocess),
        )

    @torch.inference_mode()
    def predict_pair(
        self, image: np.ndarray | str | Path | Image.Image, crf: bool = True
    ) -> PredictionPair:
        """The raw and (with ``crf``) the post-processed prediction of one image."""
        if isinstance(image, str | Path):
            image = segdata.read_image(image)
        elif isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
        tensor = segdata.normalize(image, self.config.data.mean, self.config.data.std)
        logits = self.model(tensor[None].to(self.device))
        probs = logits.float().softmax(1)
        raw = Prediction(probs.argmax(1)[0].cpu().numpy().astype(np.uint8), probs[0].cpu().numpy())
        refined = None
        if crf and self.postprocessors:
            original = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
            original = original.to(self.device)
            probs = self.postprocessors(probs, original)
            refined = Prediction(
                probs.argmax(1)[0].cpu().numpy().astype(np.uint8), probs[0].cpu().numpy()
            )
        return PredictionPair(image, raw, refined)

    def predict(self, image: np.ndarray | str | Path | Image.Image, crf: bool = True) -> Prediction:
        """Label map and probabilities for one RGB image (array H×W×3 uint8, path or PIL)."""
        return self.predict_pair(image, crf).final


def _titled(image: np.ndarray, title: str) -> Image.Image:
    tile = Image.fromarray(image)
    canvas = Image.new("RGB", (tile.width, tile.height + 16), "white")
    canvas.paste(tile, (0, 16))
    ImageDraw.Draw(canvas).text((3, 2), title, fill="black")
    return canvas


def write_prediction(
    out_dir: Path,
    stem: str,
    pair: PredictionPair,
    palette: np.ndarray,
    mask: np.ndarray | None = None,
) -> list[Path]:
    """Write the palette mask, a colour overlay and a side-by-side panel for one image."""
    out_dir.mkdir(parents=True, exist_ok=True)
    image, final = pair.image, pair.final.labels
    mask_path = out_dir / f"{stem}_mask.png"
    overlay_path = out_dir / f"{stem}_overlay.png"
    panel_path = out_dir / f"{stem}_panel.png"
    segdata.save_mask_png(mask_path, final, palette)
    Image.fromarray(segdata.overlay(image, final, palette)).save(overlay_path)
    tiles = [
        _titled(image, "image"),
        _titled(segdata.colorize(pair.raw.labels, palette), "prediction"),
    ]
    if pair.refined is not None:
        tiles.append(_titled(segdata.colorize(pair.refined.labels, palette), "refined"))
    if mask is not None:
        tiles.append(_titled(segdata.colorize(mask, palette), "ground truth"))
    panel = Image.new(
        "RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white"
    )
    x = 0
    for tile in tiles:
        panel.paste(tile, (x, 0))
        x += tile.width + 4
    panel.save(panel_path)
    return [mask_path, overlay_path, panel_path]
