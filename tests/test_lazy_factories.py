"""Factories named by their import path: registered without importing them, imported and
checked against their Params when first built; and a registration's cheap ``check``."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import pytest

from segkit.core import ConfigError, PluginError, hookimpl, load_plugins
from segkit.core.imports import check_source_imports
from segkit.core.lazy import LazyFactory
from segkit.core.registry import KINDS, Param

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


def test_every_built_in_lazy_factory_imports_and_matches_its_params(registry):
    lazy = [c for table in registry.components.values() for c in table.values()]
    lazy = [c for c in lazy if isinstance(c.factory, LazyFactory)]
    # Every kind but the schedules (plain Python: nothing to put off) registers lazily.
    assert {c.kind for c in lazy} == set(KINDS) - {"schedule"}
    for component in lazy:
        factory = component.resolve()  # imports it and checks its signature, or raises
        assert callable(factory) and component.resolve() is factory
        assert Path(component.source_file()).is_relative_to(PLUGINS), component.name


def test_every_built_in_default_is_stated_where_segkit_plugins_reads_it(registry):
    defaults = {
        ("backbone", "vgg16", "first_padding"): 100,
        ("backbone", "timm", "output_stride"): None,
        ("head", "deeplab_msc", "fc_channels"): 4096,
        ("postprocessor", "convcrf", "window"): 13,
        ("dataset", "synthetic", "train_size"): 2000,
        ("dataset", "folder", "val_fraction"): 0.1,
        ("loss", "focal", "gamma"): 2.0,
        ("optimizer", "adamw", "weight_decay"): 0.01,
        ("augmentation", "gaussian_blur", "sigma"): [0.1, 1.5],
    }
    for (kind, name, key), expected in defaults.items():
        param = next(p for p in registry.get(kind, name).params if p.name == key)
        assert (param.default, param.required) == (expected, False), (kind, name, key)
    assert next(p for p in registry.get("backbone", "timm").params if p.name == "model").required
    assert next(p for p in registry.get("dataset", "voc").params if p.name == "root").required


def test_no_built_in_plugin_file_imports_private_segkit_modules():
    # Load time reads the registration modules; this covers the modules they name too.
    files = sorted(PLUGINS.rglob("*.py"))
    assert len(files) > 30
    check_source_imports(files)


# --- a third-party plugin with a lazy factory --------------------------------------


@pytest.fixture
def package(tmp_path, monkeypatch):
    """Writes ``lazy_pkg/<module>.py`` files on sys.path; forgets them afterwards."""
    (tmp_path / "lazy_pkg").mkdir()
    (tmp_path / "lazy_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(module: str, source: str) -> Path:
        path = tmp_path / "lazy_pkg" / f"{module}.py"
        path.write_text(textwrap.dedent(source))
        return path

    yield write
    for name in [m for m in sys.modules if m.split(".")[0] == "lazy_pkg"]:
        del sys.modules[name]


HEADS = """
    IMPORTED = True

    def make_head(backbone, num_classes, depth):
        return ("head", backbone, num_classes, depth)

    def with_default(backbone, num_classes, depth=4):
        return depth

    def other_names(backbone, num_classes, layers=1):
        return layers
