"""Config loading: TOML data, typed sections, overrides, did-you-mean errors."""

from __future__ import annotations

import pytest

from segkit.core import ConfigError
from segkit.core.config import apply_overrides, config_from_dict, dump_toml, load_config

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
    with pytest.raises(ConfigError, match=r"data: parameter 'scale_range' must be list\[float\]"):
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
