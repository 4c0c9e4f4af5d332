"""Sphinx extension: reference pages whose text is generated from the code at build time.

A page holds a line ``<!-- segkit:generate NAME -->`` (NAME one of
``reference_text.GENERATORS``: cli, plugins, config, hooks); while Sphinx reads the
page the line is replaced with the generated Markdown, so headings, labels and links
in it are the page's own.  Those pages are re-read on every build, so an incremental
build never shows a reference older than the code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from reference_text import GENERATORS
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

MARKER = re.compile(r"^<!-- segkit:generate (\S+) -->$", re.M)

#: Documents that hold a marker, found while reading (re-read on every build).
_GENERATED: set[str] = set()


def generate(match: re.Match[str]) -> str:
    name = match.group(1)
    if name not in GENERATORS:
        raise ExtensionError(
            f"<!-- segkit:generate {name} -->: no such generator (known: {', '.join(GENERATORS)})"
        )
    return GENERATORS[name]()


def on_source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    if MARKER.search(source[0]):
        _GENERATED.add(docname)
        source[0] = MARKER.sub(generate, source[0])


def on_env_get_outdated(
    app: Sphinx, env: Any, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    return sorted(_GENERATED | _marked_docs(app))


def _marked_docs(app: Sphinx) -> set[str]:
    """Documents whose source holds a marker (on a build that reuses an environment)."""
    found = set()
    for docname in app.env.found_docs:
        try:
            text = Path(app.env.doc2path(docname)).read_text(encoding="utf-8")
        except OSError:
            continue
        if MARKER.search(text):
            found.add(docname)
    return found


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("source-read", on_source_read)
    app.connect("env-get-outdated", on_env_get_outdated)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
