"""Pretrained weights of the ``timm`` backbone: found, read and fitted to the model.

``"imagenet"`` loads the model's default pretrained weights (timm's
``pretrained_cfg``) from the local Hugging Face cache, downloading them when the
network allows it, or from the torch hub cache for weights published by URL; when
they are missing, one line names the file to place where.  A path loads a
``.safetensors`` or ``.pth`` file holding either the full timm model's state dict
(its classifier is ignored) or that of timm's ``features_only`` model; a file for
another model is refused, naming the first key that does not fit.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Mapping
from pathlib import Path

import timm
from torch import Tensor, nn

from segkit import CheckpointError, check_state_dict, hub_checkpoint, read_state_dict

#: Files a Hugging Face repository of timm weights holds, in timm's order of preference.
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def read_timm_weights(weights: str, model: str, where: str) -> dict[str, Tensor]:
    """A state dict: ``"imagenet"`` from the local caches (downloaded if possible), or a path."""
    expected = f"timm {model} state dict"
    if weights != "imagenet":
        return read_state_dict(weights, where, expected)
    return read_state_dict(imagenet_file(model, where), where, expected)


def imagenet_file(model: str, where: str) -> Path:
    """The file of ``model``'s default pretrained weights, or a one-line error naming it."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(model)
    hub_id = cfg.hf_hub_id if cfg is not None else None
    url = cfg.url if cfg is not None else None
    if not hub_id and not url:
        raise CheckpointError(
            f"{where}: timm has no pretrained weights for '{model}'; set weights = 'none' or "
            f"the path of a state dict"
        )
    if hub_id:
        for filename in HF_WEIGHT_FILES:
            cached = try_to_load_from_cache(hub_id, filename)
            if isinstance(cached, str):
                return Path(cached)
        with contextlib.suppress(Exception):  # offline, or no such file: say where to put it
            return Path(hf_hub_download(hub_id, HF_WEIGHT_FILES[0]))
        folder = Path(constants.HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}"
        raise CheckpointError(
            f"{where}: ImageNet weights not found and not downloadable; place "
            f"{HF_WEIGHT_FILES[0]} from https://huggingface.co/{hub_id} in "
            f"{folder / 'snapshots' / 'main'}, or set weights to the file's path"
        )
    path = hub_checkpoint(url)
    if not path.is_file():
        raise CheckpointError(
            f"{where}: ImageNet weights not found; place {path.name} (from {url}) in "
            f"{path.parent}, or set weights to the file's path"
        )
    return path


def load_timm_state(body: nn.Module, state: Mapping[str, Tensor], where: str, model: str) -> None:
    """Load the full model's or the ``features_only`` model's state dict into ``body``.

    timm's ``features_only`` wrappers rename modules: nested names are flattened
    (``stages.0`` -> ``stages_0``) or the whole model sits under one attribute
    (``model.`` for ViTs, ``body.`` for hooked models).  Keys are therefore matched
    without that attribute and with dots and underscores treated alike.  Keys of
    modules the wrapper dropped (the classifier, the final norm, stages after the last
    ``out_indices``) are ignored; any other difference is refused.
    """
    own = body.state_dict()
    inner, wrapper = body, ""
    children = list(body.named_children())
    if len(children) == 1:
        wrapper, inner = f"{children[0][0]}.", children[0][1]

    def matchable(key: str) -> str:
        return _flat(key.removeprefix(wrapper))

    by_flat = {matchable(k): k for k in own}
    if len(by_flat) != len(own):  # two names differ only in "." vs "_": match exactly
        by_flat = {k: k for k in own}
    renamed: dict[str, Tensor] = {}
    extra: list[str] = []
    for key, value in state.items():
        target = by_flat.get(matchable(key)) or by_flat.get(key)
        if target is None:
            extra.append(key)
        else:
            renamed[target] = value
    kept = [
        _flat(name) + "_"
        for name, child in inner.named_children()
        if any(True for _ in itertools.chain(child.parameters(), child.buffers()))
    ]
    dropped = {k for k in extra if not any(matchable(k).startswith(p) for p in kept)}
    check_state_dict(
        {**renamed, **{k: state[k] for k in extra}},
        {k: v.shape for k, v in own.items()},
        f"{where} is not a timm {model} state dict",
        f"give one saved from timm.create_model('{model}').state_dict() or its features_only "
        f"model, or weights = 'imagenet'",
        unused=lambda key: key in dropped,
    )
    body.load_state_dict(renamed, strict=False)


def _flat(key: str) -> str:
    return key.replace(".", "_")
