"""`segkit serve` under load and bad input, over the loopback only.

    python benchmarks/serve_load.py [--checkpoint CKPT] [--image IMG] [--clients 8]
                                    [--requests 200] [--no-crf] [--device cpu]

1. One ``segkit predict`` of the image, as a process of its own: its wall time (imports
   and model loading included), its time predicting, and its peak RSS.
2. A ``segkit serve`` process on 127.0.0.1 (any free port); ``--alone`` requests of one
   client, one after another (the time a lone user waits: median and best), then
   ``--clients`` threads, each with its own connection, sending ``--requests``
   ``POST /predict`` in all (the mask as PNG, with the checkpoint's post-processors
   unless ``--no-crf``).  Reported:
   p50/p95/max latency, failed requests (anything but 200), throughput, and the
   server's resident memory sampled every 20 ms: after two warm-up requests, the peak
   across the run, and at the end, with the first and last tenth of the run's samples
   side by side (flat memory: the same).
3. Issue 24's bad inputs against the same server: a 30000×30000 PNG bomb, a 0-byte
   upload, a text file named .png, a 50 MB upload, a malformed multipart body, an
   unknown query value; each answer's status and line, then ``GET /health``.
4. Ctrl-C (SIGINT) to the server: its exit code and how long it took.

Without ``--checkpoint`` the quickstart's network (configs/deeplab_crf.toml: DeepLab
VGG16 at a quarter width, dense CRF of 10 iterations) is saved with seeded random
weights: the cost of a request does not depend on what the weights learned.  The
image is pydensecrf's first example photograph (320×240) when ``../shared/data`` is
beside the checkout, else generated shapes of that size.  The requests never leave
the machine: the server listens on 127.0.0.1 and the run is bounded in requests.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT.parent / "shared" / "data" / "densecrf_examples" / "im1.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--image", type=Path)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--alone", type=int, default=20, help="requests of one client first")
    parser.add_argument("--crf", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve-load-") as folder:
        work = Path(folder)
        checkpoint = args.checkpoint or quickstart_checkpoint(work)
        image = args.image or example_image(work)
        size = Image.open(image).size
        print(
            f"checkpoint {checkpoint.name}, image {image.name} {size[0]}×{size[1]}, "
            f"crf={args.crf}, device {args.device}, {os.cpu_count()} CPUs"
        )
        one_predict(checkpoint, image, work, args)
        tmp = work / "tmp"
        tmp.mkdir()
        server, url = start_server(checkpoint, args.device, tmp)
        try:
            load(url, server.pid, image, args)
            bad_inputs(url)
        finally:
            stop(server, tmp)


def quickstart_checkpoint(folder: Path) -> Path:
    import torch

    from segkit.core import get_plugins, load_config
    from segkit.data import build_dataset
    from segkit.model.assembly import build_model
    from segkit.model.checkpoint import model_payload, save_checkpoint

    registry = get_plugins().registry
    config = load_config(ROOT / "configs" / "deeplab_crf.toml", registry=registry)
    part = config.data.dataset
    dataset = build_dataset(part.name, "val", part.params, registry)
    classes = len(dataset.class_names)
    torch.manual_seed(0)
    model = build_model(config, classes, registry)
    palette = np.asarray(dataset.palette)[:classes]
    payload = model_payload(config, model, list(dataset.class_names), palette)
    return save_checkpoint(folder / "quickstart_random.pt", payload)


def example_image(folder: Path) -> Path:
    if EXAMPLE.is_file():
        return EXAMPLE
    from segkit_plugins.datasets.shapes import render_shapes

    image, _ = render_shapes(np.random.default_rng(0), 6, 240, 320, 6)
    path = folder / "shapes.png"
    Image.fromarray(image).resize((320, 240)).save(path)
    return path


def one_predict(checkpoint: Path, image: Path, work: Path, args: argparse.Namespace) -> None:
    command = [sys.executable, "-m", "segkit", "predict", str(checkpoint), str(image)]
    command += ["--out", str(work / "predicted"), "--device", args.device]
    command += ["--crf" if args.crf else "--no-crf"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB
    predicting = re.search(r"elapsed (\S+)", done.stdout)
    print(
        f"segkit predict (one process): {wall:.1f} s wall, predicting "
        f"{predicting.group(1) if predicting else '?'}, peak RSS {peak:.0f} MiB"
    )


def start_server(checkpoint: Path, device: str, tmp: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "segkit", "serve", str(checkpoint), "--port", "0"]
    server = subprocess.Popen(
        [*command, "--device", device], stdout=subprocess.PIPE, text=True, env=env
    )
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("page: "):
            return server, line.split()[1]
    raise SystemExit(f"segkit serve did not start (exit code {server.wait()})")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load(url: str, pid: int, image: Path, args: argparse.Namespace) -> None:
    data = image.read_bytes()
    query = f"predict?postprocess={str(args.crf).lower()}"
    with httpx.Client(timeout=600) as warm:
        for _ in range(2):
            warm.post(url + query, files={"image": (image.name, data)}).raise_for_status()
    with httpx.Client(timeout=600) as solo:  # one client: the time a lone user waits
        alone = []
        for _ in range(args.alone):
            started = time.perf_counter()
            solo.post(url + query, files={"image": (image.name, data)}).raise_for_status()
            alone.append(1000 * (time.perf_counter() - started))
    if alone:
        print(
            f"one client, {len(alone)} requests one after another: latency p50 "
            f"{statistics.median(alone):.0f} ms, min {min(alone):.0f} ms"
        )
    baseline = rss_mib(pid)
    samples: list[float] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            samples.append(rss_mib(pid))
            time.sleep(0.02)

    latencies: list[float] = []
    failures: list[str] = []
    remaining = iter(range(args.requests))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=600) as http:
            while True:
                with lock:
                    if next(remaining, None) is None:
                        return
                started = time.perf_counter()
                try:
                    answer = http.post(url + query, files={"image": (image.name, data)})
                    ok = answer.status_code == 200 and answer.content[:4] == b"\x89PNG"
                    problem = "" if ok else f"{answer.status_code} {answer.text[:100]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if problem:
                        failures.append(problem)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    clients = [threading.Thread(target=client) for _ in range(args.clients)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    elapsed = time.perf_counter() - started
    sampling.set()
    sampler.join()
    ms = sorted(1000 * s for s in latencies)
    tenth = max(1, len(samples) // 10)
    print(
        f"load: {args.clients} clients, {len(ms)} requests in {elapsed:.1f} s "
        f"({len(ms) / elapsed:.2f} requests/s), {len(failures)} failed"
    )
    print(
        f"  latency p50 {percentile(ms, 50):.0f} ms, p95 {percentile(ms, 95):.0f} ms, "
        f"max {ms[-1]:.0f} ms"
    )
    print(
        f"  server RSS: {baseline:.0f} MiB after warm-up, peak {max(samples):.0f} MiB, "
        f"{samples[-1]:.0f} MiB at the end; mean of the first tenth "
        f"{statistics.mean(samples[:tenth]):.0f} MiB, of the last "
        f"{statistics.mean(samples[-tenth:]):.0f} MiB ({len(samples)} samples)"
    )
    for problem in failures[:5]:
        print(f"  failed: {problem}")


def percentile(sorted_values: list[float], share: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(share / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def bad_inputs(url: str) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.serve_fixtures import photo, png_bomb

    boundary = {"content-type": "multipart/form-data; boundary=b"}
    cut = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n\x89PNG'
    cases = {
        "30000x30000 PNG bomb": {"files": {"image": ("bomb.png", png_bomb())}},
        "0-byte upload": {"files": {"image": ("empty.png", b"")}},
        "text file named .png": {"files": {"image": ("notes.png", b"some notes\n" * 50)}},
        "50 MB upload": {"files": {"image": ("big.png", bytes(50 * 2**20))}},
        "malformed multipart": {"content": cut, "headers": boundary},
        "unknown query value": {"files": {"image": ("a.png", photo())}, "query": "?format=gif"},
    }
    print("bad inputs:")
    with httpx.Client(timeout=120) as http:
        for name, request in cases.items():
            query = request.pop("query", "")
            try:
                answer = http.post(url + "predict" + query, **request)
                said = f"{answer.status_code} {answer.json()['error']}"
            except httpx.HTTPError as exc:
                said = f"no answer: {type(exc).__name__}: {exc}"
            health = http.get(url + "health").status_code
            print(f"  {name}: {said} | /health {health}")


def stop(server: subprocess.Popen, tmp: Path) -> None:
    started = time.perf_counter()
    server.send_signal(signal.SIGINT)
    try:
        code = server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        code = server.wait()
    left = sorted(p.name for p in tmp.iterdir())
    print(
        f"Ctrl-C: exit code {code} after {time.perf_counter() - started:.2f} s; "
        f"left in its TMPDIR: {left or 'nothing'}"
    )


if __name__ == "__main__":
    main()
