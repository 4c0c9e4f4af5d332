"""``segkit serve``: one trained model behind a web page and an HTTP API.

The room sits above ``infer`` and below ``cli``.  :mod:`~segkit.serve.service` holds
the model and what a request asks of it (no web stack), :mod:`~segkit.serve.work_queue`
the one worker thread in front of the model, :mod:`~segkit.serve.uploads` the reading
of a request's body, and :mod:`~segkit.serve.app` the routes; only the last two import
the web stack (the ``serve`` extra: Starlette, uvicorn, python-multipart).
"""

from __future__ import annotations
