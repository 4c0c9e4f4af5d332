"""`segkit serve` in process: the API's answers against `segkit predict`'s files, the bad
inputs of issue 24 (each a 4xx with one line, the server answering afterwards), the
bounded queue, and the command's own refusals."""

from __future__ import annotations

import base64
import io
import re
import socket
import threading
import time
import urllib.parse
from argparse import Namespace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="segkit[serve] is not installed")
pytest.importorskip("httpx", reason="the in-process client needs httpx")

from starlette.testclient import TestClient

from segkit.cli import main
from segkit.cli import serve as serve_command
from segkit.infer import Segmenter
from segkit.serve.app import create_app
from segkit.serve.limits import Limits
from segkit.serve.service import ModelService

from .infer_fixtures import CLASS_NAMES, tiny_checkpoint
from .messages import one_error_line
from .serve_fixtures import CRF, multipart, photo, png_bomb


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, registry):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), registry, CRF)


@pytest.fixture(scope="module")
def segmenter(checkpoint, registry):
    return Segmenter.from_checkpoint(checkpoint, "cpu", registry)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("serve-work")


@pytest.fixture(scope="module")
def client(segmenter, workdir, checkpoint):
    service = ModelService(segmenter, workdir, Limits(), checkpoint.name)
    with TestClient(create_app(service)) as client:
        yield client


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("photos") / "street.png"
    path.write_bytes(photo(50, 61, seed=4))
    return path


def post(client, data: bytes, query: str = "", name: str = "street.png"):
    return client.post(f"/predict{query}", files={"image": (name, data, "image/png")})


def predicted_files(tmp_path, checkpoint, image_file, *flags: str):
    out = tmp_path / "predicted"
    assert main(["predict", str(checkpoint), str(image_file), "--out", str(out), *flags]) == 0
    return out / "street_mask.png", out / "street_overlay.png"


@pytest.mark.parametrize(
    ("crf", "tta"), [(True, False), (False, False), (True, True), (False, True)]
)
def test_the_mask_is_the_file_segkit_predict_writes(
    client, checkpoint, image_file, tmp_path, crf, tta
):
    flags = ["--crf" if crf else "--no-crf", "--tta" if tta else "--no-tta"]
    mask_file, _ = predicted_files(tmp_path, checkpoint, image_file, *flags)
    answer = post(client, image_file.read_bytes(), f"?postprocess={crf}&tta={tta}".lower())
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    assert 'filename="street_mask.png"' in answer.headers["content-disposition"]
    served = Image.open(io.BytesIO(answer.content))
    assert served.mode == "P"
    np.testing.assert_array_equal(np.asarray(served), np.asarray(Image.open(mask_file)))
    assert answer.content == mask_file.read_bytes()  # the same writer: the same bytes


def test_the_overlay_is_the_file_segkit_predict_writes(client, checkpoint, image_file, tmp_path):
    _, overlay_file = predicted_files(tmp_path, checkpoint, image_file)
    answer = post(client, image_file.read_bytes(), "?format=overlay")
    assert answer.status_code == 200 and answer.content == overlay_file.read_bytes()


def test_json_gives_shares_sizes_timing_and_both_masks(client, image_file):
    answer = post(client, image_file.read_bytes(), "?format=json&masks=true&crf=true")
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["width"], result["height"]) == (61, 50)
    assert result["postprocess"] is True and result["postprocessors"] == ["densecrf_torch"]
    assert [c["name"] for c in result["classes"]] == CLASS_NAMES
    refined = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["mask_png"]))))
    raw = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["raw_mask_png"]))))
    counts = np.bincount(refined.ravel(), minlength=len(CLASS_NAMES))
    assert [c["pixels"] for c in result["classes"]] == counts.tolist()
    assert sum(c["share"] for c in result["classes"]) == pytest.approx(1, abs=1e-5)
    raw_counts = np.bincount(raw.ravel(), minlength=len(CLASS_NAMES))
    np.testing.assert_allclose(result["raw_shares"], raw_counts / raw.size, atol=1e-6)
    assert result["changed_share"] == pytest.approx(np.mean(raw != refined), abs=1e-6)
    assert 0 < result["changed_share"] < 1  # the CRF changed some pixels, not all
    plain = post(client, image_file.read_bytes(), "?postprocess=false")
    np.testing.assert_array_equal(raw, np.asarray(Image.open(io.BytesIO(plain.content))))
    timing = result["timing_ms"]
    assert timing["total"] >= timing["predict"] > 0 and timing["queued"] >= 0


