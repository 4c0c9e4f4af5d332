"""What ``segkit run`` does with the folder it is given, decided before a byte is written.

- A new or empty folder (the default ``runs/<name>/<time>/`` always is) starts a run.
- A folder holding a run with ``last.pt`` continues that run when ``train.resume`` is
  true (the default; ``--resume`` sets it): same model, the epochs still to do.
- A folder holding a run is never reused for another: ``train.resume = false`` or a
  different model is refused, and so is a folder holding other files.  ``--overwrite``
  removes the earlier run's files first, so that two runs' records never mix.
- ``--resume`` requires a ``last.pt`` to resume from: a mistyped folder is refused.
- Evaluating or predicting without training uses the folder's run (its weights);
  it rewrites that run's ``summary.json`` and prediction panels (and their record in
  ``segkit-files.json``), nothing else.
"""

from __future__ import annotations

import glob
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from segkit.core.config import Config
from segkit.core.errors import ConfigError, SegkitError
from segkit.core.outputs import is_read_only
from segkit.train.context import default_run_dir
from segkit.train.run_files import MANIFEST, RunLock, lock_run_folder, remove_recorded_files

#: The files and folders a run writes; together they are "a run" in a folder.
RUN_FILES = (
    "config.json",
    "config.toml",
    "metrics.jsonl",
    "summary.json",
    "curves.png",
    "class_frequencies.json",
    "last.pt",
    "best.pt",
    "predictions",
    MANIFEST,
)
CHECKPOINTS = ("last.pt", "best.pt")


@dataclass
class RunDirectory:
    """The folder of one run and what :meth:`create` does to it.

    ``continues``: an earlier run in the folder goes on (its files are kept);
    ``clear``: the earlier run's files are removed first; ``unique``: the folder is a
    new default one, renamed ``-2``, ``-3`` ... when another run took the name first.
    ``created``: :meth:`create` made the folder (it did not exist before).
    ``lock``: this process's lock on the folder (rank 0's), taken before anything in
    the folder changes: by :func:`lock_if_exists` before planning, else by :meth:`create`.
    """

    path: Path
    continues: bool = False
    clear: bool = False
    unique: bool = False
    created: bool = False
    lock: RunLock | None = None

    def release(self) -> None:
        """Let other runs use the folder again."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def create(self) -> Path:
        """Make the folder ready to write to and return it (renamed when ``unique``)."""
        path = self.path
        try:
            if self.unique:
                path = _claim_new_folder(path)
            self.created = self.unique or not path.exists()
            path.mkdir(parents=True, exist_ok=True)
            if self.lock is None:
                self.lock = lock_run_folder(path)
            if self.clear:
                remove_run_files(path)
            probe_writable(path)
        except OSError as exc:
            raise SegkitError(
                f"cannot write to the output folder {path} ({exc.strerror}); "
                f"choose another with --run-dir"
            ) from None
        return path


def lock_if_exists(run_dir: Path | None) -> RunLock | None:
    """A lock on ``run_dir`` when it is an existing folder (see :mod:`run_files`)."""
    if run_dir is None or not Path(run_dir).is_dir():
        return None
    return lock_run_folder(Path(run_dir))


def discard_if_unused(directory: RunDirectory, path: Path) -> None:
    """Remove the folder ``directory.create`` made at ``path`` when a run that failed
    before its first record left it empty."""
    if directory.created and path.is_dir() and not any(path.iterdir()):
        path.rmdir()


def _claim_new_folder(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3`` ...: the first that this process creates itself
    (two runs started in the same second never share a folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, number = path, 2
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            candidate, number = path.with_name(f"{path.name}-{number}"), number + 1


def probe_writable(folder: Path) -> None:
    """Raise the ``OSError`` of writing into ``folder``, without touching any file there."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def remove_run_files(folder: Path) -> None:
    """Remove the files the earlier run wrote (and its temporary files), nothing else."""
    remove_recorded_files(folder, tuple(n for n in RUN_FILES if n != "predictions"))
    for name in RUN_FILES:  # what a killed process left of a file being written
        for stale in folder.glob(f".{glob.escape(name)}.*.tmp"):
            if stale.is_file() and not stale.is_symlink():
                stale.unlink()


def run_files(folder: Path) -> list[str]:
    """The names of :data:`RUN_FILES` present in ``folder``."""
    return [name for name in RUN_FILES if os.path.lexists(folder / name)]


