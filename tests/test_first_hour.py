"""What a newcomer meets in the first hour: logs without a terminal, readable plugin
tables, --version, README synopses in step with --help, pictures, startup imports."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from segkit.cli import build_parser, main, terminal
from segkit.core import load_plugins
from segkit.core.progress import LogProgress, progress_display
from segkit.infer.pictures import write_prediction
from segkit.infer.segmenter import Prediction, PredictionPair
from segkit.train.curves import curves_figure

from .tiny import write_tiny_config

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_a_run_into_a_file_logs_progress_within_the_epoch(tmp_path):
    config = write_tiny_config(tmp_path, epochs=1, train_size=8, steps='["train"]')
    log = tmp_path / "run.log"
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "segkit", "run", str(config), "--run-dir", str(tmp_path / "r")],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    lines = log.read_text().splitlines()
    assert done.returncode == 0, lines
    steps = [line for line in lines if re.match(r"epoch 1  \d+/4 \(\d+%\)  loss ", line)]
    assert steps and "lr " in steps[0] and "img/s" in steps[0] and "elapsed" in steps[0]
    summary = next(i for i, line in enumerate(lines) if line.startswith("epoch 1  loss"))
    assert lines.index(steps[0]) < summary  # a line during the epoch, not only after it
    assert not any("\x1b[" in line for line in lines)  # no terminal escape codes


def test_log_progress_prints_the_first_step_then_every_interval_and_the_last():
    text = io.StringIO()
    console = Console(file=text, width=60)
    assert isinstance(progress_display(console), LogProgress)  # a file is not a terminal
    with LogProgress(console, interval=3600) as progress:
        task = progress.add_task("epoch 3", total=5, info="")
        for step in range(5):
            progress.update(task, advance=1, info=f"loss {1 / (step + 1):.3f}")
    lines = text.getvalue().splitlines()
    assert [line.split("  elapsed")[0] for line in lines] == [
        "epoch 3  1/5 (20%)  loss 1.000",
        "epoch 3  5/5 (100%)  loss 0.200",
    ]
    text.truncate(0)
    with LogProgress(console, interval=0) as progress:
        task = progress.add_task("evaluating", total=3, info="")
        for _ in range(3):
            progress.advance(task)
    assert len(text.getvalue().strip().splitlines()) == 3


def test_log_lines_fit_the_console_width_and_keep_the_time_to_go():
    info = "loss 1.151  lr 8.73e-04  32.0 img/s"

    def middle_line(width: int) -> str:
        text = io.StringIO()
        with LogProgress(Console(file=text, width=width), interval=0) as progress:
            task = progress.add_task("epoch 1", total=250, info="")
            for _ in range(43):
                progress.update(task, advance=1, info=info)
                time.sleep(0.001)  # the estimate of the time to go needs the steps' times
        return text.getvalue().splitlines()[-1]

    narrow, wide = middle_line(80), middle_line(120)
    assert narrow.startswith(f"epoch 1  43/250 (17%)  {info}  ETA ") and len(narrow) <= 80
    assert re.fullmatch(rf"epoch 1  43/250 \(17%\)  {info}  elapsed 0:\d\d  ETA \d+:\d\d", wide)


def test_a_terminal_keeps_the_rich_bars():
    console = Console(file=io.StringIO(), force_terminal=True)
    assert not isinstance(progress_display(console), LogProgress)


def test_plugins_at_80_columns_wrap_escape_and_mark_required(capsys, monkeypatch, registry):
    monkeypatch.setattr(terminal, "console", Console(width=80, file=sys.stdout))
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out  # wrapped, never cut
    assert max(len(line) for line in out.splitlines()) <= 80
    # each table column read top to bottom, so that wrapped words join again
    cells = [line.split("│") for line in out.splitlines() if line.count("│") == 5]
    names = "".join(cell[1].strip() for cell in cells)
    params = re.sub(r"\s+", "", "".join(cell[4] for cell in cells))
    for kind in registry.components:
        for name, component in registry.components[kind].items():
            assert name in names
            for param in component.params:
                assert f"{param.name}:" in params, (name, param.name)
    assert "[r,g,b]perclass" in params  # rich markup would swallow "[r, g, b]"
    assert "root:str(required)" in params and "root:str=None" not in params


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"segkit {version('segkit')}"


def readme_synopses() -> dict[str, str]:
    """The synopsis lines of README's Commands section and of the guides' Synopsis sections
    (docs/guides/<command>.md, for a command with a guide of its own)."""
    sections = [README.read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]]
    for guide in sorted((ROOT / "docs" / "guides").glob("*.md")):
        text = guide.read_text()
        if "\n## Synopsis\n" in text:
            sections.append(text.split("\n## Synopsis\n", 1)[1].split("\n## ", 1)[0])
    lines = [
        line
        for section in sections
        for line in re.findall(r"^    segkit (\w+)(.*)$", section, re.M)
    ]
    return {command: rest.split("#")[0] for command, rest in lines}


def test_readme_synopses_match_the_help():
    subcommands = next(
        a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"
    ).choices
    synopses = readme_synopses()
    assert set(synopses) == set(subcommands), "every command has one synopsis line"
    for command, synopsis in synopses.items():
        parser = subcommands[command]
        nested = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if nested:  # `segkit data check ...`: the options are the sub-command's
            parser = nested[0].choices[synopsis.split()[0]]
        options = {s: action for action in parser._actions for s in action.option_strings}
        depth, seen = 0, set()
        for token in re.findall(r"\[|\]|--[\w-]+", synopsis):
            if token in "[]":
                depth += 1 if token == "[" else -1
                continue
            if re.fullmatch(r"--[A-Z][A-Z_-]*", token):  # --PARAM: refine's post-processor's
                continue
            assert token in options, f"README: segkit {command} {token} is not in --help"
            required = options[token].required
            assert required == (depth == 0), f"README: segkit {command} {token} required?"
            seen.add(options[token].dest)
        missing = {
            a.option_strings[0]
            for a in parser._actions
            if a.required and a.option_strings and a.dest not in seen
        }
        assert not missing, f"README: segkit {command} lacks required {missing}"


def test_every_predict_eval_and_export_argument_has_help():
    subcommands = next(
        a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"
    ).choices
    for command in ("predict", "eval", "export"):
        for action in subcommands[command]._actions:
            assert action.help, f"segkit {command} {action.dest} has no help text"


def test_help_and_parsing_need_no_torch():
    script = "import sys; from segkit.cli import build_parser; build_parser(); "
    script += "import segkit; print([m for m in sys.modules if m.split('.')[0] in HEAVY])"
    heavy = "HEAVY = ('torch', 'starlette', 'uvicorn', 'python_multipart', 'httpx'); "
    done = subprocess.run(
        [sys.executable, "-c", heavy + script], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stderr  # nor the web stack of `segkit serve`


@pytest.mark.parametrize(
    ("config", "total"),
    [
        ("configs/voc/fcn8s.toml", "134,489,759"),
        ("configs/voc/deeplab_largefov.toml", "20,505,429"),
    ],
)
def test_summary_on_a_fresh_machine(tmp_path, monkeypatch, capsys, config, total):
    """No VOC, no torch hub cache: HOME is an empty folder."""
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(terminal, "console", Console(width=120, file=sys.stdout))
    assert main(["summary", str(ROOT / config), "--input", "3x64x64"]) == 0
    assert f"Total params: {total}" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or written


def test_curves_label_whole_epochs():
    import matplotlib.pyplot as plt

    history = [{"epoch": 1, "loss": 1.0, "miou": 0.2}, {"epoch": 2, "loss": 0.5, "miou": 0.4}]
    fig = curves_figure(history)
    try:
        fig.canvas.draw()
        ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 2]
        assert ticks and all(float(t).is_integer() for t in ticks)
    finally:
        plt.close(fig)


def test_panel_has_a_legend_of_the_classes_shown(tmp_path):
    palette = np.array([[0, 0, 0], [200, 10, 10], [10, 200, 10], [10, 10, 200]], np.uint8)
    labels = np.zeros((40, 60), np.uint8)
    labels[10:30, 10:30] = 1
    labels[5:15, 40:55] = 3
    probs = np.eye(4, dtype=np.float32)[labels].transpose(2, 0, 1)
    image = np.full((40, 60, 3), 128, np.uint8)
    pair = PredictionPair(image, Prediction(labels, probs), None)
    names = ["background", "cat", "dog", "bird"]
    write_prediction(tmp_path, "x", pair, palette, class_names=names)
    panel = np.asarray(Image.open(tmp_path / "x_panel.png").convert("RGB"))
    assert panel.shape[0] > 40 + 16  # the titled tiles, then the legend strip
    strip = panel[40 + 16 :].reshape(-1, 3)
    colours = {tuple(c) for c in strip}
    assert tuple(palette[1]) in colours and tuple(palette[3]) in colours
    assert tuple(palette[2]) not in colours  # "dog" is not in the picture


CONFLICTING_PLUGIN = """
    import segkit

    @segkit.hookimpl
    def register_backbones(register):
        register("vgg16", lambda **p: None, help="a third party's vgg16")

    @segkit.hookimpl
    def register_upsamplers(register):
        register("interpolate", lambda num_classes, stride, offset: None, help="theirs")
"""


def test_the_suite_ignores_a_conflicting_installed_plugin(tmp_path, monkeypatch):
    """A plugin registering names the tests use (vgg16, interpolate) is installed."""
    site = tmp_path / "site"
    info = site / "their_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: their-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[segkit]\ntheirs = their_plugin\n")
    (site / "their_plugin.py").write_text(textwrap.dedent(CONFLICTING_PLUGIN))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("SEGKIT_DISABLE_PLUGINS", raising=False)
    plugins = load_plugins()  # the built-ins keep their names; the plugin is set aside
    status = next(info.status for info in plugins.infos if info.name == "theirs")
    assert "it registers backbone 'vgg16', which segkit's built-in plugin 'vgg'" in status
    assert plugins.registry.get("backbone", "vgg16").plugin == "vgg"
    monkeypatch.delitem(sys.modules, "their_plugin", raising=False)
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
            str(ROOT / "tests" / "test_readme.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
