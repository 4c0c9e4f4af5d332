"""Hand-edited, foreign, truncated checkpoints: one line naming what is wrong, nothing touched.

Every command that loads a checkpoint (predict, eval, export, summary, a resumed run,
and ``Segmenter.from_checkpoint``) refuses each file below with exit code 2 and one
line, and leaves every file in the folder as it was.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from segkit.cli import main
from segkit.core import CheckpointError
from segkit.infer import Segmenter

from .infer_fixtures import random_image, tiny_checkpoint
from .messages import one_error_line
from .tiny import write_tiny_config


def folder_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory, registry) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("good"), registry)


def edited(payload: dict, edit: Callable[[dict], object]) -> dict:
    edit(payload)
    return payload


def first_weight(payload: dict) -> str:
    return next(iter(payload["model"]))


#: name -> (edit of a good checkpoint's payload, what the message must say)
EDITS: dict[str, tuple[Callable[[dict], object], str]] = {
    "no-config": (lambda p: p.pop("config"), "it has no 'config'"),
    "no-weights": (lambda p: p.pop("model"), "it has no 'model' weights"),
    "no-palette": (lambda p: p.pop("palette"), "it has no 'palette'"),
    "classes-as-text": (
        lambda p: p.update(num_classes="5"),
        "its 'num_classes' is str '5', not int",
    ),
    "config-as-text": (lambda p: p.update(config="tiny.toml"), "its 'config' is str"),
    "weights-as-list": (lambda p: p.update(model=[1, 2]), "its 'model' is list"),
    "weight-as-list": (
        lambda p: p["model"].update({first_weight(p): [0.0, 1.0]}),
        "is list [0.0, 1.0], not a tensor",
    ),
    "class-names-short": (
        lambda p: p.update(class_names=p["class_names"][:-1]),
        "its class_names (4 entries) do not name its 5 classes",
    ),
    "class-name-number": (
        lambda p: p["class_names"].__setitem__(0, 7),
        "its class_names (5 entries) do not name its 5 classes",
    ),
    "class-name-escape-code": (
        lambda p: p["class_names"].__setitem__(1, "car\x1b[31m"),
        "its class name 'car\\x1b[31m' holds '\\x1b', not printable text",
    ),
    "class-name-line-break": (
        lambda p: p["class_names"].__setitem__(1, "road\nsky"),
        "its class name 'road\\nsky' holds '\\n', not printable text",
    ),
    "palette-short": (
        lambda p: p.update(palette=p["palette"][:2]),
        "its palette has 2 colours for 5 classes",
    ),
    "palette-colour-out-of-range": (
        lambda p: p["palette"].__setitem__(1, [300, 0, 0]),
        "its palette entry 1 is [300, 0, 0], not an RGB triple 0-255",
    ),
    "one-class": (
        lambda p: p.update(num_classes=1, class_names=["x"]),
        "its num_classes is 1; a model has at least 2 classes",
    ),
    "weight-missing": (
        lambda p: p["model"].pop(first_weight(p)),
        "weights do not match the model its config describes (missing backbone.",
    ),
    "weight-of-another-shape": (
        lambda p: p["model"].update({first_weight(p): torch.zeros(1, 2, 3)}),
        "weights do not match the model its config describes (shape backbone.",
    ),
    "unknown-backbone": (
        lambda p: p["config"]["model"]["backbone"].update(name="vgg_unknown"),
        "its stored config is not usable here (model.backbone: unknown backbone 'vgg_unknown'",
    ),
    "version-as-text": (lambda p: p.update(version="2"), "its format version is '2'"),
    "newer-version": (lambda p: p.update(version=99), "written by a newer segkit (format 99)"),
}


#: name -> (writer of a foreign or damaged file, what the message must say)
FILES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "plain-state-dict": (
        lambda good, path: torch.save(torch.load(good, weights_only=True)["model"], path),
        "is not a segkit checkpoint (it holds a plain state dict of",
    ),
    "lightning-style": (
        lambda good, path: torch.save({"state_dict": {}, "epoch": 3}, path),
        "no 'segkit-checkpoint' marker; it holds the keys 'state_dict', 'epoch'",
    ),
    "truncated": (
        lambda good, path: path.write_bytes(good.read_bytes()[: good.stat().st_size // 2]),
        "is not a readable segkit checkpoint: it is truncated, damaged or not a PyTorch file",
    ),
    "empty": (lambda good, path: path.write_bytes(b""), "it is truncated, damaged"),
    "a-list": (lambda good, path: torch.save([1, 2], path), "it holds a list, not a dict"),
}


@pytest.fixture
def workspace(tmp_path) -> Path:
    """A folder with a photo, where the bad checkpoint is written; its hashes are compared."""
    Image.fromarray(random_image(40, 56)).save(tmp_path / "photo.png")
    return tmp_path


def write_bad(kind: str, good: Path, folder: Path) -> tuple[Path, str]:
    path = folder / "bad.pt"
    if kind in EDITS:
        edit, message = EDITS[kind]
        torch.save(edited(torch.load(good, weights_only=True), edit), path)
    else:
        write, message = FILES[kind]
        write(good, path)
    return path, message


def command(name: str, checkpoint: Path, folder: Path) -> list[str]:
    return {
        "predict": ["predict", str(checkpoint), str(folder / "photo.png"), "--out", str(folder)],
        "eval": ["eval", str(checkpoint), "--json", str(folder / "metrics.json")],
        "export": ["export", str(checkpoint), "--out", str(folder / "net.onnx")],
        "summary": ["summary", str(checkpoint), "--input", "3x32x32"],
    }[name]


ALL = [*EDITS, *FILES]
#: ``summary`` describes a network: it checks the weights' types but never loads them;
#: a file cut short is no zip archive any more, so it reads it as a config (tested there).
NOT_SUMMARY = ("weight-missing", "weight-of-another-shape", "empty", "truncated")
SUMMARY = [kind for kind in ALL if kind not in NOT_SUMMARY]


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("name", ["predict", "eval", "export"])
def test_inference_commands_refuse_a_bad_checkpoint(name, kind, good_checkpoint, workspace, capsys):
    bad, message = write_bad(kind, good_checkpoint, workspace)
    before = folder_hashes(workspace)
    assert main(command(name, bad, workspace)) == 2
    line = one_error_line(capsys)
    assert message in line, line
    assert str(bad) in line  # which file
    assert folder_hashes(workspace) == before


@pytest.mark.parametrize("kind", SUMMARY)
def test_summary_refuses_a_bad_checkpoint(kind, good_checkpoint, workspace, capsys):
    bad, message = write_bad(kind, good_checkpoint, workspace)
    before = folder_hashes(workspace)
    assert main(command("summary", bad, workspace)) == 2
    assert message in one_error_line(capsys)
    assert folder_hashes(workspace) == before


def test_summary_describes_a_good_checkpoint(good_checkpoint, capsys):
    assert main(["summary", str(good_checkpoint), "--input", "3x32x32"]) == 0
    out = capsys.readouterr().out
    assert "input 1×3×32×32, 5 classes" in out and "Total params:" in out


@pytest.mark.parametrize("kind", ALL)
def test_segmenter_raises_the_same_line(kind, good_checkpoint, workspace, registry):
    bad, message = write_bad(kind, good_checkpoint, workspace)
    with pytest.raises(CheckpointError) as caught:
        Segmenter.from_checkpoint(bad, "cpu", registry)
    assert message in str(caught.value) and "\n" not in str(caught.value)


# --- a resumed run: last.pt edited by hand ---


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """A config and the run folder of one short epoch."""
    folder = tmp_path_factory.mktemp("run")
    config = write_tiny_config(folder, epochs=1, steps='["train"]')
    assert main(["run", str(config), "--run-dir", str(folder / "out")]) == 0
    return config, folder / "out"


#: name -> (edit of a finished run's last.pt, what the message must say)
RESUME_EDITS: dict[str, tuple[Callable[[dict], object], str]] = {
    "no-optimizer": (lambda p: p.pop("optimizer"), "it has no 'optimizer' to resume from"),
    "epoch-as-text": (lambda p: p.update(epoch="1"), "its 'epoch' is str '1', not int"),
    "negative-step": (lambda p: p.update(step=-4), "its epoch or step is negative"),
    "rng-without-torch": (
        lambda p: p["rng"].pop("torch"),
        "its 'rng' lacks the torch, numpy or python state",
    ),
    # a resumed run's class names are checked as a predicting checkpoint's are
    **{name: EDITS[name] for name in ("class-name-escape-code", "class-name-line-break")},
    "palette-short": (lambda p: p.update(palette=[[0, 0, 0]]), "its palette has 1 colours"),
    "weights-as-list": (lambda p: p.update(model=[]), "its 'model' is list"),
}


@pytest.mark.parametrize("kind", [*RESUME_EDITS, "truncated", "plain-state-dict"])
def test_resume_refuses_a_hand_edited_last_checkpoint(kind, finished_run, tmp_path, capsys):
    config, finished = finished_run
    run_dir = tmp_path / "out"
    shutil.copytree(finished, run_dir)
    last = run_dir / "last.pt"
    if kind in RESUME_EDITS:
        edit, message = RESUME_EDITS[kind]
        torch.save(edited(torch.load(last, weights_only=True), edit), last)
    else:
        write, message = FILES[kind]
        good = tmp_path / "good.pt"
        shutil.copy(finished / "last.pt", good)
        write(good, last)
    # The run's own records must survive the refusal (its config files are rewritten by
    # the run as it starts, which the run-folder rules govern, not the checkpoint's).
    kept = {k: v for k, v in folder_hashes(run_dir).items() if not k.startswith("config.")}
    code = main(["run", str(config), "--run-dir", str(run_dir), "--set", "train.epochs=2"])
    assert code == 2
    line = one_error_line(capsys)
    assert message in line and str(last) in line, line
    after = {k: v for k, v in folder_hashes(run_dir).items() if not k.startswith("config.")}
    assert after == kept


def test_long_messages_are_shortened_at_a_word_not_in_the_middle_of_one():
    from segkit.core.errors import first_line

    message = "the file holds " + "a very long explanation " * 20 + "\nand a second line"
    short = first_line(message, 120)
    kept = short.removesuffix("…")
    assert len(short) <= 120 and kept != short
    assert message.startswith(kept) and message[len(kept)] == " "  # whole words only
    assert first_line("one line\ntwo") == "one line"
    assert first_line("x" * 300, 50) == "x" * 49 + "…"  # no space to cut at


def test_summary_and_predict_take_the_same_legacy_format_checkpoint(
    good_checkpoint, tmp_path, capsys
):
    """torch.save's older (non-zip) format: predict loads it, so summary must see it."""
    legacy = tmp_path / "legacy.pt"
    payload = torch.load(good_checkpoint, weights_only=True)
    torch.save(payload, legacy, _use_new_zipfile_serialization=False)
    assert main(["summary", str(legacy), "--input", "3x32x32"]) == 0
    assert "5 classes" in capsys.readouterr().out
    photo = tmp_path / "p.png"
    Image.fromarray(random_image(32, 32)).save(photo)
    assert main(["predict", str(legacy), str(photo), "--out", str(tmp_path / "out")]) == 0
