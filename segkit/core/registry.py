"""Registered names: each carries its factory and a typed description of its parameters.

One description serves config validation, ``segkit plugins`` and the documentation, so the
three can never disagree about what a part accepts.  A factory is a callable, or the
import path of one (:class:`~segkit.core.lazy.LazyFactory`), imported when the part is
first built: the description and an optional cheap ``check`` of the parameters are all
that listing plugins and checking configs need.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segkit.core.errors import ConfigError, PluginError, did_you_mean
from segkit.core.lazy import LazyFactory
from segkit.core.schema import (  # noqa: F401  (FROM_FACTORY, type_name: the schema's API)
    FROM_FACTORY,
    Param,
    SchemaMismatch,
    check_lazy_signature,
    check_registration,
    check_takes_params,
    lazy_params,
    match_signature,
    type_name,
)

#: The hook points that register names: the model's parts in the order they meet an
#: image, then the data, then the training recipe.
KINDS = (
    "backbone",
    "head",
    "upsampler",
    "postprocessor",
    "dataset",
    "loss",
    "optimizer",
    "schedule",
    "augmentation",
)

#: Each kind's plural: its registration hook is ``register_<plural>``.
PLURAL = {kind: kind + "s" for kind in KINDS} | {"loss": "losses"}

#: The positional context each kind's factory receives before the user's parameters.
CONTEXT = {
    "backbone": (),
    "head": ("backbone", "num_classes"),
    "upsampler": ("num_classes", "stride", "offset"),
    "postprocessor": (),
    "dataset": ("split",),
    "loss": ("task",),
    "optimizer": ("param_groups",),
    "schedule": ("total_iterations",),
    "augmentation": ("data",),
}


#: A part's factory: the callable, or where to import it from on first use.
Factory = Callable[..., Any] | LazyFactory


@dataclass(frozen=True)
class Component:
    """A name registered by a plugin at one hook point."""

    kind: str
    name: str
    factory: Factory
    params: tuple[Param, ...]
    help: str
    plugin: str
    #: Raises :class:`ConfigError` for parameters the factory would refuse, without
    #: building anything (``segkit config`` runs it instead of the factory).
    check: Callable[..., None] | None = None
    _imported: list[Callable[..., Any]] = field(default_factory=list, compare=False, repr=False)

    @property
    def where(self) -> str:
        return f"plugin '{self.plugin}': {self.kind} '{self.name}'"

    def bind(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Validate user parameters against the description and fill in defaults."""
        where = f"{self.kind} '{self.name}'"
        known = {p.name: p for p in self.params}
        for key in given:
            if key not in known:
                listing = ", ".join(known) or "none"
                raise ConfigError(
                    f"{where}: unknown parameter '{key}'{did_you_mean(key, known)} "
                    f"(its parameters: {listing})"
                )
        bound = {}
        for param in self.params:
            if param.name in given:
                bound[param.name] = param.check(given[param.name], where)
                param.check_fits_a_run(bound[param.name], where)
            elif param.required:
                raise ConfigError(f"{where}: parameter '{param.name}' is required ({param.help})")
            else:
                bound[param.name] = param.default
        return bound

    def validate(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`bind`, then the plugin's own ``check``: all that needs no import."""
        bound = self.bind(given)
        if self.check is not None:
            self.check(**bound)
        return bound

    def resolve(self) -> Callable[..., Any]:
        """The factory; a lazy one is imported, and checked against the Params, once."""
        if not isinstance(self.factory, LazyFactory):
            return self.factory
        if not self._imported:
            function = self.factory.load(self.where)
            check_lazy_signature(function, self.params, CONTEXT[self.kind], self.where)
            self._imported.append(function)
        return self._imported[0]

    def source_file(self) -> str | None:
        """The file that defines the factory, found without importing a lazy one."""
        if isinstance(self.factory, LazyFactory):
            path = self.factory.source_file()
            return str(path) if path is not None else None
        try:
            return inspect.getsourcefile(self.factory)
        except TypeError:  # a builtin or a C extension's callable
            return None

    def build(self, *args: Any, params: Mapping[str, Any] | None = None) -> Any:
        """Call the factory with positional context ``args`` and validated ``params``."""
        bound = self.validate(params or {})
        return self.resolve()(*args, **bound)


class Register:
    """The callback a registration hook receives; one per hook point and plugin."""

    def __init__(self, registry: Registry, kind: str, plugin: str, package: str = "") -> None:
        self._registry = registry
        self._kind = kind
        self._plugin = plugin
        self._package = package  # the plugin module's top-level package

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        *,
        params: Sequence[Param] = (),
        help: str = "",
        check: Callable[..., None] | None = None,
    ) -> None:
        where = f"plugin '{self._plugin}': {self._kind} '{name}'"
        check_registration(name, factory, params, help, where)
        if isinstance(factory, str | LazyFactory):
            factory = LazyFactory(str(factory), self._package)
            described = tuple(lazy_params(params, where))
        else:
            described = tuple(match_signature(factory, params, CONTEXT[self._kind], where))
        if check is not None:
            check_takes_params(check, described, where)
        self._registry.add(
            Component(self._kind, name, factory, described, help.strip(), self._plugin, check)
        )


class NameTaken(PluginError):
    """A third-party plugin registers a name a built-in plugin provides."""


@dataclass
class Registry:
    """All registered names, by hook point."""

    components: dict[str, dict[str, Component]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    #: Plugins shipped with segkit: tested by segkit itself, so their parts skip the
    #: contract checks third-party parts get (see :mod:`segkit.model.contracts`).
    builtin_plugins: set[str] = field(default_factory=set)

    def is_builtin(self, component: Component) -> bool:
        return component.plugin in self.builtin_plugins

    def add(self, component: Component) -> None:
        table = self.components[component.kind]
        existing = table.get(component.name)
        if existing is not None and self.is_builtin(existing) and not self.is_builtin(component):
            # The built-in keeps its name: a third-party plugin cannot break what works.
            raise NameTaken(
                f"it registers {component.kind} '{component.name}', which segkit's built-in "
                f"plugin '{existing.plugin}' already provides; the plugin must choose another name"
            )
        if existing is not None:
            raise PluginError(
                f"{component.kind} '{component.name}' is registered by both plugin "
                f"'{existing.plugin}' and plugin '{component.plugin}'; uninstall or disable "
                f"one of them (--disable-plugin NAME or SEGKIT_DISABLE_PLUGINS=NAME)"
            )
        table[component.name] = component

    def remove_plugin(self, plugin: str) -> None:
        """Forget what ``plugin`` registered (it failed half-way through)."""
        for table in self.components.values():
            for name in [n for n, c in table.items() if c.plugin == plugin]:
                del table[name]

    def get(self, kind: str, name: str) -> Component:
        table = self.components[kind]
        if name not in table:
            listing = ", ".join(sorted(table)) or "none (is a plugin disabled?)"
            raise PluginError(
                f"unknown {kind} '{name}'{did_you_mean(name, table)} (installed: {listing})"
            )
        return table[name]

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])
