"""Configs are TOML data, validated against typed sections before anything runs.

A config names its parts by plugin name; each part is a table with ``name`` and the
part's own parameters, checked against the description its plugin registered::

    [model.backbone]
    name = "deeplab_vgg16"
    weights = "imagenet"

Unknown keys and wrong types are errors with a "did you mean"; ``--set key=value``
overrides any value, written as TOML (``--set train.lr=0.01``).

A config may start from another: ``base = "../deeplab_largefov.toml"`` (relative to
the file) merges the base first, so a variant states only its differences.  Tables
merge key by key; values and arrays (``[[postprocessors]]`` included) replace the
base's; a part table naming another plugin replaces the base's part; ``name`` is never
inherited (it names the run folder).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segkit.core.config_files import (  # noqa: F401  (re-exported: the config API)
    apply_overrides,
    dump_toml,
    merge,
    parse_value,
    read_config,
    read_toml,
)
from segkit.core.errors import ConfigError, PluginError, did_you_mean
from segkit.core.outputs import check_plain_name
from segkit.core.ranges import check_ranges
from segkit.core.registry import Param, Registry
from segkit.core.upgrade import upgrade, upgrade_recipe


def _help(text: str, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda: default.copy(), metadata={"help": text})
    return field(default=default, metadata={"help": text}, **kwargs)


@dataclass
class Part:
    """A plugin part: its registered name and its parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


@dataclass
class LossTerm(Part):
    """A loss in ``[[train.loss]]``: a plugin part with its weight in the sum."""

    weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, **self.params}


@dataclass
class ModelConfig:
    backbone: Part = field(
        metadata={"help": "the feature extractor: a backbone's name and its parameters"}
    )
    head: Part = field(metadata={"help": "the class scorer on the backbone's feature maps"})
    upsampler: Part = field(
        default_factory=lambda: Part("interpolate"),
        metadata={"help": "brings the head's scores back to the input's size"},
    )
    num_classes: int | None = _help("number of classes; taken from the dataset when omitted", None)
    crf: Part | None = _help(
        "a CRF layer after the upsampler, trained with the model: a post-processor that "
        "offers one (its name and parameters) and the layer's keys",
        None,
    )


#: Keys of ``[model.crf]`` that belong to the layer, not to the CRF post-processor it uses.
CRF_LAYER_PARAMS = (
    Param(
        "warmup_steps",
        int,
        0,
        "training steps of the plain model before the CRF layer joins in",
    ),
    Param(
        "lr_mult",
        float,
        100.0,
        "the CRF's own parameters learn at train.lr times this, without weight decay",
    ),
)


@dataclass
class DataConfig:
    dataset: Part = field(
        default_factory=lambda: Part("synthetic"),
        metadata={"help": "the images and masks: a dataset's name and its parameters"},
    )
    train_split: str = _help("split to train on", "train")
    val_split: str = _help("split to evaluate on", "val")
    batch_size: int = _help("training images per batch (per process)", 8)
    workers: int = _help("data-loading worker processes", 2)
    crop_size: int = _help("square training crop; padded with ignore where smaller", 321)
    augment: list[Part] = field(
        default_factory=lambda: [Part("random_scale", {"range": [0.5, 1.5]}), Part("hflip")],
        metadata={
            "help": "training augmentation steps ([[data.augment]]); a random_crop to "
            "crop_size ends the list unless it has one"
        },
    )
    # Unset: the backbone's pretrained statistics (filled in by segkit.build_model).
    mean: list[float] | None = _help(
        "normalisation mean (RGB, 0..1); default: the backbone's pretrained one, else ImageNet's",
        None,
    )
    std: list[float] | None = _help(
        "normalisation std (RGB, 0..1); default: the backbone's pretrained one, else ImageNet's",
        None,
    )


