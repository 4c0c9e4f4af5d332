"""The reference pages' text, generated from the code: commands, plugins, config keys, hooks.

Each function returns Markdown (MyST) built from what segkit itself uses: the argument
parser of ``segkit.cli.build_parser()``, the registry of the installed plugins, the
config sections of ``segkit.core.config`` with the ranges of ``segkit.core.ranges``,
and the hook specs of ``segkit.core.hookspecs``.  Nothing here is written by hand, so
the pages cannot fall behind the code.  The functions read only public names and
plain attributes, so that a plugin registered lazily or a command line split into
modules documents the same way.
"""

from __future__ import annotations

from reference_cli import cli_markdown
from reference_config import config_markdown
from reference_plugins import hooks_markdown, plugins_markdown

#: The generators a page may ask for with ``<!-- segkit:generate NAME -->``.
GENERATORS = {
    "cli": cli_markdown,
    "plugins": plugins_markdown,
    "config": config_markdown,
    "hooks": hooks_markdown,
}
