"""Registered names: each carries its factory and a typed description of its parameters.

One description serves config validation, ``segkit plugins`` and the README, so the
three can never disagree about what a part accepts.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from segkit.core.errors import ConfigError, PluginError, did_you_mean

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


class _FromFactory:
    def __repr__(self) -> str:
        return "<the factory's default>"


#: A ``Param`` default meaning "the factory's own default", so it is written once.
FROM_FACTORY: Any = _FromFactory()


@dataclass(frozen=True)
class Param:
    """One parameter of a registered factory.

    ``type`` is a plain type (``bool``, ``int``, ``float``, ``str``), ``X | None``,
    ``Literal[...]``, or ``list[X]`` / ``tuple[X, ...]`` of those.  The default is
    the factory's own unless given here (then the factory must have none or the
    same); a parameter without a default anywhere is required in the config.
    """

    name: str
    type: Any
    default: Any = FROM_FACTORY
    help: str = ""
    required: bool = False

    def type_name(self) -> str:
        return type_name(self.type)

    def check(self, value: Any, where: str) -> Any:
        """Return ``value`` converted to the declared type, or raise :class:`ConfigError`."""
        ok, converted = _convert(value, self.type)
        if not ok:
            raise ConfigError(
                f"{where}: parameter '{self.name}' must be {self.type_name()}, "
                f"got {value!r} ({type(value).__name__}); fix the value in the config"
            )
        return converted


def type_name(tp: Any) -> str:
    """A short human name for a parameter type: ``int``, ``str | None``, ``list[float]``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return (value in typing.get_args(tp)), value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, converted = _convert(value, arg)
            if ok:
                return True, converted
        return False, value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return False, value
        args = typing.get_args(tp)
        if origin is tuple and Ellipsis not in args:
            if len(args) != len(value):
                return False, value
            item_types = args
        else:
            item_types = [args[0]] * len(value)
        items = []
        for item, item_type in zip(value, item_types, strict=True):
            ok, converted = _convert(item, item_type)
            if not ok:
                return False, value
            items.append(converted)
        return True, origin(items)
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    return isinstance(value, tp), value


@dataclass(frozen=True)
class Component:
    """A name registered by a plugin at one hook point."""

    kind: str
    name: str
    factory: Callable[..., Any]
    params: tuple[Param, ...]
    help: str
    plugin: str

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
            elif param.required:
                raise ConfigError(f"{where}: parameter '{param.name}' is required ({param.help})")
            else:
                bound[param.name] = param.default
        return bound

    def build(self, *args: Any, params: Mapping[str, Any] | None = None) -> Any:
        """Call the factory with positional context ``args`` and validated ``params``."""
        return self.factory(*args, **self.bind(params or {}))


class Register:
    """The callback a registration hook receives; one per hook point and plugin."""

    def __init__(self, registry: Registry, kind: str, plugin: str) -> None:
        self._registry = registry
        self._kind = kind
        self._plugin = plugin

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        params: Sequence[Param] = (),
        help: str = "",
    ) -> None:
        where = f"plugin '{self._plugin}': {self._kind} '{name}'"
        check_registration(name, factory, params, help, where)
        described = tuple(match_signature(factory, params, CONTEXT[self._kind], where))
        self._registry.add(
            Component(self._kind, name, factory, described, help.strip(), self._plugin)
        )


class SchemaMismatch(PluginError):
    """A plugin's ``Param`` list does not describe its factory."""


