"""What `segkit run` does with its folder: no combination of flags loses a finished run.

Each refusal is one line that names the folder and a safe way on, exits 2, and leaves
every file as it was (the folder is hashed before and after).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from segkit.cli import main
from segkit.core import load_config
from segkit.model import load_checkpoint
from segkit.train.run_dir import RunDirectory, plan_run_directory
from segkit.train.run_files import MANIFEST

from .messages import one_error_line
from .tiny import write_tiny_config

TRAIN = '["train"]'


def folder_state(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with the hash of its bytes."""
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def epochs_recorded(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch run, copied by each test that may change it."""
    folder = tmp_path_factory.mktemp("finished")
    config = write_tiny_config(folder, epochs=1, every=0, steps=TRAIN)
    assert main(["run", str(config), "--run-dir", str(folder / "run")]) == 0
    return config, folder / "run"


@pytest.fixture
def run_copy(finished, tmp_path):
    config, run_dir = finished
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return config, copy


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (
            ["--set", "train.resume=false"],
            ["holds a run", "last.pt", "train.resume = false", "--overwrite"],
        ),
        (
            ["--set", "model.head.fc_channels=24"],
            ["does not match this config's model", "give a new --run-dir", "--overwrite"],
        ),
        (["--resume", "--overwrite"], ["--resume", "--overwrite", "give one of the two"]),
    ],
    ids=["resume-false", "another-model", "resume-and-overwrite"],
)
def test_a_finished_run_is_never_replaced_without_overwrite(run_copy, capsys, overrides, fragments):
    config, run_dir = run_copy
    before = folder_state(run_dir)
    assert main(["run", str(config), "--run-dir", str(run_dir), *overrides]) == 2
    one_error_line(capsys, *fragments)
    assert folder_state(run_dir) == before  # config.toml/json included


def test_resume_into_a_mistyped_folder_is_refused(finished, tmp_path, capsys):
    config, run_dir = finished
    mistyped = run_dir.with_name("rnu")
    assert main(["run", str(config), "--run-dir", str(mistyped), "--resume"]) == 2
    one_error_line(capsys, str(mistyped), "holds no last.pt", "drop --resume")
    assert not mistyped.exists()


def test_resume_needs_a_run_of_the_config(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_tiny_config(tmp_path, steps=TRAIN)
    assert main(["run", str(config), "--resume"]) == 2
    one_error_line(capsys, "no run of 'tiny'", "--run-dir", "drop --resume")
    assert not (tmp_path / "runs").exists()


def test_resume_flag_wins_over_train_resume_false(run_copy):
    config, run_dir = run_copy
    first = load_checkpoint(run_dir / "last.pt")["epoch"]
    argv = ["run", str(config), "--run-dir", str(run_dir), "--resume"]
    assert main([*argv, "--set", "train.resume=false", "--set", "train.epochs=2"]) == 0
    assert (first, load_checkpoint(run_dir / "last.pt")["epoch"]) == (1, 2)
    assert epochs_recorded(run_dir) == [1, 2]
    assert load_config(run_dir / "config.toml").train.epochs == 2  # the config that ran


def test_following_the_advice_starts_clean_and_keeps_other_files(run_copy, capsys):
    config, run_dir = run_copy
    (run_dir / "notes.txt").write_text("mine")
    argv = ["run", str(config), "--run-dir", str(run_dir), "--set", "train.resume=false"]
    assert main(argv) == 2
    advice = one_error_line(capsys, "--overwrite")
    assert "train.resume = false" in advice
    assert main([*argv, "--overwrite", "--set", "train.epochs=2"]) == 0
    assert epochs_recorded(run_dir) == [1, 2]  # the new run's records only, never mixed
    assert load_checkpoint(run_dir / "last.pt")["history"][0]["epoch"] == 1
    assert (run_dir / "notes.txt").read_text() == "mine"


def test_a_run_stopped_before_its_first_checkpoint_starts_over(tmp_path):
    config = write_tiny_config(tmp_path, every=0, steps=TRAIN)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text("stale")
    (run_dir / "metrics.jsonl").write_text('{"epoch": 7, "loss": 1.0}\n')
    record = {"format": "segkit-run-files", "files": ["config.toml", "metrics.jsonl"]}
    (run_dir / MANIFEST).write_text(json.dumps(record))
    assert main(["run", str(config), "--run-dir", str(run_dir)]) == 0
    assert epochs_recorded(run_dir) == [1]
    assert load_config(run_dir / "config.toml").name == "tiny"


@pytest.mark.parametrize("argv", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_files_named_like_a_run_without_its_record_are_not_a_run(tmp_path, capsys, argv):
    """A config.toml kept in a folder is the user's, not a run stopped early."""
    config = write_tiny_config(tmp_path, every=0, steps=TRAIN)
    folder = tmp_path / "experiment"
    folder.mkdir()
    (folder / "config.toml").write_text(config.read_text())
    before = folder_state(tmp_path)
    assert main(["run", str(folder / "config.toml"), "--run-dir", str(folder), *argv]) == 2
    one_error_line(capsys, "holds files that are not a segkit run")
    assert folder_state(tmp_path) == before


@pytest.mark.parametrize(
    ("content", "argv", "fragments"),
    [
        ("notes", [], ["holds files that are not a segkit run", "new or empty folder"]),
        ("notes", ["--overwrite"], ["holds files that are not a segkit run"]),
        (None, ["--set", 'run.steps=["evaluate"]'], ["holds no best.pt or last.pt"]),
    ],
    ids=["foreign-files", "foreign-files-overwrite", "evaluate-without-weights"],
)
def test_a_folder_without_a_run_is_not_taken(tmp_path, capsys, content, argv, fragments):
    config = write_tiny_config(tmp_path, steps=TRAIN)
    run_dir = tmp_path / "mine"
    if content is not None:
        run_dir.mkdir()
        (run_dir / "notes.txt").write_text(content)
    before = folder_state(tmp_path)
    assert main(["run", str(config), "--run-dir", str(run_dir), *argv]) == 2
    one_error_line(capsys, str(run_dir), *fragments)
    assert folder_state(tmp_path) == before
    assert run_dir.exists() == (content is not None)


def test_a_run_refused_by_a_later_check_leaves_no_folder(tmp_path, capsys):
    config = write_tiny_config(tmp_path, train_size=2, steps=TRAIN)
    run_dir = tmp_path / "new"
    argv = ["run", str(config), "--run-dir", str(run_dir), "--set", "data.batch_size=4"]
    assert main(argv) == 2
    one_error_line(capsys, "data.batch_size")
    assert not run_dir.exists()


def test_evaluating_a_run_rewrites_only_its_summary(finished, tmp_path):
    config, run_dir = finished
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = folder_state(copy)
    argv = ["run", str(config), "--run-dir", str(copy), "--set", 'run.steps=["evaluate"]']
    assert main(argv) == 0
    after = folder_state(copy)
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {"summary.json", MANIFEST}  # the summary, and its place in the record


def test_default_folders_of_one_second_differ(tmp_path, monkeypatch, registry):
    monkeypatch.chdir(tmp_path)
    config = load_config(write_tiny_config(tmp_path, steps=TRAIN), registry=registry)
    plans = [plan_run_directory(config, None) for _ in range(3)]
    plans[1].path = plans[2].path = plans[0].path  # as if started in the same second
    made = [plan.create() for plan in plans]
    assert len(set(made)) == 3 and all(path.is_dir() for path in made)
    assert [p.name for p in made[1:]] == [f"{made[0].name}-2", f"{made[0].name}-3"]
    assert made[0].parent == Path("runs") / "tiny"


@pytest.mark.parametrize("name", ["../escape", "/tmp/x", "..", "a\\b", ""])
def test_a_config_name_cannot_leave_the_runs_folder(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    config = write_tiny_config(tmp_path, steps=TRAIN, extra="")
    config.write_text(config.read_text().replace('name = "tiny"', f"name = {json.dumps(name)}"))
    assert main(["config", str(config)]) == 2
    one_error_line(capsys, "name = ", "cannot be a folder name")
    assert main(["run", str(config)]) == 2
    one_error_line(capsys, "cannot be a folder name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


def test_run_directory_plan_of_a_file_is_refused(tmp_path, registry):
    config = load_config(write_tiny_config(tmp_path, steps=TRAIN), registry=registry)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for path in (blocker, blocker / "run"):
        with pytest.raises(Exception, match="choose another with --run-dir"):
            plan_run_directory(config, path)
    assert RunDirectory(tmp_path / "a").create() == tmp_path / "a"
