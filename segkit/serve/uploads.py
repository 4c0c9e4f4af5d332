"""A request's body, read within the upload limit, and the image in its multipart form.

The body is taken into memory up to the limit and no further: a ``Content-Length``
over it is refused before a byte is read, and a body sent without one (chunked) is
refused as soon as it passes the limit.  The multipart form is then parsed in memory
(python-multipart's parser, fed directly), so that no part is spooled to disk outside
the server's temporary folder.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from segkit.serve.errors import RequestError

#: The form field the image is sent in.
IMAGE_FIELD = "image"

#: The parser's own log: its warnings repeat what the answer's one line says.
_PARSER_LOG = logging.getLogger("segkit.serve.uploads.parser")
_PARSER_LOG.setLevel(logging.ERROR)

HOW = f"send the image as the multipart/form-data field '{IMAGE_FIELD}' (curl -F image=@photo.jpg)"


@dataclass(frozen=True)
class Upload:
    """The image part of a form: the file name the client gave, and its bytes."""

    filename: str
    data: bytes


async def read_body(content_length: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, or a 413 once it is known to be over ``limit`` bytes."""
    declared = content_length.strip() if content_length is not None else ""
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise _too_large(None, limit)
    return bytes(body)


def _too_large(size: int | None, limit: int) -> RequestError:
    given = f" ({size / 2**20:.1f} MB)" if size is not None else ""
    return RequestError(
        413,
        f"the upload{given} is over the server's {limit / 2**20:g} MB limit; send a smaller "
        f"image (JPEG), or raise the limit with --max-upload-mb",
    )


def image_part(content_type: str, body: bytes) -> Upload:
    """The image of a multipart/form-data body, or a 400/415 saying what is wrong."""
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        shown = kind.decode("latin-1") or "none"
        raise RequestError(415, f"the request's content type is {shown}; {HOW}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise RequestError(400, f"the multipart body has no boundary in its content type; {HOW}")
    parts = _Parts()
    try:
        parser = MultipartParser(boundary, parts.callbacks())
        parser.logger = _PARSER_LOG
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as exc:
        raise RequestError(400, f"malformed multipart body ({_first_line(exc)}); {HOW}") from None
    if not parts.ended:
        raise RequestError(
            400, f"malformed multipart body (it ends before its last boundary); {HOW}"
        )
    files = [p for p in parts.done if p.name == IMAGE_FIELD]
    if not files:
        names = ", ".join(sorted({repr(p.name) for p in parts.done})) or "no fields"
        raise RequestError(400, f"no image in the upload (it has {names}); {HOW}")
    if len(files) > 1:
        raise RequestError(400, f"{len(files)} images in one upload; send one per request")
    image = files[0]
    if not image.data:
        raise RequestError(400, f"the uploaded image {image.filename or ''} is empty (0 bytes)")
    return Upload(image.filename or "", bytes(image.data))


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    data: bytearray | None = None


class _Parts:
    """The parser's callbacks, gathering each part's name, file name and bytes."""

    def __init__(self) -> None:
        self.done: list[_Part] = []
        self.ended = False
        self._part = _Part()
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_end": self._finish,
        }

    def _begin(self) -> None:
        self._part, self._disposition = _Part(data=bytearray()), b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise FormParserError("a part has no name in its Content-Disposition header")
        self._part.name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            self._part.filename = options[b"filename"].decode("utf-8", "replace")

    def _data(self, data: bytes, start: int, end: int) -> None:
        assert self._part.data is not None
        self._part.data += data[start:end]

    def _end(self) -> None:
        self.done.append(self._part)

    def _finish(self) -> None:
        self.ended = True


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
