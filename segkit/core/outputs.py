"""The files segkit writes: never over a file it was not told it may replace, whole or
not at all, and with a write error that says what went wrong and with which file.

Every command plans its outputs first and calls :func:`check_outputs` before any
work: an output that is one of the command's inputs, that two inputs of the same
call would both produce, or that already exists (without ``--overwrite``) stops the
command before its first byte is written.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from segkit.core.errors import ConfigError, SegkitError

#: Characters that would make a name derived from an input reach outside its folder.
_PATH_CHARACTERS = ("/", "\\", "\0")


class OutputError(SegkitError):
    """An output file cannot be written, or would replace a file it must not."""


def write_error(path: Path, exc: OSError) -> OutputError:
    """The one line for an operating-system error while writing ``path``."""
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"disk full: cannot write {path}; free some space or write elsewhere")
    if code == errno.EROFS:
        return OutputError(
            f"cannot write {path}: the file system is read-only; write to another folder"
        )
    if code in (errno.EACCES, errno.EPERM):
        return OutputError(
            f"cannot write {path}: permission denied; write to a folder you can write to"
        )
    reason = exc.strerror or type(exc).__name__
    return OutputError(f"cannot write {path} ({reason}); write to another folder")


#: Write failures a user can fix (space, quota, a read-only mount), wherever they occur.
_STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def storage_error(exc: BaseException) -> OutputError | None:
    """The one line for a full disk or a read-only file system met by code that did not
    name its file itself; ``None`` for any other error."""
    if not isinstance(exc, OSError) or exc.errno not in _STORAGE_ERRORS:
        return None
    return write_error(Path(exc.filename) if exc.filename else Path("an output file"), exc)


@contextmanager
def explained_write_errors(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into the one line of :func:`write_error`."""
    try:
        yield
    except OSError as exc:
        raise write_error(path, exc) from None


