"""The plugin manager: built-ins first, then third-party packages, all by entry point."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import pluggy

from segkit.core import hookspecs
from segkit.core.errors import PluginError, did_you_mean
from segkit.core.events import guard_run_events
from segkit.core.imports import check_source_imports, module_files
from segkit.core.registry import (
    KINDS,
    PLURAL,
    NameTaken,
    Register,
    Registry,
    SchemaMismatch,
)

ENTRY_POINT_GROUP = "segkit"
DISABLE_ENV = "SEGKIT_DISABLE_PLUGINS"
BUILTIN_DISTRIBUTION = "segkit"


@dataclass(frozen=True)
class PluginInfo:
    """One loaded (or failed, or disabled) plugin, as ``segkit plugins`` shows it."""

    name: str
    distribution: str
    version: str
    status: str = "loaded"  # "loaded", "disabled" or "failed: <why>"


@dataclass
class Plugins:
    """The loaded plugins, their hooks and everything they registered."""

    manager: pluggy.PluginManager
    registry: Registry
    infos: list[PluginInfo] = field(default_factory=list)
    #: Plugins whose run-event hook raised, with the hook and the error (see events.py).
    event_failures: dict[str, str] = field(default_factory=dict)

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.manager.hook

    def failures(self) -> list[PluginInfo]:
        return [info for info in self.infos if info.status.startswith("failed")]


def _with_distributions(found: Iterable[EntryPoint]) -> list[tuple[EntryPoint, str, str]]:
    """Each entry point with its distribution's name and version.

    A distribution's METADATA (segkit's holds the whole README) is parsed once, not
    once per entry point and field: it is most of what loading the plugins costs.
    """
    known: dict[int, tuple[str, str]] = {}
    result = []
    for ep in found:
        dist = ep.dist
        if dist is None:
            result.append((ep, "?", "?"))
            continue
        if id(dist) not in known:
            metadata = dist.metadata
            known[id(dist)] = (metadata["Name"], metadata["Version"])
        result.append((ep, *known[id(dist)]))
    return result


def _disabled_from_env() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def installed_plugin_names() -> list[str]:
    """The entry-point names of the installed plugins, built-in and third-party."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def check_disable_names(names: Iterable[str], option: str = "--disable-plugin") -> None:
    """A plugin named to be disabled must exist: a typo would leave the broken one loaded."""
    installed = installed_plugin_names()
    for name in names:
        if name not in installed:
            raise PluginError(
                f"{option} '{name}': no plugin of that name is installed"
                f"{did_you_mean(name, installed)} (installed: {', '.join(installed)}; "
                f"'segkit plugins' lists them)"
            )


def load_plugins(disable: set[str] | frozenset[str] = frozenset(), extra: tuple = ()) -> Plugins:
    """Load the built-in plugins, then the ``segkit`` entry-point group.

    ``disable`` (plus the names in ``$SEGKIT_DISABLE_PLUGINS``) skips plugins by
    entry-point name.  A plugin that fails to import or to register is recorded
    with its reason and the others still load.  ``extra`` adds plugin objects
    directly (handy in tests and notebooks).
    """
    disable = set(disable) | _disabled_from_env()
    manager = pluggy.PluginManager("segkit")
    manager.add_hookspecs(hookspecs)
    registry = Registry()
    plugins = Plugins(manager, registry)

    found = sorted(
        _with_distributions(entry_points(group=ENTRY_POINT_GROUP)),
        key=lambda item: (item[1] != BUILTIN_DISTRIBUTION, item[0].name),
    )
    seen: set[str] = set()
    for ep, dist, version in found:
        if ep.name in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(ep.name)
        if ep.name in disable:
            plugins.infos.append(PluginInfo(ep.name, dist, version, "disabled"))
            continue
        if dist == BUILTIN_DISTRIBUTION:
            registry.builtin_plugins.add(ep.name)
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must not take segkit down
            plugins.infos.append(_failed(ep.name, dist, version, _first_line(exc)))
            continue
        _register(plugins, ep.name, module, dist, version)
    for index, module in enumerate(extra):
        name = getattr(module, "__name__", f"extra{index}")
        _register(plugins, name, module, "(direct)", "")
    return plugins


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _failed(name: str, dist: str, version: str, why: str) -> PluginInfo:
    """A plugin that did not load: why, and how to stop hearing about it."""
    status = f"failed: {why}; it is skipped (--disable-plugin {name} silences this)"
    return PluginInfo(name, dist, version, status)


