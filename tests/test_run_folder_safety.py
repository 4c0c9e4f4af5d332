"""A run folder holds the run's files and the user's: `--overwrite` removes only what the
earlier run recorded as its own, a link where a run file belongs is refused, two runs
never share a folder at once, and a damaged file of the run is never trusted.

Every refusal is one line, exits 2 and leaves the folder as it was (hashed before and
after).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from segkit.cli import main
from segkit.train.run_files import MANIFEST

from .test_run_dir import epochs_recorded, folder_state, one_error_line
from .tiny import write_tiny_config

TRAIN_AND_PREDICT = '["train", "predict"]'
AUTO_WEIGHTS = '\n[[train.loss]]\nname = "cross_entropy"\nclass_weights = "auto"\n'


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch run with prediction panels, copied by each test."""
    folder = tmp_path_factory.mktemp("finished")
    config = write_tiny_config(
        folder, every=0, steps=TRAIN_AND_PREDICT, extra="\n[predict]\nsamples = 2\n" + AUTO_WEIGHTS
    )
    assert main(["run", str(config), "--run-dir", str(folder / "run")]) == 0
    return config, folder / "run"


@pytest.fixture
def run_copy(finished, tmp_path):
    config, run_dir = finished
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, symlinks=True)
    return config, copy


def test_the_run_records_every_file_it_wrote(finished):
    _, run_dir = finished
    record = json.loads((run_dir / MANIFEST).read_text())
    written = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    assert set(record["files"]) == written - {MANIFEST}
    assert {"last.pt", "class_frequencies.json", "config.toml"} <= set(record["files"])
    assert sum(name.startswith("predictions/") for name in record["files"]) == 2 * 3


def test_overwrite_removes_the_earlier_runs_files_and_keeps_the_users(run_copy):
    config, run_dir = run_copy
    (run_dir / "predictions" / "holiday_panel.png").write_bytes(b"the user's own")
    (run_dir / "summary.json").mkdir()  # a folder named like a run file
    (run_dir / "summary.json" / "keep.txt").write_text("mine")
    (run_dir / ".notes.tmp").write_text("a hidden file of the user's")
    argv = ["run", str(config), "--run-dir", str(run_dir), "--overwrite"]
    assert main([*argv, "--set", "train.epochs=2", "--set", 'run.steps=["train"]']) == 0
    assert (run_dir / "predictions" / "holiday_panel.png").read_bytes() == b"the user's own"
    assert sorted(p.name for p in (run_dir / "predictions").iterdir()) == ["holiday_panel.png"]
    assert (run_dir / "summary.json" / "keep.txt").read_text() == "mine"
    assert (run_dir / ".notes.tmp").exists()
    assert epochs_recorded(run_dir) == [1, 2]
    record = json.loads((run_dir / MANIFEST).read_text())["files"]
    assert not any(name.startswith("predictions/") for name in record)


def test_a_run_written_without_a_record_gives_up_only_its_top_level_files(run_copy):
    config, run_dir = run_copy
    (run_dir / MANIFEST).unlink()
    panels = sorted(p.name for p in (run_dir / "predictions").iterdir())
    argv = ["run", str(config), "--run-dir", str(run_dir), "--overwrite"]
    assert main([*argv, "--set", 'run.steps=["train"]']) == 0
    assert sorted(p.name for p in (run_dir / "predictions").iterdir()) == panels
    assert epochs_recorded(run_dir) == [1]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"format": "segkit-run-files", "files": ["last.pt", ', "not JSON"),
        ('{"format": "segkit-run-files", "files": "last.pt"}', "is not a list of paths"),
        ('{"format": "segkit-run-files", "files": ["../outside.txt"]}', "is not a list of paths"),
        ('["last.pt"]', "not segkit's record"),
        (b"\xff\xfe", "is damaged"),
    ],
    ids=["truncated", "wrong-type", "outside", "no-record", "not-text"],
)
def test_a_damaged_record_is_one_line_and_removes_nothing(run_copy, capsys, content, why):
    config, run_dir = run_copy
    manifest = run_dir / MANIFEST
    manifest.write_bytes(content if isinstance(content, bytes) else content.encode())
    (run_dir.parent / "outside.txt").write_text("not the run's")
    before = folder_state(run_dir.parent)
    assert main(["run", str(config), "--run-dir", str(run_dir), "--overwrite"]) == 2
    one_error_line(capsys, str(manifest), why, "choose another --run-dir")
    assert folder_state(run_dir.parent) == before


