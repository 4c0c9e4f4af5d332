"""Uploads for the serve tests: images, a decompression bomb, multipart bodies by hand."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from .infer_fixtures import random_image

#: A dense CRF of one mean-field iteration in PyTorch: fast, and it changes some pixels.
CRF = '\n[[postprocessors]]\nname = "densecrf_torch"\niterations = 1\n'

#: pydensecrf's example photographs, beside the project checkout when present.
EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "densecrf_examples"


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def photo(height: int = 50, width: int = 61, seed: int = 0) -> bytes:
    return png_bytes(random_image(height, width, seed))


def png_bomb(side: int = 30000) -> bytes:
    """A valid side×side black-and-white PNG of about 100 KB: decoded as RGB it would
    take side² × 3 bytes (2.7 GB at 30000).  Built by hand, in well under a second."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte "none", then 1-bit pixels
    rows, rest = divmod(side, 1000)
    # One block of 1000 rows compressed once and repeated: a full flush leaves each copy
    # byte-aligned and without references to the one before, so the copies concatenate.
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = block.compress(row * 1000) + block.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    last = tail.compress(row * rest) + tail.flush()
    checksum = zlib.adler32(row * rest, _adler_of(row * 1000, rows))
    data = b"\x78\xda" + piece * rows + last + struct.pack(">I", checksum)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def _adler_of(block: bytes, times: int) -> int:
    value = 1
    for _ in range(times):
        value = zlib.adler32(block, value)
    return value


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "segkit-test") -> bytes:
    """A multipart/form-data body of ``(field name, file name or None, bytes)`` parts."""
    lines = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        lines.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode())
        lines.append(data + b"\r\n")
    lines.append(f"--{boundary}--\r\n".encode())
    return b"".join(lines)
