"""Run-event hooks that raise: reported once, and the run goes on.

Run events (``on_run_start``, ``on_epoch_end``, ``on_run_end``) observe a run:
loggers, notifications, experiment trackers.  A bug in one must not throw away the
training it observes, so every plugin's run-event functions are guarded.  The first
exception a plugin raises is reported as one warning line that names the plugin, the
hook and the error, with the hint to disable the plugin; from then on that plugin's
run events are skipped (for this set of loaded plugins, ``on_run_end`` included:
a plugin that failed is in no state to be trusted with its clean-up) and the run
continues.  A :class:`SegkitError` is a plugin's deliberate stop ("the tracking
server refused the key"): it ends the run with its one line.  Interrupts
(``KeyboardInterrupt``, ``SystemExit``) are never caught.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from segkit.core.errors import SegkitError

if TYPE_CHECKING:
    from segkit.core.config import Config

#: The hooks that observe a run rather than register a name.
RUN_EVENTS = ("on_run_start", "on_epoch_end", "on_run_end")


class RunView(Protocol):
    """What a run-event hook may rely on of the run it observes.

    segkit passes its training run (:class:`segkit.train.Run`), which has more; a
    plugin that uses only these works with any run segkit passes.
    """

    @property
    def config(self) -> Config:
        """The run's validated config."""

    @property
    def run_dir(self) -> Path:
        """The folder the run writes to."""

    @property
    def class_names(self) -> list[str]:
        """The names of the classes, in label order."""

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per finished epoch (what ``metrics.jsonl`` holds)."""

    @property
    def is_main(self) -> bool:
        """Whether this process writes: rank 0 of the ``torchrun`` processes, or the only one."""

    def log(self, *objects: Any) -> None:
        """Print to the run's console (on the main process only)."""


def guard_run_events(
    manager: pluggy.PluginManager, plugin: str, failures: MutableMapping[str, str]
) -> None:
    """Guard the run-event functions ``plugin`` implements; failures land in ``failures``."""
    for event in RUN_EVENTS:
        caller = getattr(manager.hook, event)
        for impl in caller.get_hookimpls():
            if impl.plugin_name == plugin and not (impl.wrapper or impl.hookwrapper):
                _guard(impl, event, caller.spec.argnames, failures)


def _guard(
    impl: pluggy.HookImpl,
    event: str,
    passed: Sequence[str],
    failures: MutableMapping[str, str],
) -> None:
    function: Callable[..., Any] = impl.function
    wanted, plugin = tuple(impl.argnames), impl.plugin_name

    def guarded(*args: Any) -> Any:
        given = dict(zip(passed, args, strict=True))
        if plugin in failures:
            return None
        try:
            return function(*(given[name] for name in wanted))
        except SegkitError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            failures[plugin] = f"{event}: {error}"
            _warn(
                given.get("run"),
                f"warning: plugin '{plugin}' failed in {event} ({error}); its run events are "
                f"skipped from now on and the run goes on (--disable-plugin {plugin} "
                f"leaves it out)",
            )
            return None

    # pluggy passes an implementation the arguments it names: the guard takes them all,
    # so that it can report to the run's console whatever the plugin asked for.
    impl.function = guarded
    impl.argnames = tuple(passed)


def _warn(run: RunView | None, line: str) -> None:
    # rich is imported here, not at the top: loading the plugins must not pay for it.
    from rich.console import Console
    from rich.text import Text

    text = Text(line, "yellow")
    if run is not None and hasattr(run, "log"):
        run.log(text)  # the run's console, rank 0 only
    else:
        Console(stderr=True).print(text, soft_wrap=True)