def write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(file)``: to a temporary file beside it, then renamed.

    A failure leaves the previous file (or none) in place, never half a file.  The
    temporary file has an unpredictable name and is created exclusively, so a link
    planted in the folder cannot redirect it.  A character device or a FIFO at
    ``path`` (``/dev/null``, ``/dev/stdout``) is written as a stream; a symbolic link
    to anything else, or another kind of special file, is refused, never replaced.
    """
    path = Path(path)
    if output_kind(path) == "stream":
        descriptor = standard_stream(path)
        with explained_write_errors(path):
            if descriptor is not None:  # /dev/stdout: this process's own output, as it is
                sys.stdout.flush()
                sys.stderr.flush()
                with os.fdopen(os.dup(descriptor), "wb") as stream:
                    write(stream)
            else:
                with open(path, "wb") as stream:
                    write(stream)
        return path
    with explained_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = _mode_for(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                write(file)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def _mode_for(path: Path) -> int:
    """The permissions a new ``path`` gets: the replaced file's, else what the umask allows
    (``mkstemp`` creates its files readable by their owner alone)."""
    try:
        return stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def output_kind(path: Path, option: str = "--out") -> str:
    """What writing ``path`` means: ``"new"``, ``"file"`` (an existing regular file, to be
    replaced whole) or ``"stream"`` (a character device or FIFO, written in place, or this
    process's standard output or error through a link such as ``/dev/stdout``).

    Anything else is an :class:`OutputError`: a folder, a block device or socket, and a
    symbolic link that does not lead to a stream, since replacing a link or writing
    through it would change a file the command was not given.
    """
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # a folder in the way is told later
        return "new"
    except OSError as exc:
        raise write_error(path, exc) from None
    if standard_stream(path) is not None:
        return "stream"
    if stat.S_ISREG(info.st_mode):
        return "file"
    if stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{path} is a folder; choose another {option}")
    if stat.S_ISLNK(info.st_mode):
        try:
            target = os.stat(path)
        except OSError:
            target = None
        if target is not None and _is_stream(target.st_mode):
            return "stream"
        raise OutputError(
            f"{path} is a symbolic link; segkit neither replaces links nor writes through "
            f"them: remove the link or choose another {option}"
        )
    if _is_stream(info.st_mode):
        return "stream"
    raise OutputError(f"{path} is a device or socket, not a file; choose another {option}")


def standard_stream(path: Path) -> int | None:
    """1 or 2 when ``path`` (``/dev/stdout``, ``/dev/fd/2``...) leads to this process's own
    standard output or error, whatever they go to (a terminal, a pipe or a file the shell
    opened): written there as they stand, never opened anew (which would truncate a file)."""
    try:
        target = os.stat(path)
    except OSError:
        return None
    for descriptor in (1, 2):
        try:
            own = os.fstat(descriptor)
        except OSError:
            continue
        if (own.st_dev, own.st_ino) == (target.st_dev, target.st_ino) and os.path.islink(path):
            return descriptor
    return None


def _is_stream(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def prepare_output_dir(path: Path, option: str = "--out") -> None:
    """Create the folder ``path`` and make sure it is writable before any work is done."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # a probe that can clash with no file
            pass
    except OSError as exc:
        raise SegkitError(
            f"cannot write to the output folder {path} ({exc.strerror}); "
            f"choose another with {option}"
        ) from None


def write_bytes_atomically(path: Path, data: bytes) -> Path:
    return write_atomically(path, lambda file: file.write(data))


def write_text_atomically(path: Path, text: str) -> Path:
    return write_bytes_atomically(path, text.encode("utf-8"))


class _KeptWriteError:
    """A file that keeps the ``OSError`` of a failed write: ``torch.save`` and
    ``torch.jit.save`` report some (a full disk among them) as a bare ``RuntimeError``."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def save_with_torch(save: Callable[[Any], None], file: IO[bytes]) -> None:
    """``save(file)`` for a PyTorch writer such as ``torch.save``, whose failed writes
    raise their own ``OSError`` (for :func:`write_error`) rather than a ``RuntimeError``."""
    kept = _KeptWriteError(file)
    try:
        save(kept)
    except RuntimeError:
        if kept.error is not None:
            raise kept.error from None
        raise


def safe_name(name: str) -> str:
    """``name`` (derived from an input: a file stem, a sample name) as one plain file name.

    Separators become ``_`` so that the name stays inside the folder it is written to.
    """
    for character in _PATH_CHARACTERS:
        name = name.replace(character, "_")
    return "_" if name in ("", ".", "..") else name


def check_plain_name(name: str, what: str) -> str:
    """``name`` when it can be a folder name of its own, else a :class:`ConfigError`
    naming ``what`` (the config key that gave it)."""
    if name in ("", ".", "..") or any(c in name for c in _PATH_CHARACTERS):
        raise ConfigError(
            f"{what} = {name!r} cannot be a folder name (it is used in runs/<name>/); "
            f"use letters, digits, '-', '_' or '.', without '/'"
        )
    return name


def is_read_only(folder: Path) -> bool:
    """Whether ``folder`` lies on a file system mounted read-only."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs on every platform
        return False


def _file_id(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of the file ``path`` leads to, or ``None`` when there is none."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def check_outputs(
    outputs: Iterable[Path],
    inputs: Iterable[Path] = (),
    overwrite: bool = False,
    out_option: str = "--out",
) -> None:
    """Refuse, before any work, outputs that would replace a file they must not.

    An output may never be one of ``inputs``, nor be written twice by the same call;
    it may replace an existing file only with ``overwrite``, and never a folder, a link
    or a special file (a character device or FIFO is written to as a stream).  Each
    path is looked at once, so ten thousand inputs cost ten thousand look-ups.
    """
    input_ids: dict[tuple[int, int], Path] = {}
    for source in map(Path, inputs):
        found = _file_id(source)
        if found is not None:
            input_ids.setdefault(found, source)
    seen: dict[str, Path] = {}
    for output in map(Path, outputs):
        key = os.path.normcase(os.path.abspath(output)).casefold()
        if key in seen:
            raise OutputError(
                f"two outputs of this call would both be written to {output}; "
                f"give the inputs different names or predict them in separate calls"
            )
        seen[key] = output
        kind = output_kind(output, out_option)
        if kind == "new":
            continue
        identity = _file_id(output)
        source = input_ids.get(identity) if identity is not None else None
        if source is not None:
            raise OutputError(
                f"{output} is also an input of this command ({source}); "
                f"choose another {out_option} so that the input is kept"
            )
        if kind == "file" and not overwrite:
            raise OutputError(
                f"{output} already exists; add --overwrite to replace it, "
                f"or choose another {out_option}"
            )
