"""The hooks a segkit plugin can implement.

A plugin is a module (or any object) with functions marked ``@segkit.hookimpl``
whose names are the hooks below.  Built-in plugins and third-party packages are
loaded the same way: through the ``segkit`` entry-point group.  A function marked
``@hookimpl`` whose name is not a hook here (``register_head``) fails the plugin's
loading with a line that names the plugin and the hook it meant.

Registration hooks receive a ``register`` callback::

    register(name, factory, params=[Param(...)], help="one line", check=None)

``factory`` is called with the positional context the hook documents and with the
user's parameters as keywords, already validated against ``params``.  The ``Param``
list is checked against the factory's signature when the plugin loads.  Two plugins
registering the same name at the same hook point is an error that names both.

``factory`` may also be the import path of the function, ``"package.module:function"``:
the module is imported when the part is first built, so that loading the plugins
(``segkit plugins``, ``segkit config``, every command's start) does not import what
it imports, PyTorch above all.  Keep the registering module light and put the
factory in a module of its own::

    @hookimpl
    def register_heads(register):
        register(
            "my_head",
            "my_package.heads:build_my_head",  # imports torch when a model is built
            params=[Param("channels", int, 256, "width"), Param("root", str, help="data")],
            help="my head",
        )

Such a factory's Params state the defaults, since the factory is not read at load
time: a Param without one is required, and when the factory is first imported its
signature is checked as a callable's is at load time, and a default it gives that
the Param does not state is refused.  Its modules follow the same import rule as the
plugin's own: segkit's public API only.

``check``, optional, is called with the user's parameters as keywords (validated,
defaults filled in) before the factory, and alone by ``segkit config`` and before a
run, which build nothing: it raises :class:`segkit.ConfigError` for the values the
factory would refuse (``momentum`` outside [0, 1)).  It must be cheap, importing no
more than the registering module does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from segkit.core.events import RunView
    from segkit.core.registry import Register

hookspec = pluggy.HookspecMarker("segkit")
hookimpl = pluggy.HookimplMarker("segkit")


@hookspec
def register_backbones(register: Register) -> None:
    """Register backbones: ``factory(**params) -> nn.Module``.

    The module maps N×3×H×W images to a dict of named feature maps and has an
    attribute ``feature_info: dict[str, segkit.FeatureInfo]`` giving each map's
    channels, stride and offset, in order from shallow to deep.  It may also carry
    ``spare_weights: dict[str, Tensor]``: pretrained tensors it loaded but does not
    use itself (for example VGG's ImageNet classifier), offered to the head.
    """


@hookspec
def register_heads(register: Register) -> None:
    """Register heads: ``factory(backbone: segkit.BackboneInfo, num_classes, **params)``.

    The returned module maps the backbone's feature dict (plus ``"image"``, the input
    itself) to class scores, and has attributes ``stride`` and ``offset`` telling where
    its output pixels lie on the input (see :class:`segkit.FeatureInfo`).  A head that
    cannot sit on the given backbone raises :class:`segkit.IncompatiblePartsError`.
    """


@hookspec
def register_upsamplers(register: Register) -> None:
    """Register upsamplers: ``factory(num_classes, stride, offset, **params)``.

    The module is called as ``upsampler(scores, size)`` and returns scores of exactly
    ``size`` (H, W), placed so that score pixel ``i`` lands on input pixel
    ``stride * i + offset``.
    """


@hookspec
def register_postprocessors(register: Register) -> None:
    """Register post-processors: ``factory(**params)``.

    The object is called as ``postprocessor(probs, images)`` with probabilities
    N×C×H×W (float, summing to one over C) and the original images N×3×H×W (uint8
    RGB), and returns refined probabilities of the same shape.  Post-processors chain.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets: ``factory(split: str, **params) -> segkit.SegmentationDataset``."""


@hookspec
def register_losses(register: Register) -> None:
    """Register training losses: ``factory(task: segkit.train.LossTask, **params)``.

    The returned callable maps logits N×C×H×W (float32) and targets N×H×W (int64,
    ``task.ignore_index`` where unlabelled) to a scalar tensor.  A batch without a
    labelled pixel must give zero (not NaN).  ``task.class_frequencies()`` gives the
    training masks' class frequencies, computed once per run on first use.
    """


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimizers: ``factory(param_groups, **params) -> torch.optim.Optimizer``.

    ``param_groups`` is a list of dicts with ``params`` and ``lr`` (the schedule's
    base rate for that group), and ``weight_decay = 0.0`` on groups exempt from it;
    the factory passes them to the optimizer as they are.
    """


@hookspec
def register_schedules(register: Register) -> None:
    """Register learning-rate schedules: ``factory(total_iterations, **params)``.

    The returned callable maps an iteration (0-based) to a factor of each group's
    base learning rate.  segkit steps it once per iteration and adds the warm-up.
    """


@hookspec
def register_augmentations(register: Register) -> None:
    """Register training augmentations: ``factory(data: segkit.data.AugmentData, **params)``.

    The returned ``torchvision.transforms.v2`` transform is called with a
    ``tv_tensors.Image`` (uint8) and a ``tv_tensors.Mask`` and returns both; it draws
    its randomness from torch's generator, which segkit seeds per sample.
    """


# Run events observe a run.  One that raises is reported once (a warning naming the
# plugin) and the plugin's run events are skipped from then on, so that a broken logger
# never costs the training it logs; raise a segkit.SegkitError to stop the run on
# purpose (see segkit/core/events.py).  A hook may rely on what RunView declares of the
# run; segkit passes its segkit.train.Run.


@hookspec
def on_run_start(run: RunView) -> None:
    """A run begins: ``run.config``, ``run.run_dir``, ``run.class_names`` are set."""


@hookspec
def on_epoch_end(run: RunView, epoch: int, metrics: dict[str, Any]) -> None:
    """An epoch ended; ``metrics`` holds the loss, learning rate and any evaluation."""


@hookspec
def on_run_end(run: RunView, summary: dict[str, Any], error: BaseException | None) -> None:
    """A run ended, also when it failed or was interrupted (then ``error`` is set).

    ``summary`` is what ``summary.json`` holds (empty when the run did not evaluate).
    Release what the plugin holds for the run (files, writers) here.
    """
