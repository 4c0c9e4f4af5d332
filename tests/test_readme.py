"""README.md: short, its links lead somewhere, and every command in it runs.

The README's code blocks run as the guides' do (tests/doc_examples.py): the
quickstart's `segkit run` shortened to seconds with `--set` overrides (a full run
takes minutes and its figures are the benchmarks page's), the own-data commands on a
small folder dataset, the plugin example registered and its backbone built. The
install and the test suite it names are what .ci/run itself runs, which the last
tests here check.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from segkit.core import load_plugins

from .doc_examples import ROOT, Reader, code_blocks, make_reader_folder

README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"
QUICKSTART = [
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && "
    ".venv/bin/segkit run configs/deeplab_crf.toml",
    ".venv/bin/python -m pytest -q",
]


def test_readme_is_read_in_two_minutes():
    assert len(README.read_text(encoding="utf-8").splitlines()) < 250


def test_the_quickstart_is_the_two_commands():
    first = next(b for b in code_blocks(README) if b.language == "bash")
    assert first.text.strip().splitlines() == QUICKSTART


def test_ci_runs_the_readme_test_command_and_its_development_checks():
    ci_lines = [line.strip() for line in CI.read_text().splitlines()]
    assert ci_lines[-1] == QUICKSTART[1], "the test command of .ci/run is the README's"
    section = README.read_text(encoding="utf-8").split("## Development", 1)[1]
    commands = re.findall(r"^    (\.venv/bin/\S.*)$", section, re.M)
    assert commands, "README's Development section lists its commands"
    for command in commands:
        for part in command.split(" && "):
            assert part in ci_lines, f"README's `{part}` is not what .ci/run runs"


def markdown_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def heading_anchors(page: Path) -> set[str]:
    """The anchors a page offers: its headings (as MyST names them) and its labels."""
    text = page.read_text(encoding="utf-8")
    headings = re.findall(r"^#{1,6} (.+)$", text, re.M)
    slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
    return slugs | set(re.findall(r"^\(([\w-]+)\)=$", text, re.M))


def test_readme_links_lead_to_files_and_headings():
    local = [link for link in markdown_links(README) if "://" not in link]
    assert any(link.startswith("docs/") for link in local), "the README links into the docs"
    for link in local:
        path, _, anchor = link.partition("#")
        target = (README.parent / path).resolve()
        assert target.is_file(), f"README links to {link}, which does not exist"
        if anchor:
            assert anchor in heading_anchors(target), f"README links to a missing #{anchor}"


def test_readme_code_blocks_run(tmp_path, monkeypatch):
    reader = Reader(make_reader_folder(tmp_path / "reader"), monkeypatch)
    try:
        for block in code_blocks(README):
            reader.run(block)
        assert reader.extra_plugins, "the plugin example registered no plugin"
        registry = load_plugins(extra=tuple(reader.extra_plugins)).registry
    finally:
        reader.forget_modules()
    for dilated, stride in ((False, 32), (True, 16)):
        backbone = registry.get("backbone", "mobilenet_v3").build(params={"dilated": dilated})
        with torch.no_grad():
            maps = backbone.eval()(torch.rand(1, 3, 67, 93))
        assert list(maps) == list(backbone.feature_info) == ["out"]
        size = tuple(-(-side // stride) for side in (67, 93))  # "same" padding: ceil
        assert maps["out"].shape == (1, backbone.feature_info["out"].channels, *size)


def test_the_readme_figures_are_the_benchmarks_pages():
    """The quickstart's figures in the README are those measured on the benchmarks page,
    which gives their machine and date."""
    readme = " ".join(README.read_text(encoding="utf-8").replace("**", "").split())
    match = re.search(r"took (\d+ min \d+ s) .*? mIoU of (0\.\d+) raw and (0\.\d+)", readme)
    assert match, "the README gives the quickstart's time and mIoU"
    row = next(
        line
        for line in (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| the quickstart: validation mIoU")
    )
    time_row = next(
        line
        for line in (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| the quickstart: time")
    )
    assert f"**{match.group(2)}** raw, **{match.group(3)}** with" in row
    assert match.group(1) in time_row
