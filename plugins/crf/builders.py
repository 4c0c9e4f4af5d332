"""The factories of the three post-processors, imported when one is built: each takes
the registered parameters and hands them to its post-processor's class."""

from __future__ import annotations

from segkit_plugins.crf.conv import ConvCRF
from segkit_plugins.crf.meanfield import TorchDenseCRF
from segkit_plugins.crf.native import PyDenseCRF
from segkit_plugins.crf.params import ConvCRFParams, CRFParams


def build_densecrf(workers: int | None, **params: float) -> PyDenseCRF:
    return PyDenseCRF(CRFParams(**params), workers)


def build_densecrf_torch(device: str, **params: float) -> TorchDenseCRF:
    return TorchDenseCRF(CRFParams(**params), device)


def build_convcrf(device: str, **params: float) -> ConvCRF:
    return ConvCRF(ConvCRFParams(**params), device)
