"""Training losses: cross-entropy (class weights, label smoothing, hard-pixel mining),
soft Dice, focal and Lovász-softmax, each ignore-aware.

Every loss maps logits N×C×H×W and targets N×H×W (``task.ignore_index`` where
unlabelled) to a scalar.  A batch without a labelled pixel gives zero: a crop that
falls entirely on unlabelled pixels says nothing, and must not turn the loss into
NaN.  A config sums several with weights (``[[train.loss]]`` tables).

Their settings are checked here, without PyTorch; the losses themselves are in
:mod:`segkit_plugins.training.losses_torch`.
"""

from __future__ import annotations

from segkit import ConfigError, Param, hookimpl

LOSSES = "segkit_plugins.training.losses_torch"

_CLASS_WEIGHTS = Param(
    "class_weights",
    list[float] | str | None,
    None,
    'one weight per class, or "auto" from the training masks (see docs/guides/own-data.md)',
)


def check_cross_entropy(
    class_weights: list[float] | str | None, label_smoothing: float, keep_hardest: float
) -> None:
    if not 0 <= label_smoothing < 1:
        raise ConfigError(
            f"loss 'cross_entropy': label_smoothing must be in [0, 1), got {label_smoothing}"
        )
    if not 0 < keep_hardest <= 1:
        raise ConfigError(
            f"loss 'cross_entropy': keep_hardest must be in (0, 1], got {keep_hardest}"
        )


def check_dice(smooth: float) -> None:
    if smooth < 0:
        raise ConfigError(f"loss 'dice': smooth must be >= 0, got {smooth}")


def check_focal(gamma: float, class_weights: list[float] | str | None) -> None:
    if gamma < 0:
        raise ConfigError(f"loss 'focal': gamma must be >= 0, got {gamma}")


@hookimpl
def register_losses(register):
    register(
        "cross_entropy",
        f"{LOSSES}:cross_entropy",
        params=[
            _CLASS_WEIGHTS,
            Param("label_smoothing", float, 0.0, "share of the target spread over all classes"),
            Param(
                "keep_hardest",
                float,
                1.0,
                "average only this fraction of the hardest labelled pixels (OHEM); 1: all",
            ),
        ],
        help="per-pixel cross-entropy over labelled pixels",
        check=check_cross_entropy,
    )
    register(
        "dice",
        f"{LOSSES}:dice",
        params=[Param("smooth", float, 1.0, "added to numerator and denominator")],
        help="soft multi-class Dice over the classes present in the batch",
        check=check_dice,
    )
    register(
        "focal",
        f"{LOSSES}:focal",
        params=[Param("gamma", float, 2.0, "focusing power; 0 is cross-entropy"), _CLASS_WEIGHTS],
        help="focal loss: down-weights pixels already classified well",
        check=check_focal,
    )
    register(
        "lovasz_softmax",
        f"{LOSSES}:lovasz_softmax",
        help="Lovász-softmax: a convex surrogate of the mean IoU over present classes",
    )
