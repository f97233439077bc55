"""Atomic file output: write beside the target, then rename it into place.

Every output dvsapp writes (labels, autosave sidecars, checkpoints, datasets,
converted recordings, videos, frame caches) goes through here, so a crash or a
full disk at any instant leaves either the old file or the new one, never a
partial file.  Temp names are ``.<name>.<random><suffix>`` in the target's folder
(same file system, so the rename is atomic).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "commit", "target_mode", "temp_beside"]


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def target_mode(path: str | os.PathLike) -> int:
    """Permission bits for a rewritten file: those of the file it replaces, else ``0666 & ~umask``.

    (The temp file is created private; pass this as ``mode`` for an ordinary user file.)
    """
    try:
        return Path(path).stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_umask()


def temp_beside(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """Create an empty private temp file in ``path``'s folder and return its path."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=folder)
    os.close(fd)
    return Path(name)


def commit(tmp: str | os.PathLike, path: str | os.PathLike, *, mode: int | None = None) -> Path:
    """Flush ``tmp`` to disk, give it ``mode`` (if any), rename it onto ``path`` and sync the folder."""
    tmp, path = Path(tmp), Path(path)
    with open(tmp, "rb+") as fh:
        if mode is not None and hasattr(os, "fchmod"):
            os.fchmod(fh.fileno(), mode)
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # make the rename itself durable (not possible everywhere)
        dfd = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".tmp", mode: int | None = None) -> Iterator[Path]:
    """A temp path to write ``path``'s new content to; committed when the block ends normally.

    On any exception (``KeyboardInterrupt`` included) the temp file is removed and
    ``path`` is left as it was.  ``suffix`` keeps an extension that a library picks
    the format by (e.g. ``.mp4`` for OpenCV).
    """
    tmp = temp_beside(path, suffix)
    try:
        yield tmp
        commit(tmp, path, mode=mode)
    finally:
        tmp.unlink(missing_ok=True)
