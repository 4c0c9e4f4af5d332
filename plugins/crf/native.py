"""``densecrf``: pydensecrf (the authors' C++ code), the images of a batch in parallel
worker processes, because pydensecrf holds the GIL.

A single image is refined in a worker process too when the call comes from the main
thread: C++ code holding the GIL there would keep Python from handling Ctrl-C or
SIGTERM until it returned, minutes on a large photograph.  The workers ignore both
signals (a terminal sends Ctrl-C to them too); the main process stops them when it is
interrupted itself."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import torch
from segkit_plugins.crf.params import _DEFAULTS, PROBABILITY_FLOOR, CRFParams, check_workers
from torch import Tensor

from segkit import DataError, check_postprocess_inputs


class PyDenseCRF:
    """The ``densecrf`` post-processor: pydensecrf, the images of a batch in parallel."""

    name = "densecrf"

    def __init__(self, params: CRFParams = _DEFAULTS, workers: int | None = None) -> None:
        check_workers(workers)
        self.params = params
        self.workers = workers

    def __call__(self, probs: Tensor, images: Tensor) -> Tensor:
        n, classes, height, width = probs.shape if probs.dim() == 4 else (0, 0, 0, 0)
        workers = min(n, self.workers or _cpu_count()) or 1
        # each image in flight: unary, Q and two scratch matrices, plus its lattice
        in_flight = workers * height * width * (20 * classes + 200)
        check_postprocess_inputs(
            probs, images, required_bytes=3 * probs.numel() * 4 + in_flight, device="cpu"
        )
        probs_np = probs.detach().to("cpu", torch.float32).numpy()
        images_np = images.detach().cpu().permute(0, 2, 3, 1).numpy()
        jobs = [(probs_np[i], images_np[i], self.params) for i in range(n)]
        if workers > 1 or threading.current_thread() is threading.main_thread():
            pool = _process_pool(workers)
            try:
                refined = list(pool.map(_pydensecrf_refine, jobs))
            except BrokenProcessPool:
                _process_pool.cache_clear()
                raise DataError(
                    f"densecrf: a worker process died refining {n} image(s) of "
                    f"{height}×{width} (out of memory?); set workers = 1 or refine fewer"
                ) from None
            except BaseException:  # an interrupt: the workers stop with this process
                _stop_pool(pool)
                raise
        else:
            refined = [_pydensecrf_refine(job) for job in jobs]
        return torch.from_numpy(np.stack(refined)).to(probs.device, probs.dtype)


def _pydensecrf_refine(job: tuple[np.ndarray, np.ndarray, CRFParams]) -> np.ndarray:
    import pydensecrf.densecrf as dcrf

    probs, image, params = job
    classes, height, width = probs.shape
    crf = dcrf.DenseCRF2D(width, height, classes)
    unary = -np.log(np.maximum(probs, PROBABILITY_FLOOR)).reshape(classes, -1)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    if params.gaussian_compat != 0:
        crf.addPairwiseGaussian(sxy=params.gaussian_sxy, compat=params.gaussian_compat)
    if params.bilateral_compat != 0:
        crf.addPairwiseBilateral(
            sxy=params.bilateral_sxy,
            srgb=params.bilateral_srgb,
            rgbim=np.ascontiguousarray(image, dtype=np.uint8),
            compat=params.bilateral_compat,
        )
    q = np.asarray(crf.inference(params.iterations), dtype=np.float32)
    return q.reshape(classes, height, width)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.cache
def _process_pool(workers: int) -> ProcessPoolExecutor:
    # Forked workers start at once and only run numpy and pydensecrf, never torch.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_stop_signals)


def _ignore_stop_signals() -> None:
    """Ctrl-C and SIGTERM are the main process's to handle: it stops the workers (a
    worker ended by a signal sent to the whole group would read as a crash)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """End the workers now, in the middle of their images, and forget the pool."""
    _process_pool.cache_clear()
    workers = list(getattr(pool, "_processes", {}).values())  # no public way before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        process.kill()  # they ignore SIGTERM
    for process in workers:
        process.join(timeout=5)
