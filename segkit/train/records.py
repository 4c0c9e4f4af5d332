"""``metrics.jsonl``: one line per finished epoch, kept equal to ``last.pt``'s history.

The checkpoint is written first and carries every epoch's record, so a process killed
between the checkpoint and the line loses nothing: on resume, :func:`sync_records`
rewrites the file from the checkpoint's history.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segkit.core.interrupts import uninterruptible
from segkit.core.outputs import write_text_atomically

METRICS_FILE = "metrics.jsonl"


@uninterruptible()
def append_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Add one epoch's line (whole, even when a stop signal arrives meanwhile)."""
    with (run_dir / METRICS_FILE).open("a") as f:
        f.write(json.dumps(record) + "\n")


def sync_records(run_dir: Path, history: Sequence[dict[str, Any]]) -> bool:
    """Make ``metrics.jsonl`` hold exactly ``history``'s lines; True when it changed."""
    path = run_dir / METRICS_FILE
    lines = [json.dumps(record) for record in history]
    try:  # a damaged file (bytes that are no text) is simply rewritten
        current = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        current = []
    if current == lines:
        return False
    with uninterruptible():
        write_text_atomically(path, "".join(line + "\n" for line in lines))
    return True
