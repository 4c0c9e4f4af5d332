"""``segkit summary`` on the paper-sized models: FCN-8s and DeepLab-LargeFOV parameter counts.

Each case runs the command line once, in its own process, so the 134M-parameter
FCN-8s is gone when it exits; a 64 x 64 input keeps the forward pass short.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

FCN8S = """
name = "fcn8s_vgg16"

[model]
backbone = "vgg16"
head = "fcn8s"
upsampler = "transposed_bilinear"
num_classes = 21
"""

LARGEFOV = """
name = "deeplab_largefov"

[model]
backbone = "deeplab_vgg16"
head = "deeplab_largefov"
upsampler = { name = "interpolate", align_corners = true }
num_classes = 21
"""


def summary(tmp_path, text: str) -> list[str]:
    config = tmp_path / "model.toml"
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "FORCE_COLOR"}
    result = subprocess.run(
        [sys.executable, "-m", "segkit", "summary", str(config), "--input", "3x64x64"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "NO_COLOR": "1", "COLUMNS": "160"},
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return [line.rstrip() for line in result.stdout.splitlines() if line.strip()]


def table_rows(lines: list[str]) -> dict[str, tuple[str, str, str]]:
    """layer -> (type, output, params) from the table's body rows."""
    rows = {}
    for line in lines:
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 4:
            rows[cells[0]] = (cells[1], cells[2], cells[3])
    return rows


@pytest.mark.parametrize(
    ("text", "total", "trainable", "expected_rows"),
    [
        (
            FCN8S,
            "134,489,759",
            "134,376,863",  # the final 16x16 bilinear upsampling (21 x 21 x 16 x 16) is fixed
            {
                "backbone.classifier.0": ("Conv2d", "1×4096×3×3", "102,764,544"),  # fc6, 7x7
                "head.score_skip.1": ("Conv2d", "1×21×33×33", "5,397"),  # score_pool3
                "upsampler": ("TransposedBilinear", "1×21×64×64", "112,896"),
            },
        ),
        (
            LARGEFOV,
            "20,505,429",
            "20,505,429",
            {
                "head.fc6": ("Conv2d", "1×1024×9×9", "4,719,616"),  # 3x3, dilation 12
                "head.fc8": ("Conv2d", "1×21×9×9", "21,525"),
                "upsampler": ("Interpolate", "1×21×64×64", "0"),
            },
        ),
    ],
    ids=["fcn8s-vgg16", "deeplab-largefov"],
)
def test_summary_prints_the_papers_parameter_count(tmp_path, text, total, trainable, expected_rows):
    lines = summary(tmp_path, text)
    assert lines[-1] == f"Total params: {total}"
    assert lines[-2] == f"Trainable params: {trainable}"
    assert "input 1×3×64×64" in lines[0]
    rows = table_rows(lines)
    for layer, row in expected_rows.items():
        assert rows[layer] == row, layer
