"""Config loading: TOML data, typed sections, overrides, did-you-mean errors."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from segkit.cli import main
from segkit.core import ConfigError, get_plugins
from segkit.core.config import (
    apply_overrides,
    config_from_dict,
    dump_toml,
    load_config,
    merge,
    read_config,
    read_toml,
    upgrade,
)

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"model": {"backbone": {"name": "b"}, "head": "h", "num_classes": 3}}


def test_defaults_and_parts():
    config = config_from_dict(MINIMAL, name="demo")
    assert config.model.backbone.name == "b" and config.model.head.name == "h"
    assert config.model.upsampler.name == "interpolate"
    assert config.train.epochs == 30 and config.data.dataset.name == "synthetic"
    assert config.name == "demo"


def test_unknown_keys_and_sections_suggest_the_right_one():
    with pytest.raises(ConfigError, match=r"train: unknown key 'epoch'; did you mean 'epochs'\?"):
        config_from_dict({**MINIMAL, "train": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"unknown section 'trian'; did you mean 'train'\?"):
        config_from_dict({**MINIMAL, "trian": {}})
    with pytest.raises(
        ConfigError, match=r"run.steps: unknown step 'evalute'; did you mean 'evaluate'"
    ):
        config_from_dict({**MINIMAL, "run": {"steps": ["train", "evalute"]}})


def test_wrong_types_are_named():
    with pytest.raises(ConfigError, match=r"train: parameter 'lr' must be float, got 'fast'"):
        config_from_dict({**MINIMAL, "train": {"lr": "fast"}})
    with pytest.raises(ConfigError, match=r"data.scale_range must be \[low, high\], got 2"):
        config_from_dict({**MINIMAL, "data": {"scale_range": 2}})
    with pytest.raises(ConfigError, match=r"model.head: expected a table with a 'name' key"):
        config_from_dict({"model": {"backbone": "b", "head": {"depth": 2}}})


def test_overrides_are_toml_values():
    raw = apply_overrides(
        {"train": {"lr": 0.1}}, ["train.lr=0.01", "train.device=cpu", "data.scale_range=[1, 2]"]
    )
    assert raw == {"train": {"lr": 0.01, "device": "cpu"}, "data": {"scale_range": [1, 2]}}
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["train.lr"])


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nbackbone = 1\n")
    with pytest.raises(ConfigError, match=r"bad.toml is not valid TOML: .*fix the syntax"):
        load_config(bad)


def test_resolved_config_roundtrips_through_toml(tmp_path):
    config = config_from_dict({**MINIMAL, "postprocess": [{"name": "p", "iterations": 3}]})
    path = tmp_path / "resolved.toml"
    path.write_text(dump_toml(config.to_dict()))
    again = load_config(path)
    assert again.to_dict() == {**config.to_dict(), "name": "config"}


# --- base = "...": a config states only its differences from another ---

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

BASE = """
name = "base_run"

[model]
backbone = { name = "deeplab_vgg16", width = 0.25, batch_norm = true }
head = { name = "deeplab_largefov", fc_channels = 64 }

[data]
batch_size = 8
mean = [0.485, 0.456, 0.406]

[train]
epochs = 10
lr = 0.01

[[postprocessors]]
name = "densecrf"
iterations = 10
"""

VARIANT = """
base = "../bases/base.toml"

[model.backbone]
width = 0.5

[data]
mean = [0.5, 0.5, 0.5]

[train]
lr = 0.001

