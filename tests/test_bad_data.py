"""Bad data and flags for predict, eval, refine and summary: one line naming the flag or
the file, exit 2, and nothing written."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from segkit.cli import main
from segkit.infer.budget import MAX_MEGAPIXELS, Work, check_size, crf_cost
from segkit.infer.refine import MAX_LABEL_COLOURS

from .infer_fixtures import random_image, tiny_checkpoint
from .test_bad_configs import folder_digest, one_error_line


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, registry):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), registry)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(random_image(40, 56)).save(path)
    return path


def sparse_png(path, width: int, height: int) -> None:
    """A PNG of ``width``×``height`` whose pixels are never decoded by a size check."""
    Image.new("RGB", (width, height)).save(path, compress_level=1)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--tile", "-1"], "--tile must be an integer >= 0 (0: the whole image in one pass)"),
        (["--overlap", "2"], "--overlap must be a finite number in [0, 0.9], got 2.0"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["--device", "gpu7"], "--device: unknown device 'gpu7'"),
        (["--max-megapixels", "0"], "--max-megapixels must be a finite number > 0"),
    ],
)
def test_predict_flags_are_named(checkpoint, photo, tmp_path, capsys, flags, fragment):
    before = folder_digest(tmp_path)
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(photo), "--out", str(out), *flags]) == 2
    assert fragment in one_error_line(capsys)
    assert not out.exists() and folder_digest(tmp_path) == before


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--max-images", "0"], "--max-images must be an integer >= 1"),
        (["--max-images", "-1"], "--max-images must be an integer >= 1"),
        (["--tile", "-8"], "--tile must be an integer >= 0"),
        (["--device", "tpu"], "--device: unknown device 'tpu'"),
        (["--device", "meta"], "--device: segkit computes on cpu, cuda or mps, not on 'meta'"),
        (["--device", "mps"], "--device is 'mps' but this machine or PyTorch build has no MPS"),
    ],
)
def test_eval_flags_are_named(checkpoint, tmp_path, capsys, flags, fragment):
    before = folder_digest(tmp_path)
    assert main(["eval", str(checkpoint), "--json", str(tmp_path / "m.json"), *flags]) == 2
    line = one_error_line(capsys)
    assert fragment in line and "eval." not in line  # the flag, not a key never written
    assert folder_digest(tmp_path) == before


def test_summary_num_classes_flag_is_named(tmp_path, capsys):
    from .tiny import write_tiny_config

    config = write_tiny_config(tmp_path)
    assert main(["summary", str(config), "--num-classes", "0"]) == 2
    assert "--num-classes must be an integer in [2, 255]" in one_error_line(capsys)


def test_predict_refuses_a_huge_image_before_any_work(checkpoint, tmp_path, capsys):
    big = tmp_path / "big.png"
    sparse_png(big, 5000, 4000)  # 20 MP: over the default limit for a whole-image pass
    before = folder_digest(tmp_path)
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(big), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert f"big.png is 5000×4000 (20.0 MP), over the {MAX_MEGAPIXELS:g} MP limit" in line
    assert "--tile 512" in line and "--max-megapixels 20" in line
    assert not out.exists() and folder_digest(tmp_path) == before


def test_tiling_lifts_the_limit_of_a_whole_image_pass(checkpoint, tmp_path, capsys):
    big = tmp_path / "big.png"
    sparse_png(big, 400, 300)
    out = tmp_path / "out"
    argv = ["predict", str(checkpoint), str(big), "--out", str(out), "--max-megapixels", "0.1"]
    assert main(argv) == 2
    assert "over the 0.1 MP limit for a whole-image pass" in one_error_line(capsys)
    assert main([*argv, "--tile", "256"]) == 0
    assert "big_mask.png" in {p.name for p in out.iterdir()}


def test_a_large_image_is_noted_with_the_crf_estimate():
    work = Work(whole_image_pass=False, crf_iterations=10, classes=21)
    note = check_size("x.jpg", 6000, 4000, work, limit=30)
    assert note is not None and note.startswith("note: x.jpg is 6000×4000 (24.0 MP): the dense CRF")
    assert "GiB" in note and check_size("x.jpg", 640, 480, work) is None
    assert check_size("x.jpg", 6000, 4000, Work(False, None, 21)) is None  # tiled, no CRF


def test_crf_estimate_grows_with_pixels_and_classes():
    small, big = crf_cost(10**6, 5, 5), crf_cost(24 * 10**6, 5, 5)
    assert big[0] == 24 * small[0] and big[1] == pytest.approx(24 * small[1])
    assert crf_cost(10**6, 10, 5)[0] > small[0]


# --- refine: annotations that cannot be label images, images too large ---


def halves(tmp_path, height: int = 24, width: int = 32):
    photo = random_image(height, width)
    labels = np.zeros((height, width, 3), np.uint8)
    labels[:, : width // 2] = (255, 0, 0)
    labels[:, width // 2 :] = (0, 0, 255)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    return tmp_path / "photo.png", labels


def test_refine_refuses_a_jpeg_compressed_annotation(tmp_path, capsys):
    photo, labels = halves(tmp_path, 64, 96)
    labels[20:40, 30:60] = (0, 255, 0)
    Image.fromarray(labels).save(tmp_path / "labels.jpg", quality=60)
    before = folder_digest(tmp_path)
    out = tmp_path / "refined.png"
    assert main(["refine", str(photo), str(tmp_path / "labels.jpg"), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert "labels.jpg has" in line and f"more than the {MAX_LABEL_COLOURS} classes" in line
    assert "JPEG-compressed annotation" in line and "save the annotation as a PNG" in line
    assert not out.exists() and folder_digest(tmp_path) == before


def test_refine_refuses_an_image_over_the_limit_with_the_estimate(tmp_path, capsys):
    photo, labels = halves(tmp_path, 600, 1000)
    Image.fromarray(labels).save(tmp_path / "labels.png")
    before = folder_digest(tmp_path)
    out = tmp_path / "refined.png"
    argv = ["refine", str(photo), str(tmp_path / "labels.png"), "--out", str(out)]
    assert main([*argv, "--max-megapixels", "0.5"]) == 2
    line = one_error_line(capsys)
    assert "photo.png is 1000×600 (0.6 MP), over the 0.5 MP limit for the dense CRF" in line
    assert "GiB" in line and "downscale the images" in line and "--max-megapixels 1" in line
    assert not out.exists() and folder_digest(tmp_path) == before


def test_refine_checks_sizes_from_the_headers(tmp_path, capsys):
    photo, labels = halves(tmp_path)
    Image.fromarray(labels[:, :-2]).save(tmp_path / "narrow.png")
    out = tmp_path / "refined.png"
    assert main(["refine", str(photo), str(tmp_path / "narrow.png"), "--out", str(out)]) == 2
    assert "narrow.png is 30×24 but" in one_error_line(capsys)
    assert not out.exists()


def test_a_gpu_index_beyond_the_visible_ones_is_named(monkeypatch):
    from segkit.core.errors import SegkitError
    from segkit.infer.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1", what="--device") == torch.device("cuda", 1)
    with pytest.raises(SegkitError, match=r"^--device: there is no GPU cuda:2 \(2 visible: "):
        resolve_device("cuda:2", what="--device")


@pytest.mark.parametrize(
    ("name", "shown"),
    [("a\nb", r"'a\\nb' holds '\\n'"), ("x\x1b[2J", r"'x\\x1b\[2J' holds '\\x1b'"), (3, "3 is")],
)
def test_class_names_are_one_line_of_printable_text(name, shown):
    from segkit.core import DataError
    from segkit.data import SegmentationDataset

    with pytest.raises(DataError, match=f"the class name {shown}"):
        SegmentationDataset(["background", name])
    SegmentationDataset(["background", "[bold]car[/]"])  # brackets are text, not markup


def test_class_names_print_as_written_not_as_console_markup():
    import io

    from rich.console import Console

    from segkit.infer.evaluate import metrics_table

    names = ["background", "[bold]car[/]", "[red]"]
    iou = {name: 0.5 for name in names}
    summary = {"per_class_iou": iou, "miou": 0.5, "pixel_acc": 0.9, "mean_class_acc": 0.6}
    summary["fw_iou"] = 0.7
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(metrics_table(summary, names))
    shown = console.file.getvalue()
    assert "[bold]car[/]" in shown and "[red]" in shown


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
)
def test_running_out_of_memory_is_one_line_not_an_internal_error(
    tmp_path, capsys, monkeypatch, error
):
    from segkit.model import summary

    from .tiny import write_tiny_config

    def exhausted(*args, **kwargs):
        raise error

    monkeypatch.setattr(summary, "layer_summary", exhausted)
    config = write_tiny_config(tmp_path)
    assert main(["summary", str(config), "--input", "3x4000x6000"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: out of memory (") and "smaller images or --input" in line


def test_a_device_given_as_an_image_is_named(checkpoint, tmp_path, capsys):
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    assert main(["predict", str(checkpoint), str(fifo), "--out", str(tmp_path / "out")]) == 2
    assert "is neither an image file nor a folder (a device, pipe or socket)" in one_error_line(
        capsys
    )