def check_registration(name: Any, factory: Any, params: Any, help: Any, where: str) -> None:
    """What a plugin hands ``register`` has the types the hook documents.

    A plugin is written against the documentation, not checked by a type checker:
    ``params="depth"`` or a list of dicts would otherwise fail later, far from the
    plugin, as an internal error of whichever command first reads the description.
    """
    if not isinstance(name, str) or not name.strip():
        raise SchemaMismatch(f"{where}: the name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise SchemaMismatch(f"{where}: the factory must be callable, got {type(factory).__name__}")
    if not isinstance(help, str):
        raise SchemaMismatch(f"{where}: help must be a string, got {type(help).__name__}")
    if isinstance(params, str | Param) or not isinstance(params, Sequence):
        raise SchemaMismatch(
            f"{where}: params must be a list of segkit.Param, got {type(params).__name__}; "
            f"write params=[Param(...), ...]"
        )
    for index, param in enumerate(params):
        if not isinstance(param, Param):
            raise SchemaMismatch(
                f"{where}: params[{index}] is {type(param).__name__} {param!r:.40}, not a "
                f"segkit.Param; write Param(name, type, default, help)"
            )
        if not isinstance(param.name, str) or not param.name.isidentifier():
            raise SchemaMismatch(
                f"{where}: params[{index}] has the name {param.name!r}; a Param's name is "
                f"its factory's keyword argument"
            )
        if not _is_param_type(param.type):
            raise SchemaMismatch(
                f"{where}: Param '{param.name}' has the type {param.type!r}, which is not a "
                f"type; use bool, int, float, str, X | None, Literal[...] or list[X]"
            )


def _is_param_type(tp: Any) -> bool:
    """Whether ``tp`` is a type :class:`Param` can check values against."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return True
    if origin in (typing.Union, types.UnionType, list, tuple):
        return all(a is Ellipsis or _is_param_type(a) for a in typing.get_args(tp))
    return isinstance(tp, type)


def match_signature(
    factory: Callable[..., Any], params: Sequence[Param], context: Sequence[str], where: str
) -> list[Param]:
    """``params`` checked against ``factory``'s signature, with the factory's defaults filled in.

    The factory takes ``context`` positionally, then every described parameter as a
    keyword; a ``Param`` the factory does not accept, a factory parameter no ``Param``
    describes, or two different defaults for one parameter is a :class:`SchemaMismatch`.
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return [p if p.default is not FROM_FACTORY else _required(p) for p in params]
    accepted = list(signature.parameters.values())
    positional = [a for a in accepted if a.kind in (a.POSITIONAL_ONLY, a.POSITIONAL_OR_KEYWORD)]
    takes_rest = any(a.kind is a.VAR_POSITIONAL for a in accepted)
    if len(positional) < len(context) and not takes_rest:
        raise SchemaMismatch(
            f"{where}: its factory must take ({', '.join(context)}) before the parameters, "
            f"but takes ({', '.join(a.name for a in positional)})"
        )
    # The context fills the named positional parameters first (``*args`` takes the rest),
    # so those are never the user's, with or without ``*args``.
    keywords = accepted[min(len(positional), len(context)) :]
    named = {a.name: a for a in keywords if a.kind not in (a.VAR_POSITIONAL, a.VAR_KEYWORD)}
    open_keywords = any(a.kind is a.VAR_KEYWORD for a in accepted)
    described = {p.name for p in params}
    undescribed = [n for n, a in named.items() if a.default is a.empty and n not in described]
    if undescribed:
        raise SchemaMismatch(
            f"{where}: factory parameter {_quoted(undescribed)} has no Param; describe it in "
            f"params=[...] or give it a default"
        )
    result = []
    for param in params:
        argument = named.get(param.name)
        if argument is None and not open_keywords:
            raise SchemaMismatch(
                f"{where}: Param '{param.name}' is not a parameter of its factory "
                f"{getattr(factory, '__name__', factory)}{did_you_mean(param.name, named)} "
                f"(it takes {', '.join(named) or 'none'})"
            )
        own = argument.default if argument is not None else inspect.Parameter.empty
        if param.default is FROM_FACTORY:
            param = _required(param) if own is inspect.Parameter.empty else _with(param, own)
        elif own is not inspect.Parameter.empty and own != param.default:
            raise SchemaMismatch(
                f"{where}: Param '{param.name}' defaults to {param.default!r} but its factory "
                f"to {own!r}; give the default in one place (leave it out of the Param)"
            )
        if not (param.required or param.default is None or _convert(param.default, param.type)[0]):
            raise SchemaMismatch(
                f"{where}: Param '{param.name}' defaults to {param.default!r}, which is not "
                f"{param.type_name()}; fix the default or the type"
            )
        result.append(param)
    return result


def _with(param: Param, default: Any) -> Param:
    return Param(param.name, param.type, default, param.help, param.required)


def _required(param: Param) -> Param:
    return Param(param.name, param.type, None, param.help, required=True)


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


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
