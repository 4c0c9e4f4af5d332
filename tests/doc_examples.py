"""Run the code blocks of README.md and the guides as a reader would, in a fresh folder.

Blocks run in the order the page gives them, in a folder of the reader's own (the
checkout's ``configs/`` beside a few photographs, masks and a folder dataset):

- ``bash``: each command.  ``segkit ...`` runs in this process (``segkit.cli.main``),
  and what the page promises is checked: the exit code, and the files a run,
  ``predict``, ``eval --json``, ``export`` or ``refine`` writes.  A ``segkit run`` of a
  shipped config trains for minutes, so it runs with ``--set`` overrides that make
  it a run of seconds (``SHORT_RUNS``: fewer and smaller images, one epoch, a thinner
  network); everything else about the command is the page's.  A command that is not
  segkit's (an install, the test suite itself, several processes under torchrun) is
  not run here, for the reason ``NOT_RUN`` gives; any other command fails the test,
  so that a new kind of command is given a way to run.
- ``toml``: a block whose first line names a file (``# pyproject.toml ...``) is saved
  as that file; a config is validated with the installed plugins as ``segkit run``
  would, a fragment (no ``base``, no backbone) on top of the quickstart's config.
- ``python``: a block whose first line names a file (``# my_backbones.py``) is saved
  as that module; a plugin module must register its names without a failure; any
  other block is executed.
- ``text`` blocks are output or folder listings and are not run.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from segkit.cli import main
from segkit.core import load_config, load_plugins

from .dataset_fixtures import (
    write_ade20k,
    write_cityscapes,
    write_coco,
    write_folder,
    write_labelme,
)

ROOT = Path(__file__).resolve().parent.parent

#: The languages a page's code blocks may use; anything else is a mistake in the page.
LANGUAGES = {"bash", "toml", "python", "text"}

#: Overrides that turn a shipped config's run of minutes into one of seconds: a few
#: small images, one short epoch, a thinner network.  The page's own --set follow these
#: and win where they name the same key.
QUICKSTART_SHORT = [
    "data.dataset.train_size=4",
    "data.dataset.val_size=2",
    "data.batch_size=4",
    "data.workers=0",
    "train.epochs=1",
    "train.warmup_iterations=0",
    "model.backbone.width=0.0625",
    "model.head.fc_channels=16",
    "predict.samples=1",
]
SHORT_RUNS = {
    "configs/deeplab_crf.toml": QUICKSTART_SHORT,
    "configs/crf_rnn.toml": [*QUICKSTART_SHORT, "model.crf.warmup_steps=0", "model.crf.window=5"],
    "configs/folder.toml": [
        "train.iterations=1",
        "train.warmup_iterations=0",
        "data.batch_size=4",
        "data.workers=0",
        "eval.batch_size=1",
        "model.head.pyramid_channels=16",
        "model.head.channels=8",
        "predict.samples=1",
    ],
}

#: Commands not run here, by their start, and why.
NOT_RUN = {
    "python3 -m venv": "makes the virtual environment .ci/run makes",
    "source .venv/bin/activate": "the shell's own",
    "pip install": "installs; .ci/run installs the project as the quickstart says",
    ".venv/bin/pip install": "installs; .ci/run installs the project as the quickstart says",
    ".venv/bin/python -m pytest": "the test suite itself, which .ci/run runs",
    "python -m pytest": "the test suite itself, which .ci/run runs",
    "torchrun": "several processes: tests/test_distributed.py trains with two under torchrun",
}

#: What a run folder holds after `segkit run` (README, getting started).
RUN_FILES = ("config.toml", "metrics.jsonl", "summary.json", "last.pt", "best.pt", "curves.png")


@dataclass
class Block:
    language: str
    text: str
    line: int
    source: Path

    @property
    def where(self) -> str:
        return f"{self.source.relative_to(ROOT)}:{self.line}"

    @property
    def file_name(self) -> str | None:
        """The file a block is, when its first line names one: ``# my_backbones.py``."""
        first = self.text.splitlines()[0] if self.text.strip() else ""
        match = re.match(r"#\s*([\w./-]+\.(?:py|toml))\b", first)
        return match.group(1) if match else None


