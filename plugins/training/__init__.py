"""The training recipe's built-in parts, one plugin per family.

``losses`` (cross_entropy, dice, focal, lovasz_softmax), ``optimizers`` (sgd, adam,
adamw), ``schedules`` (poly, step, cosine, constant) and ``augmentations`` (steps on
torchvision.transforms.v2).  Each module is a plugin of its own, registered through
the ``segkit`` entry-point group like any third-party package; it registers and
checks the settings without PyTorch, and its ``*_torch`` module builds the parts
(the schedules, plain Python, build in their own module).
"""
