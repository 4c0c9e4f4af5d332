"""What a run folder holds of the run's own, and the lock that keeps two runs out of it.

Every file a run writes is recorded in the folder's ``segkit-files.json`` as it is
written.  ``--overwrite`` removes those files and nothing else: a file a user put in
``predictions/``, or a folder that happens to be named like a run file, stays.  A
folder written before segkit kept this record gives up only its top-level run files.

While a run works in a folder it holds a lock on it (``flock`` on the folder itself,
so no file is written for it): a second ``segkit run`` on the same folder is refused
at once, and the lock goes with the process however it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

from segkit.core.errors import SegkitError
from segkit.core.outputs import write_text_atomically

try:  # not on every platform; there, runs are not kept apart
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: The record of a run's files, in the run folder.
MANIFEST = "segkit-files.json"
_FORMAT = "segkit-run-files"


class RunFiles:
    """The record of the files a run wrote in ``folder``; ``enabled`` only on rank 0."""

    def __init__(self, folder: Path, enabled: bool = True) -> None:
        self.folder = folder
        self.enabled = enabled
        self.names: set[str] = set(recorded_files(folder) or ()) if enabled else set()

    def add(self, *paths: Path) -> None:
        """Record ``paths`` (files in the run folder) as the run's own."""
        if not self.enabled:
            return
        new = {self._relative(Path(p)) for p in paths} - self.names
        if new:
            self.names |= new
            record = {"format": _FORMAT, "files": sorted(self.names)}
            write_text_atomically(self.folder / MANIFEST, json.dumps(record, indent=1))

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.folder).as_posix()


def recorded_files(folder: Path) -> list[str] | None:
    """The files recorded in ``folder``'s manifest; ``None`` when there is none.

    A manifest that is not one (truncated, edited, of the wrong types) is a
    :class:`SegkitError`: what belongs to the run is then unknown.
    """
    path = folder / MANIFEST
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(path, str(getattr(exc, "strerror", None) or exc)) from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _damaged(path, f"not JSON: {exc.msg}") from None
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise _damaged(path, "not segkit's record of a run's files")
    files = record.get("files")
    if not isinstance(files, list) or not all(_is_inside(name) for name in files):
        raise _damaged(path, "its 'files' is not a list of paths inside the folder")
    return files


def _is_inside(name: object) -> bool:
    """Whether ``name`` is a relative path that stays inside the folder."""
    if not isinstance(name, str) or not name or "\0" in name:
        return False
    parts = Path(name).parts
    return not Path(name).is_absolute() and ".." not in parts


def _damaged(path: Path, why: str) -> SegkitError:
    return SegkitError(
        f"{path} is damaged ({why}), so which files belong to the earlier run is unknown; "
        f"remove the run's files by hand, or choose another --run-dir"
    )


def remove_recorded_files(folder: Path, top_level: tuple[str, ...]) -> None:
    """Remove the files the folder's earlier run recorded, then the record itself.

    Without a record (a run written before segkit kept one), the regular files among
    ``top_level`` are removed.  Links and folders are never removed, nor anything not
    recorded; a folder the removal leaves empty goes too.
    """
    recorded = recorded_files(folder)
    names = recorded if recorded is not None else list(top_level)
    emptied: set[Path] = set()
    for name in names:
        path = folder / name
        try:
            is_file = stat.S_ISREG(os.lstat(path).st_mode)
        except FileNotFoundError:
            continue
        if is_file:
            path.unlink()
            emptied.update(p for p in path.parents if p != folder and folder in p.parents)
    for parent in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
        if parent.is_dir() and not parent.is_symlink() and not any(parent.iterdir()):
            parent.rmdir()
    (folder / MANIFEST).unlink(missing_ok=True)


def check_inputs_kept(folder: Path, inputs: list[Path]) -> None:
    """Refuse an ``--overwrite`` that would remove one of the command's inputs (a run's
    own ``config.toml`` given as the config, say)."""
    if not folder.is_dir():
        return
    recorded = recorded_files(folder) or []
    for name in recorded:
        for source in inputs:
            if (
                (folder / name).is_file()
                and source.is_file()
                and os.path.samefile(folder / name, source)
            ):
                raise SegkitError(
                    f"--overwrite would remove {source}, which this run reads: it is the "
                    f"earlier run's own {name}; copy it out of {folder} and run the copy"
                )


#: The descriptors of the locks this process holds.  A child process forked meanwhile
#: (DataLoader workers, the dense CRF's worker pool, which outlives the run) would
#: otherwise share them and keep the folder locked after this process lets it go.
_HELD: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


class RunLock:
    """An exclusive lock on a run folder, held until :meth:`release` or the process ends."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        if fd is not None:
            _HELD.add(fd)

    def release(self) -> None:
        if self.fd is not None:
            _HELD.discard(self.fd)
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None


def lock_run_folder(folder: Path) -> RunLock:
    """Lock ``folder`` (which exists) for this run, or refuse at once when another run
    holds it."""
    if fcntl is None:
        return RunLock(None)
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SegkitError(
            f"--run-dir {folder} is in use by another segkit run right now; wait for it to "
            f"end, or choose another --run-dir"
        ) from None
    return RunLock(fd)
