"""`segkit --help`, `segkit plugins` and `segkit config` start without the heavy libraries.

A fresh interpreter runs each command and reports what it imported: the plugins
register and a config is checked without PyTorch, torchvision, timm, numpy, Pillow or
matplotlib, which is what makes these commands start at once.  How long they take is
measured in benchmarks/, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "timm", "numpy", "PIL", "matplotlib", "scipy", "pydensecrf")

REPORT = """
import contextlib, io, json, sys
from segkit.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        code = main(sys.argv[2:])
    except SystemExit as exit:
        code = exit.code
heavy = [m for m in json.loads(sys.argv[1]) if m in sys.modules]
print(json.dumps({"code": code, "heavy": heavy}))
"""

CONFIGS = sorted(
    str(p.relative_to(ROOT))
    for p in [*ROOT.glob("configs/*.toml"), *ROOT.glob("configs/voc/*.toml")]
)


def imported_by(*command: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", REPORT, json.dumps(HEAVY), *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "command",
    [("--help",), ("plugins",), ("plugins", "--markdown")] + [("config", c) for c in CONFIGS],
    ids=lambda c: " ".join(c),
)
def test_command_imports_no_heavy_library(command):
    report = imported_by(*command)
    assert report["code"] == 0, report
    assert report["heavy"] == [], f"segkit {' '.join(command)} imported {report['heavy']}"


def test_a_refused_config_is_refused_without_them(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text((ROOT / "configs" / "folder.toml").read_text(encoding="utf-8"))
    report = imported_by("config", str(config), "--set", "train.optimizer.weight_decay=-1.0")
    assert report == {"code": 2, "heavy": []}


def test_the_configs_are_all_tried():
    assert {"configs/folder.toml", "configs/deeplab_crf.toml", "configs/crf_rnn.toml"} <= set(
        CONFIGS
    )
    assert sum(c.startswith("configs/voc/") for c in CONFIGS) >= 9