@dataclass
class TrainConfig:
    epochs: int = _help("number of passes over the training split", 30)
    iterations: int | None = _help(
        "train for this many iterations instead of epochs (rounded up to whole epochs), "
        "so that a recipe's compute does not depend on the dataset's size",
        None,
    )
    lr: float = _help("base learning rate", 0.001)
    head_lr_mult: float = _help("learning-rate multiplier for the head (DeepLab uses 10)", 1.0)
    loss: list[LossTerm] = field(
        default_factory=lambda: [LossTerm("cross_entropy")],
        metadata={"help": "losses summed with their weights ([[train.loss]])"},
    )
    optimizer: Part = field(
        default_factory=lambda: Part("sgd"), metadata={"help": "the optimizer and its settings"}
    )
    schedule: Part = field(
        default_factory=lambda: Part("poly"),
        metadata={"help": "the learning-rate schedule, stepped per iteration"},
    )
    warmup_iterations: int = _help("linear learning-rate warm-up over the first N iterations", 0)
    norm_bias_decay: bool = _help("apply weight decay to norm weights and biases too", False)
    device: str = _help("'auto', 'cpu', 'cuda' or 'cuda:N'", "auto")
    amp: bool | None = _help(
        "mixed precision: float16 on CUDA, bfloat16 on the CPU; default: on for CUDA", None
    )
    channels_last: bool | None = _help("channels_last memory format; default: on for CUDA", None)
    compile: bool = _help("torch.compile the model", False)
    seed: int = _help("random seed", 0)
    resume: bool = _help("resume from the run directory's last checkpoint", True)
    checkpoint_every: int = _help("also checkpoint every N iterations (0: end of epoch only)", 0)
    threads: int | None = _help("CPU threads for PyTorch (default: PyTorch's choice)", None)


@dataclass
class InferenceOptions:
    """How evaluation and prediction compute probabilities (shared by [eval] and [predict])."""

    tta: bool = _help("test-time augmentation: average probabilities over scales and flips", False)
    tta_scales: list[float] = _help(
        "image scales test-time augmentation averages over", [0.5, 0.75, 1.0, 1.25, 1.5]
    )
    tta_flip: bool = _help("test-time augmentation also averages the horizontal flip", True)
    tile: int = _help("sliding-window size in pixels for large images (0: one pass)", 0)
    tile_overlap: float = _help("overlap of neighbouring windows, as a share of the tile", 0.25)


@dataclass
class EvalConfig(InferenceOptions):
    every: int = _help("evaluate every N epochs and after the last (0: not while training)", 1)
    batch_size: int = _help("evaluation batch size (full-size images are padded)", 1)
    postprocess: bool = _help("also evaluate each post-processor", True)
    max_images: int | None = _help("evaluate at most this many images", None)


@dataclass
class PredictConfig(InferenceOptions):
    images: list[str] = _help("image paths to predict; empty: samples of the val split", [])
    samples: int = _help("number of val images to predict when no paths are given", 4)
    postprocess: bool = _help("apply the post-processors when predicting", True)


@dataclass
class RunConfig:
    steps: list[str] = _help("what `segkit run` does", ["train", "evaluate", "predict"])


@dataclass
class Config:
    """A whole, validated config."""

    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    run: RunConfig = field(default_factory=RunConfig)
    postprocessors: list[Part] = _help(
        "post-processors applied in order to the probabilities ([[postprocessors]] tables), "
        "e.g. the dense CRF",
        [],
    )
    name: str = _help(
        "the run folder's name (runs/NAME/...); read from a file, the file's own name "
        "unless the config gives one",
        "config",
    )

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)


_PART_KIND = {
    "backbone": "backbone",
    "head": "head",
    "upsampler": "upsampler",
    "dataset": "dataset",
    "crf": "postprocessor",
    "optimizer": "optimizer",
    "schedule": "schedule",
    "loss": "loss",
    "augment": "augmentation",
}
#: Keys a part's table may hold besides its plugin's parameters.
_PART_EXTRA = {"crf": CRF_LAYER_PARAMS}
_RUN_STEPS = ("train", "evaluate", "predict")


def _to_plain(value: Any) -> Any:
    if isinstance(value, Part):
        return value.to_dict()
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    return value