def _register(plugins: Plugins, name: str, module: object, dist: str, version: str) -> None:
    manager, registry = plugins.manager, plugins.registry
    try:
        check_source_imports(module_files(module))
        manager.register(module, name=name)
    except ValueError as exc:
        raise PluginError(f"plugin '{name}' could not be registered: {exc}") from exc
    except pluggy.PluginValidationError as exc:  # a hook function with the wrong arguments
        if manager.is_registered(module):
            manager.unregister(name=name)
        plugins.infos.append(_failed(name, dist, version, _wrong_arguments(manager, exc)))
        return
    except PluginError as exc:
        plugins.infos.append(_failed(name, dist, version, str(exc)))
        return
    package = getattr(module, "__name__", type(module).__module__).split(".")[0]
    try:
        _check_hook_names(manager, name)
        for kind in KINDS:
            hook = getattr(manager.hook, f"register_{PLURAL[kind]}")
            impls = [impl for impl in hook.get_hookimpls() if impl.plugin_name == name]
            for impl in impls:
                given = {"register": Register(registry, kind, name, package)}
                impl.function(**{arg: given[arg] for arg in impl.argnames})
    except PluginError as exc:
        if not isinstance(exc, SchemaMismatch | NameTaken | _UnknownHook):
            raise  # two third-party plugins registering one name: the user must choose
        manager.unregister(name=name)
        registry.remove_plugin(name)
        plugins.infos.append(_failed(name, dist, version, str(exc)))
        return
    except Exception as exc:
        manager.unregister(name=name)
        registry.remove_plugin(name)
        plugins.infos.append(_failed(name, dist, version, _first_line(exc)))
        return
    guard_run_events(manager, name, plugins.event_failures)
    plugins.infos.append(PluginInfo(name, dist, version))


def _wrong_arguments(manager: pluggy.PluginManager, exc: pluggy.PluginValidationError) -> str:
    """pluggy's three-line complaint about a hook function's arguments, as one sentence."""
    text = str(exc)
    hook = re.search(r"for hook '(\w+)'", text)
    arguments = re.search(r"hookimpl definition: \w+(\(.*\))", text)
    caller = getattr(manager.hook, hook.group(1), None) if hook else None
    if caller is None or caller.spec is None or arguments is None:
        return text.replace("\n", "; ")
    return (
        f"its {caller.name} takes {arguments.group(1)}, but segkit passes "
        f"({', '.join(caller.spec.argnames)}) by name; rename the arguments to match"
    )


class _UnknownHook(PluginError):
    """A plugin implements a hook segkit does not have."""


def _check_hook_names(manager: pluggy.PluginManager, name: str) -> None:
    """A misspelt hook (``register_head``) is an error, not a plugin that does nothing."""
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        known = [n for n in dir(hookspecs) if n.startswith(("register_", "on_"))]
        unknown = [
            hook
            for hook, caller in vars(manager.hook).items()
            if not hook.startswith("_")
            and caller.spec is None
            and any(impl.plugin_name == name for impl in caller.get_hookimpls())
        ]
        # The suggestion follows the sentence: "'register_head', which is ...; did you mean".
        hooks = ", ".join(f"'{h}'" for h in unknown) or str(exc)
        hints = "".join(did_you_mean(h, known) for h in unknown)
        raise _UnknownHook(
            f"it implements {hooks}, which is not a segkit hook{hints} (hooks: {', '.join(known)})"
        ) from None


def default_registry(registry: Registry | None = None) -> Registry:
    """``registry``, or the installed plugins' for the API's entry points that take none."""
    return registry if registry is not None else get_plugins().registry


_CACHE: dict[frozenset[str], Plugins] = {}


def get_plugins(disable: set[str] | frozenset[str] = frozenset()) -> Plugins:
    """The plugins for this process, loaded once per set of disabled names."""
    key = frozenset(disable) | frozenset(_disabled_from_env())
    if key not in _CACHE:
        _CACHE[key] = load_plugins(key)
    return _CACHE[key]
