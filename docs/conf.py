"""Sphinx configuration of segkit's documentation.

Why Sphinx with MyST rather than MkDocs with Material: MkDocs has had no release
since 1.6.1 (August 2024) and Material for MkDocs is in maintenance mode, with
critical fixes only until its end of life in November 2026, while Sphinx and
MyST-Parser release regularly.  Sphinx's strict mode (``-W -n``) also fails the
build on a broken link or a reference to a missing label, which is what keeps the
guides in step with the generated references.

Build: ``sphinx-build -W -n --keep-going -b html docs build/docs`` (what .ci/run does).
Everything is local: no extension fetches anything over the network.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
# The generators live beside this file, not in the package: they are the docs' code.
sys.path.insert(0, str(DOCS / "_ext"))

project = "segkit"
author = "the segkit authors"
copyright = "segkit authors, MIT licence"

extensions = ["myst_parser", "segkit_reference"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext"]

# A reference to a label, document or heading that does not exist is a warning, and
# the strict build (-W) turns every warning into a failure.
nitpicky = True
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

html_theme = "furo"
html_title = "segkit"
html_static_path: list[str] = []
html_show_sourcelink = False
# No "last updated" stamp: the same sources give the same pages.
html_last_updated_fmt = None
# Quotes stay as typed: '...' in a parameter's help is a value to write in a config.
smartquotes = False
