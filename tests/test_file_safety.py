"""No command writes over its own inputs, over its earlier outputs of the same call, or
over a file it did not create without --overwrite; a failed write keeps the old file
and says why (a full disk, a read-only file system) and which file.

Every refusal is one line, exits 2 and leaves the folder as it was (hashed before and
after).
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import socket
import stat
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segkit.cli import main
from segkit.core import outputs
from segkit.core.outputs import OutputError, check_outputs, safe_name
from segkit.infer.pictures import write_prediction
from segkit.infer.segmenter import Prediction, PredictionPair
from segkit.model import checkpoint as checkpoint_module
from segkit.model.checkpoint import load_checkpoint, save_checkpoint

from .infer_fixtures import random_image, tiny_checkpoint
from .test_run_dir import folder_state, one_error_line
from .tiny import write_tiny_config

REFINE = ["--postprocessor", "densecrf_torch", "--iterations", "1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, registry):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), registry)


def save_photo(path: Path, seed: int = 0, size: tuple[int, int] = (32, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(random_image(*size, seed=seed)).save(path)
    return path


def two_colour_labels(path: Path, size: tuple[int, int] = (32, 40)) -> Path:
    labels = np.zeros((*size, 3), np.uint8)
    labels[:, :10] = (200, 0, 0)
    labels[:, -10:] = (0, 200, 0)
    Image.fromarray(labels).save(path)
    return path


# predict


def test_predict_keeps_inputs_of_the_same_name_apart(checkpoint, tmp_path):
    a, b = save_photo(tmp_path / "a" / "x.png", 1), save_photo(tmp_path / "b" / "x.png", 2)
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(a), str(b), "--out", str(out)]) == 0
    masks = sorted(p.name for p in out.glob("*_mask.png"))
    assert masks == ["a_x_mask.png", "b_x_mask.png"]
    first, second = (np.asarray(Image.open(out / m)) for m in masks)
    assert first.shape == second.shape == (32, 40)


def test_predict_never_writes_over_an_input(checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    save_photo(photos / "x.png", 1)
    save_photo(photos / "x_mask.png", 2)  # x's mask would be written over it
    before = folder_state(tmp_path)
    argv = ["predict", str(checkpoint), str(photos), "--out", str(photos)]
    for extra in ([], ["--overwrite"]):
        assert main([*argv, *extra]) == 2
        one_error_line(capsys, "x_mask.png", "is also an input", "choose another --out")
    assert folder_state(tmp_path) == before


def test_predict_replaces_earlier_files_only_with_overwrite(checkpoint, tmp_path, capsys):
    photo = save_photo(tmp_path / "in" / "p.png")
    out = tmp_path / "out"
    argv = ["predict", str(checkpoint), str(photo), "--out", str(out), "--no-crf"]
    assert main(argv) == 0
    (out / "p_panel.png").write_bytes(b"edited by hand")
    before = folder_state(tmp_path)
    assert main(argv) == 2
    one_error_line(capsys, "p_mask.png", "already exists", "--overwrite")
    assert folder_state(tmp_path) == before
    assert main([*argv, "--overwrite"]) == 0
    assert Image.open(out / "p_panel.png").size[0] > 40  # a panel again


def test_a_link_among_the_outputs_is_refused_even_with_overwrite(checkpoint, tmp_path, capsys):
    photo = save_photo(tmp_path / "in" / "p.png")
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"not to be touched")
    out = tmp_path / "out"
    out.mkdir()
    (out / "p_mask.png").symlink_to(precious)
    argv = ["predict", str(checkpoint), str(photo), "--out", str(out)]
    before = folder_state(tmp_path)
    for extra in ([], ["--overwrite"]):
        assert main([*argv, *extra]) == 2
        one_error_line(capsys, "p_mask.png", "symbolic link")
    assert folder_state(tmp_path) == before
    assert (out / "p_mask.png").is_symlink()


def stream_reader(fifo: Path) -> tuple[threading.Thread, list[bytes]]:
    """A thread that reads ``fifo`` to its end, as a pipe's other side would."""
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as stream:
            received.append(stream.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, received


@pytest.mark.parametrize("through_link", [False, True])
def test_a_fifo_output_is_written_as_a_stream_not_replaced(tmp_path, through_link):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    target = fifo
    if through_link:  # as /dev/stdout links to the process's own descriptor
        target = tmp_path / "stdout"
        target.symlink_to(fifo)
    check_outputs([target])  # nothing is replaced, so no --overwrite is needed
    thread, received = stream_reader(fifo)
    outputs.write_text_atomically(target, "{}")
    thread.join(10)
    assert received == [b"{}"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.path.islink(target) == through_link
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"pipe", target.name})


