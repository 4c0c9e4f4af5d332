"""The console progress display: bars on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Seconds between two plain progress lines of one task when the output is not a terminal.
LOG_INTERVAL_S = 10.0


def progress_display(console: Console, disable: bool = False) -> Progress:
    """Progress bars on a terminal; elsewhere (a file, CI, ``nohup``) plain log lines.

    Both take the same calls (``add_task``, ``update``, ``remove_task``), with the
    task's ``info`` field (loss, lr, images/s ...) shown beside the count.
    """
    if disable or console.is_terminal:
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=disable,
            transient=False,
        )
    return LogProgress(console)


class LogProgress(Progress):
    """Progress as plain lines, as training loggers write them: a task's first step,
    then one line every ``interval`` seconds, and its last step.

    ``epoch 1  40/250 (16%)  loss 0.532  lr 1.00e-03  4.2 img/s  elapsed 1:10  ETA 5:15``

    Wider than the console, a line in mid-task leaves out the time elapsed.
    """

    def __init__(self, console: Console, interval: float = LOG_INTERVAL_S) -> None:
        super().__init__(console=console, disable=True)
        self.interval = interval
        self._last_line: dict[TaskID, float] = {}

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        task = self._tasks[task_id]
        now = time.monotonic()
        last = self._last_line.get(task_id)
        finished = task.total is not None and task.completed >= task.total
        if task.completed and (last is None or finished or now - last >= self.interval):
            self._last_line[task_id] = now
            self.console.print(self.line(task_id), markup=False, highlight=False, soft_wrap=True)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def line(self, task_id: TaskID) -> str:
        task = self._tasks[task_id]
        done = int(task.completed)
        parts = [task.description]
        if task.total:
            parts.append(f"{done}/{int(task.total)} ({100 * done / task.total:.0f}%)")
        else:
            parts.append(str(done))
        info = str(task.fields.get("info", "")).strip()
        if info:
            parts.append(info)
        elapsed = f"elapsed {_duration(task.elapsed)}"
        if task.total and done < task.total and task.time_remaining is not None:
            eta = f"ETA {_duration(task.time_remaining)}"
            line = "  ".join([*parts, elapsed, eta])
            # a log read in a terminal of the console's width: the time spent shows on the
            # task's first and last lines, the time to go is what a reader looks for
            return line if len(line) <= self.console.width else "  ".join([*parts, eta])
        return "  ".join([*parts, elapsed])


def _duration(seconds: float | None) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    minutes, secs = divmod(round(seconds or 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"
