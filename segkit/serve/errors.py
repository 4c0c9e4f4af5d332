"""The one kind of error a request gets back: an HTTP status and one line saying why."""

from __future__ import annotations

from segkit.core.errors import SegkitError


class RequestError(SegkitError):
    """A request the server refuses: ``status`` (4xx or 503) and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
