"""The wheel holds every package: pyproject.toml lists them one by one."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    installed_as = {folder: name for name, folder in setuptools["package-dir"].items()}
    found = set()
    for top, name in installed_as.items():
        for init in (ROOT / top).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / top)
            found.add(".".join([name, *relative.parts]))
    assert found - listed == set(), "add these packages to pyproject.toml's [tool.setuptools]"
    assert listed - found == set(), "pyproject.toml lists packages that do not exist"
