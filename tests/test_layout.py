"""The layout of the source: rooms import downwards only, no import circle, no module
over 400 lines and no class over 150.

Every module under ``segkit/`` and ``plugins/`` is parsed with ``ast``; every import
counts, also one inside a function or under ``TYPE_CHECKING``.  The parent packages
that Python runs before a module (``segkit/__init__.py`` before ``segkit.core``) are
not counted as imports of it: only what a module names itself.

The rooms of ``segkit/``, lowest first:

- ``core``: plugins, registry, config, errors, run events; imports no other room;
- ``data``: datasets, file reading, transforms, loading;
- ``model``: assembly, geometry, weights, checkpoints; it sits above ``data`` because
  a model takes its input normalisation from there (``IMAGENET_MEAN``), and no dataset
  needs a model;
- ``infer``: devices, post-processing, prediction, evaluation, pictures, export;
- ``train``: the runner, the trainer and its collaborators;
- ``serve``: the web page and HTTP API of ``segkit serve``, on top of inference;
- the public entry points ``segkit/__init__.py``, ``api.py`` and ``testing.py``,
  which may use every room but the command line;
- ``cli``: the command line (``segkit/cli/``, ``__main__.py``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Where each package's modules live, by the name they are imported as.
PACKAGES = {"segkit": ROOT / "segkit", "segkit_plugins": ROOT / "plugins"}

ROOMS = ("core", "data", "model", "infer", "train", "serve", "entry points", "cli")

#: The modules outside ``segkit/<room>/`` and the room each belongs to.
TOP_LEVEL_ROOMS = {
    "segkit": "entry points",
    "segkit.api": "entry points",
    "segkit.testing": "entry points",
    "segkit.__main__": "cli",
}

#: What serves ``segkit eval``: its module, else the function wherever it is.
EVAL_MODULE = "segkit.cli.eval"
EVAL_COMMAND = "cmd_eval"

MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 150

#: Files whose violations are known and tolerated for now.  A violation is tolerated
#: only when every file it names is listed here; a listed file that is gone, or breaks
#: no rule any more, fails the test, so that its entry goes with it.  This list is meant
#: to be empty.
KNOWN_UNTIL_REPLACED: set[str] = set()


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def file(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


@cache
def modules() -> dict[str, Module]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            found[name] = Module(name, path, ast.parse(path.read_text(), str(path)))
    return found


def imported_modules(module: Module) -> set[str]:
    """The known modules ``module`` imports: ``from a import b`` imports the module
    ``a.b`` when there is one, else ``a``."""
    found = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found.update(resolve(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package upwards
                package = module.name.split(".")
                if not module.is_package:
                    package = package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules() else resolve(base))
    found.discard(None)
    found.discard(module.name)
    return found


def resolve(name: str) -> str | None:
    """The known module that importing ``name`` runs (its longest known prefix)."""
    known = modules()
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


@cache
def import_graph() -> dict[str, set[str]]:
    return {name: imported_modules(module) for name, module in modules().items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or not (Tarjan's SCCs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle, the shortest from its first module, for each circle."""
    return [shortest_cycle(graph, group) for group in circles(graph)]


