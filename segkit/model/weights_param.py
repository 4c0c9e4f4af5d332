"""The ``weights`` parameter every backbone shares, and what its values mean.

Apart from :mod:`segkit.model.weights` (which reads the files, with PyTorch) so that
a backbone plugin registers it without importing PyTorch.
"""

from __future__ import annotations

from segkit.core.registry import Param

#: The ``weights`` parameter every backbone shares (see ``resolve_weights``).
WEIGHTS_PARAM = Param(
    "weights",
    str | None,
    None,
    "'imagenet' (ImageNet weights from the local torch hub / Hugging Face cache), "
    "'none' (random init, the default), or the path of a .safetensors/.pth state dict",
)
#: Values of ``weights`` that mean "no pretrained weights".
NO_WEIGHTS = ("none", "")


def resolve_weights(weights: str | None) -> str | None:
    """``None`` for no weights (``None``, ``"none"``, ``""``), else ``"imagenet"`` or a path."""
    if weights is None or weights.strip().lower() in NO_WEIGHTS:
        return None
    return "imagenet" if weights.strip().lower() == "imagenet" else weights
