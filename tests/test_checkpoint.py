"""Checkpoints are atomic, self-describing and load with weights_only=True."""

from __future__ import annotations

import pytest
import torch

from segkit.core import CheckpointError
from segkit.model import load_checkpoint, save_checkpoint


def test_roundtrip_and_marker(tmp_path):
    path = save_checkpoint(tmp_path / "a" / "last.pt", {"model": {"w": torch.ones(2)}, "epoch": 3})
    state = load_checkpoint(path)
    assert state["format"] == "segkit-checkpoint"
    assert state["epoch"] == 3 and torch.equal(state["model"]["w"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(path, {"epoch": 2, "bad": Unpicklable()})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_not_a_segkit_checkpoint(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(1)}, plain)
    with pytest.raises(CheckpointError, match="is not a segkit checkpoint"):
        load_checkpoint(plain)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="is not a readable segkit checkpoint"):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_code_in_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    # A pickled class reference: weights_only=True must refuse to import and call it.
    torch.save({"format": "segkit-checkpoint", "obj": CheckpointError("x")}, path)
    with pytest.raises(CheckpointError, match="not a readable segkit checkpoint"):
        load_checkpoint(path)
