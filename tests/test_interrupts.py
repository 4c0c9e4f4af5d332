"""Ctrl-C and SIGTERM at every phase of a run: a prompt stop, exit 130 or 143, one line
saying what was kept, a loadable checkpoint, and nothing else touched."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segkit.cli import main
from segkit.core.interrupts import Interrupted, stop_on_signals, uninterruptible
from segkit.model import checkpoint as checkpoint_module
from segkit.model import load_checkpoint
from segkit.model.checkpoint import save_checkpoint

from .infer_fixtures import random_image, tiny_checkpoint
from .tiny import write_tiny_config

# --- the signal handling itself -------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_raises_interrupted_with_its_exit_code(signum, code):
    previous = signal.getsignal(signum)
    with pytest.raises(Interrupted) as caught, stop_on_signals():
        os.kill(os.getpid(), signum)
        time.sleep(5)  # never reached: the handler raises at once
    assert caught.value.exit_code == code
    assert str(caught.value) == f"interrupted by {signal.Signals(signum).name}"
    assert signal.getsignal(signum) == previous


def test_a_checkpoint_being_written_is_finished_before_the_stop(tmp_path):
    path = tmp_path / "last.pt"
    finished = []
    with pytest.raises(Interrupted), stop_on_signals(), uninterruptible():
        os.kill(os.getpid(), signal.SIGINT)
        save_checkpoint(path, {"step": 1})
        finished.append(True)
    assert finished == [True]
    assert load_checkpoint(path)["step"] == 1


def test_a_second_ctrl_c_stops_a_checkpoint_write_and_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})
    real_save = checkpoint_module.torch.save

    def save_then_two_ctrl_c(payload, file):
        real_save(payload, file)
        os.kill(os.getpid(), signal.SIGINT)  # waits for the write
        os.kill(os.getpid(), signal.SIGINT)  # stops at once

    monkeypatch.setattr(checkpoint_module.torch, "save", save_then_two_ctrl_c)
    with pytest.raises(Interrupted), stop_on_signals(), uninterruptible():
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


# --- a real `segkit run`, stopped at each phase ---------------------------------------

CRF = '\n[[postprocessors]]\nname = "densecrf"\niterations = 5\n'


def _slow_enough_config(folder: Path) -> Path:
    """Tiny, with phases long enough to be caught in the middle: 16 training steps, 24
    validation images up to 192 px, a CRF and 12 prediction panels."""
    config = write_tiny_config(
        folder,
        train_size=32,
        steps='["train", "evaluate", "predict"]',
        extra=CRF + "\n[predict]\nsamples = 12\n",
    )
    text = config.read_text()
    for old, new in [("val_size = 6", "val_size = 24"), ("max_size = 61", "max_size = 192")]:
        text = text.replace(old, new)
    config.write_text(text.replace("workers = 0", "workers = 1"))
    return config


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class _Run:
    """A ``segkit run`` subprocess whose output goes to a file the test can poll."""

    def __init__(self, config: Path, run_dir: Path, log: Path, *overrides: str) -> None:
        args = [sys.executable, "-m", "segkit", "run", str(config), "--run-dir", str(run_dir)]
        for item in overrides:
            args += ["--set", item]
        self.log, self.err = log, log.with_suffix(".err")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("w") as out, self.err.open("w") as err:
            # a session of its own, as a terminal's foreground job: Ctrl-C there reaches
            # the whole process group, DataLoader workers included
            self.process = subprocess.Popen(
                args, stdout=out, stderr=err, env=env, start_new_session=True
            )

    def signal_when(self, marker: str, signum: int, group: bool = False) -> tuple[int, str]:
        """Send ``signum`` once ``marker`` is printed; the exit code and the error line."""
        deadline = time.monotonic() + 300
        while marker not in self.log.read_text():
            if self.process.poll() is not None:
                pytest.fail(f"the run ended before '{marker}': {self.err.read_text()[-2000:]}")
            assert time.monotonic() < deadline, f"'{marker}' never appeared"
            time.sleep(0.01)
        if group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)
        code = self.process.wait(timeout=120)
        lines = [line for line in self.err.read_text().splitlines() if line.strip()]
        assert len(lines) == 1, lines
        return code, lines[0]


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    """A finished run beside the interrupted ones, which must stay as it is."""
    folder = tmp_path_factory.mktemp("earlier")
    config = write_tiny_config(folder, steps='["train"]')
    assert main(["run", str(config), "--run-dir", str(folder / "out")]) == 0
    return folder


def test_stops_at_every_phase_keep_a_resumable_run(tmp_path, earlier_run):
    earlier = _hashes(earlier_run)
    config = _slow_enough_config(tmp_path)
    run_dir = tmp_path / "out"
    last = run_dir / "last.pt"

    # 1. Ctrl-C at the terminal while training: the step finishes, last.pt holds it
    run = _Run(config, run_dir, tmp_path / "1.log")
    code, line = run.signal_when("epoch 1  1/", signal.SIGINT, group=True)
    assert code == 130, line
    assert line.startswith("interrupted by SIGINT ") and f"--run-dir {run_dir} to resume" in line
    state = load_checkpoint(last)
    assert (state["epoch"], state["step"]) >= (0, 1)
    assert _hashes(earlier_run) == earlier

    # 2. SIGTERM during the epoch's evaluation: the epoch's training is already saved
    run = _Run(config, run_dir, tmp_path / "2.log")
    code, line = run.signal_when("evaluating  1/", signal.SIGTERM)
    assert code == 143, line
    assert line.startswith("interrupted by SIGTERM while evaluating epoch 1; ")
    state = load_checkpoint(last)
    assert (state["epoch"], state["step"], state["pending_evaluation"]) == (1, 0, True)
    assert _hashes(earlier_run) == earlier

    # 3. Ctrl-C during the final evaluation with the CRF, after the resume evaluated
    # epoch 1 again: training is complete and kept, with its record
    run = _Run(config, run_dir, tmp_path / "3.log")
    code, line = run.signal_when("final evaluation  1/", signal.SIGINT)
    assert code == 130, line
    assert line.startswith("interrupted by SIGINT during the final evaluation; ")
    state = load_checkpoint(last)
    assert (state["epoch"], state["step"], state["pending_evaluation"]) == (1, 0, False)
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], "miou" in r) for r in records] == [(1, True)]
    assert not (run_dir / "summary.json").exists()
    assert _hashes(earlier_run) == earlier

    # 4. Ctrl-C while predicting: the checkpoints and records are untouched
    kept = {k: v for k, v in _hashes(run_dir).items() if k.endswith((".pt", ".jsonl"))}
    run = _Run(config, run_dir, tmp_path / "4.log", 'run.steps=["predict"]')
    code, line = run.signal_when("predicting  1/", signal.SIGINT)
    assert code == 130, line
    assert line.startswith("interrupted by SIGINT during prediction; ")
    assert {k: v for k, v in _hashes(run_dir).items() if k in kept} == kept
    assert _hashes(earlier_run) == earlier


def test_an_interrupted_predict_says_what_it_kept(tmp_path, registry):
    """Ctrl-C in the middle of a folder: the images done have all their files, no
    temporary file is left, and the one line says how many were done and where."""
    checkpoint = tiny_checkpoint(tmp_path, registry, extra=CRF)
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(150):
        Image.fromarray(random_image(96, 128, seed=index)).save(photos / f"{index:03}.png")
    out = tmp_path / "out"
    log, err = tmp_path / "predict.log", tmp_path / "predict.err"
    args = [sys.executable, "-m", "segkit", "predict", str(checkpoint), str(photos)]
    args += ["--out", str(out), "--batch-size", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(args, stdout=stdout, stderr=stderr, env=env)
    deadline = time.monotonic() + 300
    while "predicting" not in log.read_text():
        assert process.poll() is None, err.read_text()[-2000:]
        assert time.monotonic() < deadline, "predict never started"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    lines = [line for line in err.read_text().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    match = re.fullmatch(
        r"interrupted by SIGINT while predicting; (\d+) of 150 image\(s\) predicted, their "
        r"files complete in (.+); the others were not written",
        lines[0],
    )
    assert match and match.group(2) == str(out), lines[0]
    done = int(match.group(1))
    assert 1 <= done < 150
    written = sorted(p.name for p in out.iterdir())
    stems = sorted({name.rsplit("_", 1)[0] for name in written})
    assert len(stems) == done
    kinds = ("mask", "overlay", "panel")
    assert written == sorted(f"{stem}_{kind}.png" for stem in stems for kind in kinds)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if fields[1] == str(pid):
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_refine_with_pydensecrf_stops_at_once(tmp_path, signum):
    """pydensecrf holds the GIL for the whole inference: it runs in a worker process,
    which goes with the command when the command is stopped."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (750, 1000, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    labels = np.zeros((750, 1000, 3), np.uint8)
    labels[:, :300], labels[:, -300:] = (200, 0, 0), (0, 200, 0)
    Image.fromarray(labels).save(tmp_path / "labels.png")
    out = tmp_path / "refined.png"
    args = [sys.executable, "-m", "segkit", "refine", str(tmp_path / "p.png")]
    args += [str(tmp_path / "labels.png"), "--out", str(out), "--iterations", "500"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (workers := _children(process.pid)):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the CRF never started"
        time.sleep(0.05)
    time.sleep(1)  # well inside the CRF's minutes
    sent = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert process.returncode == 128 + signum
    name = signal.Signals(signum).name
    assert err.strip() == f"interrupted by {name} while refining; {out} was not written"
    assert not out.exists()
    time.sleep(0.5)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
