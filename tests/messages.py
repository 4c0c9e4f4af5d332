"""What the tests expect of a refusal: one line on stderr, no traceback."""

from __future__ import annotations

import pytest


def one_error_line(capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    """The single ``error: ...`` line a command wrote to stderr, holding each fragment."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
