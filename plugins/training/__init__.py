"""The training recipe's built-in parts, one module per family.

``losses`` (cross_entropy, dice, focal, lovasz_softmax), ``optimizers`` (sgd, adam,
adamw), ``schedules`` (poly, step, cosine, constant) and ``augmentations`` (steps on
torchvision.transforms.v2).  Each module is a plugin of its own, registered through
the ``segkit`` entry-point group like any third-party package.
"""
