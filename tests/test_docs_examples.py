"""The guides' code blocks run as a reader would run them (see tests/doc_examples.py).

Each page runs in a fresh folder of the reader's own, its blocks in the page's order.
A ``segkit run`` of a shipped config is shortened to seconds with ``--set`` overrides
(``doc_examples.SHORT_RUNS``: a few small images, one epoch, a thinner network), so
these tests check what each command promises (its exit code and the files it
writes), not the figures of a full run, which are the benchmarks page's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .doc_examples import ROOT, Reader, code_blocks, make_reader_folder

DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)

#: Pages whose commands start from the quickstart's checkpoint in runs/quickstart/,
#: which the reader made on the getting-started page.
NEEDS_QUICKSTART_RUN = {"guides/crf.md", "guides/inference.md"}


def page_id(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory) -> Path:
    """runs/quickstart/ as getting-started makes it (shortened like every doc run)."""
    folder = make_reader_folder(tmp_path_factory.mktemp("quickstart"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        reader = Reader(folder, monkeypatch)
        reader.segkit(
            ["run", "configs/deeplab_crf.toml", "--run-dir", "runs/quickstart"], "fixture"
        )
    return folder / "runs" / "quickstart"


@pytest.mark.parametrize("page", [p for p in PAGES if code_blocks(p)], ids=page_id)
def test_page_code_blocks_run(page, tmp_path, monkeypatch, request):
    folder = make_reader_folder(tmp_path / "reader")
    if page_id(page) in NEEDS_QUICKSTART_RUN:
        source = request.getfixturevalue("quickstart_run")
        shutil.copytree(source, folder / "runs" / "quickstart")
    reader = Reader(folder, monkeypatch)
    try:
        for block in code_blocks(page):
            reader.run(block)
    finally:
        reader.forget_modules()
    for test_file in reader.tests:
        run_page_tests(test_file)


def run_page_tests(test_file: Path) -> None:
    """A page's own test module (the conformance kit's classes), run as its reader runs it."""
    env = {**os.environ, "PYTHONPATH": str(test_file.parent)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file.name],
        cwd=test_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary
