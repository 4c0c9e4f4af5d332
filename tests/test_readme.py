"""README.md's plugin table is the one `segkit plugins --markdown` generates."""

from __future__ import annotations

import re
from pathlib import Path

from segkit.cli import main
from segkit.core import load_plugins

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- plugins:begin -->", "<!-- plugins:end -->"


def generated_table(capsys) -> str:
    # Only segkit's own plugins belong in its README: leave out what else is installed.
    others = [i.name for i in load_plugins().infos if i.distribution != "segkit"]
    args = [f"--disable-plugin={name}" for name in others]
    assert main([*args, "plugins", "--markdown"]) == 0
    return capsys.readouterr().out.strip()


def test_readme_plugin_table_is_the_generated_one(capsys):
    text = README.read_text(encoding="utf-8")
    match = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, re.S)
    assert match, f"README.md lacks the {BEGIN} ... {END} markers around the plugin table"
    generated = generated_table(capsys)
    assert match.group(1).strip() == generated, (
        "README.md's plugin table is out of date: run `segkit plugins --markdown` and paste "
        "its output between the plugins:begin/end markers"
    )


def test_generated_table_has_a_row_per_registered_name(capsys):
    rows = generated_table(capsys).splitlines()
    assert rows[0] == "| hook point | name | plugin file | what it is |"
    registry = load_plugins().registry
    for kind, table in registry.components.items():
        for name, component in table.items():
            row = next(r for r in rows if r.startswith(f"| {kind} | `{name}` |"))
            assert component.help in row
            path = row.split(" | ")[2].strip("`")
            assert (README.parent / path).is_file(), row
    assert any(r.startswith("| run events | `tensorboard` | `plugins/loggers/") for r in rows)