FENCE = re.compile(
    r"^(?P<indent> *)(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)\s*$",
    re.M | re.S,
)


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page (MyST directives such as ```{toctree} left out)."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        info = match.group("info").strip()
        if info.startswith("{"):
            continue
        indent = len(match.group("indent"))
        body = "\n".join(line[indent:] for line in match.group("body").splitlines())
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(info.split()[0] if info else "", body, line, path))
    return blocks


def shell_commands(block: Block) -> Iterator[str]:
    """The commands of a shell block: comments dropped, continuations joined, && split."""
    joined = re.sub(r"\\\n\s*", " ", block.text)
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            yield from (part.strip() for part in line.split("&&"))


def make_reader_folder(folder: Path) -> Path:
    """A reader's folder: the shipped configs, photographs, rough labels and datasets."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    rng = np.random.default_rng(0)
    scene = _scene(rng, 60, 80)
    Image.fromarray(scene).save(folder / "photo.jpg", quality=95)
    (folder / "photos").mkdir()
    for index in range(2):
        Image.fromarray(_scene(rng, 56, 72)).save(folder / "photos" / f"p{index}.jpg")
    (folder / "my_photos").mkdir()
    Image.fromarray(_scene(rng, 64, 64)).save(folder / "my_photos" / "street_101.jpg")
    rough = np.zeros((60, 80, 3), np.uint8)  # black: unknown; a colour per class
    rough[5:25, 5:30] = (200, 30, 30)
    rough[35:55, 40:75] = (30, 30, 200)
    Image.fromarray(rough).save(folder / "rough.png")
    for sub in ("images", "masks"):
        (folder / "my_data" / sub).mkdir(parents=True)
    for index in range(12):
        image, mask = _scene(rng, 48, 56), np.zeros((48, 56), np.uint8)
        mask[10:30, 12:40] = 1 + index % 2
        image[mask > 0] = (220, 40, 40) if index % 2 == 0 else (40, 40, 220)
        Image.fromarray(image).save(folder / "my_data" / "images" / f"street_{index:03}.jpg")
        Image.fromarray(mask).save(folder / "my_data" / "masks" / f"street_{index:03}.png")
    # the layouts of docs/guides/datasets.md, small
    write_cityscapes(folder / "cityscapes")
    write_ade20k(folder / "ade20k")
    write_coco(folder / "my_coco", images=6)
    write_labelme(folder / "my_labelme")
    write_folder(folder / "my_binary", count=6, binary=True)
    return folder


def _scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    image = np.full((height, width, 3), 90, np.uint8)
    image[height // 4 : height // 2, width // 4 : width // 2] = (210, 60, 50)
    return np.clip(image + rng.integers(0, 25, image.shape), 0, 255).astype(np.uint8)


class Reader:
    """Runs one page's blocks, in order, in ``folder``."""

    def __init__(self, folder: Path, monkeypatch) -> None:
        self.folder = folder
        self.saved_modules: list[str] = []
        self.tests: list[Path] = []
        self.extra_plugins: list[object] = []
        monkeypatch.chdir(folder)
        monkeypatch.syspath_prepend(str(folder))

    def run(self, block: Block) -> None:
        assert block.language in LANGUAGES, f"{block.where}: a code block in '{block.language}'"
        if block.language == "bash":
            for command in shell_commands(block):
                self.shell(command, block)
        elif block.language == "toml":
            self.toml(block)
        elif block.language == "python":
            self.python(block)

    # --- shell ---------------------------------------------------------------------

    def shell(self, command: str, block: Block) -> None:
        if any(command.startswith(start) for start in NOT_RUN):
            return
        argv = shlex.split(command)
        if argv[0] in ("segkit", ".venv/bin/segkit"):
            self.segkit(argv[1:], block.where)
        else:
            raise AssertionError(
                f"{block.where}: no way to run `{command}` here; add it to NOT_RUN with the "
                f"reason, or give it a way to run in tests/doc_examples.py"
            )

    def segkit(self, args: list[str], where: str) -> None:
        command = args[0] if args else ""
        if command == "run":
            config = next(a for a in args[1:] if not a.startswith("-"))
            assert config in SHORT_RUNS, f"{where}: no shortened run of {config}"
            overrides = [x for item in SHORT_RUNS[config] for x in ("--set", item)]
            rest = args[1:]
            rest.remove(config)
            args = ["run", config, *overrides, *rest]
        code = main(args)
        assert code == 0, f"{where}: `segkit {shlex.join(args)}` exited with {code}"
        check = getattr(self, f"check_{command}", None)
        if check is not None:
            check(args, where)

    def check_run(self, args: list[str], where: str) -> None:
        run_dir = self.folder / _option(args, "--run-dir") if "--run-dir" in args else None
        if run_dir is None:
            name = load_config(args[1], _sets(args)).name
            run_dir = max((self.folder / "runs" / name).iterdir(), key=lambda p: p.stat().st_mtime)
        for name in RUN_FILES:
            assert (run_dir / name).is_file(), f"{where}: the run wrote no {name}"
        assert any((run_dir / "predictions").glob("*_mask.png")), f"{where}: no predictions"
        check_scores(run_dir / "summary.json", load_config(run_dir / "config.toml"), where)

    def check_predict(self, args: list[str], where: str) -> None:
        out = self.folder / (_option(args, "--out") or "predictions")
        for kind in ("mask", "overlay", "panel"):
            assert any(out.glob(f"*_{kind}.png")), f"{where}: no NAME_{kind}.png in {out}"
        if "--save-probs" in args:
            probs = np.load(next(out.glob("*_probs.npy")))
            assert probs.dtype == np.float16 and probs.ndim == 3, f"{where}: {probs.shape}"

    def check_eval(self, args: list[str], where: str) -> None:
        if "--json" in args:
            report = json.loads((self.folder / _option(args, "--json")).read_text())
            assert 0 <= report["miou"] <= 1, f"{where}: {report}"

    def check_export(self, args: list[str], where: str) -> None:
        out = self.folder / _option(args, "--out")
        assert out.is_file() and out.stat().st_size > 0, f"{where}: {out} not written"

    def check_refine(self, args: list[str], where: str) -> None:
        out = Image.open(self.folder / _option(args, "--out"))
        photo = Image.open(self.folder / next(a for a in args[1:] if not a.startswith("-")))
        assert out.size == photo.size, f"{where}: refined labels of another size"

    # --- TOML ----------------------------------------------------------------------

    def toml(self, block: Block) -> None:
        data = tomllib.loads(block.text)
        name = block.file_name
        if name is not None and Path(name).name == "pyproject.toml":
            modules = data["project"]["entry-points"]["segkit"].values()
            for module in modules:
                assert module in self.saved_modules, f"{block.where}: {module} is no module above"
            return
        text = block.text
        whole = "base" in data or "backbone" in data.get("model", {})
        if not whole:  # a fragment of a config: on top of the quickstart's
            text = 'base = "configs/deeplab_crf.toml"\n' + text
        path = self.folder / (name or f"block_{block.line}.toml")
        path.write_text(text)
        registry = load_plugins(extra=tuple(self.extra_plugins)).registry
        load_config(path, registry=registry)

    # --- Python --------------------------------------------------------------------

    def python(self, block: Block) -> None:
        name = block.file_name
        if name is None:
            exec(compile(block.text, block.where, "exec"), {"__name__": "__doc_block__"})
            return
        (self.folder / name).write_text(block.text)
        if Path(name).name.startswith("test_"):
            self.tests.append(self.folder / name)
            return
        module_name = Path(name).stem
        sys.modules.pop(module_name, None)
        module = importlib.import_module(module_name)
        self.saved_modules.append(module_name)
        if any(hasattr(v, "segkit_impl") for v in vars(module).values()):
            plugins = load_plugins(extra=(module,))
            status = [i.status for i in plugins.infos if i.name == module_name]
            assert status == ["loaded"], f"{block.where}: plugin {module_name} {status}"
            self.extra_plugins.append(module)

    def forget_modules(self) -> None:
        for name in self.saved_modules:
            sys.modules.pop(name, None)


def check_scores(path: Path, config, where: str) -> None:
    """A summary.json: the mIoU and every class's IoU, raw and after each post-processor."""
    summary = json.loads(path.read_text())
    assert 0 <= summary["miou"] <= 1 and summary["per_class_iou"], f"{where}: {summary}"
    names = [part.name for part in config.postprocessors]
    assert sorted(summary.get("postprocessed", {})) == sorted(names), f"{where}: {summary}"


def _option(args: list[str], flag: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == flag:
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _sets(args: list[str]) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == "--set"]
