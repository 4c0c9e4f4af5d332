"""Dense CRF post-processing (Krähenbühl & Koltun 2011), as DeepLab v1 applies it.

The fully-connected CRF has the energy

    E(x) = Σ_i ψ_u(x_i) + Σ_{i<j} μ(x_i, x_j) [w_g k_g(i, j) + w_b k_b(i, j)]

with unaries ψ_u(x_i) = -log p_i(x_i) from the network's probabilities (floored at
``PROBABILITY_FLOOR``), the Potts compatibility μ = [x_i ≠ x_j], a smoothness kernel
k_g = exp(-|p_i - p_j|² / 2θγ²) over pixel positions and an appearance kernel
k_b = exp(-|p_i - p_j|² / 2θα² - |I_i - I_j|² / 2θβ²) over positions and RGB colours.
Mean-field inference runs ``iterations`` updates Q ← softmax(-ψ_u + Σ_k w_k K̃_k Q), where
each K̃_k is its kernel normalised symmetrically (D^-½ K D^-½) and filtered on a
permutohedral lattice (Adams et al. 2010), exactly as pydensecrf does by default.

Two post-processors share this energy and these parameters:

- ``densecrf`` runs pydensecrf (the authors' C++ code); the images of a batch are
  refined in parallel worker processes, because pydensecrf holds the GIL.
- ``densecrf_torch`` runs the same lattice in PyTorch: splatting, blurring and slicing
  are weighted gathers over a lattice built once per image, the whole batch is filtered at
  once, on the CPU or on CUDA, and the result is differentiable with respect to the
  unaries (:func:`dense_crf`), so the CRF can be trained end to end.

The defaults are DeepLab-LargeFOV's cross-validated values for PASCAL VOC 2012
(Chen et al. 2015): bilateral weight w_b = 4, θα = 121, θβ = 5; Gaussian weight
w_g = 3, θγ = 3; 10 mean-field iterations.

A third, ``convcrf`` (Teichmann & Cipolla 2018), truncates both kernels to a local
window and passes the messages on a coarser grid: a convolution whose filter varies
from pixel to pixel, linear in the pixels and cheaper than the lattice.

``densecrf_torch`` and ``convcrf`` also act as a trained layer after a model
(CRF-as-RNN, Zheng et al. 2015): ``[model.crf]`` names one of them, and the model
unrolls its mean-field updates with learnable kernel weights and compatibility.

Modules: this one registers the three, with ``params`` (the parameters and their
checks, without PyTorch); ``builders`` (the factories), ``native`` (``densecrf``),
``meanfield`` (``densecrf_torch``) with ``fused`` (its update of one image on the CPU),
``lattice`` (the permutohedral lattice it filters on) with ``simplices`` (where points
lie in it), ``lattice_points`` (naming its points) and ``wide_lattice``, ``tasks``
(sharing the CPU work between threads), ``conv`` (``convcrf``) and ``layer`` (the CRF as
a trained layer) are imported when a post-processor is built, or when one of their
names below is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Literal

from segkit_plugins.crf.params import (
    KERNEL_PARAMS,
    ConvCRFParams,
    CRFParams,
    check_workers,
    unary_from_probabilities,
)

from segkit import Param, hookimpl

BUILDERS = "segkit_plugins.crf.builders"

# The post-processors and the functions behind them, loaded on first use (they need PyTorch).
_LAZY = {
    "ConvCRF": "segkit_plugins.crf.conv",
    "conv_crf": "segkit_plugins.crf.conv",
    "TorchDenseCRF": "segkit_plugins.crf.meanfield",
    "dense_crf": "segkit_plugins.crf.meanfield",
    "PyDenseCRF": "segkit_plugins.crf.native",
}

if TYPE_CHECKING:
    from segkit_plugins.crf.conv import ConvCRF, conv_crf
    from segkit_plugins.crf.meanfield import TorchDenseCRF, dense_crf
    from segkit_plugins.crf.native import PyDenseCRF

__all__ = [
    "CRFParams",
    "ConvCRF",
    "ConvCRFParams",
    "PyDenseCRF",
    "TorchDenseCRF",
    "conv_crf",
    "dense_crf",
    "unary_from_probabilities",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def check_densecrf(workers: int | None, **kernels: float) -> None:
    CRFParams(**kernels)
    check_workers(workers)


def check_densecrf_torch(device: str, **kernels: float) -> None:
    CRFParams(**kernels)


def check_convcrf(device: str, **params: float) -> None:
    ConvCRFParams(**params)


_CONV_DEFAULTS = ConvCRFParams()
_DEVICE = Param("device", Literal["auto", "cpu", "cuda"], "auto", "'auto': CUDA when present")


@hookimpl
def register_postprocessors(register):
    register(
        "densecrf",
        f"{BUILDERS}:build_densecrf",
        help="dense CRF with pydensecrf (C++), images of a batch in parallel processes",
        params=[
            *KERNEL_PARAMS,
            Param("workers", int | None, None, "worker processes (default: one per CPU core)"),
        ],
        check=check_densecrf,
    )
    register(
        "densecrf_torch",
        f"{BUILDERS}:build_densecrf_torch",
        help="dense CRF in PyTorch: batched, CPU or CUDA, differentiable w.r.t. the unaries",
        params=[*KERNEL_PARAMS, _DEVICE],
        check=check_densecrf_torch,
    )
    register(
        "convcrf",
        f"{BUILDERS}:build_convcrf",
        help="convolutional CRF: kernels truncated to a window, messages on a coarser grid",
        params=[
            *(
                Param(p.name, p.type, getattr(_CONV_DEFAULTS, p.name), p.help)
                for p in KERNEL_PARAMS
            ),
            Param("window", int, _CONV_DEFAULTS.window, "odd window size k: kernels are k×k"),
            Param(
                "dense_radius",
                int,
                _CONV_DEFAULTS.dense_radius,
                "cells around the centre that all pass messages; beyond, every second",
            ),
            Param(
                "downsample",
                int,
                _CONV_DEFAULTS.downsample,
                "messages on a grid this many times coarser (1: full resolution)",
            ),
            _DEVICE,
        ],
        check=check_convcrf,
    )
