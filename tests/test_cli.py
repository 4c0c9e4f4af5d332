"""The command line: one clear line and a non-zero exit for bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from segkit.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "segkit", *args], capture_output=True, text=True, timeout=300
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_unreadable_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    assert_one_line_error(run_cli("config", str(bad)), "is not valid TOML", "fix the syntax")


def test_missing_config_file(tmp_path):
    assert_one_line_error(run_cli("config", str(tmp_path / "nope.toml")), "config file not found")


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    result = run_cli("--debug", "config", str(bad))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_bad_override_in_process(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[model]\nbackbone = "x"\nhead = "y"\n')
    assert main(["config", str(config), "--set", "train.lr"]) == 2
    assert "expected key=value" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "segkit" in capsys.readouterr().out
