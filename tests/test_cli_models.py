"""Bad model configs through the command line: exit code 2 and one line that names the fix.

Most cases call ``segkit.cli.main`` in this process (a new process costs seconds of
imports); one runs ``python -m segkit`` end to end.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from segkit.cli import main
from tests.test_cli import assert_one_line_error, run_cli


@pytest.fixture
def segkit(capsys):
    """Run the command line in this process; returns what ``run_cli`` returns."""

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(["segkit", *args], code, captured.out, captured.err)

    return run


def write(tmp_path, model: str) -> str:
    path = tmp_path / "model.toml"
    path.write_text(f"[model]\n{model}\nnum_classes = 21\n")
    return str(path)


def installed(error_line: str) -> list[str]:
    """The names listed after 'installed:' in an unknown-name error."""
    match = re.search(r"\(installed: ([^)]*)\)", error_line)
    assert match, error_line
    return match.group(1).split(", ")


def error_line(result) -> str:
    return next(line for line in result.stderr.splitlines() if line.startswith("error:"))


@pytest.mark.parametrize(
    ("model", "wrong", "meant", "expected_names"),
    [
        ('backbone = "vgg61"\nhead = "fcn8s"', "backbone 'vgg61'", "vgg16", {"resnet18", "vgg16"}),
        ('backbone = "vgg16"\nhead = "fcn8"', "head 'fcn8'", "fcn8s", {"fcn32s", "fcn16s"}),
        (
            'backbone = "vgg16"\nhead = "fcn8s"\nupsampler = "interpolat"',
            "upsampler 'interpolat'",
            "interpolate",
            {"interpolate", "transposed_bilinear"},
        ),
    ],
    ids=["backbone", "head", "upsampler"],
)
def test_unknown_plugin_name(segkit, tmp_path, model, wrong, meant, expected_names):
    result = segkit("config", write(tmp_path, model))
    assert_one_line_error(result, f"unknown {wrong}", f"did you mean '{meant}'?", "installed:")
    assert expected_names <= set(installed(error_line(result)))


def test_misspelled_parameter(segkit, tmp_path):
    model = 'backbone = { name = "resnet18", output_strid = 8 }\nhead = "fcn32s"'
    assert_one_line_error(
        segkit("config", write(tmp_path, model)),
        "backbone 'resnet18'",
        "unknown parameter 'output_strid'",
        "did you mean 'output_stride'?",
    )


@pytest.mark.parametrize(
    ("model", "fragments"),
    [
        (
            'backbone = { name = "vgg16", width = "half" }\nhead = "fcn8s"',
            ["backbone 'vgg16'", "parameter 'width' must be float", "got 'half' (str)"],
        ),
        (
            'backbone = { name = "resnet18", output_stride = 12 }\nhead = "fcn32s"',
            ["parameter 'output_stride' must be 32 | 16 | 8", "got 12"],
        ),
    ],
    ids=["float", "literal"],
)
def test_wrong_parameter_type(segkit, tmp_path, model, fragments):
    assert_one_line_error(segkit("config", write(tmp_path, model)), *fragments)


def test_incompatible_parts_are_refused_when_the_model_is_built(tmp_path):
    model = 'backbone = { name = "resnet18", output_stride = 8 }\nhead = "fcn8s"'
    # The config itself is valid; the refusal comes from building the model, in a real process.
    result = run_cli("summary", write(tmp_path, model), "--input", "3x64x64")
    assert_one_line_error(
        result, "head 'fcn8s'", "stride 4", "backbone 'resnet18'", "choose a backbone"
    )


def test_disabled_plugin_makes_its_names_unknown(segkit, tmp_path):
    config = write(tmp_path, 'backbone = "vgg16"\nhead = "fcn32s"')
    assert segkit("config", config).returncode == 0
    result = segkit("--disable-plugin", "vgg", "config", config)
    assert_one_line_error(result, "unknown backbone 'vgg16'", "installed:")
    names = installed(error_line(result))
    assert "resnet18" in names
    assert not [name for name in names if "vgg" in name]
