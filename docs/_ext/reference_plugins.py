"""The plugin and hook references: the installed plugins' registry and the hook specs."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from markdown_text import anchor, cell, code, toml_value

#: Each hook point's section title on the plugin page.
KIND_TITLES = {
    "backbone": "Backbones",
    "head": "Heads",
    "upsampler": "Upsamplers",
    "postprocessor": "Post-processors",
    "dataset": "Datasets",
    "loss": "Losses",
    "optimizer": "Optimizers",
    "schedule": "Learning-rate schedules",
    "augmentation": "Augmentations",
}

#: Where each kind of part is named in a config.
KIND_CONFIG_KEYS = {
    "backbone": "`[model.backbone]`",
    "head": "`[model.head]`",
    "upsampler": "`[model.upsampler]`",
    "postprocessor": "`[[postprocessors]]`, `[model.crf]`, `segkit refine --postprocessor`",
    "dataset": "`[data.dataset]`",
    "loss": "`[[train.loss]]`",
    "optimizer": "`[train.optimizer]`",
    "schedule": "`[train.schedule]`",
    "augmentation": "`[[data.augment]]`",
}


def plugin_modules() -> dict[str, str]:
    """Each installed plugin's entry-point name -> the module it loads."""
    return {ep.name: ep.value for ep in entry_points(group="segkit")}


def plugins_markdown(plugins: Any | None = None) -> str:
    """Every registered name with its parameters, from the installed plugins' registry."""
    from segkit.core import load_plugins
    from segkit.core.registry import KINDS, PLURAL

    plugins = plugins if plugins is not None else load_plugins()
    registry = plugins.registry
    modules = plugin_modules()
    out = ["## Installed plugins", ""]
    out += ["| plugin | module | distribution | status |", "|---|---|---|---|"]
    for info in plugins.infos:
        module = modules.get(info.name, "")
        out.append(
            f"| `{info.name}` | `{module}` | {cell(info.distribution)} {cell(info.version)} "
            f"| {cell(info.status)} |"
        )
    out.append("")
    for kind in KINDS:
        table = registry.components[kind]
        out += [f"({anchor('plugins', PLURAL[kind])})=", f"## {KIND_TITLES.get(kind, kind)}", ""]
        out += [f"Named in {KIND_CONFIG_KEYS.get(kind, kind)}.", ""]
        if not table:
            out += ["None installed.", ""]
            continue
        out += ["| name | what it is | plugin |", "|---|---|---|"]
        for name in sorted(table):
            component = table[name]
            link = f"[`{name}`](#{anchor('plugin', kind, name)})"
            out.append(f"| {link} | {cell(component.help)} | `{component.plugin}` |")
        out.append("")
        for name in sorted(table):
            out += component_markdown(table[name], modules)
    out += events_markdown(plugins, modules)
    return "\n".join(out)


def component_markdown(component: Any, modules: Mapping[str, str]) -> list[str]:
    """One registered name: its help, where it comes from, and its parameters."""
    module = modules.get(component.plugin, "")
    source = getattr(component, "source", None) or module
    out = [f"({anchor('plugin', component.kind, component.name)})=", f"### `{component.name}`", ""]
    out += [cell(component.help) or "(no help given)", ""]
    where = f" (`{source}`)" if source else ""
    out += [f"A {component.kind} from plugin `{component.plugin}`{where}.", ""]
    if not component.params:
        return [*out, "No parameters.", ""]
    out += ["| parameter | type | default | help |", "|---|---|---|---|"]
    for param in component.params:
        default = "required" if param.required else code(toml_value(param.default))
        type_text = code(param.type_name())
        out.append(f"| `{param.name}` | {type_text} | {default} | {cell(param.help)} |")
    return [*out, ""]


def events_markdown(plugins: Any, modules: Mapping[str, str]) -> list[str]:
    """The plugins that observe runs (``on_run_start`` ...), with their docstring's summary."""
    from segkit.core import hookspecs

    events = [name for name, _ in hook_specs(hookspecs) if name.startswith("on_")]
    rows = []
    for name, plugin in sorted(plugins.manager.list_name_plugin()):
        implemented = [e for e in events if hasattr(plugin, e)]
        if implemented:
            summary = (inspect.getdoc(plugin) or "").split("\n\n")[0]
            hooks = ", ".join(f"`{e}`" for e in implemented)
            rows.append(f"| `{name}` | `{modules.get(name, '')}` | {hooks} | {cell(summary)} |")
    out = [f"({anchor('plugins', 'run-events')})=", "## Run events", ""]
    if not rows:
        return [*out, "No installed plugin observes runs.", ""]
    return [*out, "| plugin | module | hooks | what it does |", "|---|---|---|---|", *rows, ""]


# --- hooks --------------------------------------------------------------------------


def hook_specs(module: Any) -> list[tuple[str, Any]]:
    """The functions of ``module`` marked as segkit hook specs, in source order."""
    found = [(name, obj) for name, obj in vars(module).items() if hasattr(obj, "segkit_spec")]
    return sorted(found, key=lambda item: inspect.getsourcelines(item[1])[1])


def signature_text(function: Any) -> str:
    """``(run: Run, epoch: int) -> None``: the annotations as written, unquoted."""
    signature = inspect.signature(function)

    def shown(annotation: Any) -> str:
        return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)

    arguments = [
        f"{p.name}: {shown(p.annotation)}" if p.annotation is not p.empty else p.name
        for p in signature.parameters.values()
    ]
    returns = signature.return_annotation
    arrow = "" if returns is signature.empty else f" -> {shown(returns)}"
    return f"({', '.join(arguments)}){arrow}"


def rest_to_markdown(text: str) -> str:
    """The reStructuredText inline markup of docstrings, as Markdown."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    text = re.sub(r"::\n", ":\n", text)
    return text


def hooks_markdown() -> str:
    """Every hook a plugin can implement, with its signature and docstring."""
    from segkit.core import hookspecs

    out = [rest_to_markdown(inspect.getdoc(hookspecs) or ""), ""]
    for name, function in hook_specs(hookspecs):
        out += [f"({anchor('hook', name)})=", f"## `{name}`", ""]
        out += ["```python", f"def {name}{signature_text(function)}: ...", "```", ""]
        out += [_indented_to_fence(rest_to_markdown(inspect.getdoc(function) or "")), ""]
    return "\n".join(out)


def _indented_to_fence(text: str) -> str:
    """A docstring's indented literal block (after a line ending in ':') as a code fence."""
    lines, out, in_block = text.splitlines(), [], False
    for index, line in enumerate(lines):
        after_blank = index > 0 and not lines[index - 1].strip()
        starts = line.startswith("    ") and (in_block or after_blank)
        if starts and not in_block:
            out += ["```text"]
            in_block = True
        elif in_block and line.strip() and not line.startswith("    "):
            out += ["```"]
            in_block = False
        out.append(line[4:] if in_block else line)
    if in_block:
        out.append("```")
    return "\n".join(out)


#: The generators a page may ask for with ``<!-- segkit:generate NAME -->``.