def plan_run_directory(
    config: Config, run_dir: Path | None, overwrite: bool = False, resume: bool = False
) -> RunDirectory:
    """Decide what the run does with ``run_dir``; refuse, in one line, what would lose a run.

    ``resume`` is ``--resume`` (a checkpoint to continue from is required); ``overwrite``
    is ``--overwrite`` (an earlier run's files are removed).  Nothing is written here.
    """
    if resume and overwrite:
        raise ConfigError(
            "--resume continues a run and --overwrite replaces it; give one of the two"
        )
    if run_dir is None:
        if resume:
            raise ConfigError("--resume needs the run to continue; give its --run-dir")
        return RunDirectory(default_run_dir(config), unique=True)
    path = Path(run_dir)
    _check_can_hold_a_run(path)
    _refuse_links(path)
    found = run_files(path) if path.is_dir() else []
    training = "train" in config.run.steps
    if resume and not (path / "last.pt").is_file():
        raise SegkitError(
            f"--resume: {path} holds no last.pt to resume from; check the folder name, "
            f"or drop --resume to start a new run"
        )
    if not training:
        return _plan_without_training(path, found, overwrite)
    # A run records its files from its start; files of a run's names without that
    # record or a checkpoint are somebody else's (a config.toml kept there, say).
    is_run = MANIFEST in found or any(name in found for name in CHECKPOINTS)
    if not is_run:
        if path.is_dir() and any(path.iterdir()):
            raise SegkitError(
                f"--run-dir {path} holds files that are not a segkit run; "
                f"give a new or empty folder"
            )
        return RunDirectory(path)
    if overwrite:
        return RunDirectory(path, clear=True)
    if not any(name in found for name in CHECKPOINTS):
        # a run stopped before its first checkpoint: nothing of it can be lost
        return RunDirectory(path, clear=True)
    another = "give a new --run-dir, or add --overwrite to replace that run"
    if not config.train.resume:
        raise SegkitError(
            f"--run-dir {path} holds a run ({_describe(path)}) and train.resume = false "
            f"would start over in it; {another}"
        )
    if not (path / "last.pt").is_file():
        raise SegkitError(f"--run-dir {path} holds a run without a last.pt to resume; {another}")
    return RunDirectory(path, continues=True)


def _plan_without_training(path: Path, found: list[str], overwrite: bool) -> RunDirectory:
    if not any(name in found for name in CHECKPOINTS):
        raise SegkitError(
            f"{path} holds no best.pt or last.pt to evaluate or predict with; "
            f"add 'train' to run.steps or give --run-dir of a trained run"
        )
    if overwrite:
        raise ConfigError(
            "--overwrite starts a new run, but run.steps has no 'train' to make one; "
            "drop --overwrite to evaluate or predict with the run in the folder"
        )
    return RunDirectory(path, continues=True)


def _check_can_hold_a_run(path: Path) -> None:
    """Refuse a path that is a file, or lies under a file or a folder one cannot write."""
    if path.exists() and not path.is_dir():
        raise SegkitError(
            f"cannot write to the output folder {path} (it is a file); choose another with "
            f"--run-dir"
        )
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise SegkitError(
            f"cannot write to the output folder {path} ({existing} is a file); "
            f"choose another with --run-dir"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = "the file system is read-only" if is_read_only(existing) else "permission denied"
        raise SegkitError(
            f"cannot write to the output folder {path} ({reason}); choose another with --run-dir"
        )


def _refuse_links(path: Path) -> None:
    """A run writes its files in place: a link where one belongs (planted, or left by a
    copy) would make it write elsewhere, so the folder is refused instead."""
    predictions = path / "predictions"
    candidates = [path / name for name in RUN_FILES]
    if predictions.is_dir() and not predictions.is_symlink():
        candidates += list(predictions.iterdir())
    for candidate in candidates:
        if candidate.is_symlink():
            raise SegkitError(
                f"--run-dir {path}: {candidate.relative_to(path)} is a symbolic link, and a run "
                f"writes its files only in its own folder; remove the link, or choose "
                f"another --run-dir"
            )


def _describe(path: Path) -> str:
    """The earlier run in a few words: its checkpoints and how many epochs it recorded."""
    found = [name for name in CHECKPOINTS if (path / name).is_file()]
    metrics = path / "metrics.jsonl"
    if metrics.is_file():
        with metrics.open("rb") as lines:
            epochs = sum(1 for _ in lines)
        found.append(f"{epochs} epoch(s) in metrics.jsonl")
    return ", ".join(found)
