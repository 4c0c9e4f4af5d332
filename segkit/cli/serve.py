"""``segkit serve CHECKPOINT``: a web page and an HTTP API for a trained model.

The web stack (the ``serve`` extra: Starlette, uvicorn, python-multipart) is imported
only here, inside :func:`run`, so that ``segkit --help`` stays instant; without it the
command names the extra to install.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from segkit.cli import terminal
from segkit.cli.arguments import add_checkpoint_arg, add_device_arg
from segkit.core.errors import SegkitError
from segkit.infer.budget import MAX_MEGAPIXELS
from segkit.serve.limits import MAX_UPLOAD_MB, QUEUE_CAPACITY, Limits

#: The modules of the ``serve`` extra.
WEB_STACK = ("starlette", "uvicorn", "python_multipart")

#: Host names that listen on every interface of the machine.
ALL_INTERFACES = ("0.0.0.0", "::", "")

#: Seconds that open connections get to finish after Ctrl-C.
GRACE_S = 2


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="a web page and an HTTP API for a checkpoint, the CRF switched per request "
        "(needs segkit[serve])",
    )
    add_checkpoint_arg(p)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every "
        "interface, anyone who reaches the machine)",
    )
    p.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free one)"
    )
    add_device_arg(p)
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=MAX_MEGAPIXELS,
        metavar="MP",
        help=f"refuse larger images (413), read from the header before decoding (default "
        f"{MAX_MEGAPIXELS:g})",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=MAX_UPLOAD_MB,
        metavar="MB",
        help=f"refuse larger uploads (413) before reading them (default {MAX_UPLOAD_MB:g})",
    )
    p.add_argument(
        "--queue",
        type=int,
        default=QUEUE_CAPACITY,
        metavar="N",
        help="requests waiting or running at once, on one model; more are answered 503 with "
        f"Retry-After (default {QUEUE_CAPACITY})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    missing = [name for name in WEB_STACK if find_spec(name) is None]
    if missing:
        raise SegkitError(
            f"segkit serve needs its web stack ({', '.join(missing)} not installed): "
            f"pip install 'segkit[serve]'"
        )
    import uvicorn

    from segkit.core.ranges import Range
    from segkit.infer import Segmenter
    from segkit.infer.device import resolve_device
    from segkit.serve.app import create_app
    from segkit.serve.service import ModelService

    Range(0, 65535).check(args.port, "--port")
    Range(0, integer=False, low_open=True).check(args.max_megapixels, "--max-megapixels")
    Range(0, integer=False, low_open=True).check(args.max_upload_mb, "--max-upload-mb")
    Range(1).check(args.queue, "--queue")
    resolve_device(args.device, what="--device")
    plugins = terminal.plugins_for(args)
    listener = listen(args.host, args.port)  # a busy port fails before the model loads
    segmenter = Segmenter.from_checkpoint(args.checkpoint, args.device, plugins.registry)
    limits = Limits(int(args.max_upload_mb * 2**20), args.max_megapixels, args.queue)
    try:
        with tempfile.TemporaryDirectory(prefix="segkit-serve-") as workdir:
            service = ModelService(segmenter, Path(workdir), limits, args.checkpoint.name)
            config = uvicorn.Config(
                create_app(service),
                log_level="warning",
                access_log=False,
                lifespan="off",
                server_header=False,
                timeout_graceful_shutdown=GRACE_S,
            )
            announce(args, segmenter, listener.getsockname()[1])
            server = uvicorn.Server(config)
            server.run(sockets=[listener])
    except KeyboardInterrupt as stop:  # uvicorn stopped serving, then passed the signal on
        # The worker thread may be inside PyTorch (a dense CRF takes seconds): the
        # interpreter's teardown would wait for it or abort the process, and tearing
        # PyTorch's modules down alone takes seconds.  The temporary folder is gone by
        # now, so the process ends here, at once, with the signal's exit code.
        terminal.err_console.print(
            f"{stop or 'interrupted'}: the server stopped", markup=False, soft_wrap=True
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(getattr(stop, "exit_code", 130))
    if not server.started:
        raise SegkitError(f"the server on {args.host}:{args.port} did not start; see above")
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, or one line saying why it cannot be."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise SegkitError(
            f"--host {host}: not an address of this machine ({exc.strerror})"
        ) from None
    listener = socket.socket(family, kind)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise SegkitError(
                f"port {port} on {host} is in use; choose another with --port (0: any free one)"
            ) from None
        if exc.errno == errno.EACCES:
            raise SegkitError(
                f"port {port} needs administrator rights; choose one above 1023 with --port"
            ) from None
        raise SegkitError(
            f"cannot listen on {host}:{port} ({exc.strerror}); check --host"
        ) from None
    return listener


def announce(args: argparse.Namespace, segmenter: Any, port: int) -> None:
    shown = "127.0.0.1" if args.host in ALL_INTERFACES else args.host
    url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
    crf = ", ".join(segmenter.postprocessors.names()) or "none"
    terminal.say(
        f"serving {args.checkpoint} ({segmenter.config.name}, "
        f"{len(segmenter.class_names)} classes, post-processors: {crf}) on {segmenter.device}"
    )
    terminal.say(f"page: {url}/   API: POST {url}/predict, GET /info, GET /health (see {url}/docs)")
    if args.host in ALL_INTERFACES:
        terminal.err_console.print(
            f"[yellow]warning:[/] listening on all interfaces ({args.host or '*'}): anyone "
            "who can reach this machine can use the model; --host 127.0.0.1 keeps it local",
            soft_wrap=True,
        )
    else:
        terminal.say(f"listening on {args.host} only; Ctrl-C stops")
