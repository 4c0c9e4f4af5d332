"""Factories named by where they live, imported when a part is first built.

A plugin registers ``"package.module:function"`` instead of the function itself, so
that listing the plugins, checking a config or printing ``--help`` never imports the
module (nor torch, torchvision or timm, which it imports at its top).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segkit.core.errors import PluginError
from segkit.core.imports import check_source_imports

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_PATH = re.compile(rf"({_DOTTED}):({_DOTTED})")


@dataclass(frozen=True)
class LazyFactory:
    """A factory given as ``"package.module:attribute"`` (an entry point's notation).

    The module is imported by :meth:`load`, on first use; until then only the string
    is known, and :meth:`source_file` finds the module's file without running it.
    ``plugin_package`` is the top-level package of the plugin that registered it: its
    modules, not those of a library the factory may come from, follow the import rule.
    """

    path: str
    plugin_package: str = ""

    @staticmethod
    def is_import_path(text: str) -> bool:
        """Whether ``text`` reads ``package.module:attribute``."""
        return _PATH.fullmatch(text) is not None

    @property
    def module(self) -> str:
        return self.path.partition(":")[0]

    @property
    def attribute(self) -> str:
        return self.path.partition(":")[2]

    def load(self, where: str) -> Callable[..., Any]:
        """Import the module and return the attribute, or raise one line saying why not.

        The plugin's modules imported for it are held to the same rule as the plugin's
        own module at load time: segkit's public API only.
        """
        before = set(sys.modules)
        try:
            target: Any = importlib.import_module(self.module)
            for name in self.attribute.split("."):
                target = getattr(target, name)
        except Exception as exc:  # a missing optional dependency is the usual cause
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise PluginError(
                f"{where}: its factory {self.path} cannot be imported ({reason})"
            ) from exc
        package = self.plugin_package or _top(self.module)
        # The module itself even when another part imported it first (each file is read once).
        owned = [n for n in {self.module, *(set(sys.modules) - before)} if _top(n) == package]
        files = [getattr(sys.modules.get(n), "__file__", None) for n in sorted(owned)]
        check_source_imports([Path(f) for f in files if f], where)
        if not callable(target):
            raise PluginError(f"{where}: its factory {self.path} is {type(target).__name__}")
        return target

    def source_file(self) -> Path | None:
        """The module's file, found without importing it (its package is imported)."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec is not None else None
        return Path(origin) if origin and origin not in ("built-in", "frozen") else None

    def __str__(self) -> str:
        return self.path


def _top(module: str) -> str:
    return module.split(".")[0]


def lazy_names(
    package: str, names: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for names loaded on first use.

    ``names`` maps each name to the module that defines it; the first access imports
    that module and keeps the value in the package's ``namespace`` (its ``globals()``),
    so that ``import segkit`` does not wait for PyTorch until a name needs it.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
