"""Bad configs: every mistake is one line naming the key and the allowed range, exit 2,
and the same from ``segkit config`` as from ``segkit run``, before anything is written."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segkit.cli import main
from segkit.core import ConfigError
from segkit.core.config import config_from_dict
from segkit.core.config_files import MAX_CONFIG_BYTES
from segkit.core.ranges import RANGES

from .messages import one_error_line
from .tiny import write_tiny_config

MINIMAL = {"model": {"backbone": "b", "head": "h"}}


def folder_digest(folder: Path) -> str:
    """A hash of every file's path and bytes under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# (override, the message's fragments): each names the key and the allowed range
BAD_VALUES = [
    ("data.batch_size=0", "data.batch_size must be an integer >= 1, got 0"),
    ("data.workers=-1", "data.workers must be an integer >= 0"),
    ("data.crop_size=100000", "data.crop_size must be an integer in [1, 8192], got 100000"),
    ("data.std=[0.2, 0.0, 0.2]", "data.std must be a list of 3 numbers, each a finite number > 0"),
    ("data.mean=[0.5, 0.5]", "data.mean must be a list of 3 numbers"),
    ("train.lr=nan", "train.lr must be a finite number > 0, got nan"),
    ("train.lr=-0.1", "train.lr must be a finite number > 0, got -0.1"),
    ("train.head_lr_mult=inf", "train.head_lr_mult must be a finite number > 0, got inf"),
    ("train.threads=0", "train.threads must be an integer >= 1"),
    ("train.checkpoint_every=-5", "train.checkpoint_every must be an integer >= 0"),
    ("train.iterations=0", "train.iterations must be an integer >= 1"),
    ("train.warmup_iterations=-1", "train.warmup_iterations must be an integer >= 0"),
    ("eval.every=-1", "eval.every must be an integer >= 0"),
    ("eval.batch_size=0", "eval.batch_size must be an integer >= 1"),
    ("eval.max_images=-1", "eval.max_images must be an integer >= 1"),
    ("eval.tile=-1", "eval.tile must be an integer >= 0"),
    ("eval.tile_overlap=2.0", "eval.tile_overlap must be a finite number in [0, 0.9], got 2.0"),
    ("predict.tta_scales=[]", "predict.tta_scales must be a list of one or more numbers"),
    ("predict.tta_scales=[1.0, -1.0]", "each a finite number in (0, 4]"),
    ("predict.samples=0", "predict.samples must be an integer >= 1"),
    ("model.num_classes=1", "model.num_classes must be an integer in [2, 255]"),
    ("train.loss=[{name='dice', weight=nan}]", "train.loss[0].weight must be a finite number"),
    ("train.optimizer.momentum=1.5", "train.optimizer: optimizer 'sgd': momentum must be in"),
    ("train.optimizer.weight_decay=-1.0", "weight_decay must be >= 0.0, got -1.0"),
    (
        "data.augment=[{name='random_scale', range=[1.5]}]",
        "data.augment: augmentation 'random_scale': range must be [low, high]",
    ),
    (
        "data.augment=[{name='random_scale', range=[2.0, 0.5]}]",
        "with 0 < low <= high, got [2.0, 0.5]",
    ),
    ("train.schedule={name='poly', power=-1.0}", "train.schedule: schedule 'poly': power"),
    ("predict.images=['no/such/photo.jpg']", "predict.images: no/such/photo.jpg does not exist"),
    ("train.epochs=0", "train.epochs is 0 but run.steps includes 'train'"),
    ("run.steps=[]", "run.steps is empty"),
]


@pytest.mark.parametrize(("override", "fragment"), BAD_VALUES)
def test_config_and_run_refuse_alike_before_writing(tmp_path, capsys, override, fragment):
    config = write_tiny_config(tmp_path, steps='["train", "evaluate", "predict"]')
    before = folder_digest(tmp_path)
    assert main(["config", str(config), "--set", override]) == 2
    from_config = one_error_line(capsys)
    assert fragment in from_config
    run_dir = tmp_path / "run"
    assert main(["run", str(config), "--run-dir", str(run_dir), "--set", override]) == 2
    assert one_error_line(capsys) == from_config
    assert not run_dir.exists() and folder_digest(tmp_path) == before


def test_warmup_longer_than_the_run_names_both_keys(tmp_path, capsys):
    config = write_tiny_config(tmp_path)
    assert main(["config", str(config), "--set", "train.iterations=4"]) == 0
    capsys.readouterr()
    warmup = ["--set", "train.iterations=4", "--set", "train.warmup_iterations=4"]
    assert main(["config", str(config), *warmup]) == 2
    line = one_error_line(capsys)
    assert "train.warmup_iterations must be below train.iterations (4), got 4" in line


