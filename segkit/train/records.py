"""``metrics.jsonl``: one line per finished epoch, kept equal to ``last.pt``'s history.

The checkpoint is written first and carries every epoch's record, so a process killed
between the checkpoint and the line loses nothing: on resume, :func:`sync_records`
rewrites the file from the checkpoint's history.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segkit.core.interrupts import uninterruptible

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
    try:
        current = path.read_text().splitlines()
    except FileNotFoundError:
        current = []
    if current == lines:
        return False
    with uninterruptible():
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        os.replace(tmp, path)
    return True
