"""Backbones: VGG16 (FCN and DeepLab variants) and torchvision ResNets."""
