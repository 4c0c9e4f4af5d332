"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
from importlib.metadata import entry_points

import pytest
import torch

from segkit.core import load_plugins
from segkit.core.manager import BUILTIN_DISTRIBUTION, DISABLE_ENV, ENTRY_POINT_GROUP


def third_party_plugins() -> list[str]:
    """Entry-point names of the segkit plugins installed from other distributions."""
    names = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        if dist is None or dist.metadata["Name"] != BUILTIN_DISTRIBUTION:
            names.append(ep.name)
    return sorted(set(names))


def pytest_configure(config: pytest.Config) -> None:
    # The tests build their plugin managers from the built-ins and their own fixtures:
    # a plugin the user installed (which may register a name the tests use) is
    # disabled for this process and the commands it starts, before any test module
    # loads plugins.  The tests of entry-point loading install their own packages.
    installed = third_party_plugins()
    if installed:
        previous = os.environ.get(DISABLE_ENV, "")
        os.environ[DISABLE_ENV] = ",".join(filter(None, [previous, *installed]))


@pytest.fixture(scope="module")
def registry():
    """Everything the built-in plugins register, loaded afresh for each module."""
    return load_plugins().registry


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    # The tests run small tensors: synchronising threads costs more than it saves, far
    # more when other processes share the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
