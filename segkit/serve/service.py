"""The model a server holds and what one request asks of it; no web stack here.

An upload is written into a folder of its own under the server's temporary folder
and read from there with ``segkit predict``'s own functions (the size from the
header first, then :func:`~segkit.data.read_image`), so that the server and the
command give the same pixels, the same refusals and the same one-line messages.  The
messages name the upload's file name, never the temporary folder.
"""

from __future__ import annotations

import base64
import math
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segkit.core.errors import DataError, SegkitError
from segkit.core.outputs import safe_name
from segkit.data import read_image
from segkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from segkit.infer.budget import ImageTooLarge, Work, check_size, header_size
from segkit.infer.segmenter import PredictionPair, Segmenter
from segkit.serve.errors import RequestError
from segkit.serve.limits import Limits
from segkit.serve.options import FORMATS, PredictOptions
from segkit.serve.pictures import mask_png, overlay_png

#: Bytes of an upload's file name on disk (file systems take 255).
_LONGEST_NAME = 120


@dataclass(frozen=True)
class Picture:
    """A PNG answer and the file name it is offered under."""

    data: bytes
    filename: str


class ModelService:
    """One :class:`~segkit.infer.Segmenter` and the uploads it is asked about."""

    def __init__(
        self, segmenter: Segmenter, workdir: Path, limits: Limits, checkpoint: str = ""
    ) -> None:
        self.segmenter = segmenter
        self.workdir = Path(workdir)
        self.limits = limits
        self.checkpoint = checkpoint

    @property
    def postprocess_default(self) -> bool:
        return bool(self.segmenter.config.predict.postprocess)

    @property
    def tta_default(self) -> bool:
        return self.segmenter.inference.tta is not None

    def info(self) -> dict[str, Any]:
        """The model, its classes and colours, post-processors, normalisation and limits."""
        config, segmenter = self.segmenter.config, self.segmenter
        options = config.predict
        return {
            "model": {
                "name": config.name,
                "checkpoint": self.checkpoint,
                "backbone": config.model.backbone.name,
                "head": config.model.head.name,
                "upsampler": config.model.upsampler.name,
                "device": str(segmenter.device),
            },
            "classes": [
                {"index": i, "name": name, "colour": colour(segmenter.palette, i)}
                for i, name in enumerate(segmenter.class_names)
            ],
            "palette": [colour(segmenter.palette, i) for i in range(len(segmenter.class_names))],
            "postprocessors": [
                {"name": part.name, "params": dict(part.params)} for part in config.postprocessors
            ],
            "postprocess_default": self.postprocess_default,
            "tta": {
                "default": self.tta_default,
                "scales": list(options.tta_scales),
                "flip": bool(options.tta_flip),
            },
            "inference": segmenter.inference.describe(),
            "normalisation": {
                "mean": list(config.data.mean or IMAGENET_MEAN),
                "std": list(config.data.std or IMAGENET_STD),
            },
            "formats": list(FORMATS),
            "limits": {
                "max_upload_bytes": self.limits.max_upload_bytes,
                "max_megapixels": self.limits.max_megapixels,
                "queue": self.limits.queue,
            },
        }

    @contextmanager
    def upload(self, filename: str, data: bytes) -> Iterator[Path]:
        """``data`` saved under the client's file name in a request folder of its own
        (``<request>/upload/<name>``; the pictures go to ``<request>``), removed afterwards."""
        folder = Path(tempfile.mkdtemp(prefix="request-", dir=self.workdir))
        try:
            path = folder / "upload" / upload_name(filename)
            path.parent.mkdir()
            path.write_bytes(data)
            yield path
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def check(self, path: Path, options: PredictOptions) -> None:
        """Refuse an upload that is no image or too large, from its header alone."""
        try:
            width, height = header_size(path, "image")
        except ImageTooLarge as exc:
            raise RequestError(413, _public(exc, path)) from None
        except DataError as exc:
            raise RequestError(415, _public(exc, path)) from None
        work = Work.planned(self.segmenter, options.postprocess)
        alternatives = ("postprocess=false",) if work.crf_iterations is not None else ()
        limit = self.limits.max_megapixels
        try:
            check_size(path.name, width, height, work, limit, alternatives)
        except ImageTooLarge as exc:
            raise RequestError(413, str(exc)) from None
        megapixels = width * height / 1e6
        if megapixels > limit:  # tiled without the CRF: the command would go on, a server not
            raise RequestError(
                413,
                f"{path.name} is {width}×{height} ({megapixels:.1f} MP), over the server's "
                f"{limit:g} MP limit; downscale it, or raise the limit with --max-megapixels "
                f"{math.ceil(megapixels)}",
            )

    def predict(self, path: Path, options: PredictOptions) -> Picture | dict[str, Any]:
        """The answer to one checked upload: the mask or overlay PNG, or the JSON numbers.

        Runs on the worker thread; the pictures are written in the request's folder.
        """
        try:
            image = read_image(path)
            pair = self.segmenter.predict_batch(
                [image], postprocess=options.postprocess, tta=options.tta
            )[0]
        except SegkitError as exc:
            raise RequestError(422, _public(exc, path)) from None
        palette, stem, folder = self.segmenter.palette, path.stem, path.parent.parent
        if options.format == "png":
            return Picture(mask_png(pair.final.labels, palette, folder), f"{stem}_mask.png")
        if options.format == "overlay":
            data = overlay_png(pair.image, pair.final.labels, palette, folder)
            return Picture(data, f"{stem}_overlay.png")
        return numbers(self.segmenter, pair, options, folder)


