"""Model assembly: backbone -> head -> upsampler, each built by its plugin."""

from __future__ import annotations

from torch import Tensor, nn

from segkit.core.config import Config, DataConfig, Part
from segkit.core.errors import ConfigError
from segkit.core.registry import Registry
from segkit.data import IMAGENET_MEAN, IMAGENET_STD
from segkit.model.geometry import BackboneInfo


class SegmentationModel(nn.Module):
    """Maps N×3×H×W images to N×C×H×W class logits.

    The backbone returns named feature maps; the head turns them (and the image,
    which some heads such as DeepLab-MSc read) into scores at its own stride; the
    upsampler brings the scores back to exactly H×W.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, upsampler: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.upsampler = upsampler

    def forward(self, images: Tensor) -> Tensor:
        features = {"image": images, **self.backbone(images)}
        scores = self.head(features)
        return self.upsampler(scores, images.shape[-2:])

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Backbone and head parameters, so the head can get its own learning rate."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        rest = [p for m in (self.head, self.upsampler) for p in m.parameters() if p.requires_grad]
        return {"backbone": backbone, "head": rest}


def build_model_from_parts(
    registry: Registry,
    backbone: Part,
    head: Part,
    upsampler: Part,
    num_classes: int,
) -> SegmentationModel:
    """Build a model from part descriptions; errors name the part and the fix."""
    if num_classes < 2:
        raise ConfigError(f"model.num_classes must be at least 2, got {num_classes}")
    backbone_module = registry.get("backbone", backbone.name).build(params=backbone.params)
    info = BackboneInfo(
        name=backbone.name,
        features=dict(backbone_module.feature_info),
        spare_weights=getattr(backbone_module, "spare_weights", {}),
    )
    head_module = registry.get("head", head.name).build(info, num_classes, params=head.params)
    # Pretrained tensors the head took over are not needed any more.
    if hasattr(backbone_module, "spare_weights"):
        backbone_module.spare_weights = {}
    upsampler_module = registry.get("upsampler", upsampler.name).build(
        num_classes, head_module.stride, head_module.offset, params=upsampler.params
    )
    return SegmentationModel(backbone_module, head_module, upsampler_module)


def build_model(config: Config, num_classes: int | None, registry: Registry) -> SegmentationModel:
    """Build the model a config describes (``num_classes`` defaults to the config's)."""
    classes = num_classes or config.model.num_classes
    if classes is None:
        raise ConfigError(
            "model.num_classes is not set; set it in [model] or let the dataset provide it"
        )
    m = config.model
    model = build_model_from_parts(registry, m.backbone, m.head, m.upsampler, classes)
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