def _parse_part(
    table: Any,
    where: str,
    kind: str,
    registry: Registry | None,
    extra: Iterable[Param] = (),
    cls: type[Part] = Part,
) -> Part:
    if isinstance(table, str):
        table = {"name": table}
    if not isinstance(table, Mapping) or "name" not in table:
        raise ConfigError(f"{where}: expected a table with a 'name' key, e.g. name = \"...\"")
    params = {k: v for k, v in table.items() if k != "name"}
    own = {p.name: p for p in extra}
    for key in own.keys() & params.keys():
        params[key] = own[key].check(params[key], where)
    if cls is LossTerm:
        weight = params.pop("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ConfigError(f"{where}: weight must be a number, got {weight!r}")
        part: Part = LossTerm(str(table["name"]), params, float(weight))
    else:
        part = Part(str(table["name"]), params)
    if registry is not None:
        try:
            component = registry.get(kind, part.name)
        except PluginError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        # unknown or mistyped parameters fail now, not mid-run
        component.bind({k: v for k, v in params.items() if k not in own})
    return part


def _parse_section(cls: type, table: Any, where: str, registry: Registry | None) -> Any:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            raise ConfigError(
                f"{where}: unknown key '{key}'{did_you_mean(key, fields)} "
                f"(valid keys: {', '.join(fields)})"
            )
    values = {}
    for name, f in fields.items():
        if name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: '{name}' is required")
            continue
        value, hint = table[name], hints[name]
        if hint == Part | None and value is None:  # a checkpoint's config keeps the None
            values[name] = None
        elif hint is Part or hint == Part | None:
            value = _with_default_name(value, f)
            extra = _PART_EXTRA.get(name, ())
            values[name] = _parse_part(value, f"{where}.{name}", _PART_KIND[name], registry, extra)
        elif typing.get_origin(hint) is list and typing.get_args(hint)[0] in (Part, LossTerm):
            values[name] = _parse_parts(
                value, f"{where}.{name}", _PART_KIND[name], registry, typing.get_args(hint)[0]
            )
        else:
            help_text = f.metadata.get("help", "")
            values[name] = Param(name, hint, None, help_text).check(value, where)
    return cls(**values)


def _with_default_name(table: Any, f: dataclasses.Field) -> Any:
    """A part's table without ``name`` sets parameters of the default part: ``--set
    train.optimizer.momentum=0.99`` tunes the default SGD."""
    if not isinstance(table, Mapping) or "name" in table:
        return table
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
    return {"name": default.name, **table} if isinstance(default, Part) else table


def _parse_parts(
    value: Any, where: str, kind: str, registry: Registry | None, cls: type[Part]
) -> list[Part]:
    """A list of parts: one name, one table, or an array of names and tables."""
    items = value if isinstance(value, list) else [value]
    return [
        _parse_part(item, f"{where}[{i}]", kind, registry, cls=cls) for i, item in enumerate(items)
    ]


def config_from_dict(
    raw: Mapping[str, Any], name: str = "config", registry: Registry | None = None
) -> Config:
    """Validate a parsed TOML mapping.  With ``registry``, plugin parts are checked too."""
    raw = upgrade_recipe(upgrade(raw))
    sections = {
        "model": ModelConfig,
        "data": DataConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
        "predict": PredictConfig,
        "run": RunConfig,
    }
    allowed = [*sections, "postprocessors", "name"]
    for key in raw:
        if key not in allowed:
            raise ConfigError(
                f"unknown section '{key}'{did_you_mean(key, allowed)} "
                f"(valid sections: {', '.join(allowed)})"
            )
    if "model" not in raw:
        raise ConfigError("the config has no [model] section; add one with backbone and head")
    parsed: dict[str, Any] = {}
    for key, cls in sections.items():
        if key in raw:
            parsed[key] = _parse_section(cls, raw[key], key, registry)
    posts = raw.get("postprocessors", [])
    if not isinstance(posts, list):
        raise ConfigError("postprocessors: expected an array of tables, written [[postprocessors]]")
    parsed["postprocessors"] = [
        _parse_part(p, f"postprocessors[{i}]", "postprocessor", registry)
        for i, p in enumerate(posts)
    ]
    run = parsed.get("run", RunConfig())
    for step in run.steps:
        if step not in _RUN_STEPS:
            raise ConfigError(
                f"run.steps: unknown step '{step}'{did_you_mean(step, _RUN_STEPS)} "
                f"(steps: {', '.join(_RUN_STEPS)})"
            )
    config = Config(**parsed, name=check_plain_name(str(raw.get("name", name)), "name"))
    check_ranges(config)
    return config


def load_config(
    path: str | Path, overrides: Iterable[str] = (), registry: Registry | None = None
) -> Config:
    """Read a TOML config (with its bases), apply overrides and validate it.

    With ``registry`` the plugin parts and their parameters are checked too.
    """
    raw = apply_overrides(upgrade(read_config(path)), overrides)
    return config_from_dict(raw, name=Path(path).stem, registry=registry)