def numbers(
    segmenter: Segmenter, pair: PredictionPair, options: PredictOptions, folder: Path
) -> dict[str, Any]:
    """The JSON answer: size, settings, each class's pixels and share (and the masks,
    written in ``folder``)."""
    names, palette = segmenter.class_names, segmenter.palette
    final, refined = pair.final.labels, pair.refined is not None
    pixels = np.bincount(final.ravel(), minlength=len(names))
    total = int(final.size)
    answer: dict[str, Any] = {
        "width": int(final.shape[1]),
        "height": int(final.shape[0]),
        "postprocess": refined,
        "postprocessors": segmenter.postprocessors.names() if refined else [],
        "tta": options.tta,
        "inference": segmenter.settings(options.tta).describe(),
        "classes": [
            {
                "index": i,
                "name": name,
                "colour": colour(palette, i),
                "pixels": int(pixels[i]),
                "share": round(float(pixels[i]) / total, 6),
            }
            for i, name in enumerate(names)
        ],
        "raw_shares": None,
        "changed_share": None,
    }
    if refined:
        raw = np.bincount(pair.raw.labels.ravel(), minlength=len(names))
        answer["raw_shares"] = [round(float(count) / total, 6) for count in raw]
        changed = np.count_nonzero(pair.raw.labels != final)
        answer["changed_share"] = round(changed / total, 6)
    if options.masks:
        answer["mask_png"] = _base64(mask_png(final, palette, folder))
        if refined:
            answer["raw_mask_png"] = _base64(mask_png(pair.raw.labels, palette, folder))
    return answer


def upload_name(filename: str) -> str:
    """The client's file name as one plain, not too long file name (``upload`` if none)."""
    name = "".join(c if c.isprintable() else "_" for c in safe_name(Path(filename).name))
    if len(name.encode()) > _LONGEST_NAME:
        suffix = Path(name).suffix[:16]
        name = name.encode()[: _LONGEST_NAME - len(suffix.encode())].decode(errors="ignore")
        name += suffix
    return name if filename else "upload"


def colour(palette: np.ndarray, label: int) -> list[int]:
    """The RGB colour of ``label`` as JSON numbers."""
    return [int(c) for c in palette[label]]


def _public(exc: Exception, path: Path) -> str:
    """The message of ``exc`` naming the upload by its file name, not its temporary folder."""
    return str(exc).replace(f"{path.parent}/", "")


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
