"""The plugin manager, the registry and typed parameters."""

from __future__ import annotations

import sys
import textwrap
from typing import Literal

import pytest

from segkit.core import ConfigError, PluginError, load_plugins
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
