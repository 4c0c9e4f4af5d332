"""Independent pieces of the dense CRF's work, shared between the calling thread and
helper threads on the CPU.

PyTorch parallelises each operation on its own, and a thread that waits passively
(``OMP_WAIT_POLICY=PASSIVE``, which keeps a shared machine usable) is woken for every
one: measured at 0.25 MP on two cores, an addition of 250 000 values took 48 µs with two
threads against 26 µs with one, and building the appearance lattice, a few hundred such
operations, gained nothing from a second thread.  Split into a few large pieces, each
run with one thread, the same work takes half the time.  The calling thread takes
pieces too, and any piece that no helper has started when it runs out of its own, so
that a helper kept from a core by other work delays nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


class Tasks:
    """Runs lists of independent calls, on ``helpers`` helper threads and the calling one."""

    def __init__(self, helpers: int) -> None:
        self.helpers = helpers

    @property
    def workers(self) -> int:
        return self.helpers + 1

    def pieces(self, total: int) -> list[slice]:
        """``range(total)`` in halves to share out, or whole without helpers."""
        return halves(total) if self.helpers else [slice(0, total)]

    def map(self, function: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[function(item) for item in items]``, the items shared out as they come."""
        if self.helpers == 0 or len(items) < 2:
            return [function(item) for item in items]
        results: list = [None] * len(items)
        taken = iter(range(len(items)))
        lock = threading.Lock()
        # autograd's and inference mode's switches are per thread: the helpers take the
        # caller's, or they would record graphs the caller never asked for
        grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

        def work() -> None:
            if torch.get_num_threads() != 1:
                torch.set_num_threads(1)
            # in this order: inference_mode(False) switches autograd back on
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                while True:
                    with lock:
                        index = next(taken, None)
                    if index is None:
                        return
                    results[index] = function(items[index])

        pool = _pool(self.helpers)
        helpers = [pool.submit(work) for _ in range(min(self.helpers, len(items) - 1))]
        work()
        for helper in helpers:
            if not helper.cancel():  # one that has started finishes its item
                helper.result()
        return results


def halves(total: int, smallest: int = 2**15) -> list[slice]:
    """Two halves of ``range(total)``, or all of it when that is small."""
    if total < 2 * smallest:
        return [slice(0, total)]
    middle = total // 2
    return [slice(0, middle), slice(middle, total)]


@contextmanager
def cpu_tasks(device: torch.device) -> Iterator[Tasks]:
    """:class:`Tasks` for as many threads as PyTorch uses, each operation inside running on
    one thread; on other devices (CUDA queues its work anyway) everything runs in turn."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield Tasks(0)
        return
    torch.set_num_threads(1)
    try:
        yield Tasks(threads - 1)
    finally:
        torch.set_num_threads(threads)


def _pool(helpers: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or helpers > _POOL_SIZE:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL, _POOL_SIZE = (
                ThreadPoolExecutor(helpers, thread_name_prefix="segkit-crf"),
                helpers,
            )
        return _POOL
