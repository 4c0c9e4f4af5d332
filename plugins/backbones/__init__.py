"""Backbones: VGG16 (FCN and DeepLab variants), torchvision ResNets and timm's models."""
