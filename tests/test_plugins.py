"""The plugin manager, the registry and typed parameters."""

from __future__ import annotations

import importlib.util
import re
import sys
import textwrap
import types
from typing import Literal

import pytest

from segkit.cli import main
from segkit.core import ConfigError, PluginError, hookimpl, load_plugins, manager
from segkit.core.registry import Component, Param, Registry


def install_fake_distribution(
    root, dist: str, modules: dict[str, str], entry_points: dict[str, str]
):
    """A minimal installed distribution: a .dist-info folder plus its modules on sys.path."""
    info = root / f"{dist}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[segkit]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


GOOD_PLUGIN = """
    from segkit import Param, hookimpl

    @hookimpl
    def register_heads(register):
        register("{name}", lambda backbone, num_classes, **p: None, help="test head",
                 params=[Param("depth", int, 2, "layers")])
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[name]


def test_third_party_plugin_is_loaded_after_builtins(site):
    install_fake_distribution(
        site,
        "fake-extra",
        {"fake_extra": GOOD_PLUGIN.format(name="tiny_head")},
        {"extra": "fake_extra"},
    )
    plugins = load_plugins()
    component = plugins.registry.get("head", "tiny_head")
    assert component.plugin == "extra"
    names = [info.name for info in plugins.infos]
    builtin = [info.name for info in plugins.infos if info.distribution == "segkit"]
    assert names[: len(builtin)] == builtin  # built-ins first
    info = next(i for i in plugins.infos if i.name == "extra")
    assert (info.distribution, info.version, info.status) == ("fake-extra", "1.2.3", "loaded")


def test_broken_plugin_is_reported_and_the_rest_load(site):
    install_fake_distribution(
        site,
        "fake-broken",
        {
            "fake_broken": "import not_a_module_anywhere\n",
            "fake_fine": GOOD_PLUGIN.format(name="fine_head"),
        },
        {"broken": "fake_broken", "fine": "fake_fine"},
    )
    plugins = load_plugins()
    failed = {info.name: info.status for info in plugins.failures()}
    assert "broken" in failed
    assert "not_a_module_anywhere" in failed["broken"]
    assert plugins.registry.get("head", "fine_head").plugin == "fine"


def test_two_plugins_registering_one_name_is_an_error_naming_both(site):
    install_fake_distribution(
        site,
        "fake-twins",
        {
            "fake_one": GOOD_PLUGIN.format(name="same_head"),
            "fake_two": GOOD_PLUGIN.format(name="same_head"),
        },
        {"one": "fake_one", "two": "fake_two"},
    )
    with pytest.raises(
        PluginError, match=r"'same_head' is registered by both plugin 'one' and plugin 'two'"
    ):
        load_plugins()
    plugins = load_plugins(disable={"two"})
    assert plugins.registry.get("head", "same_head").plugin == "one"


def test_plugins_can_be_disabled_by_environment(site, monkeypatch):
    install_fake_distribution(
        site,
        "fake-extra",
        {"fake_extra": GOOD_PLUGIN.format(name="tiny_head")},
        {"extra": "fake_extra"},
    )
    monkeypatch.setenv("SEGKIT_DISABLE_PLUGINS", "extra, other")
    plugins = load_plugins()
    assert "tiny_head" not in plugins.registry.names("head")
    assert next(i for i in plugins.infos if i.name == "extra").status == "disabled"


def make_component(*params: Param) -> Component:
    return Component("head", "demo", lambda **kw: kw, params, "demo head", "test")


def test_unknown_name_lists_what_exists_with_did_you_mean():
    registry = Registry()
    registry.add(make_component())
    with pytest.raises(
        PluginError, match=r"unknown head 'dmeo'; did you mean 'demo'\? \(installed: demo\)"
    ):
        registry.get("head", "dmeo")


def test_parameters_are_validated_and_defaults_filled():
    component = make_component(
        Param("dropout", float, 0.5, "dropout rate"),
        Param("layers", int, 2, "depth"),
        Param("mode", Literal["fast", "exact"], "fast", "how"),
        Param("weights", str | None, None, "where"),
        Param("scales", list[float], [1.0], "scales"),
    )
    assert component.build(params={"dropout": 1, "scales": [1, 0.5]}) == {
        "dropout": 1.0,
        "layers": 2,
        "mode": "fast",
        "weights": None,
        "scales": [1.0, 0.5],
    }
    with pytest.raises(
        ConfigError, match=r"unknown parameter 'drop_out'; did you mean 'dropout'\?"
    ):
        component.bind({"drop_out": 0.1})
    with pytest.raises(ConfigError, match=r"parameter 'layers' must be int, got '3' \(str\)"):
        component.bind({"layers": "3"})
    with pytest.raises(ConfigError, match=r"parameter 'layers' must be int, got True"):
        component.bind({"layers": True})
    with pytest.raises(ConfigError, match=r"'mode' must be 'fast' \| 'exact'"):
        component.bind({"mode": "slow"})
    with pytest.raises(ConfigError, match=r"'scales' must be list\[float\]"):
        component.bind({"scales": [1, "x"]})


def test_required_parameter():
    component = make_component(Param("root", str, None, "dataset folder", required=True))
    with pytest.raises(ConfigError, match=r"parameter 'root' is required \(dataset folder\)"):
        component.bind({})


# --- plugins that fail to load: one status line each, and the others still load ---


def plugin_module(name: str, **hooks) -> types.ModuleType:
    """A plugin given directly (``load_plugins(extra=...)``): a module of hook functions."""
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, hookimpl(function))
    return module


def head_plugin(name: str, factory, params=()) -> types.ModuleType:
    """A plugin registering ``factory`` as the head ``<name>_head``."""

    def register_heads(register):
        register(f"{name}_head", factory, params=list(params), help="test head")

    return plugin_module(name, register_heads=register_heads)


def status(plugins, name: str) -> str:
    return next(info.status for info in plugins.infos if info.name == name)


def make_head(backbone, num_classes, depth=2):
    return ("head", backbone, num_classes, depth)


def test_misspelt_hook_fails_the_plugin_with_did_you_mean():
    def register_head(register):  # should be register_heads
        register("typo_head", make_head)

    def register_heads(register):
        register("also_typo_head", make_head)

    typo = plugin_module("typo", register_head=register_head, register_heads=register_heads)
    fine = head_plugin("fine", make_head)
    plugins = load_plugins(extra=(typo, fine))
    line = status(plugins, "typo")
    assert line.startswith("failed: it implements 'register_head', which is not a segkit hook")
    assert "did you mean 'register_heads'?" in line
    assert "\n" not in line
    heads = plugins.registry.names("head")
    assert "typo_head" not in heads and "also_typo_head" not in heads  # registers nothing
    assert status(plugins, "fine") == "loaded" and "fine_head" in heads
    assert "deeplab_largefov" in heads  # the built-ins are untouched
    assert [info.name for info in plugins.failures()] == ["typo"]


def undescribed(backbone, num_classes, depth):
    return depth


def no_context(depth=2):
    return depth


@pytest.mark.parametrize(
    ("factory", "params", "message"),
    [
        (make_head, [Param("width", int)], r"Param 'width' is not a parameter of its factory"),
        (undescribed, [], r"factory parameter 'depth' has no Param"),
        (make_head, [Param("depth", int, 3)], r"Param 'depth' defaults to 3 but its factory to 2"),
        (make_head, [Param("depth", str)], r"Param 'depth' defaults to 2, which is not str"),
        (undescribed, [Param("depth", int, "deep")], r"defaults to 'deep', which is not int"),
        (
            no_context,
            [Param("depth", int)],
            r"its factory must take \(backbone, num_classes\) before the parameters, "
            r"but takes \(depth\)",
        ),
    ],
    ids=["unknown-param", "undescribed", "two-defaults", "wrong-type", "wrong-type-own", "context"],
)
def test_param_list_not_matching_its_factory_fails_the_plugin(factory, params, message):
    mismatch = head_plugin("mismatch", factory, params)
    plugins = load_plugins(extra=(mismatch, head_plugin("ok", make_head)))
    line = status(plugins, "mismatch")
    assert line.startswith("failed: plugin 'mismatch': head 'mismatch_head': ")
    assert re.search(message, line), line
    assert "mismatch_head" not in plugins.registry.names("head")
    assert plugins.registry.get("head", "ok_head").plugin == "ok"


def test_a_failing_registration_forgets_what_the_plugin_registered_before():
    def register_heads(register):
        register("first_head", make_head)
        register("second_head", undescribed)  # fails after first_head was added

    plugins = load_plugins(extra=(plugin_module("half", register_heads=register_heads),))
    assert status(plugins, "half").startswith("failed:")
    assert "first_head" not in plugins.registry.names("head")


def test_param_defaults_come_from_the_factory():
    def factory(backbone, num_classes, depth=2, mode="fast", root=None, *, scale):
        return depth

    params = [
        Param("depth", int, help="layers"),
        Param("mode", Literal["fast", "exact"], help="how"),
        Param("root", str | None, help="where"),
        Param("scale", float, help="no default anywhere"),
    ]
    plugins = load_plugins(extra=(head_plugin("defaults", factory, params),))
    assert status(plugins, "defaults") == "loaded"
    component = plugins.registry.get("head", "defaults_head")
    described = {p.name: (p.default, p.required) for p in component.params}
    assert described == {
        "depth": (2, False),
        "mode": ("fast", False),
        "root": (None, False),
        "scale": (None, True),
    }
    assert component.bind({"scale": 1}) == {"depth": 2, "mode": "fast", "root": None, "scale": 1.0}
    with pytest.raises(ConfigError, match=r"parameter 'scale' is required \(no default anywhere\)"):
        component.bind({})


def test_context_may_be_taken_by_star_args():
    def star(*args, depth=2):
        return args, depth

    def named_then_star(backbone, num_classes, *rest, depth=2):
        return depth

    plugins = load_plugins(
        extra=(
            head_plugin("star", star, [Param("depth", int)]),
            head_plugin("named_star", named_then_star, [Param("depth", int)]),
        )
    )
    assert status(plugins, "star") == "loaded", status(plugins, "star")
    assert status(plugins, "named_star") == "loaded", status(plugins, "named_star")
    component = plugins.registry.get("head", "named_star_head")
    assert [p.name for p in component.params] == ["depth"]
    assert component.build("backbone", 3, params={"depth": 4}) == 4


PRIVATE_IMPORTS = {
    "module": "from segkit.data.files import read_image\n",
    "name": "from segkit.data import files\n",
    "import": "import segkit.data.files\n",
}


def import_plugin_file(folder, name: str, imports: str) -> types.ModuleType:
    """A plugin module with a real file on disk, so that its imports can be read."""
    path = folder / f"{name}.py"
    path.write_text(
        f"{imports}from segkit import hookimpl\n\n\n"
        "@hookimpl\n"
        "def register_postprocessors(register):\n"
        f"    register('{name}_post', lambda: None)\n"
    )
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("how", sorted(PRIVATE_IMPORTS))
def test_plugin_importing_private_segkit_modules_fails(tmp_path, how):
    private = import_plugin_file(tmp_path, "sneaky", PRIVATE_IMPORTS[how])
    public = import_plugin_file(tmp_path, "polite", "from segkit.data import read_image\n")
    plugins = load_plugins(extra=(private, public))
    line = status(plugins, "sneaky")
    assert line.startswith("failed: it imports segkit.data.files (sneaky.py line 1)"), line
    assert "import from segkit.data instead" in line
    names = plugins.registry.names("postprocessor")
    assert "sneaky_post" not in names
    assert status(plugins, "polite") == "loaded" and "polite_post" in names


@pytest.fixture
def typo_plugin_installed(site, monkeypatch):
    """An installed distribution with a misspelt hook beside a good plugin; no cache."""
    install_fake_distribution(
        site,
        "fake-mixed",
        {
            "fake_typo": """
                from segkit import hookimpl

                @hookimpl
                def register_head(register):
                    pass
            """,
            "fake_fine": GOOD_PLUGIN.format(name="fine_head"),
        },
        {"typo": "fake_typo", "fine": "fake_fine"},
    )
    monkeypatch.delenv("SEGKIT_DISABLE_PLUGINS", raising=False)
    monkeypatch.setattr(manager, "_CACHE", {})  # the CLI loads the installed plugins afresh


def test_segkit_plugins_warns_of_each_failed_plugin(typo_plugin_installed, capsys):
    assert main(["plugins"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, captured.err
    assert warnings[0].startswith("warning: plugin 'typo' failed: it implements 'register_head'")
    assert "fine_head" in captured.out  # the other plugin loaded and is listed


def test_segkit_plugins_warning_is_one_line(typo_plugin_installed, capsys):
    assert main(["plugins"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("warning: plugin 'typo' failed: ")
    assert "register_upsamplers); it is skipped" in lines[0]  # the whole status, hooks listed
    assert lines[0].endswith("(--disable-plugin typo silences this)")