def test_a_character_device_output_stays_a_device(tmp_path):
    device = tmp_path / "null"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here ({exc})")
    outputs.write_bytes_atomically(device, b"x" * 100)
    assert stat.S_ISCHR(os.lstat(device).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]


def test_special_files_and_dangling_links_are_refused(tmp_path):
    dangling = tmp_path / "gone.json"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match="symbolic link"):
        check_outputs([dangling], overwrite=True)
    with pytest.raises(OutputError, match="symbolic link"):
        outputs.write_text_atomically(dangling, "{}")
    assert not (tmp_path / "nowhere").exists()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock"))
    try:
        with pytest.raises(OutputError, match="device or socket"):
            check_outputs([tmp_path / "sock"], overwrite=True)
    finally:
        server.close()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_follow_the_umask_and_replaced_ones_keep_their_mode(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        outputs.write_text_atomically(tmp_path / "new.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "new.json").st_mode) == mode
    kept = tmp_path / "kept.json"
    kept.write_text("old")
    kept.chmod(0o640)
    outputs.write_text_atomically(kept, "new")
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o640


def test_check_outputs_is_linear_in_the_number_of_files(tmp_path, monkeypatch):
    """Each input and output is looked at a fixed number of times, however many there are."""
    inputs = []
    for i in range(300):
        path = tmp_path / f"{i}.png"
        path.write_bytes(b"")
        inputs.append(path)
    outputs_ = [tmp_path / "out" / f"{i}_{kind}.png" for i in range(300) for kind in "abc"]
    calls = {"stat": 0}
    real_stat = os.stat

    def counting_stat(*args, **kwargs):
        calls["stat"] += 1
        return real_stat(*args, **kwargs)

    monkeypatch.setattr(outputs.os, "stat", counting_stat)
    check_outputs(outputs_, inputs)
    assert calls["stat"] <= len(inputs) + len(outputs_)


def test_output_names_from_inputs_stay_in_their_folder(tmp_path):
    labels = np.zeros((8, 8), np.uint8)
    probs = np.ones((2, 8, 8), np.float32) / 2
    pair = PredictionPair(np.zeros((8, 8, 3), np.uint8), Prediction(labels, probs), None)
    out = tmp_path / "deep" / "out"
    for stem in ("../../escape", "/abs/x", "a\\..\\b", "..", ""):
        for path in write_prediction(out, stem, pair, np.zeros((2, 3), np.uint8)):
            assert path.parent == out and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]
    assert safe_name("../x") == ".._x" and safe_name("..") == "_"


# refine


@pytest.mark.parametrize("target", ["image", "labels"])
def test_refine_never_writes_over_its_inputs(tmp_path, capsys, target):
    image = save_photo(tmp_path / "photo.png")
    labels = two_colour_labels(tmp_path / "labels.png")
    out = image if target == "image" else labels
    before = folder_state(tmp_path)
    for extra in ([], ["--overwrite"]):
        assert main(["refine", str(image), str(labels), "--out", str(out), *REFINE, *extra]) == 2
        one_error_line(capsys, str(out), "is also an input", "choose another --out")
    assert folder_state(tmp_path) == before


def test_refine_replaces_an_existing_file_only_with_overwrite(tmp_path, capsys):
    image = save_photo(tmp_path / "photo.png")
    labels = two_colour_labels(tmp_path / "labels.png")
    out = tmp_path / "refined.png"
    out.write_bytes(b"an earlier result")
    argv = ["refine", str(image), str(labels), "--out", str(out), *REFINE]
    before = folder_state(tmp_path)
    assert main(argv) == 2
    one_error_line(capsys, "refined.png already exists", "--overwrite")
    assert folder_state(tmp_path) == before
    assert main([*argv, "--overwrite"]) == 0
    assert Image.open(out).size == (40, 32)


def test_refine_names_an_unknown_output_format(tmp_path, capsys):
    image = save_photo(tmp_path / "photo.png")
    labels = two_colour_labels(tmp_path / "labels.png")
    before = folder_state(tmp_path)
    assert main(["refine", str(image), str(labels), "--out", str(tmp_path / "r.txt")]) == 2
    one_error_line(capsys, "'.txt' is not an image format", "use a .png path")
    assert folder_state(tmp_path) == before


@pytest.mark.parametrize(
    ("suffix", "kind"), [(".jpg", "JPEG"), (".webp", "WEBP"), (".jp2", "JPEG2000")]
)
def test_refine_refuses_lossy_label_formats(tmp_path, capsys, suffix, kind):
    image = save_photo(tmp_path / "photo.png")
    labels = two_colour_labels(tmp_path / "labels.png")
    before = folder_state(tmp_path)
    out = tmp_path / f"r{suffix}"
    assert main(["refine", str(image), str(labels), "--out", str(out)]) == 2
    one_error_line(capsys, f"{kind} compresses with loss", "use a .png path")
    assert folder_state(tmp_path) == before


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".ppm", ".gif"])
def test_refine_writes_labels_exactly_in_every_lossless_format(tmp_path, suffix):
    image = save_photo(tmp_path / "photo.png")
    labels = two_colour_labels(tmp_path / "labels.png")
    out = tmp_path / f"r{suffix}"
    argv = ["refine", str(image), str(labels), "--out", str(out), *REFINE]
    assert main(argv) == 0
    colours = np.unique(np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3), axis=0)
    assert {tuple(c) for c in colours} <= {(200, 0, 0), (0, 200, 0)}