[[postprocessors]]
name = "densecrf"
iterations = 3
"""


@pytest.fixture
def variant(tmp_path):
    """``variants/variant.toml`` on top of ``bases/base.toml`` (the base path is relative)."""
    (tmp_path / "bases").mkdir()
    (tmp_path / "variants").mkdir()
    (tmp_path / "bases" / "base.toml").write_text(BASE)
    path = tmp_path / "variants" / "variant.toml"
    path.write_text(VARIANT)
    return path


def test_base_tables_merge_key_by_key_and_the_rest_replaces(variant):
    raw = read_config(variant)
    assert "base" not in raw
    assert raw["model"] == {
        "backbone": {"name": "deeplab_vgg16", "width": 0.5, "batch_norm": True},
        "head": {"name": "deeplab_largefov", "fc_channels": 64},
    }
    assert raw["data"] == {"batch_size": 8, "mean": [0.5, 0.5, 0.5]}  # arrays replace
    assert raw["train"] == {"epochs": 10, "lr": 0.001}
    assert raw["postprocessors"] == [{"name": "densecrf", "iterations": 3}]  # not appended
    assert "name" not in raw  # a variant never runs into its base's folder
    assert load_config(variant).name == "variant"


def test_overrides_apply_after_the_merge(variant):
    config = load_config(variant, ["train.lr=0.5", "train.epochs=2", "model.backbone.width=1.0"])
    assert (config.train.lr, config.train.epochs) == (0.5, 2)
    assert config.model.backbone.params == {"width": 1.0, "batch_norm": True}
    assert config.model.head.params == {"fc_channels": 64}


def test_merge_does_not_change_its_inputs():
    base = {"train": {"lr": 0.1, "epochs": 3}, "run": {"steps": ["train"]}}
    over = {"train": {"lr": 0.2}, "run": {"steps": ["evaluate"]}}
    assert merge(base, over) == {"train": {"lr": 0.2, "epochs": 3}, "run": {"steps": ["evaluate"]}}
    assert base == {"train": {"lr": 0.1, "epochs": 3}, "run": {"steps": ["train"]}}


def test_a_missing_base_is_one_line(tmp_path):
    path = tmp_path / "child.toml"
    path.write_text('base = "nowhere.toml"\n[model]\nbackbone = "b"\nhead = "h"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert "child.toml: its base" in message and "nowhere.toml does not exist" in message
    assert "fix the 'base' path" in message


def test_base_cycles_are_one_line(tmp_path):
    (tmp_path / "a.toml").write_text('base = "b.toml"\n[model]\nbackbone = "b"\nhead = "h"\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\n')
    (tmp_path / "self.toml").write_text('base = "./self.toml"\n[model]\nbackbone = "b"\n')
    for name, cycle in [("a", "a.toml -> b.toml -> a.toml"), ("self", "self.toml -> self.toml")]:
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path / f"{name}.toml")
        message = str(info.value)
        assert "\n" not in message
        assert f"config bases form a cycle ({cycle}); remove one 'base' key" == message


def test_base_must_be_a_path(tmp_path):
    path = tmp_path / "child.toml"
    path.write_text("base = 3\n")
    with pytest.raises(ConfigError, match=r"child.toml: base must be a path string"):
        read_config(path)


def test_segkit_config_prints_the_merged_config(variant, capsys):
    assert main(["config", str(variant), "--set", "train.epochs=4"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["name"] == "variant"
    assert printed["model"]["backbone"] == {
        "name": "deeplab_vgg16",
        "width": 0.5,
        "batch_norm": True,
    }
    assert printed["model"]["head"] == {"name": "deeplab_largefov", "fc_channels": 64}
    assert printed["data"]["batch_size"] == 8 and printed["data"]["mean"] == [0.5, 0.5, 0.5]
    assert (printed["train"]["epochs"], printed["train"]["lr"]) == (4, 0.001)
    assert printed["postprocessors"] == [{"name": "densecrf", "iterations": 3}]


def test_segkit_config_output_is_valid_toml_at_any_width(tmp_path):
    """A long inline value stays on one line: the saved output loads as the same config."""
    registry = get_plugins().registry
    config = tmp_path / "long.toml"
    jitter = '{ name = "color_jitter", brightness = 0.2, contrast = 0.2, saturation = 0.2 }'
    config.write_text(
        f'base = "{ROOT / "configs" / "deeplab_crf.toml"}"\n[data]\n'
        f'augment = [{{ name = "hflip" }}, {jitter}, {jitter}]\n'
    )
    saved = tmp_path / "saved.toml"
    env = {**os.environ, "COLUMNS": "40"}
    with saved.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "segkit", "config", str(config)], stdout=out, env=env, check=True
        )
    assert all(len(line) > 40 for line in saved.read_text().splitlines() if "jitter" in line)
    expected = load_config(config, (), registry).to_dict()
    assert load_config(saved, (), registry).to_dict() == expected


# --- renamed keys: [[postprocess]] -> [[postprocessors]], predict.crf -> predict.postprocess ---

OLD_STYLE = """
[model]
backbone = "b"
head = "h"

