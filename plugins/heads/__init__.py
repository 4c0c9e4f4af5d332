"""Heads: FCN-32s/16s/8s and DeepLab v1 (LargeFOV, MSc)."""
