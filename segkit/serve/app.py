"""The routes, on Starlette: the page, ``POST /predict``, ``GET /info``, ``GET /health``
and the API's OpenAPI description with a page that reads it (no CDN: it works offline).

Every refusal is a JSON body ``{"error": "<one line>"}`` with a 4xx status (503 with
``Retry-After`` when the queue is full); an unexpected failure is a 500 with one line,
logged with its traceback, and the server goes on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from segkit.serve.errors import RequestError
from segkit.serve.openapi import openapi_schema
from segkit.serve.options import parse_query
from segkit.serve.service import ModelService, Picture
from segkit.serve.uploads import image_part, read_body
from segkit.serve.work_queue import WorkQueue

log = logging.getLogger("segkit.serve")

#: The pages load only what this server serves: no CDN, nothing from elsewhere.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)

Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(service: ModelService, work_queue: WorkQueue | None = None) -> Starlette:
    """The web application of ``service``; its jobs run on ``work_queue`` (default: a new
    one of ``service.limits.queue`` places)."""
    jobs = work_queue or WorkQueue(service.limits.queue)
    schema = openapi_schema(service.limits)

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        options = parse_query(
            request.query_params.multi_items(), service.postprocess_default, service.tta_default
        )
        jobs.refuse_when_full()
        body = await read_body(
            request.headers.get("content-length"), request.stream(), service.limits.max_upload_bytes
        )
        upload = image_part(request.headers.get("content-type", ""), body)
        with service.upload(upload.filename, upload.data) as path:
            service.check(path, options)
            try:
                done = await jobs.run(lambda: service.predict(path, options))
            except asyncio.CancelledError:  # only a server shutting down cancels a request
                raise RequestError(503, "the server is stopping; retry when it is back") from None
        timing = {
            "queued": round(1000 * done.queued_s, 1),
            "predict": round(1000 * done.ran_s, 1),
            "total": round(1000 * (time.perf_counter() - started), 1),
        }
        server_timing = ", ".join(f"{name};dur={ms}" for name, ms in timing.items())
        if isinstance(done.result, Picture):
            headers = {
                "Content-Disposition": disposition(done.result.filename),
                "Server-Timing": server_timing,
            }
            return Response(done.result.data, media_type="image/png", headers=headers)
        return JSONResponse({**done.result, "timing_ms": timing})

    async def info(request: Request) -> Response:
        return JSONResponse(service.info())

    async def health(request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "queue": {"pending": jobs.pending, "capacity": jobs.capacity}}
        )

    async def openapi(request: Request) -> Response:
        return JSONResponse(schema)

    routes = [
        Route("/", _page("index.html"), methods=["GET"]),
        Route("/docs", _page("docs.html"), methods=["GET"]),
        Route("/predict", _answering(predict), methods=["POST"]),
        Route("/info", _answering(info), methods=["GET"]),
        Route("/health", _answering(health), methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Mount("/static", StaticFiles(packages=[("segkit.serve", "static")]), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, RequestError: _refusal},  # type: ignore[dict-item]
    )
    app.state.service = service
    app.state.work_queue = jobs
    return app


def disposition(filename: str) -> str:
    """``Content-Disposition`` offering ``filename``: plain ASCII for every client, the
    name itself (RFC 6266's ``filename*``) for those that read it."""
    plain = re.sub(r"[^A-Za-z0-9._ -]", "_", filename)
    return f"inline; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _page(name: str) -> Endpoint:
    html = (files("segkit.serve") / "static" / name).read_text(encoding="utf-8")

    async def page(request: Request) -> Response:
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_POLICY})

    return page


def _answering(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` with its failures answered: a refusal as itself, anything else as 500."""

    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except RequestError:
            raise
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.url.path)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return _error(500, f"internal error: {type(exc).__name__}: {message}")

    return answer


async def _refusal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return _error(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = (
            f"no such page: {request.url.path}; the API is POST /predict, GET /info, GET /health"
        )
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return _error(exc.status_code, message, dict(exc.headers or {}))


def _error(status: int, message: str, headers: dict[str, Any] | None = None) -> Response:
    one_line = " ".join(message.split())
    return JSONResponse({"error": one_line}, status_code=status, headers=headers)
