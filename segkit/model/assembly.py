"""Model assembly: backbone -> head -> upsampler [-> CRF layer], each built by its plugin."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from segkit.core.config import CRF_LAYER_PARAMS, Config, DataConfig, Part
from segkit.core.errors import ConfigError
from segkit.core.ranges import RANGES
from segkit.core.registry import Registry
from segkit.data import IMAGENET_MEAN, IMAGENET_STD
from segkit.model.contracts import (
    PartOwner,
    check_head_geometry,
    declared_features,
    dry_run,
    needs_dry_run,
)
from segkit.model.geometry import BackboneInfo


class SegmentationModel(nn.Module):
    """Maps N×3×H×W images to N×C×H×W class logits.

    The backbone returns named feature maps; the head turns them (and the image,
    which some heads such as DeepLab-MSc read) into scores at its own stride; the
    upsampler brings the scores back to exactly H×W.  An optional CRF layer then
    refines the scores with the image (``crf(scores, images)``, same shape).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        upsampler: nn.Module,
        crf: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.upsampler = upsampler
        self.crf = crf

    def forward(self, images: Tensor) -> Tensor:
        features = {"image": images, **self.backbone(images)}
        scores = self.head(features)
        scores = self.upsampler(scores, images.shape[-2:])
        return scores if self.crf is None else self.crf(scores, images)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Backbone, head and CRF-layer parameters, so each can get its own learning
        rate (the upsampler learns with the head)."""
        groups = {
            "backbone": list(self.backbone.parameters()),
            "head": [*self.head.parameters(), *self.upsampler.parameters()],
            "crf": [] if self.crf is None else list(self.crf.parameters()),
        }
        return {part: [p for p in params if p.requires_grad] for part, params in groups.items()}


def build_model_from_parts(
    registry: Registry,
    backbone: Part,
    head: Part,
    upsampler: Part,
    num_classes: int,
    crf: Part | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
) -> SegmentationModel:
    """Build a model from part descriptions; errors name the part and the fix.

    Parts from third-party plugins are checked against the hook contract by a dry run
    on a small image (:mod:`segkit.model.contracts`) before the model is returned.

    ``crf`` names a post-processor that offers a trainable layer, with its parameters
    and the layer's keys; the layer compares the colours of the images, which it
    receives normalised with ``image_mean`` and ``image_std`` (unset: the backbone's
    pretrained statistics, else ImageNet's).
    """
    if num_classes < 2:
        raise ConfigError(f"model.num_classes must be at least 2, got {num_classes}")
    owners = {
        "backbone": PartOwner(registry.get("backbone", backbone.name)),
        "head": PartOwner(registry.get("head", head.name)),
        "upsampler": PartOwner(registry.get("upsampler", upsampler.name)),
    }
    backbone_module = owners["backbone"].component.build(params=backbone.params)
    info = BackboneInfo(
        name=backbone.name,
        features=declared_features(backbone_module, owners["backbone"]),
        spare_weights=getattr(backbone_module, "spare_weights", {}),
    )
    head_module = owners["head"].component.build(info, num_classes, params=head.params)
    check_head_geometry(head_module, owners["head"])
    # Pretrained tensors the head took over are not needed any more.
    if hasattr(backbone_module, "spare_weights"):
        backbone_module.spare_weights = {}
    upsampler_module = owners["upsampler"].component.build(
        num_classes, head_module.stride, head_module.offset, params=upsampler.params
    )
    crf_layer = None
    if crf is not None:
        owners["crf"] = PartOwner(registry.get("postprocessor", crf.name))
        mean = image_mean or getattr(backbone_module, "mean", IMAGENET_MEAN)
        std = image_std or getattr(backbone_module, "std", IMAGENET_STD)
        crf_layer = _build_crf_layer(registry, crf, num_classes, mean, std)
    model = SegmentationModel(backbone_module, head_module, upsampler_module, crf_layer)
    if needs_dry_run(owners, registry.builtin_plugins):
        dry_run(model, owners, num_classes)
    return model


def _build_crf_layer(
    registry: Registry,
    crf: Part,
    num_classes: int,
    image_mean: Sequence[float],
    image_std: Sequence[float],
) -> nn.Module:
    layer_keys = {p.name: p.default for p in CRF_LAYER_PARAMS}
    params = {k: v for k, v in crf.params.items() if k not in layer_keys}
    layer_params = {k: crf.params.get(k, default) for k, default in layer_keys.items()}
    postprocessor = registry.get("postprocessor", crf.name).build(params=params)
    if not hasattr(postprocessor, "layer"):
        raise ConfigError(
            f"model.crf: post-processor '{crf.name}' cannot act as a trained layer; "
            f"name one that can (convcrf, densecrf_torch)"
        )
    return postprocessor.layer(num_classes, image_mean, image_std, **layer_params)


def build_model(config: Config, num_classes: int | None, registry: Registry) -> SegmentationModel:
    """Build the model a config describes (``num_classes`` defaults to the config's)."""
    if not isinstance(config, Config):
        raise ConfigError(
            f"build_model takes a segkit Config (from segkit.load_config), got "
            f"{type(config).__name__}"
        )
    if num_classes is not None:
        RANGES["model.num_classes"].check(num_classes, "num_classes")
    classes = config.model.num_classes if num_classes is None else num_classes
    if classes is None:
        raise ConfigError(
            "model.num_classes is not set; set it in [model] or let the dataset provide it"
        )
    m = config.model
    model = build_model_from_parts(
        registry,
        m.backbone,
        m.head,
        m.upsampler,
        classes,
        m.crf,
        config.data.mean,
        config.data.std,
    )
    resolve_normalisation(config.data, model.backbone)
    return model


def resolve_normalisation(data: DataConfig, backbone: nn.Module) -> None:
    """Fill the ``data.mean``/``data.std`` a config leaves unset from the backbone.

    A backbone states the statistics its pretrained weights were trained with in
    ``mean``/``std`` attributes (timm's pretrained configs differ: 0.5 for many ViTs);
    without them ImageNet's are used.  Filled into the config, they reach the
    transforms, the saved config and the checkpoint, so prediction normalises alike.
    """
    if data.mean is None:
        data.mean = [float(v) for v in getattr(backbone, "mean", IMAGENET_MEAN)]
    if data.std is None:
        data.std = [float(v) for v in getattr(backbone, "std", IMAGENET_STD)]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
