"""Atomic file output: check first, write beside the target, then rename it into place.

Every output dvsapp writes (labels, autosave sidecars, checkpoints, datasets,
converted recordings, videos, frame caches, reports) goes through here, so:

- :func:`check_writable` tells, before any long work, whether an output can be
  written at all (its folder exists, is a folder, is writable and not full),
  creating nothing;
- a crash or a full disk at any instant leaves either the old file or the new
  one, never a partial file;
- a write error becomes one :class:`~dvsapp.core.errors.OutputError` naming the
  output (never a traceback about a temp file);
- every temp file is named the same way, ``.<name>.<random><suffix>`` in the
  target's folder (same file system, so the rename is atomic), by
  :func:`temp_beside`;
- every file gets the permission bits of the file it replaces, else
  ``0666 & ~umask`` (:func:`target_mode`): the user's umask decides, for every kind
  of output alike.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dvsapp.core.errors import OutputError

__all__ = [
    "atomic_path",
    "check_writable",
    "commit",
    "output_error",
    "target_mode",
    "temp_beside",
]

WRITE_ERRNOS = frozenset(
    {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.ENOTDIR}
)
"""``errno`` values that mean "this output cannot be written" (as opposed to a bad input)."""

MIN_FREE_BYTES = 64 * 1024
""":func:`check_writable` calls a file system with less free space than this full."""


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # no /proc: read it the only other way there is (set and restore at once)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def target_mode(path: str | os.PathLike) -> int:
    """Permission bits for a rewritten file: those of the file it replaces, else ``0666 & ~umask``."""
    try:
        return Path(path).stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_umask()


def output_error(exc: OSError, path: str | os.PathLike) -> OutputError:
    """The one-line :class:`OutputError` for an ``OSError`` met while writing ``path``."""
    text = str(exc).strip()
    reason = exc.strerror or (text.splitlines()[0] if text else type(exc).__name__)
    return OutputError(f"cannot write: {reason}", path=path)


def _folder_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def check_writable(
    path: str | os.PathLike, *, folder: bool = False, parents: bool = False, need_bytes: int = 0
) -> Path:
    """Raise an :class:`OutputError` naming ``path`` unless it can be written; create nothing.

    Call it with every output path before a command starts its work, so a read-only,
    full or missing folder costs a second, not the run.

    Parameters
    ----------
    path : the output file (or, with ``folder=True``, the output folder).
    folder : ``path`` is a folder that the writer creates when missing (with its parents).
    parents : the writer creates a file's missing parent folders too.
    need_bytes : free space the output is expected to need (a writer that cannot survive a
        full disk, such as dv-processing's AEDAT 4 writer, which aborts the process).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if folder or parents:
        probe = path if folder else _folder_of(path)
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
    else:
        probe = _folder_of(path)
        if not probe.exists():
            raise OutputError(f"cannot write: the folder {probe} does not exist", path=path)
    if not folder and path.is_dir():
        raise OutputError("cannot write: is a folder, not a file", path=path)
    if folder and path.exists() and not path.is_dir():
        raise OutputError("cannot write: is a file, not a folder", path=path)
    if not probe.is_dir():
        raise OutputError(f"cannot write: {probe} is a file, not a folder", path=path)
    try:
        fd, name = tempfile.mkstemp(prefix=".dvsapp-write-check.", dir=probe)
    except OSError as exc:
        raise output_error(exc, path) from None
    os.close(fd)
    os.unlink(name)
    free = _free_bytes(probe)
    if free is not None and free < max(MIN_FREE_BYTES, need_bytes):
        detail = (
            ""
            if free < MIN_FREE_BYTES
            else f" ({free / 1e6:.1f} MB free, about {need_bytes / 1e6:.1f} MB needed)"
        )
        raise OutputError(f"cannot write: {os.strerror(errno.ENOSPC)}{detail}", path=path)
    return path


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def temp_beside(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """Create an empty private temp file ``.<name>.<random><suffix>`` in ``path``'s folder; return it.

    ``suffix`` keeps an extension that a library picks the format by (``.mp4``, ``.h5``).
    An unwritable folder raises :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=_folder_of(path))
    except OSError as exc:
        raise output_error(exc, path) from None
    os.close(fd)
    return Path(name)


def commit(tmp: str | os.PathLike, path: str | os.PathLike, *, mode: int | None = None) -> Path:
    """Flush ``tmp`` to disk, give it ``mode`` (default :func:`target_mode`), rename it onto ``path``.

    The folder is synced too, so the rename itself is durable where that is possible.
    """
    tmp, path = Path(tmp), Path(path)
    if mode is None:
        mode = target_mode(path)
    try:
        with open(tmp, "rb+") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise output_error(exc, path) from None
    with contextlib.suppress(OSError):  # make the rename itself durable (not possible everywhere)
        dfd = os.open(_folder_of(path), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".tmp", mode: int | None = None) -> Iterator[Path]:
    """A temp path to write ``path``'s new content to; committed when the block ends normally.

    On any exception (``KeyboardInterrupt`` included) the temp file is removed and
    ``path`` is left as it was; an ``OSError`` that says the disk is full or the
    folder unwritable comes out as an :class:`OutputError` naming ``path``.
    ``suffix`` keeps an extension that a library picks the format by (e.g. ``.mp4``
    for OpenCV); ``mode`` defaults to :func:`target_mode` (the umask's).
    """
    if mode is None:
        mode = target_mode(path)
    tmp = temp_beside(path, suffix)
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno in WRITE_ERRNOS or (exc.filename is not None and Path(exc.filename) == tmp):
                raise output_error(exc, path) from None
            raise
        commit(tmp, path, mode=mode)
    finally:
        tmp.unlink(missing_ok=True)