def shortest_cycle(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """The shortest way round from the group's first module back to it."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & members):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError(f"{group} is no cycle")


def room(name: str) -> str:
    if name in TOP_LEVEL_ROOMS:
        return TOP_LEVEL_ROOMS[name]
    parts = name.split(".")
    if parts[0] == "segkit" and len(parts) > 1 and parts[1] in ROOMS:
        return parts[1]
    raise AssertionError(
        f"{modules()[name].file} belongs to no room; move it into one of "
        f"segkit/{{{','.join(r for r in ROOMS if ' ' not in r)}}}/ or list it in TOP_LEVEL_ROOMS"
    )


def file_of(name: str) -> str:
    return modules()[name].file


def tolerated(files: list[str]) -> bool:
    return all(file in KNOWN_UNTIL_REPLACED for file in files)


def import_cycles() -> list[tuple[str, list[str]]]:
    found = []
    graph = import_graph()
    for group in circles(graph):
        message = " -> ".join(shortest_cycle(graph, group))
        if len(group) > 2:
            message += f" (the circle holds {', '.join(group)})"
        found.append((message, [file_of(m) for m in group]))
    return found


def upward_imports(graph: dict[str, set[str]] | None = None) -> list[tuple[str, list[str]]]:
    found = []
    for name, targets in (graph or import_graph()).items():
        if not name.startswith("segkit.") and name != "segkit":
            continue
        for target in sorted(targets):
            if not target.startswith("segkit.") and target != "segkit":
                continue
            own, other = room(name), room(target)
            if ROOMS.index(other) > ROOMS.index(own):
                found.append(
                    (
                        f"{file_of(name)} ({own}) imports {target} ({other}), a higher room",
                        [file_of(name)],
                    )
                )
    return found


def class_lines(node: ast.ClassDef) -> int:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return node.end_lineno - first + 1


def oversized() -> list[tuple[str, list[str]]]:
    found = []
    for module in modules().values():
        lines = len(module.path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(
                (f"{module.file} has {lines} lines (at most {MAX_MODULE_LINES})", [module.file])
            )
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ClassDef) and class_lines(node) > MAX_CLASS_LINES:
                found.append(
                    (
                        f"{module.file}:{node.lineno} class {node.name} has {class_lines(node)} "
                        f"lines (at most {MAX_CLASS_LINES})",
                        [module.file],
                    )
                )
    return found


def assert_none(violations: list[tuple[str, list[str]]], what: str) -> None:
    left = [message for message, files in violations if not tolerated(files)]
    assert not left, f"{what}:\n  " + "\n  ".join(left)


def test_no_import_cycle():
    assert_none(import_cycles(), "modules that import each other")


def test_rooms_import_only_their_own_and_lower_rooms():
    assert_none(upward_imports(), f"rooms, lowest first: {', '.join(ROOMS)}")


def test_no_module_or_class_past_its_size():
    assert_none(oversized(), "split by responsibility")


def test_every_known_violation_is_still_there():
    """An entry of KNOWN_UNTIL_REPLACED goes as soon as its file does, or is fixed."""
    named = {
        file
        for message, files in import_cycles() + upward_imports() + oversized()
        for file in files
    }
    stale = sorted(KNOWN_UNTIL_REPLACED - named)
    assert not stale, f"remove from KNOWN_UNTIL_REPLACED (gone, or within the rules): {stale}"


# The checks check: each finds what it exists to find.


def graph_of(edges: str) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for edge in edges.split():
        source, target = edge.split(">")
        graph.setdefault(source, set()).add(target)
        graph.setdefault(target, set())
    return graph


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ("a>b b>c", []),
        ("a>b b>a", [["a", "b", "a"]]),
        ("a>b b>c c>a c>d", [["a", "b", "c", "a"]]),
        ("a>b b>a c>d d>c", [["a", "b", "a"], ["c", "d", "c"]]),
        ("a>b b>c c>a a>c", [["a", "c", "a"]]),
    ],
)
def test_cycles_are_found_and_named(edges, expected):
    assert sorted(cycles(graph_of(edges))) == expected


def test_every_kind_of_import_is_seen():
    source = (
        "from typing import TYPE_CHECKING\n"
        "import segkit.core.config\n"
        "from segkit.infer import evaluate\n"
        "from .step import train_step\n"
        "if TYPE_CHECKING:\n"
        "    from segkit.train.context import Run\n"
        "def later():\n"
        "    from segkit.data.files import read_image\n"
    )
    module = Module("segkit.train.example", ROOT / "segkit/train/example.py", ast.parse(source))
    assert imported_modules(module) == {
        "segkit.core.config",
        "segkit.infer.evaluate",
        "segkit.train.step",
        "segkit.train.context",
        "segkit.data.files",
    }


def test_segkit_eval_needs_nothing_of_the_training_room():
    """``segkit eval`` scores a checkpoint with the inference room's evaluator."""
    if EVAL_MODULE in modules():
        module = modules()[EVAL_MODULE]
        imported = imported_modules(module)
    else:
        command = [
            (module, node)
            for module in modules().values()
            for node in module.tree.body
            if isinstance(node, ast.FunctionDef) and node.name == EVAL_COMMAND
        ]
        assert len(command) == 1, f"{EVAL_MODULE} or one function {EVAL_COMMAND} serves eval"
        module, function = command[0]
        others = [n for n in module.tree.body if not isinstance(n, ast.FunctionDef)]
        imported = imported_modules(Module(module.name, module.path, ast.Module(others, [])))
        imported |= imported_modules(Module(module.name, module.path, ast.Module([function], [])))
    training = sorted(m for m in imported if m == "segkit.train" or m.startswith("segkit.train."))
    assert not training, f"{module.file}: `segkit eval` imports from the training room"


def test_the_core_imports_no_pytorch():
    """The core stays light: listing plugins or printing a config needs no PyTorch."""
    found = []
    for module in modules().values():
        if module.name.startswith("segkit.core"):
            for node in ast.walk(module.tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                found += [
                    f"{module.file}:{node.lineno} imports {name}"
                    for name in names
                    if name.split(".")[0] in ("torch", "torchvision", "timm")
                ]
    assert not found, "\n".join(found)


def test_an_import_from_a_higher_room_is_found():
    graph = {
        "segkit.core.hookspecs": {"segkit.train.context", "segkit.core.registry"},
        "segkit.model.assembly": {"segkit.data"},
        "segkit.api": {"segkit.train", "segkit.infer"},
        "segkit.infer.evaluate": {"segkit.cli"},
    }
    assert [message for message, _ in upward_imports(graph)] == [
        "segkit/core/hookspecs.py (core) imports segkit.train.context (train), a higher room",
        "segkit/infer/evaluate.py (infer) imports segkit.cli (cli), a higher room",
    ]
