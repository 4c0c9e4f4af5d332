"""One worker thread in front of the model, and a bounded queue of the requests waiting.

Requests never get a model of their own: each is a job that the worker thread runs
in turn, so memory stays that of one model and one image however many clients call.
A full queue answers at once (503) with the wait a retry should allow.  The thread
is a daemon: Ctrl-C ends the server without waiting for a dense CRF to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from segkit.serve.errors import RequestError

T = TypeVar("T")

#: Weight of the newest job in the running mean of job times (for Retry-After).
_SMOOTHING = 0.2


@dataclass(frozen=True)
class Done(Generic[T]):
    """A job's result and its times: waiting in the queue, then running."""

    result: T
    queued_s: float
    ran_s: float


class WorkQueue:
    """Runs jobs one at a time on a worker thread; at most ``capacity`` wait or run."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.mean_job_s = 1.0  # until the first job says otherwise
        self._pending = 0  # jobs accepted and not finished
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="segkit-serve-model", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def retry_after(self) -> int:
        """Seconds until the queue has likely room again (at least one)."""
        return max(1, math.ceil(self.pending * self.mean_job_s))

    def refuse_when_full(self) -> None:
        """A 503 :class:`RequestError` (with ``Retry-After``) when no place is free: asked
        before a request's body is read, so that refused uploads are never held."""
        if self.pending >= self.capacity:
            raise self._busy()

    async def run(self, job: Callable[[], T]) -> Done[T]:
        """Run ``job`` on the worker thread once the jobs before it are done.

        A full queue raises a 503 :class:`RequestError` with a ``Retry-After`` header.
        """
        with self._lock:
            full = self._pending >= self.capacity
            if not full:
                self._pending += 1
        if full:
            raise self._busy()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Done[T]] = loop.create_future()
        self._jobs.put((job, loop, future, time.perf_counter()))
        return await future

    def _busy(self) -> RequestError:
        wait = self.retry_after()
        return RequestError(
            503,
            f"the server is busy ({self.capacity} requests waiting or running); retry in {wait} s",
            {"Retry-After": str(wait)},
        )

    def _work(self) -> None:
        while True:
            job, loop, future, queued_at = self._jobs.get()
            started = time.perf_counter()
            outcome: tuple[bool, Any]
            try:
                if future.cancelled():  # its request was cancelled (the server is stopping)
                    continue
                outcome = (True, Done(job(), started - queued_at, time.perf_counter() - started))
            except BaseException as exc:  # handed to the request, which answers for it
                outcome = (False, exc)
            finally:
                with self._lock:
                    self._pending -= 1
            elapsed = time.perf_counter() - started
            self.mean_job_s += _SMOOTHING * (elapsed - self.mean_job_s)
            # a closed event loop (the server stopped) has nobody waiting for the answer
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, *outcome)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
