"""Pretrained weights: the ``weights`` parameter, reading, checking, decimating.

Every backbone's ``weights`` takes the same values: ``"imagenet"`` (its ImageNet
weights from the local cache), ``"none"`` or no value (random initialisation), or the
path of a state dict (``.safetensors``, or ``.pth``/``.pt``/``.bin`` read with
``weights_only=True``); ``resolve_weights`` (:mod:`segkit.model.weights_param`) tells
them apart.
``read_torchvision_weights`` reads ``"imagenet"`` from the torch hub cache (the file
torchvision would download, looked up by the name in its URL) and never reaches for
the network, or reads a path; every failure is one line naming the file and what to
give instead.  ``check_state_dict`` compares a state dict with the keys and shapes a
model expects and names the first key that does not fit.  ``decimate`` subsamples a
pretrained weight to a smaller layer the way DeepLab v1 fits VGG16's classifier into
its fc6/fc7: evenly spaced filters (every 4th for 1024 of 4096) and evenly spaced
kernel taps (7 -> 3 keeps taps 0, 3, 6; 7 -> 4 keeps 0, 2, 4, 6; 7 -> 1 keeps the
centre).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from segkit.core.errors import CheckpointError


def hub_checkpoint(url: str) -> Path:
    """Where ``torch.hub`` keeps the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def read_torchvision_weights(weights: str, url: str, what: str, layout: str) -> dict[str, Tensor]:
    """A state dict: ``"imagenet"`` from the torch hub cache (the file of ``url``), or a path.

    ``what`` names the part in errors; ``layout`` is the torchvision model whose state
    dict is expected (``"vgg16_bn"``, ``"resnet50"`` ...).  Read it before building the
    model, so that a missing file fails at once.
    """
    if weights == "imagenet":
        path = hub_checkpoint(url)
        if not path.is_file():
            raise CheckpointError(
                f"{what}: ImageNet weights not found; place {path.name} (from {url}) "
                f"in {path.parent}"
            )
    else:
        path = Path(weights)
    return read_state_dict(path, what, f"torchvision {layout} state dict")


def read_state_dict(path: str | Path, what: str, expected: str) -> dict[str, Tensor]:
    """A name -> tensor mapping from ``path``, or a one-line :class:`CheckpointError`.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)``, which refuses pickled code.  A training
    checkpoint wrapping its weights in ``state_dict`` or ``model`` is unwrapped.
    ``what`` names the part in errors, ``expected`` the kind of file it wants.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"{what}: weights file {path} does not exist; give 'imagenet', 'none' or the path "
            f"of a {expected}"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{what}: cannot read weights file {path} ({type(exc).__name__}); "
            f"give a {expected} saved with torch.save or safetensors"
        ) from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(
            f"{what}: {path} is not a state dict (name -> tensor); give a {expected}"
        )
    return dict(state)


def check_torchvision_keys(
    state: Mapping[str, Tensor],
    expected: Mapping[str, Sequence[int]],
    where: str,
    layout: str,
    unused_prefix: str | None = None,
) -> None:
    """Raise a one-line :class:`CheckpointError` unless ``state`` has the ``expected`` shapes.

    Keys starting with ``unused_prefix`` (a classifier the model drops) may be present.
    """
    check_state_dict(
        state,
        expected,
        f"{where} is not a torchvision {layout} state dict",
        f"give one saved from torchvision.models.{layout}().state_dict()",
        unused=lambda key: bool(unused_prefix) and key.startswith(unused_prefix),
    )


def check_state_dict(
    state: Mapping[str, Tensor],
    expected: Mapping[str, Sequence[int]],
    problem: str,
    fix: str,
    unused: Callable[[str], bool] = lambda key: False,
) -> None:
    """Raise ``"<problem> (<mismatches>); <fix>"`` unless ``state`` has the ``expected`` shapes.

    The mismatches start with the first key that does not fit, in the model's order:
    missing, then wrong shape, then keys the model does not have (those for which
    ``unused`` is true, such as a classifier the model drops, are allowed).
    """
    # Older files lack BatchNorm's num_batches_tracked.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    wrong = [
        f"{k} {tuple(state[k].shape)} instead of {tuple(expected[k])}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k])
    ]
    unexpected = [k for k in state if k not in expected and not unused(k)]
    problems = [
        f"{label} {_listing(keys)}"
        for label, keys in (("missing", missing), ("shape", wrong), ("unexpected", unexpected))
        if keys
    ]
    if problems:
        raise CheckpointError(f"{problem} ({'; '.join(problems)}); {fix}")


def _listing(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:3])
    return shown if len(keys) <= 3 else f"{shown}, ... ({len(keys)} in all)"


def decimate(weight: Tensor, shape: Sequence[int]) -> Tensor:
    """Subsample ``weight`` to ``shape``: channels (dims 0, 1) and kernel taps (dims 2+).

    Channels keep evenly spaced indices from 0 (``evenly_spaced``); kernel dimensions
    keep taps spread from end to end (``kernel_taps``).  A bias (one dimension) keeps
    the same filters as its weight.
    """
    if weight.dim() != len(shape) or any(n > t for n, t in zip(shape, weight.shape, strict=True)):
        raise ValueError(f"cannot decimate {tuple(weight.shape)} to {tuple(shape)}")
    for dim, (count, total) in enumerate(zip(shape, weight.shape, strict=True)):
        if count != total:
            pick = evenly_spaced if dim < 2 else kernel_taps
            weight = weight.index_select(dim, pick(total, count))
    return weight


def copy_decimated(layer: nn.Conv2d, weight: Tensor, bias: Tensor) -> None:
    """Fill ``layer`` with ``weight`` and ``bias`` decimated to its shape."""
    with torch.no_grad():
        layer.weight.copy_(decimate(weight, layer.weight.shape))
        layer.bias.copy_(decimate(bias, layer.bias.shape))


def evenly_spaced(total: int, count: int) -> Tensor:
    """``count`` of ``total`` indices, evenly spaced from 0: every 4th for 1024 of 4096."""
    return torch.arange(count) * total // count


def kernel_taps(total: int, count: int) -> Tensor:
    """``count`` taps of a ``total``-tap kernel: 7 -> 3 keeps 0, 3, 6; 7 -> 4 keeps 0, 2, 4, 6."""
    if count == 1:
        return torch.tensor([total // 2])
    return torch.linspace(0, total - 1, count).round().long()
