"""The four CRFs of ``benchmarks/crf.py``, each refining one photograph of ``crf_data``:
segkit's ``convcrf`` and ``densecrf_torch``, and the codes they are measured against,
run as their authors publish them:

* the published ConvCRF (Teichmann & Cipolla; github.com/MarvinTeichmann/ConvCRF at
  commit 09306378, "Support running on CPU"; MIT licence), its ``convcrf/convcrf.py``
  imported from the folder given by ``--convcrf-repo`` or ``SEGKIT_CONVCRF_REPO``:
  ``GaussCRF`` with its default configuration except ``filter_size = 7``, as its demo
  sets it, ``use_gpu=False``;
* pydensecrf (the ``pydensecrf2`` package from PyPI): ``DenseCRF2D`` with
  ``unary_from_softmax``, ``addPairwiseGaussian(sxy=3, compat=3)`` and
  ``addPairwiseBilateral(sxy=80, srgb=13, compat=10)`` (its example's kernels), on one
  thread, as it runs.

Each contender's ``prepare`` (untimed) puts a photograph in the form its code takes;
``run`` (timed) refines it and returns the scores, 1×C×H×W.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from crf_data import Photo

import segkit

PUBLISHED_COMMIT = "09306378"
#: pydensecrf's example kernel widths, shared by all four CRFs here.
WIDTHS = {"gaussian_sxy": 3.0, "bilateral_sxy": 80.0, "bilateral_srgb": 13.0}
#: pydensecrf's example weights, for the two dense CRFs.
DENSE_WEIGHTS = {"gaussian_compat": 3.0, "bilateral_compat": 10.0}
#: The published demo's window (its default configuration's is 11).
PUBLISHED_FILTER_SIZE = 7


def convcrf_repo(option: str | None) -> Path | None:
    """The published ConvCRF's folder: ``--convcrf-repo``, else ``SEGKIT_CONVCRF_REPO``;
    None when neither names a folder holding ``convcrf/convcrf.py``."""
    folder = option or os.environ.get("SEGKIT_CONVCRF_REPO")
    if folder and (Path(folder) / "convcrf" / "convcrf.py").is_file():
        return Path(folder).resolve()
    return None


def load_published(repo: Path) -> tuple[ModuleType, ModuleType | None]:
    """The published ``convcrf`` module and its demo's ``utils.synthetic`` (None without
    scikit-image, which it needs)."""
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from convcrf import convcrf

    try:
        from utils import synthetic
    except ImportError:
        synthetic = None
    return convcrf, synthetic


def segkit_version() -> str:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return f"segkit {importlib.metadata.version('segkit')}" + (f" @ {commit}" if commit else "")


class SegkitCRF:
    """``convcrf`` (its defaults, or ``settings``) or ``densecrf_torch`` (the dense
    CRFs' shared kernels), through segkit's post-processor registry."""

    def __init__(self, name: str, label: str, **settings: float) -> None:
        self.name, self.label, self.settings = name, label, settings
        self._built: dict[int, object] = {}

    def prepare(self, photo: Photo) -> tuple[torch.Tensor, torch.Tensor]:
        return photo.probs, photo.image

    def run(self, prepared: tuple[torch.Tensor, torch.Tensor], iterations: int) -> torch.Tensor:
        if iterations not in self._built:
            self._built[iterations] = segkit.build_postprocessor(
                self.name, device="cpu", iterations=iterations, **self.settings
            )
        return self._built[iterations](*prepared)


class PublishedConvCRF:
    """The published ConvCRF's ``GaussCRF``, one per image size, as its demo builds it."""

    def __init__(self, module: ModuleType, filter_size: int = PUBLISHED_FILTER_SIZE) -> None:
        self.module, self.filter_size = module, filter_size
        self.name = "published ConvCRF"
        self.label = f"ConvCRF @ {PUBLISHED_COMMIT}, filter_size {filter_size}"
        self._by_shape: dict[tuple, torch.nn.Module] = {}

    def prepare(self, photo: Photo) -> tuple[torch.Tensor, torch.Tensor]:
        return photo.published_unary, photo.image.float()

    def run(self, prepared: tuple[torch.Tensor, torch.Tensor], iterations: int) -> torch.Tensor:
        unary, image = prepared
        shape = tuple(unary.shape[-2:])
        if shape not in self._by_shape:
            conf = dict(self.module.default_conf)
            conf["filter_size"] = self.filter_size
            self._by_shape[shape] = self.module.GaussCRF(
                conf=conf, shape=shape, nclasses=unary.shape[1], use_gpu=False
            )
        with torch.no_grad():
            return self._by_shape[shape].forward(unary=unary, img=image, num_iter=iterations)


class PyDenseCRF:
    """pydensecrf as its example runs it; single-threaded whatever torch's threads."""

    name = "pydensecrf"

    def __init__(self) -> None:
        self.label = f"pydensecrf2 {importlib.metadata.version('pydensecrf2')}"

    def prepare(self, photo: Photo) -> tuple[np.ndarray, np.ndarray]:
        probs = photo.probs[0].numpy().astype(np.float32)
        return probs, np.ascontiguousarray(photo.image[0].permute(1, 2, 0).numpy())

    def run(self, prepared: tuple[np.ndarray, np.ndarray], iterations: int) -> torch.Tensor:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_softmax

        probs, image = prepared
        classes, height, width = probs.shape
        crf = dcrf.DenseCRF2D(width, height, classes)
        crf.setUnaryEnergy(unary_from_softmax(probs))
        crf.addPairwiseGaussian(sxy=WIDTHS["gaussian_sxy"], compat=DENSE_WEIGHTS["gaussian_compat"])
        crf.addPairwiseBilateral(
            sxy=WIDTHS["bilateral_sxy"],
            srgb=WIDTHS["bilateral_srgb"],
            rgbim=image,
            compat=DENSE_WEIGHTS["bilateral_compat"],
        )
        q = np.asarray(crf.inference(iterations), dtype=np.float32)
        return torch.from_numpy(q.reshape(1, classes, height, width))


def contenders(repo: Path | None, convcrf_settings: dict | None = None) -> dict[str, object]:
    """The CRFs by name, the published ConvCRF only when its folder is given."""
    version = segkit_version()
    settings = convcrf_settings or {}
    described = ", ".join(f"{k} {v:g}" for k, v in settings.items()) or "defaults"
    found = {
        "convcrf": SegkitCRF("convcrf", f"{version}, convcrf {described}", **settings),
        "densecrf_torch": SegkitCRF(
            "densecrf_torch", f"{version}, densecrf_torch", **WIDTHS, **DENSE_WEIGHTS
        ),
        "pydensecrf": PyDenseCRF(),
    }
    if repo is not None:
        found["published ConvCRF"] = PublishedConvCRF(load_published(repo)[0])
    return found


def timed(contender, prepared, iterations: int) -> tuple[float, float, torch.Tensor]:
    """Wall-clock and CPU seconds (all threads of this process) of one run, and its labels."""
    wall, cpu = time.perf_counter(), time.process_time()
    scores = contender.run(prepared, iterations)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, scores.argmax(1)[0].to(torch.uint8)
