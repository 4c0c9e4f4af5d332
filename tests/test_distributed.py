"""Two gloo processes on the CPU train one model and evaluate the val split together."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

from segkit.core import get_plugins, load_config
from segkit.train import Runner

from .tiny import write_tiny_config

RANK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path

    import torch

    from segkit.core import get_plugins, load_config
    from segkit.train import Runner

    plugins = get_plugins()
    config, out = load_config(sys.argv[1], registry=plugins.registry), Path(sys.argv[2])
    runner = Runner(config, out / "run", plugins)
    runner.trainer().fit()
    rank = int(os.environ["RANK"])
    matrix = runner.evaluator.confusion_matrices()["raw"].matrix
    torch.save({"model": runner.model.state_dict(), "matrix": matrix}, out / f"rank{rank}.pt")
    # As `segkit run` does: gloo's threads must stop before the interpreter exits.
    torch.distributed.destroy_process_group()
    """
)


def test_two_processes_end_identical_and_agree_with_one(tmp_path):
    config_path = write_tiny_config(
        tmp_path, epochs=2, train_size=8, every=0, steps='["train"]', lr=1e-4
    )
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    result = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(script), str(config_path), str(tmp_path),
        ],
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # Ranks start from different seeds and read different shards: only DDP's broadcast
    # and gradient averaging (plus the buffer sync) make them end identical.
    for name, tensor in rank0["model"].items():
        assert torch.equal(tensor, rank1["model"][name]), name
    assert torch.equal(rank0["matrix"], rank1["matrix"])
    assert (tmp_path / "run" / "last.pt").exists()  # only rank 0 writes, once

    plugins = get_plugins()
    config = load_config(config_path, registry=plugins.registry)
    single = Runner(config, tmp_path / "single", plugins)
    single.model.load_state_dict(rank0["model"])
    matrix = single.evaluator.confusion_matrices()["raw"].matrix
    assert torch.equal(matrix, rank0["matrix"])
    assert (matrix.sum(0) > 0).sum() > 1  # several classes predicted: a real comparison