def test_epochs_zero_is_fine_without_training():
    config = config_from_dict(
        {**MINIMAL, "train": {"epochs": 0}, "run": {"steps": ["evaluate", "predict"]}}
    )
    assert config.train.epochs == 0


def test_a_parts_table_without_name_tunes_the_default_part():
    config = config_from_dict({**MINIMAL, "train": {"optimizer": {"momentum": 0.5}}})
    assert config.train.optimizer.name == "sgd"
    assert config.train.optimizer.params == {"momentum": 0.5}


# --- every ranged key, generated values: in range passes, out of range names the key ---


def _out_of_range(key: str) -> st.SearchStrategy:
    allowed = RANGES[key]
    each = getattr(allowed, "each", allowed)
    numbers = st.one_of(
        st.integers(-(10**6), 10**6),
        st.floats(allow_nan=True, allow_infinity=True),
    )
    bad = numbers.filter(lambda v: not each.contains(v))
    if hasattr(allowed, "each"):  # a list: one bad item among good ones
        return bad.map(lambda v: [v] * (allowed.length or 1))
    return bad.filter(lambda v: isinstance(v, int) or not each.integer)


@pytest.mark.parametrize("key", sorted(RANGES))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_generated_out_of_range_values_name_the_key(key, data):
    value = data.draw(_out_of_range(key))
    section, name = key.split(".")
    raw = {**MINIMAL, section: {**MINIMAL.get(section, {}), name: value}}
    if key == "train.epochs":
        raw["run"] = {"steps": ["evaluate"]}
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    message = str(info.value)
    assert message.startswith(key) or f"'{name}'" in message, message
    assert "\n" not in message


# --- files that are no config: refused before they are read ---


def test_a_device_is_refused_at_once(capsys):
    assert main(["config", os.devnull]) == 2
    assert "is not a regular file (a device, pipe or socket)" in one_error_line(capsys)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_an_endless_stream_is_refused_at_once(capsys):
    assert main(["config", "/dev/zero"]) == 2
    assert "/dev/zero is not a regular file" in one_error_line(capsys)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path, capsys):
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    assert main(["config", str(fifo)]) == 2
    assert "is not a regular file" in one_error_line(capsys)


def test_a_huge_file_is_refused_by_its_size(tmp_path, capsys):
    huge = tmp_path / "huge.toml"
    with huge.open("wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)  # sparse: nothing to write, nothing to read
    assert main(["config", str(huge)]) == 2
    assert "is larger than 1 MiB, which no segkit config is" in one_error_line(capsys)


def test_a_base_that_is_a_device_is_refused(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(f'base = "{os.path.relpath(os.devnull, tmp_path)}"\n')
    assert main(["config", str(config)]) == 2
    assert "dev/null is not a regular file (a device, pipe or socket)" in one_error_line(capsys)


def test_a_byte_order_mark_is_named(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_bytes("\ufeffname = 'x'\n".encode())
    assert main(["config", str(config)]) == 2
    assert "starts with a byte-order mark (BOM)" in one_error_line(capsys)


def test_a_set_value_on_several_lines_is_refused_not_cut(tmp_path, capsys):
    config = write_tiny_config(tmp_path)
    assert main(["config", str(config), "--set", 'name="a"\ntrain.epochs=9']) == 2
    assert one_error_line(capsys).startswith("error: --set name: the value")


@pytest.mark.parametrize("key", ["train.iterations", "data.batch_size", "eval.tile"])
def test_an_integer_too_large_for_any_run_is_named(tmp_path, capsys, key):
    config = write_tiny_config(tmp_path)
    assert main(["config", str(config), "--set", f"{key}={10**30}"]) == 2
    line = one_error_line(capsys)
    expected = f"error: {key} is {10**30}, larger than any run can use (at most 2,147,483,647)"
    assert line.startswith(expected)


def test_range_messages_read_well():
    assert RANGES["eval.tile_overlap"].describe() == "a finite number in [0, 0.9]"
    assert RANGES["train.lr"].describe() == "a finite number > 0"
    assert not RANGES["train.lr"].contains(math.inf)
    assert not RANGES["data.batch_size"].contains(True)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        (f"data.dataset.train_size={10**30}", f"parameter 'train_size' is {10**30}, larger than"),
        ("model.head.dropout=nan", "parameter 'dropout' must be a finite number, got nan"),
        ("model.head.dropout=inf", "parameter 'dropout' must be a finite number, got inf"),
    ],
)
def test_plugin_parameters_are_finite_and_fit_a_run(tmp_path, capsys, override, fragment):
    config = write_tiny_config(tmp_path)
    before = folder_digest(tmp_path)
    assert main(["config", str(config), "--set", override]) == 2
    assert fragment in one_error_line(capsys)
    assert folder_digest(tmp_path) == before