@pytest.mark.parametrize("name", ["metrics.jsonl", "predictions/tiny_0000_panel.png", "last.pt"])
def test_a_link_where_a_run_file_belongs_is_refused(run_copy, tmp_path, capsys, name):
    config, run_dir = run_copy
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not to be written")
    planted = run_dir / name
    planted.unlink(missing_ok=True)
    planted.symlink_to(elsewhere)
    before = folder_state(tmp_path)
    for extra in ([], ["--overwrite"], ["--set", "train.epochs=2"]):
        assert main(["run", str(config), "--run-dir", str(run_dir), *extra]) == 2
        one_error_line(capsys, f"{name} is a symbolic link", "remove the link")
    assert folder_state(tmp_path) == before
    assert planted.is_symlink()


def test_a_linked_predictions_folder_is_refused(run_copy, tmp_path, capsys):
    config, run_dir = run_copy
    shutil.rmtree(run_dir / "predictions")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run_dir / "predictions").symlink_to(elsewhere, target_is_directory=True)
    before = folder_state(tmp_path)
    assert main(["run", str(config), "--run-dir", str(run_dir), "--overwrite"]) == 2
    one_error_line(capsys, "predictions is a symbolic link")
    assert folder_state(tmp_path) == before and not any(elsewhere.iterdir())


@pytest.mark.parametrize(
    "damage",
    ['{"pixels": [1, 2', '{"pixels": [-5, 3, 1, 1, 1]}', '{"pixels": "many"}', "\x00\x01"],
    ids=["truncated", "negative", "wrong-type", "binary"],
)
def test_damaged_class_counts_are_counted_again_not_trusted(run_copy, damage):
    config, run_dir = run_copy
    counts = json.loads((run_dir / "class_frequencies.json").read_text())["pixels"]
    (run_dir / "class_frequencies.json").write_text(damage)
    argv = ["run", str(config), "--run-dir", str(run_dir), "--set", "train.epochs=2"]
    assert main([*argv, "--set", 'run.steps=["train"]']) == 0
    assert json.loads((run_dir / "class_frequencies.json").read_text())["pixels"] == counts
    assert epochs_recorded(run_dir) == [1, 2]


def test_a_second_run_on_a_busy_folder_is_refused_at_once(tmp_path):
    """Two `segkit run` on one folder: the second stops with one line while the first
    trains on, undisturbed, until it is stopped itself."""
    config = write_tiny_config(tmp_path, train_size=4000, every=0, steps='["train"]')
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "segkit", "run", str(config), "--run-dir", str(run_dir)]
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300
        while "epoch 1" not in log.read_text():
            assert first.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the first run never started training"
            time.sleep(0.05)
        before = folder_state(run_dir)
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert first.poll() is None, "the first run ended while the second was refused"
    finally:
        first.send_signal(signal.SIGINT)
        first_code = first.wait(timeout=120)
    assert second.returncode == 2, second.stderr
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is in use by another segkit run" in lines[0], lines
    assert set(before) <= set(folder_state(run_dir))  # the second removed nothing
    assert first_code == 130, log.read_text()[-2000:]
    assert (run_dir / "last.pt").is_file()  # the first stopped as any run does


def test_overwrite_never_removes_the_config_it_runs(run_copy, capsys):
    _, run_dir = run_copy
    before = folder_state(run_dir)
    argv = ["run", str(run_dir / "config.toml"), "--run-dir", str(run_dir), "--overwrite"]
    assert main(argv) == 2
    one_error_line(capsys, "--overwrite would remove", "config.toml", "copy it out of")
    assert folder_state(run_dir) == before


def _wait_after_signalling(started) -> None:
    started.set()
    time.sleep(30)


def test_a_process_forked_during_a_run_does_not_keep_its_folder_locked(tmp_path):
    """Worker processes forked while a run holds its lock (the dense CRF's pool outlives
    the run) must not hold the lock once the run lets the folder go."""
    import multiprocessing

    from segkit.train.run_files import lock_run_folder

    lock = lock_run_folder(tmp_path)
    context = multiprocessing.get_context("fork")
    started = context.Event()
    child = context.Process(target=_wait_after_signalling, args=(started,))
    child.start()
    try:
        assert started.wait(60)
        lock.release()
        lock_run_folder(tmp_path).release()  # taken again while the child still lives
    finally:
        child.kill()
        child.join()