[predict]
crf = false

[[postprocess]]
name = "densecrf"
iterations = 5
"""


def test_old_key_names_still_load(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text(OLD_STYLE)
    config = load_config(path)
    assert [p.to_dict() for p in config.postprocessors] == [{"name": "densecrf", "iterations": 5}]
    assert config.predict.postprocess is False
    assert upgrade({"postprocess": [], "predict": {"crf": True, "samples": 2}}) == {
        "postprocessors": [],
        "predict": {"postprocess": True, "samples": 2},
    }


def test_upgrade_leaves_new_keys_and_its_input_alone():
    new = {"postprocessors": [{"name": "p"}], "predict": {"postprocess": False}}
    old = {"postprocess": [{"name": "p"}], "predict": {"crf": False}}
    assert upgrade(new) == new
    upgrade(old)
    assert old == {"postprocess": [{"name": "p"}], "predict": {"crf": False}}


NEW_STYLE = """
[predict]
postprocess = true

[[postprocessors]]
name = "densecrf"
iterations = 1
"""


def test_old_and_new_key_names_override_each_other_through_a_base(tmp_path):
    (tmp_path / "old.toml").write_text(OLD_STYLE)
    (tmp_path / "new_on_old.toml").write_text(f'base = "old.toml"\n{NEW_STYLE}')
    config = load_config(tmp_path / "new_on_old.toml")
    assert config.predict.postprocess is True
    assert [p.to_dict() for p in config.postprocessors] == [{"name": "densecrf", "iterations": 1}]

    (tmp_path / "new.toml").write_text(f'[model]\nbackbone = "b"\nhead = "h"\n{NEW_STYLE}')
    old_variant = OLD_STYLE.replace('[model]\nbackbone = "b"\nhead = "h"\n', "")
    (tmp_path / "old_on_new.toml").write_text(f'base = "new.toml"\n{old_variant}')
    config = load_config(tmp_path / "old_on_new.toml")
    assert config.predict.postprocess is False
    assert [p.to_dict() for p in config.postprocessors] == [{"name": "densecrf", "iterations": 5}]


# --- the shipped configs ---


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("**/*.toml")), ids=lambda p: p.stem)
def test_shipped_configs_load_and_validate_against_the_installed_plugins(path):
    config = load_config(path, registry=get_plugins().registry)
    assert config.name == read_toml(path)["name"]  # each file names its own run
    assert config.postprocessors, "every shipped config evaluates a post-processor"


def voc(name: str) -> dict:
    return load_config(CONFIGS / "voc" / f"{name}.toml").to_dict()


def differences(a: dict, b: dict, prefix: str = "") -> set[str]:
    """The dotted keys at which two nested dicts differ."""
    keys = set()
    for key in a.keys() | b.keys():
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            keys |= differences(x, y, f"{prefix}{key}.")
        elif x != y:
            keys.add(f"{prefix}{key}")
    return keys


def test_voc_variants_differ_from_their_siblings_only_where_the_papers_do():
    assert differences(voc("fcn8s_resnet18"), voc("fcn8s_resnet34")) == {
        "name",
        "model.backbone.name",
    }
    assert differences(voc("deeplab_largefov"), voc("deeplab_msc_largefov")) == {
        "name",
        "model.head.name",
    }
    assert differences(voc("fcn32s"), voc("fcn16s")) == {"name", "model.head.name"}
    assert differences(voc("fcn32s"), voc("fcn8s")) == {"name", "model.head.name"}
