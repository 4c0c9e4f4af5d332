"""The documentation builds in strict mode, and its generated references are complete.

The references are generated from the code when the site is built (docs/_ext); these
tests compare what the built pages hold with the registry, the command line's parser
and the config's sections themselves, never with a list written here.  The build is
skipped where Sphinx is not installed (``pip install -e '.[docs]'``); CI installs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import re
import typing
import warnings
from pathlib import Path

import pytest

from segkit.cli import build_parser
from segkit.core import load_plugins
from segkit.core.config import CRF_LAYER_PARAMS, Config
from segkit.core.ranges import RANGES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

sphinx_build = pytest.importorskip("sphinx.cmd.build", reason="Sphinx is not installed")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as .ci/run builds it: strict, every warning an error."""
    out = tmp_path_factory.mktemp("site")
    with warnings.catch_warnings():  # the docs tools' own deprecations are not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        code = sphinx_build.build_main(
            ["-W", "-n", "--keep-going", "-q", "-E", "-b", "html", str(DOCS), str(out)]
        )
    assert code == 0, "the documentation does not build in strict mode (warnings above)"
    return out


def page_text(site: Path, page: str) -> str:
    """A built page's text without markup, entities decoded."""
    raw = (site / page).read_text(encoding="utf-8")
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def page_ids(site: Path, page: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', (site / page).read_text(encoding="utf-8")))


def flat(text: str) -> str:
    """Text with its line breaks gone: help wrapped at another width reads the same
    (textwrap also breaks after a hyphen, 'whole-' / 'image')."""
    return re.sub(r"(?<=\w-) (?=\w)", "", " ".join(text.split()))


def section_text(site: Path, page: str, anchor: str) -> str:
    """The text of the section whose id is ``anchor``, up to the next section."""
    raw = (site / page).read_text(encoding="utf-8")
    start = raw.index(f'id="{anchor}"')
    end = raw.find("<section", start + 1)
    return flat(html.unescape(re.sub(r"<[^>]+>", " ", raw[start : end if end > 0 else None])))


def table_rows(site: Path, page: str) -> dict[str, list[str]]:
    """Every table row of a page by its first cell's text, each cell's text flattened."""
    raw = (site / page).read_text(encoding="utf-8")
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", raw, re.S):
        cells = [
            flat(html.unescape(re.sub(r"<[^>]+>", " ", c)))
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        if cells:
            rows[cells[0]] = cells
    return rows


def as_shown(help_text: str) -> str:
    """Help as the page shows it: `code` in backquotes is set as code."""
    return flat(help_text.replace("`", ""))


def command_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += command_parsers(sub, (*path, name))
    return found


def test_every_command_and_its_whole_help_is_in_the_command_reference(site):
    commands = command_parsers(build_parser())
    assert len(commands) > 1, "segkit has sub-commands"
    for path, parser in commands:
        anchor = "-".join(("cli", *path)) if path else "cli-segkit"
        shown = section_text(site, "reference/cli.html", anchor)
        assert flat(parser.format_help()) in shown, f"segkit {' '.join(path)}: --help differs"


def test_every_plugin_part_and_parameter_is_in_the_plugin_reference(site):
    plugins = load_plugins()
    parts = [c for table in plugins.registry.components.values() for c in table.values()]
    assert parts, "the built-in plugins register parts"
    for component in parts:
        anchor = re.sub(r"[^a-z0-9]+", "-", f"plugin-{component.kind}-{component.name}".lower())
        section = section_text(site, "reference/plugins.html", anchor)
        assert as_shown(component.help) in section, component.name
        for param in component.params:
            default = "required" if param.required else ""
            row = f"{param.name} {param.type_name()} {default}".strip()
            assert row in section, f"{component.name}.{param.name}: no row '{row}'"
            assert as_shown(param.help) in section, f"{component.name}.{param.name}"
    listing = flat(page_text(site, "reference/plugins.html"))
    for info in plugins.infos:
        assert f"{info.name} " in listing, f"plugin {info.name} is not listed"


def config_keys() -> list[tuple[str, dataclasses.Field]]:
    hints = typing.get_type_hints(Config)
    keys = []
    for section in dataclasses.fields(Config):
        cls = hints[section.name]
        if dataclasses.is_dataclass(cls):
            keys += [(f"{section.name}.{f.name}", f) for f in dataclasses.fields(cls)]
        else:
            keys.append((section.name, section))
    return keys


def test_every_config_key_and_range_is_in_the_config_reference(site):
    rows = table_rows(site, "reference/config.html")
    keys = config_keys()
    for key, field in keys:
        assert key in rows, f"config key {key} is not documented"
        assert as_shown(field.metadata.get("help", "")) in rows[key][-1], f"{key}: its help"
    for key, rule in RANGES.items():
        assert key in dict(keys), f"RANGES names {key}, which is no config key"
        described = rule.describe() if hasattr(rule, "describe") else rule.each.describe()
        assert described in rows[key][3], f"{key}: its range '{described}' is not shown"
    for param in CRF_LAYER_PARAMS:
        assert rows[f"model.crf.{param.name}"][1] == param.type_name()


def test_every_hook_is_in_the_hook_reference(site):
    from segkit.core import hookspecs

    text = flat(page_text(site, "reference/hooks.html"))
    hooks = [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "segkit_spec")]
    assert hooks
    for name in hooks:
        first_line = (getattr(hookspecs, name).__doc__ or "").strip().splitlines()[0]
        summary = re.sub(r"``?|:\w+:", "", first_line)
        assert f"def {name}(" in text and summary[:30] in text, name


def test_every_page_is_in_the_table_of_contents(site):
    pages = [p.relative_to(DOCS).with_suffix(".html") for p in DOCS.rglob("*.md")]
    index = (site / "index.html").read_text(encoding="utf-8")
    for page in pages:
        assert (site / page).is_file(), f"{page} was not built"
        if page.name != "index.html":
            assert f'href="{page.as_posix()}"' in index, f"{page} is not in the index's contents"
