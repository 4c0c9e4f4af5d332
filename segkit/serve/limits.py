"""What one request may bring and how many may wait: light, so that the command's
parser takes its defaults from here without loading the web stack or PyTorch."""

from __future__ import annotations

from dataclasses import dataclass

from segkit.infer.budget import MAX_MEGAPIXELS

#: The largest request body taken by default (a 16-megapixel PNG photograph fits).
MAX_UPLOAD_MB = 32.0

#: Requests waiting or running at once by default; more are answered 503.
QUEUE_CAPACITY = 16


@dataclass(frozen=True)
class Limits:
    """The upload size (bytes), the image size (megapixels) and the queue's places."""

    max_upload_bytes: int = int(MAX_UPLOAD_MB * 2**20)
    max_megapixels: float = MAX_MEGAPIXELS
    queue: int = QUEUE_CAPACITY
