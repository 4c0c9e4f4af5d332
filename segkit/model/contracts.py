"""Third-party model parts are held to the hook contract by a dry run at build time.

A backbone, head or upsampler that returns something other than what its hook
promises (see :mod:`segkit.core.hookspecs`) would otherwise fail deep inside the
next part, as an internal error, or train silently on a misplaced map.  So when a
model holds a part from a plugin outside segkit, the assembled model is run once on
a small odd-sized image — stage by stage, so that each mistake is pinned on the
part that made it — and every output is compared with what its part declares.

The dry run changes nothing: no gradients, eval mode (batch-norm statistics stay as
they are) with each module's mode restored afterwards, and the random state is
restored too.  segkit's own parts are covered by its conformance tests and skip it,
so building a built-in model costs nothing more.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from segkit.core.errors import PluginError, SegkitError, first_line
from segkit.core.registry import Component
from segkit.model.geometry import FeatureInfo

#: The dry run's input: odd, so that a rounding mistake shows, and small, so it is cheap.
DRY_RUN_SIZE = (67, 93)
#: How far (in pixels) a map may be from the size its stride and offset imply; a wrong
#: stride is off by a factor of two or more.
SIZE_TOLERANCE = 1.5


@dataclass(frozen=True)
class PartOwner:
    """Who made a part, for the messages: ``plugin acme's backbone 'wide'``."""

    component: Component

    def __str__(self) -> str:
        c = self.component
        return f"plugin {c.plugin}'s {c.kind} '{c.name}'"

    def fault(self, problem: str) -> PluginError:
        fix = f"fix the plugin or leave it out with --disable-plugin {self.component.plugin}"
        return PluginError(f"{self} {problem}; {fix}")


def declared_features(backbone: nn.Module, owner: PartOwner) -> dict[str, FeatureInfo]:
    """The backbone's ``feature_info``, checked: a non-empty dict of :class:`FeatureInfo`."""
    info = getattr(backbone, "feature_info", None)
    if info is None:
        raise owner.fault(
            "has no feature_info; declare feature_info = {name: segkit.FeatureInfo(channels, "
            "stride)} for the maps it returns"
        )
    if not isinstance(info, Mapping) or not info:
        raise owner.fault(
            f"declares feature_info as {type(info).__name__} {info!r:.60}, not a non-empty "
            f"dict of segkit.FeatureInfo"
        )
    for name, feature in info.items():
        if not (
            isinstance(feature, FeatureInfo)
            and _positive_int(feature.channels)
            and _positive_int(feature.stride)
        ):
            raise owner.fault(
                f"declares feature_info[{name!r}] = {feature!r:.60}, not a segkit.FeatureInfo "
                f"with positive integer channels and stride"
            )
    return dict(info)


def check_head_geometry(head: nn.Module, owner: PartOwner) -> None:
    """The head says where its scores lie: an integer ``stride`` and a numeric ``offset``."""
    stride, offset = getattr(head, "stride", None), getattr(head, "offset", None)
    if not _positive_int(stride) or not _number(offset):
        raise owner.fault(
            f"declares stride {stride!r} and offset {offset!r}; a head needs the attributes "
            f"stride (a positive int) and offset (a number)"
        )


def needs_dry_run(owners: Mapping[str, PartOwner], builtin: set[str]) -> bool:
    """Whether any part comes from a plugin that is not segkit's own."""
    return any(owner.component.plugin not in builtin for owner in owners.values())


def dry_run(model: nn.Module, owners: Mapping[str, PartOwner], num_classes: int) -> None:
    """Run ``model`` once on a small image and check each stage against its contract.

    ``owners`` maps the model's stages (``backbone``, ``head``, ``upsampler``, ``crf``)
    to the parts that fill them.
    """
    height, width = DRY_RUN_SIZE
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(1, 3, height, width, generator=generator)
    with torch.no_grad(), torch.random.fork_rng(devices=[]), _eval_mode(model):
        features = _call(owners["backbone"], model.backbone, images)
        _check_features(features, model.backbone.feature_info, owners["backbone"])
        scores = _call(owners["head"], model.head, {"image": images, **features})
        _check_scores(scores, model.head, num_classes, owners["head"])
        logits = _call(owners["upsampler"], model.upsampler, scores, images.shape[-2:])
        _check_same_shape(logits, (1, num_classes, height, width), owners["upsampler"])
        if model.crf is not None and "crf" in owners:
            refined = _call(owners["crf"], model.crf, logits, images)
            _check_same_shape(refined, tuple(logits.shape), owners["crf"])


