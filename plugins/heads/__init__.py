"""Heads: FCN-32s/16s/8s, DeepLab v1 (LargeFOV, MSc) and FPN."""