def fail_writes_with(monkeypatch, code: int) -> None:
    """Make every atomic write of segkit's outputs fail as the system would with ``code``."""

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(outputs.tempfile, "mkstemp", refuse)


@pytest.mark.parametrize(
    ("code", "fragments"),
    [
        (errno.EROFS, ["the file system is read-only", "write to another folder"]),
        (errno.ENOSPC, ["disk full", "free some space"]),
    ],
    ids=["read-only", "disk-full"],
)
def test_refine_write_errors_say_what_happened(tmp_path, capsys, monkeypatch, code, fragments):
    image = save_photo(tmp_path / "photo.png")
    labels = two_colour_labels(tmp_path / "labels.png")
    out = tmp_path / "refined.png"
    before = folder_state(tmp_path)
    fail_writes_with(monkeypatch, code)
    assert main(["refine", str(image), str(labels), "--out", str(out), *REFINE]) == 2
    line = one_error_line(capsys, str(out), *fragments)
    assert ".png path" not in line
    assert folder_state(tmp_path) == before


# eval --json and export


def test_eval_json_is_never_the_checkpoint_nor_an_existing_file(checkpoint, tmp_path, capsys):
    copy = tmp_path / "model.pt"
    shutil.copy(checkpoint, copy)
    report = tmp_path / "report.json"
    report.write_text("{}")
    before = folder_state(tmp_path)
    assert main(["eval", str(copy), "--json", str(copy), "--overwrite"]) == 2
    one_error_line(capsys, "model.pt is also an input")
    assert main(["eval", str(copy), "--json", str(report)]) == 2
    one_error_line(capsys, "report.json already exists", "--overwrite", "--json")
    assert folder_state(tmp_path) == before


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load's deprecation
def test_export_never_replaces_the_checkpoint_and_needs_overwrite(checkpoint, tmp_path, capsys):
    copy = tmp_path / "model.pt"
    shutil.copy(checkpoint, copy)
    before = folder_state(tmp_path)
    assert main(["export", str(copy), "--out", str(copy), "--overwrite"]) == 2
    one_error_line(capsys, "model.pt is also an input")
    exported = tmp_path / "model.ts"
    exported.write_bytes(b"an earlier export")
    before = folder_state(tmp_path)
    argv = ["export", str(copy), "--out", str(exported), "--no-check"]
    assert main(argv) == 2
    one_error_line(capsys, "model.ts already exists", "--overwrite")
    assert folder_state(tmp_path) == before
    assert main([*argv, "--overwrite"]) == 0
    assert torch.jit.load(str(exported)) is not None


