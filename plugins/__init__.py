"""The built-in segkit plugins, installed as ``segkit_plugins``.

Each entry point's module (``backbones/vgg.py``, ``heads/fcn.py``, ``crf/__init__.py``
...) registers one family: names, parameters and help, importing no more than segkit's
core.  The modules its factories live in (``vgg_net.py``, ``fcn_net.py``,
``crf/builders.py`` ...) import PyTorch and are imported when a part is first built.
"""
