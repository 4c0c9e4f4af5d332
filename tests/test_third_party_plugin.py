"""A third-party plugin package is pip-installed, listed, and builds a working model."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "segkit-mobilenet"


def install(package: Path, site: Path) -> dict[str, str]:
    """pip-install an example package into ``site``; the environment that sees it."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--disable-pip-version-check",
            "--target", str(site), str(package),
        ],
        check=True,
        timeout=600,
    )  # fmt: skip
    # conftest disables the plugins the user installed; these tests load their own
    env = {k: v for k, v in os.environ.items() if k != "SEGKIT_DISABLE_PLUGINS"}
    return {**env, "PYTHONPATH": str(site)}


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> dict[str, str]:
    return install(EXAMPLE, tmp_path_factory.mktemp("site"))


def test_installed_plugin_is_listed(plugin_site):
    result = subprocess.run(
        [sys.executable, "-m", "segkit", "plugins"],
        env={**plugin_site, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "segkit-mobilenet" in line)
    assert "mobilenet" in row and "0.1.0" in row and "loaded" in row
    assert "mobilenet_v3" in result.stdout


def test_installed_plugin_builds_and_runs_a_model(plugin_site):
    script = textwrap.dedent(
        """
        import torch
        from segkit.core.config import Part
        from segkit.model import build_model_from_parts
        from segkit.core import get_plugins

        registry = get_plugins().registry
        model = build_model_from_parts(
            registry, Part("mobilenet_v3", {"size": "small"}), Part("fcn8s"),
            Part("interpolate"), num_classes=5,
        )
        with torch.no_grad():
            print(tuple(model.eval()(torch.randn(1, 3, 97, 131)).shape))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=plugin_site, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 5, 97, 131)"


def test_installed_plugin_passes_segkit_conformance(plugin_site, tmp_path):
    """The example's own tests, built on segkit.testing, pass against the installed package."""
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--rootdir", str(tmp_path), str(EXAMPLE / "test_conformance.py"),
        ],
        env=plugin_site,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 passed" not in result.stdout and "passed" in result.stdout, result.stdout


TVERSKY = Path(__file__).resolve().parent.parent / "examples" / "segkit-tversky"


def test_a_third_party_loss_trains_a_run(tmp_path):
    """A package adds a loss through the entry-point group; a config sums it with another."""
    env = {**install(TVERSKY, tmp_path / "site"), "COLUMNS": "250"}
    listed = subprocess.run(
        [sys.executable, "-m", "segkit", "plugins"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "segkit-tversky" in line)
    assert "tversky" in row and "loaded" in row
    losses = listed.stdout[listed.stdout.index("losses") :]
    assert "Tversky loss" in losses  # listed with the other losses
    from tests.tiny import write_tiny_config

    config = write_tiny_config(tmp_path, epochs=1, every=1)
    loss = "train.loss=[{name='cross_entropy'}, {name='tversky', beta=0.8, weight=0.5}]"
    run = subprocess.run(
        [sys.executable, "-m", "segkit", "run", str(config), "--run-dir", str(tmp_path / "run"),
         "--set", loss],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    saved = (tmp_path / "run" / "config.toml").read_text()
    assert 'name = "tversky"' in saved and "beta = 0.8" in saved