def test_a_full_disk_during_export_keeps_the_earlier_file(
    checkpoint, tmp_path, capsys, monkeypatch
):
    exported = tmp_path / "model.ts"
    exported.write_bytes(b"an earlier export")
    before = folder_state(tmp_path)
    fail_writes_with(monkeypatch, errno.ENOSPC)
    argv = ["export", str(checkpoint), "--out", str(exported), "--no-check", "--overwrite"]
    assert main(argv) == 2
    one_error_line(capsys, "disk full", str(exported))
    assert folder_state(tmp_path) == before


def test_check_outputs_refuses_one_path_twice_and_folders(tmp_path):
    with pytest.raises(OutputError, match="two outputs of this call"):
        check_outputs([tmp_path / "a.png", tmp_path / "b.png", tmp_path / "a.png"])
    with pytest.raises(OutputError, match="is a folder"):
        check_outputs([tmp_path], overwrite=True)


# crash consistency: a full disk while a checkpoint is written


def write_to_a_full_disk(monkeypatch) -> list[str]:
    """Give every checkpoint write a real full disk (``/dev/full``): each write fails with
    ENOSPC as it would on a full file system.  Returns the temporary names handed out."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    mkstemp, names = checkpoint_module.tempfile.mkstemp, []

    def full_disk(*args, **kwargs):
        fd, name = mkstemp(*args, **kwargs)
        os.close(fd)
        names.append(name)
        return os.open("/dev/full", os.O_WRONLY), name

    monkeypatch.setattr(checkpoint_module.tempfile, "mkstemp", full_disk)
    return names


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1, "model": {"w": torch.ones(3)}})
    names = write_to_a_full_disk(monkeypatch)
    with pytest.raises(OutputError, match=rf"^disk full: cannot write {path}"):
        save_checkpoint(path, {"epoch": 2, "model": {"w": torch.zeros(300_000)}})
    assert names and not any(Path(name).exists() for name in names)
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_run_whose_disk_fills_up_can_resume(tmp_path, capsys, monkeypatch):
    config = write_tiny_config(tmp_path, epochs=1, every=0, steps='["train"]')
    run_dir = tmp_path / "run"
    argv = ["run", str(config), "--run-dir", str(run_dir)]
    assert main(argv) == 0
    kept = load_checkpoint(run_dir / "last.pt")
    write_to_a_full_disk(monkeypatch)
    assert main([*argv, "--set", "train.epochs=2"]) == 2
    one_error_line(capsys, "disk full", str(run_dir / "last.pt"))
    state = load_checkpoint(run_dir / "last.pt")
    assert state["epoch"] == kept["epoch"] == 1
    assert all(torch.equal(state["model"][k], kept["model"][k]) for k in kept["model"])
    assert not list(run_dir.glob(".*.tmp"))
    monkeypatch.undo()  # space again: the same command goes on from epoch 1
    assert main([*argv, "--set", "train.epochs=2"]) == 0
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 2


def test_dev_stdout_is_written_to_the_commands_own_output(checkpoint, tmp_path):
    """`--out /dev/stdout` with the output redirected to a file: the bytes land in that
    file after what was printed before, not in a new file opened over it."""
    import subprocess
    import sys

    captured = tmp_path / "captured.bin"
    command = [sys.executable, "-m", "segkit", "export", str(checkpoint)]
    command += ["--out", "/dev/stdout", "--format", "torchscript"]
    with captured.open("wb") as out:
        out.write(b"before\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, timeout=300)
    assert done.returncode == 0, done.stderr
    data = captured.read_bytes()
    assert data.startswith(b"before\nPK\x03\x04")  # the TorchScript zip follows, alone
    assert b"checked with torch.jit" in done.stderr  # the messages keep out of its way
    names = zipfile.ZipFile(io.BytesIO(data[len(b"before\n") :])).namelist()
    assert any(name.endswith("extra/segkit.json") for name in names), names
