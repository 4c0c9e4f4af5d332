"""A factory's parameters: the typed :class:`Param`, and the checks that a Param list
describes its factory (given as a callable, or lazily as an import path).

Config validation, ``segkit plugins`` and the docs all read these descriptions, so a
description that lies about its factory is refused when the plugin loads, or, for a
factory not imported yet, when it is first imported.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from segkit.core.errors import ConfigError, PluginError, did_you_mean
from segkit.core.lazy import LazyFactory
from segkit.core.ranges import MAX_INTEGER


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

    def check_fits_a_run(self, value: Any, where: str) -> None:
        """Refuse numbers no part can use: not finite, or integers beyond
        :data:`~segkit.core.ranges.MAX_INTEGER` (a plugin declares a type, not a range)."""
        for number in _numbers(value):
            if isinstance(number, float) and not math.isfinite(number):
                raise ConfigError(
                    f"{where}: parameter '{self.name}' must be a finite number, got {number}; "
                    f"fix the value in the config"
                )
            if isinstance(number, int) and abs(number) > MAX_INTEGER:
                raise ConfigError(
                    f"{where}: parameter '{self.name}' is {number}, larger than any run can "
                    f"use (at most {MAX_INTEGER:,}); fix the value in the config"
                )


def _numbers(value: Any) -> list[int | float]:
    """The numbers in a parameter's value, in lists and tuples too (booleans are none)."""
    if isinstance(value, list | tuple):
        return [n for item in value for n in _numbers(item)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [value]
    return []


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
    if isinstance(factory, str) and not LazyFactory.is_import_path(factory):
        raise SchemaMismatch(
            f"{where}: the factory must be callable or an import path "
            f"'package.module:function', got {factory!r}"
        )
    if not callable(factory) and not isinstance(factory, str | LazyFactory):
        raise SchemaMismatch(
            f"{where}: the factory must be callable or an import path "
            f"'package.module:function', got {type(factory).__name__}"
        )
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
        _check_default(param, where)
        result.append(param)
    return result


def _check_default(param: Param, where: str) -> None:
    if not (param.required or param.default is None or _convert(param.default, param.type)[0]):
        raise SchemaMismatch(
            f"{where}: Param '{param.name}' defaults to {param.default!r}, which is not "
            f"{param.type_name()}; fix the default or the type"
        )


def lazy_params(params: Sequence[Param], where: str) -> list[Param]:
    """The Params of a factory not imported yet: their own defaults are the only ones.

    A Param stating no default is required; should the factory turn out to have one,
    :func:`check_lazy_signature` refuses it when the factory is first imported.
    """
    result = [p if p.default is not FROM_FACTORY else _required(p) for p in params]
    for param in result:
        _check_default(param, where)
    return result


def check_lazy_signature(
    factory: Callable[..., Any], params: Sequence[Param], context: Sequence[str], where: str
) -> None:
    """A just-imported factory takes what its Params (from :func:`lazy_params`) describe.

    Every check :func:`match_signature` makes at load time for a factory given as a
    callable is made here, and the defaults must be those the Params state.
    """
    stated = [
        Param(p.name, p.type, FROM_FACTORY if p.required else p.default, p.help) for p in params
    ]
    for got, param in zip(match_signature(factory, stated, context, where), params, strict=True):
        if got.required != param.required:
            raise SchemaMismatch(
                f"{where}: Param '{param.name}' states no default but its factory defaults to "
                f"{got.default!r}; a factory named by its import path is not imported to read "
                f"its defaults: give the default in the Param"
            )


def check_takes_params(check: Callable[..., None], params: Sequence[Param], where: str) -> None:
    """A registration's ``check`` accepts every described parameter as a keyword."""
    if not callable(check):
        raise SchemaMismatch(f"{where}: check must be callable, got {type(check).__name__}")
    try:
        inspect.signature(check).bind(**{p.name: p.default for p in params})
    except TypeError as exc:
        names = ", ".join(p.name for p in params) or "none"
        raise SchemaMismatch(
            f"{where}: its check must take the parameters ({names}) as keywords: {exc}"
        ) from None
    except ValueError:  # a builtin without a signature: nothing to check
        pass


def _with(param: Param, default: Any) -> Param:
    return Param(param.name, param.type, default, param.help, param.required)


def _required(param: Param) -> Param:
    return Param(param.name, param.type, None, param.help, required=True)


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)
