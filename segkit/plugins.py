"""The plugin manager: built-ins first, then third-party packages, all by entry point."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import pluggy

from segkit import hookspecs
from segkit.errors import PluginError
from segkit.registry import KINDS, Register, Registry

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

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.manager.hook

    def failures(self) -> list[PluginInfo]:
        return [info for info in self.infos if info.status.startswith("failed")]


def _distribution(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"], dist.version


def _disabled_from_env() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


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
        entry_points(group=ENTRY_POINT_GROUP),
        key=lambda ep: (_distribution(ep)[0] != BUILTIN_DISTRIBUTION, ep.name),
    )
    seen: set[str] = set()
    for ep in found:
        if ep.name in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(ep.name)
        dist, version = _distribution(ep)
        if ep.name in disable:
            plugins.infos.append(PluginInfo(ep.name, dist, version, "disabled"))
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must not take segkit down
            why = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
            plugins.infos.append(PluginInfo(ep.name, dist, version, why))
            continue
        _register(plugins, ep.name, module, dist, version)
    for index, module in enumerate(extra):
        name = getattr(module, "__name__", f"extra{index}")
        _register(plugins, name, module, "(direct)", "")
    return plugins


def _register(plugins: Plugins, name: str, module: object, dist: str, version: str) -> None:
    manager, registry = plugins.manager, plugins.registry
    try:
        manager.register(module, name=name)
    except ValueError as exc:
        raise PluginError(f"plugin '{name}' could not be registered: {exc}") from exc
    try:
        for kind in KINDS:
            hook = getattr(manager.hook, f"register_{kind}s")
            impls = [impl for impl in hook.get_hookimpls() if impl.plugin_name == name]
            for impl in impls:
                impl.function(register=Register(registry, kind, name))
    except PluginError:
        raise
    except Exception as exc:
        manager.unregister(name=name)
        why = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
        plugins.infos.append(PluginInfo(name, dist, version, why))
        return
    plugins.infos.append(PluginInfo(name, dist, version))


_CACHE: dict[frozenset[str], Plugins] = {}


def get_plugins(disable: set[str] | frozenset[str] = frozenset()) -> Plugins:
    """The plugins for this process, loaded once per set of disabled names."""
    key = frozenset(disable) | frozenset(_disabled_from_env())
    if key not in _CACHE:
        _CACHE[key] = load_plugins(key)
    return _CACHE[key]