"""


def lazy_heads(*registrations: tuple[str, str, list[Param]], check=None) -> types.ModuleType:
    """A plugin ``lazy`` (of the package ``lazy_pkg``) registering each (name, import
    path, params) as a head."""

    def register_heads(register):
        for name, path, params in registrations:
            register(name, path, params=params, help="lazy head", check=check)

    plugin = types.ModuleType("lazy_pkg.plugin")
    plugin.register_heads = hookimpl(register_heads)
    return plugin


def status(plugins, name: str) -> str:
    return next(info.status for info in plugins.infos if info.name == name)


def test_a_lazy_factory_is_imported_when_first_built(package):
    package("heads", HEADS)
    depth = Param("depth", int, 2, "layers")
    plugin = lazy_heads(("lazy_head", "lazy_pkg.heads:make_head", [depth]))
    component = load_plugins(extra=(plugin,)).registry.get("head", "lazy_head")
    assert "lazy_pkg.heads" not in sys.modules
    assert component.source_file().endswith("lazy_pkg/heads.py")
    assert "lazy_pkg.heads" not in sys.modules  # found, not run
    assert component.params[0].default == 2
    assert component.build("info", 3) == ("head", "info", 3, 2)
    assert sys.modules["lazy_pkg.heads"].IMPORTED
    assert component.build("info", 3, params={"depth": 5}) == ("head", "info", 3, 5)


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        (
            "lazy_pkg.heads:other_names",
            [Param("depth", int, 2)],
            r"Param 'depth' is not a parameter of its factory other_names \(it takes layers\)",
        ),
        (
            "lazy_pkg.heads:with_default",
            [Param("depth", int, 3)],
            r"Param 'depth' defaults to 3 but its factory to 4",
        ),
        (
            "lazy_pkg.heads:with_default",
            [Param("depth", int, help="no default stated")],
            r"Param 'depth' states no default but its factory defaults to 4; .* give the "
            r"default in the Param",
        ),
        (
            "lazy_pkg.heads:make_head",
            [],
            r"factory parameter 'depth' has no Param",
        ),
        (
            "lazy_pkg.missing:make_head",
            [],
            r"its factory lazy_pkg.missing:make_head cannot be imported "
            r"\(ModuleNotFoundError: No module named 'lazy_pkg.missing'\)",
        ),
        (
            "lazy_pkg.heads:absent",
            [],
            r"cannot be imported \(AttributeError: module 'lazy_pkg.heads' has no attribute",
        ),
    ],
    ids=["unknown-param", "two-defaults", "unstated-default", "undescribed", "module", "name"],
)
def test_a_lazy_factory_not_matching_its_params_fails_when_first_built(
    package, path, params, message
):
    package("heads", HEADS)
    plugins = load_plugins(extra=(lazy_heads(("lazy_head", path, params)),))
    component = plugins.registry.get("head", "lazy_head")  # registered: nothing imported
    assert "lazy_pkg.heads" not in sys.modules
    with pytest.raises(PluginError, match=message) as caught:
        component.build("info", 3, params={"depth": 1} if params else {})
    assert str(caught.value).startswith("plugin '")
    assert "head 'lazy_head'" in str(caught.value) and "\n" not in str(caught.value)


def test_a_lazy_param_without_a_default_is_required(package):
    package("heads", HEADS)
    plugin = lazy_heads(("lazy_head", "lazy_pkg.heads:make_head", [Param("depth", int)]))
    component = load_plugins(extra=(plugin,)).registry.get("head", "lazy_head")
    assert component.params[0].required
    with pytest.raises(ConfigError, match=r"parameter 'depth' is required"):
        component.build("info", 3)
    assert component.build("info", 3, params={"depth": 7})[-1] == 7


def test_a_lazy_default_of_the_wrong_type_fails_the_plugin_at_load(package):
    plugin = lazy_heads(("lazy_head", "lazy_pkg.heads:make_head", [Param("depth", int, "deep")]))
    plugins = load_plugins(extra=(plugin,))
    line = status(plugins, "lazy_pkg.plugin")
    assert "Param 'depth' defaults to 'deep', which is not int" in line
    assert "lazy_head" not in plugins.registry.names("head")


def test_a_lazy_module_importing_private_segkit_fails_when_first_built(package):
    package("sneaky", "from segkit.data.files import read_image\n" + textwrap.dedent(HEADS))
    plugin = lazy_heads(("lazy_head", "lazy_pkg.sneaky:make_head", [Param("depth", int, 2)]))
    component = load_plugins(extra=(plugin,)).registry.get("head", "lazy_head")
    with pytest.raises(PluginError, match=r"it imports segkit.data.files \(sneaky.py line 1\)"):
        component.build("info", 3)


def test_the_import_rule_holds_for_the_plugin_not_for_a_library_it_names(package, tmp_path):
    # A library's own modules are not the plugin's to fix.
    (tmp_path / "other_lib.py").write_text("import segkit.data.files\n" + textwrap.dedent(HEADS))
    plugin = lazy_heads(("lib_head", "other_lib:make_head", [Param("depth", int, 2)]))
    component = load_plugins(extra=(plugin,)).registry.get("head", "lib_head")
    try:
        assert component.build("info", 3)[-1] == 2
    finally:
        sys.modules.pop("other_lib", None)


# --- check: a registration's parameters refused without building ---------------------


def test_check_runs_before_the_factory_is_imported(package):
    package("heads", HEADS)

    def check(depth):
        if depth < 1:
            raise ConfigError(f"head 'lazy_head': depth must be >= 1, got {depth}")

    plugin = lazy_heads(
        ("lazy_head", "lazy_pkg.heads:make_head", [Param("depth", int, 2)]), check=check
    )
    component = load_plugins(extra=(plugin,)).registry.get("head", "lazy_head")
    with pytest.raises(ConfigError, match="depth must be >= 1, got 0"):
        component.validate({"depth": 0})
    with pytest.raises(ConfigError, match="depth must be >= 1, got 0"):
        component.build("info", 3, params={"depth": 0})
    assert "lazy_pkg.heads" not in sys.modules
    assert component.validate({"depth": 3}) == {"depth": 3}


def test_a_check_that_does_not_take_the_params_fails_the_plugin():
    def check(layers):
        pass

    plugin = lazy_heads(
        ("lazy_head", "lazy_pkg.heads:make_head", [Param("depth", int, 2)]), check=check
    )
    line = status(load_plugins(extra=(plugin,)), "lazy_pkg.plugin")
    assert "head 'lazy_head': its check must take the parameters (depth) as keywords" in line


@pytest.mark.parametrize(
    ("kind", "name", "params", "message"),
    [
        ("optimizer", "sgd", {"momentum": 1.5}, "momentum must be in [0.0, 1.0), got 1.5"),
        ("optimizer", "adam", {"betas": [0.9]}, "betas must be [beta1, beta2], got [0.9]"),
        ("loss", "cross_entropy", {"keep_hardest": 0.0}, "keep_hardest must be in (0, 1]"),
        ("augmentation", "random_scale", {"range": [2.0, 0.5]}, "with 0 < low <= high"),
        ("augmentation", "hflip", {"p": 2.0}, "p must be in [0, 1], got 2.0"),
        ("postprocessor", "densecrf", {"workers": 0}, "workers must be at least 1, got 0"),
        ("postprocessor", "convcrf", {"window": 4}, "window must be an odd size"),
        ("postprocessor", "densecrf_torch", {"iterations": -1}, "iterations must be >= 0"),
    ],
)
def test_built_in_checks_refuse_what_their_factories_would(registry, kind, name, params, message):
    component = registry.get(kind, name)
    with pytest.raises(ConfigError) as checked:
        component.validate(params)
    assert message in str(checked.value)
    with pytest.raises(ConfigError) as built:
        component.build(*[None] * _context(kind), params=params)
    assert str(built.value) == str(checked.value)


def _context(kind: str) -> int:
    return {"optimizer": 1, "loss": 1, "augmentation": 1}.get(kind, 0)
