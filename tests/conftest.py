"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
import torch

from segkit.core import load_plugins


@pytest.fixture(scope="module")
def registry():
    """Everything the installed plugins register, loaded afresh for each module."""
    return load_plugins().registry


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    # The tests run small tensors: synchronising threads costs more than it saves, far
    # more when other processes share the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