def check_postprocessed(name: str, refined: Any, probs: Tensor) -> Tensor:
    """A post-processor's output has the shape of its input probabilities."""
    if not isinstance(refined, Tensor) or refined.shape != probs.shape:
        got = _describe(refined)
        raise PluginError(
            f"post-processor '{name}' returns {got} for probabilities of shape "
            f"{_shape(probs)}; a post-processor returns probabilities of the shape it is given "
            f"(fix the plugin, or run without it: --no-crf)"
        )
    return refined


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def _call(owner: PartOwner, module: nn.Module, *args: Any) -> Any:
    try:
        return module(*args)
    except SegkitError:
        raise
    except Exception as exc:
        first = first_line(f"{type(exc).__name__}: {exc}", 160)
        size = "×".join(str(d) for d in DRY_RUN_SIZE)
        raise owner.fault(
            f"fails on a 1×3×{size} test image ({first}); parts must take any input size"
        ) from None


def _check_features(features: Any, declared: Mapping[str, FeatureInfo], owner: PartOwner) -> None:
    names = ", ".join(f"'{n}'" for n in declared)
    if not isinstance(features, Mapping):
        raise owner.fault(
            f"declares feature maps {names} but returns {_describe(features)}, not a dict of them"
        )
    if list(features) != list(declared):
        returned = ", ".join(f"'{n}'" for n in features) or "none"
        raise owner.fault(f"declares feature maps {names} but returns {returned}")
    for name, info in declared.items():
        feature = features[name]
        if not isinstance(feature, Tensor) or feature.dim() != 4:
            raise owner.fault(
                f"declares feature map '{name}' but returns {_describe(feature)} for it, not "
                f"an N×C×H×W tensor"
            )
        if feature.shape[1] != info.channels:
            raise owner.fault(
                f"declares {info.channels} channels for '{name}' but returns "
                f"{feature.shape[1]} ({_shape(feature)})"
            )
        _check_placement(feature, info.stride, info.offset, f"'{name}'", owner)


def _check_scores(scores: Any, head: nn.Module, num_classes: int, owner: PartOwner) -> None:
    if not isinstance(scores, Tensor) or scores.dim() != 4:
        raise owner.fault(f"returns {_describe(scores)}, not N×C×H×W class scores")
    if scores.shape[:2] != (1, num_classes):
        raise owner.fault(
            f"returns scores of shape {_shape(scores)} for one image and {num_classes} "
            f"classes; expected 1×{num_classes}×H×W"
        )
    _check_coverage(scores, head.stride, head.offset, owner)


def _check_same_shape(output: Any, expected: tuple[int, ...], owner: PartOwner) -> None:
    if not isinstance(output, Tensor) or tuple(output.shape) != expected:
        wanted = "×".join(str(d) for d in expected)
        raise owner.fault(f"returns {_describe(output)} where {wanted} is due")


def _check_placement(
    tensor: Tensor, stride: int, offset: float, what: str, owner: PartOwner
) -> None:
    """A map at ``stride``/``offset`` over the dry-run image has about this many pixels."""
    got = tuple(tensor.shape[-2:])
    implied = tuple((length - 1 - 2 * offset) / stride + 1 for length in DRY_RUN_SIZE)
    if any(abs(g - i) > SIZE_TOLERANCE for g, i in zip(got, implied, strict=True)):
        size = "×".join(str(d) for d in DRY_RUN_SIZE)
        about = "×".join(f"{i:.0f}" for i in implied)
        raise owner.fault(
            f"declares stride {stride} (offset {offset}) for {what} but returns a "
            f"{got[0]}×{got[1]} map for a {size} image, where that stride means about {about}"
        )


def _check_coverage(scores: Tensor, stride: int, offset: float, owner: PartOwner) -> None:
    """Score pixels reach the image's first and last pixel to within one stride.

    Heads may crop or pad (FCN's do), so only coverage is the contract, as in
    :class:`segkit.testing.HeadConformance`.
    """
    for count, length in zip(scores.shape[-2:], DRY_RUN_SIZE, strict=True):
        first, last = offset, offset + stride * (count - 1)
        if not (first < stride and last > length - 1 - stride):
            size = "×".join(str(d) for d in DRY_RUN_SIZE)
            raise owner.fault(
                f"declares stride {stride} (offset {offset}) but returns "
                f"{scores.shape[-2]}×{scores.shape[-1]} scores for a {size} image, which "
                f"then lie over [{first:g}, {last:g}], not over [0, {length - 1}]"
            )


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {_shape(value)}"
    return f"a {type(value).__name__}"


def _shape(tensor: Tensor) -> str:
    return "×".join(str(d) for d in tensor.shape)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
