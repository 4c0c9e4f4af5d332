"""`segkit serve` as a user runs it: a real server process, the page in headless Chromium
(Debian's package, driven by Playwright; never a downloaded browser), the downloaded
mask against `segkit predict`'s, and Ctrl-C (exit 130, the temporary folder gone)."""

from __future__ import annotations

import io
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("uvicorn", reason="segkit[serve] is not installed")
pytest.importorskip("httpx", reason="the tests' HTTP client is httpx")

import httpx

from .infer_fixtures import tiny_checkpoint
from .serve_fixtures import CRF, EXAMPLES, photo

#: What the browser is started with: no sandbox (root in a container), no GPU, and no
#: traffic of its own (updates, sync, QUIC) beyond the page on the loopback.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    checkpoint: Path
    tmp: Path  # the server's TMPDIR: its temporary folder lives here, and nothing else
    env: dict[str, str]


@pytest.fixture(scope="module")
def server(tmp_path_factory, registry):
    folder = tmp_path_factory.mktemp("served")
    checkpoint = tiny_checkpoint(folder, registry, CRF)
    tmp = folder / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "segkit", "serve", str(checkpoint), "--port", "0"]
    process = subprocess.Popen(
        [*command, "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout])
    reader.daemon = True
    reader.start()
    url, said = None, []
    deadline = time.monotonic() + 180
    while url is None and time.monotonic() < deadline and process.poll() is None:
        try:
            said.append(lines.get(timeout=1))
        except queue.Empty:
            continue
        if said[-1].startswith("page: "):
            url = said[-1].split()[1]
    if url is None:
        process.kill()
        pytest.fail(f"segkit serve did not start: {said} {process.stderr.read()}")
    yield Server(process, url, checkpoint, tmp, env)
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """A photograph of pydensecrf's examples when they are at hand, else a noise picture."""
    path = tmp_path_factory.mktemp("photo") / "im1.png"
    if (EXAMPLES / "im1.png").is_file():
        shutil.copy(EXAMPLES / "im1.png", path)
    else:
        path.write_bytes(photo(120, 160, seed=1))
    return path


def predicted(server: Server, image: Path, notes: Path) -> tuple[dict[bool, np.ndarray], str]:
    """`segkit predict`'s masks with and without the CRF, and its error line for ``notes``,
    from one process started like the server's."""
    out = image.parent / "predicted"
    script = "\n".join(
        [
            "import sys",
            "from segkit.cli import main",
            *(
                f"assert main(['predict', {str(server.checkpoint)!r}, {image.name!r}, "
                f"'--out', {str(out / flag)!r}, '{flag}']) == 0"
                for flag in ("--crf", "--no-crf")
            ),
            "print('---', file=sys.stderr)",
            f"assert main(['predict', {str(server.checkpoint)!r}, {notes.name!r}]) == 2",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=image.parent,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    masks = {
        crf: np.asarray(Image.open(out / flag / f"{image.stem}_mask.png"))
        for crf, flag in ((True, "--crf"), (False, "--no-crf"))
    }
    return masks, done.stderr.split("---\n")[1].strip()


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it with apt-get)")
    return path


def test_the_page_segments_toggles_the_crf_and_downloads_the_mask(server, image, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = chromium()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots of the page: {shots}")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860}, accept_downloads=True)
        page.goto(server.url)
        page.wait_for_selector("body[data-state=empty]")
        assert page.is_checked("#postprocess")  # the checkpoint's default: with the CRF
        assert "densecrf_torch" in page.text_content("#postprocessors")

        page.set_input_files("#file", str(image))
        page.wait_for_selector("body[data-state=ready][data-showing=refined]", timeout=120_000)
        assert page.is_visible("#view-raw") and page.is_visible("#view-changed")
        assert "%" in page.text_content("#legend tbody")
        before = page.evaluate("document.getElementById('canvas-final').toDataURL()")
        page.screenshot(path=shots / "1-crf-on.png", full_page=True)
        refined = download(page, "#download-mask", f"{image.stem}_mask.png")

        page.click("#postprocess")
        page.wait_for_selector("body[data-state=ready][data-showing=raw]")
        assert not page.is_visible("#view-changed")
        after = page.evaluate("document.getElementById('canvas-final').toDataURL()")
        page.screenshot(path=shots / "2-crf-off.png", full_page=True)
        raw = download(page, "#download-mask", f"{image.stem}_mask.png")
        overlay = download(page, "#download-overlay", f"{image.stem}_overlay.png")

        notes = image.parent / "notes.png"
        notes.write_text("not a picture")
        page.set_input_files("#file", str(notes))
        page.wait_for_selector("body[data-state=error]")
        shown_error = page.text_content("#message")
        page.screenshot(path=shots / "3-error.png", full_page=True)
        browser.close()

    assert before != after  # the picture changed with the switch
    expected, command_error = predicted(server, image, notes)
    assert not np.array_equal(expected[True], expected[False])  # the CRF changes pixels
    np.testing.assert_array_equal(png_pixels(refined), expected[True])
    np.testing.assert_array_equal(png_pixels(raw), expected[False])
    assert Image.open(io.BytesIO(overlay)).size == Image.open(image).size
    assert shown_error == command_error  # the same line as the command's
    assert len(os.listdir(server.tmp)) == 1  # the server's own folder, and nothing else


def download(page, button: str, name: str) -> bytes:
    with page.expect_download() as started:
        page.click(button)
    done = started.value
    assert done.suggested_filename == name
    return Path(done.path()).read_bytes()


def png_pixels(data: bytes) -> np.ndarray:
    picture = Image.open(io.BytesIO(data))
    assert picture.mode == "P"  # a palette PNG: the pixel values are the class indices
    return np.asarray(picture)


def test_ctrl_c_stops_the_server_promptly_and_removes_its_folder(server):
    assert httpx.get(f"{server.url}health", timeout=30).json()["status"] == "ok"
    started = time.monotonic()
    server.process.send_signal(signal.SIGINT)
    code = server.process.wait(timeout=30)
    elapsed = time.monotonic() - started
    assert code == 130, server.process.stderr.read()
    assert "interrupted by SIGINT" in server.process.stderr.read()
    assert elapsed < 5, f"{elapsed:.1f} s to stop"
    assert list(server.tmp.iterdir()) == []