@pytest.mark.parametrize(
    ("sent", "offered"),
    [
        ("straße (1).png", "straße (1)_mask.png"),
        ("tab\there.png", "tab_here_mask.png"),
        ("../../etc/passwd.png", "passwd_mask.png"),
        ("x" * 300 + ".png", "x" * 116 + "_mask.png"),
        ("", "upload_mask.png"),
    ],
)
def test_any_file_name_is_answered_and_offered_back(client, sent, offered):
    body = multipart([("image", sent, photo())])  # by hand: as sent, not percent-encoded
    headers = {"content-type": "multipart/form-data; boundary=segkit-test"}
    answer = client.post("/predict", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    given = answer.headers["content-disposition"]
    assert urllib.parse.unquote(given.split("filename*=UTF-8''")[1]) == offered
    assert given.encode("latin-1").isascii()


def test_info_describes_the_model(client):
    info = client.get("/info").json()
    assert [c["name"] for c in info["classes"]] == CLASS_NAMES
    assert info["palette"][:2] == [[0, 0, 0], [128, 0, 0]]  # the VOC colours
    assert info["postprocessors"] == [{"name": "densecrf_torch", "params": {"iterations": 1}}]
    assert info["postprocess_default"] is True and info["tta"]["default"] is False
    assert info["normalisation"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert info["model"]["checkpoint"] == "tiny.pt" and info["model"]["device"] == "cpu"


def test_the_page_and_the_api_description_are_served_without_a_cdn(client):
    for page_path in ("/", "/docs"):
        page = client.get(page_path)
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        links = re.findall(r'(?:src|href)="([^"]*)"', page.text)
        assert links and all(not re.match(r"(\w+:)?//", link) for link in links), links
        for link in links:
            assert client.get(f"/{link}").status_code == 200, link
    for asset in ("app.js", "style.css", "docs.js", "docs.css"):
        text = client.get(f"/static/{asset}").text
        assert not re.search(r"(https?:)?//[\w.-]+\.\w+/", text), asset
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/predict", "/info", "/health"}
    names = {p["name"] for p in schema["paths"]["/predict"]["post"]["parameters"]}
    assert names == {"postprocess", "tta", "format", "masks"}


BAD_INPUTS = {
    # name: (query, content type or None for the multipart of `body`, body, status, words)
    "30000x30000 PNG bomb": ("", None, png_bomb(), 413, "too large to read safely"),
    "0-byte upload": ("", None, b"", 400, "is empty (0 bytes)"),
    "text named .png": ("", None, b"just some notes\n" * 20, 415, "cannot read image street.png"),
    "50 MB upload": ("", None, bytes(50 * 2**20), 413, "over the server's 32 MB limit"),
    "truncated PNG": ("", None, photo()[:400], 422, "truncated or corrupt"),
    "unknown format": ("?format=gif", None, photo(), 400, "format=gif is not one of png"),
    "unknown switch value": ("?postprocess=maybe", None, photo(), 400, "use postprocess=true"),
    "unknown parameter": ("?crff=false", None, photo(), 400, "did you mean 'crf'?"),
    "parameter twice": ("?crf=true&postprocess=false", None, photo(), 400, "given twice"),
    "no closing boundary": (
        "",
        "multipart/form-data; boundary=b",
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n\x89PNG',
        400,
        "malformed multipart body",
    ),
    "garbage body": ("", "multipart/form-data; boundary=b", b"x" * 300, 400, "malformed multipart"),
    "no boundary": ("", "multipart/form-data", b"--b\r\n", 400, "has no boundary"),
    "part without a name": (
        "",
        "multipart/form-data; boundary=b",
        b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
        400,
        "no name",
    ),
    "image in another field": (
        "",
        "multipart/form-data; boundary=segkit-test",
        multipart([("file", "a.png", photo())]),
        400,
        "no image in the upload (it has 'file')",
    ),
    "not multipart": ("", "image/png", photo(), 415, "content type is image/png"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_the_server_goes_on(client, workdir, case):
    query, content_type, body, status, words = BAD_INPUTS[case]
    if content_type is None:
        answer = post(client, body, query)
    else:
        answer = client.post(
            f"/predict{query}", content=body, headers={"content-type": content_type}
        )
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    assert words in message and "\n" not in message, message
    assert "serve-work" not in message and "request-" not in message  # no temporary paths
    assert client.get("/health").json()["status"] == "ok"
    assert list(workdir.iterdir()) == []  # every upload's folder removed


def test_a_chunked_upload_is_cut_off_at_the_limit(client):
    sent = []

    def chunks():
        for _ in range(50):
            sent.append(1)
            yield bytes(2**20)

    headers = {"content-type": "multipart/form-data; boundary=b"}
    answer = client.post("/predict", content=chunks(), headers=headers)
    assert answer.status_code == 413 and "32 MB limit" in answer.json()["error"]
    assert "content-length" not in {k.lower() for k in answer.request.headers}


def test_images_over_the_megapixel_limit_are_refused_from_the_header(segmenter, tmp_path):
    service = ModelService(segmenter, tmp_path, Limits(max_megapixels=0.002))
    with TestClient(create_app(service)) as small:
        refused = post(small, photo(50, 61), "?crf=true").json()["error"]
        assert "street.png is 61×50 (0.0 MP), over the 0.002 MP limit" in refused
        assert "postprocess=false, or raise the limit with --max-megapixels 1" in refused
        assert post(small, photo(40, 40)).status_code == 200  # 0.0016 MP


def test_a_full_queue_answers_503_with_retry_after(segmenter, tmp_path, monkeypatch):
    service = ModelService(segmenter, tmp_path, Limits(queue=1))
    release, started = threading.Event(), threading.Event()
    predict = service.predict

    def slow_predict(path, options):
        started.set()
        release.wait(30)
        return predict(path, options)

    monkeypatch.setattr(service, "predict", slow_predict)
    with TestClient(create_app(service)) as client:
        answers = []
        first = threading.Thread(target=lambda: answers.append(post(client, photo())))
        first.start()
        assert started.wait(30)
        busy = post(client, photo())
        assert client.get("/health").json()["queue"] == {"pending": 1, "capacity": 1}
        release.set()
        first.join(30)
    assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
    assert "the server is busy" in busy.json()["error"]
    assert answers[0].status_code == 200


def test_without_the_extra_the_command_names_it(checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(serve_command, "find_spec", lambda name: None)
    assert main(["serve", str(checkpoint)]) == 2
    one_error_line(capsys, "pip install 'segkit[serve]'")


def test_a_busy_port_is_one_line_before_the_model_loads(checkpoint, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.perf_counter()
        assert main(["serve", str(checkpoint), "--port", str(port)]) == 2
    one_error_line(capsys, f"port {port} on 127.0.0.1 is in use", "--port")
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    ("flag", "value"), [("--port", "70000"), ("--queue", "0"), ("--max-upload-mb", "-1")]
)
def test_out_of_range_flags_are_refused(checkpoint, capsys, flag, value):
    assert main(["serve", str(checkpoint), flag, value]) == 2
    one_error_line(capsys, flag)


def test_listening_on_all_interfaces_says_so(segmenter, capsys):
    args = Namespace(host="0.0.0.0", checkpoint="best.pt")
    serve_command.announce(args, segmenter, 8123)
    captured = capsys.readouterr()
    assert "page: http://127.0.0.1:8123/" in captured.out
    assert "warning: listening on all interfaces (0.0.0.0)" in captured.err
    serve_command.announce(Namespace(host="127.0.0.1", checkpoint="best.pt"), segmenter, 8123)
    assert "listening on 127.0.0.1 only" in capsys.readouterr().out
