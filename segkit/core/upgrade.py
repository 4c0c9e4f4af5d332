"""Configs written for earlier versions of segkit keep loading: their keys are renamed.

Each function takes a parsed TOML mapping and returns it in today's keys; nothing
here validates (that is :mod:`segkit.core.config`'s job), except where an old key
and its new home are both given and cannot be reconciled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segkit.core.errors import ConfigError


def upgrade(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Configs (and checkpoints) written before the post-processor keys were renamed.

    The array ``[[postprocess]]`` is now ``[[postprocessors]]``; ``predict.crf`` is now
    ``predict.postprocess``.  Old files keep working.
    """
    raw = dict(raw)
    if "postprocess" in raw and "postprocessors" not in raw:
        raw["postprocessors"] = raw.pop("postprocess")
    predict = raw.get("predict")
    if isinstance(predict, Mapping) and "crf" in predict and "postprocess" not in predict:
        predict = dict(predict)
        predict["postprocess"] = predict.pop("crf")
        raw["predict"] = predict
    return raw


#: Keys of the fixed recipe that plugin parts replaced: old key -> (new part, its parameter).
_RECIPE_KEYS = {
    "train": {
        "momentum": ("optimizer", "sgd", "momentum"),
        "weight_decay": ("optimizer", "sgd", "weight_decay"),
        "poly_power": ("schedule", "poly", "power"),
    },
}


def upgrade_recipe(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Configs written when the training recipe was fixed keep working.

    ``train.momentum``/``weight_decay`` become parameters of ``[train.optimizer]``
    (SGD), ``train.poly_power`` of ``[train.schedule]`` (poly), and
    ``data.scale_range``/``data.flip`` the steps ``random_scale`` and ``hflip`` of
    ``[[data.augment]]``.  Run after bases are merged, so a variant that changes one
    old key keeps its base's others.
    """
    raw = dict(raw)
    train = raw.get("train")
    if isinstance(train, Mapping):
        train = dict(train)
        for old, (section, part, param) in _RECIPE_KEYS["train"].items():
            if old not in train:
                continue
            table = train.get(section, {"name": part})
            if isinstance(table, str):
                table = {"name": table}
            if not isinstance(table, Mapping) or table.get("name") != part:
                raise ConfigError(
                    f"train.{old} is a parameter of the {section} '{part}'; with another "
                    f"{section}, set it in [train.{section}] instead"
                )
            train[section] = {**table, param: train.pop(old)}
        raw["train"] = train
    data = raw.get("data")
    if isinstance(data, Mapping) and ("scale_range" in data or "flip" in data):
        data = dict(data)
        if "augment" in data:
            raise ConfigError(
                "data.scale_range and data.flip are steps of [[data.augment]] now; the config "
                "gives both: write them as random_scale and hflip steps"
            )
        scale_range, flip = data.pop("scale_range", [0.5, 1.5]), data.pop("flip", True)
        numbers = isinstance(scale_range, list) and len(scale_range) == 2
        if not numbers or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in scale_range
        ):
            raise ConfigError(f"data.scale_range must be [low, high], got {scale_range!r}")
        if not isinstance(flip, bool):
            raise ConfigError(f"data.flip must be true or false, got {flip!r}")
        steps: list[dict[str, Any]] = []
        if scale_range != [1, 1]:
            steps.append({"name": "random_scale", "range": scale_range})
        if flip:
            steps.append({"name": "hflip"})
        data["augment"] = steps
        raw["data"] = data
    return raw
