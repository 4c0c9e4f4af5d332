"""The rule for what a plugin imports from segkit: the public API only.

segkit may move what is private between releases; a plugin that reached into a
private module would break then, far from its author.  The rule is checked on the
plugin's own files when it loads, and on the modules of a lazily named factory when
that factory is first imported (see :mod:`segkit.core.lazy`).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

from segkit.core.errors import PluginError

#: What plugins may import from segkit: the package and the rooms' ``__init__``s.
PUBLIC_MODULES = frozenset(
    {
        "segkit",
        "segkit.core",
        "segkit.model",
        "segkit.data",
        "segkit.infer",
        "segkit.train",
        "segkit.testing",
    }
)

#: Files already read and found to follow the rule: each is parsed once per process.
_FOLLOWING: set[Path] = set()


def check_source_imports(files: Iterable[Path], where: str = "") -> None:
    """Raise :class:`PluginError` naming the first private segkit import in ``files``."""
    for source in files:
        if source.suffix != ".py" or source in _FOLLOWING:
            continue
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            for imported in _segkit_imports(node):
                if imported not in PUBLIC_MODULES:
                    raise PluginError(
                        f"{f'{where}: ' if where else ''}it imports {imported} ({source.name} "
                        f"line {node.lineno}), which is private to segkit; import from "
                        f"{_public_parent(imported)} instead"
                    )
        _FOLLOWING.add(source)


def module_files(module: object) -> list[Path]:
    """A plugin module's file and, for a package, the files of its imported modules."""
    file = getattr(module, "__file__", None)
    if not file:
        return []
    files = [Path(file)]
    if getattr(module, "__path__", None) is not None:
        prefix = f"{module.__name__}."  # type: ignore[attr-defined]
        files += [
            Path(m.__file__)
            for n, m in list(sys.modules.items())
            if n.startswith(prefix) and getattr(m, "__file__", None)
        ]
    return files


def _segkit_imports(node: ast.AST) -> list[str]:
    """The segkit modules (and private names) an import statement reaches for."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "segkit"]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        if node.module.split(".")[0] != "segkit":
            return []
        if node.module not in PUBLIC_MODULES:
            return [node.module]
        return [
            f"{node.module}.{a.name}"
            for a in node.names
            if a.name.startswith("_")
            or (
                f"{node.module}.{a.name}" in sys.modules
                and f"{node.module}.{a.name}" not in PUBLIC_MODULES
            )
        ]
    return []


def _public_parent(module: str) -> str:
    parts = module.split(".")
    while parts and ".".join(parts) not in PUBLIC_MODULES:
        parts.pop()
    return ".".join(parts) or "segkit"
