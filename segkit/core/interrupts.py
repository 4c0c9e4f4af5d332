"""Ctrl-C (SIGINT) and SIGTERM as requests to stop, honoured promptly and safely.

Inside :func:`stop_on_signals` either signal raises :class:`Interrupted` in the main
thread at once, except inside :func:`uninterruptible` sections — a training epoch, an
evaluation, a checkpoint or an output file being written — where it waits: for the
section's end, or for the next :func:`check_stop` (between two steps, two batches, two
images).  So an interrupt never leaves half an optimizer step or half a file, never
lands inside a DataLoader's inter-process machinery, and the code that catches
:class:`Interrupted` knows the state is consistent.  A second signal stops at once.

The command line turns :class:`Interrupted` into exit code 130 (SIGINT) or 143
(SIGTERM).  DataLoader workers (:func:`ignore_stop_signals`) ignore Ctrl-C, which a
terminal sends to the whole process group: the main process decides how the run ends
and shuts them down.  A SIGTERM ends a worker quietly, so that a worker stopped with
the main process is not reported as a crash (:func:`stoppable`).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the work; ``str()`` says what was kept."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message)
        self.signum = signum
        self.message = message

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process the signal ended."""
        return 128 + self.signum

    def explained(self, message: str) -> Interrupted:
        """The same interrupt, saying where it stopped and what was kept."""
        return Interrupted(self.signum, message)

    def __str__(self) -> str:
        return f"interrupted by {self.signal_name}" + (f" {self.message}" if self.message else "")


class _StopSignals:
    """The process's SIGINT/SIGTERM handler while some code asked to be stoppable."""

    def __init__(self) -> None:
        self.depth = 0  # nested stop_on_signals() sections
        self.deferring = 0  # nested uninterruptible() sections
        self.received = 0  # stop signals received so far
        self.pending: int | None = None  # one that waits for an uninterruptible section
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        self.received, self.pending = 0, None
        for signum in STOP_SIGNALS:
            self.previous[signum] = signal.signal(signum, self.handle)

    def uninstall(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        if self.deferring and self.received == 1:
            self.pending = signum
            return
        self.pending = None
        raise Interrupted(signum)

    def raise_pending(self) -> None:
        if self.pending is not None and not self.deferring:
            signum, self.pending = self.pending, None
            raise Interrupted(signum)


_STOPS = _StopSignals()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` within this block (main thread only).

    Nested blocks share one handler; the outermost one restores the previous handlers.
    """
    if not _in_main_thread():
        yield
        return
    if _STOPS.depth == 0:
        _STOPS.install()
    _STOPS.depth += 1
    try:
        yield
    finally:
        _STOPS.depth -= 1
        if _STOPS.depth == 0:
            _STOPS.uninstall()


@contextmanager
def uninterruptible() -> Iterator[None]:
    """Work that must not be cut in half; a stop signal received meanwhile is raised
    when it ends.  Also usable as a decorator."""
    if not _in_main_thread():
        yield
        return
    _STOPS.deferring += 1
    try:
        yield
    finally:
        _STOPS.deferring -= 1
    _STOPS.raise_pending()


def check_stop() -> None:
    """Raise the stop signal that is waiting, if any: call it where stopping is safe."""
    if _STOPS.pending is not None:
        signum, _STOPS.pending = _STOPS.pending, None
        raise Interrupted(signum)


def stoppable(batches: Iterable[Any]) -> Iterator[Any]:
    """``batches`` (a DataLoader), stopping between two of them when a signal is waiting.

    A worker that a SIGTERM ended while the main process was waiting for its batch
    makes the DataLoader fail (a RuntimeError, a reset connection); with a stop
    waiting, that failure is the stop.
    """
    iterator = iter(batches)
    while True:
        check_stop()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception:
            check_stop()  # a worker ended by the signal that is waiting: that is the stop
            raise
        yield batch


def stop_requested() -> bool:
    """Whether a stop signal arrived since the outermost :func:`stop_on_signals` began."""
    return _STOPS.received > 0


def ignore_stop_signals(worker_id: int = 0) -> None:
    """A DataLoader ``worker_init_fn``: Ctrl-C is the main process's to handle, and a
    SIGTERM ends the worker with a success status (a crash would be reported as one)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_quietly)


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    os._exit(0)
