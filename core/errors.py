"""The one error hierarchy of dvsapp.

Every layer raises one of these for bad input; the CLI maps them to a single
line and exit status 2, the GUI shows the message and keeps running.  Messages
name the file (or source) and what is wrong, on one line.
"""

from __future__ import annotations

import os


def exception_text(exc: BaseException, limit: int | None = None) -> str:
    """An exception's text for a one-line message: whitespace collapsed, cut at ``limit``, else its type."""
    text = " ".join(str(exc).split())
    return (text if limit is None else text[:limit]) or type(exc).__name__


class DvsAppError(Exception):
    """Base class of every error dvsapp raises on purpose."""

    def __init__(self, message: str, *, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self.reason = " ".join(str(message).split())  # always one line
        text = self.reason if self.path is None else f"{self.path}: {self.reason}"
        super().__init__(text)


class EventFileError(DvsAppError):
    """An event file exists in a known format but cannot be read (truncated, corrupt, bad values)."""


class UnsupportedFormat(EventFileError):
    """The file is not in any format dvsapp can read or write, or is not a file at all."""


class EventDataError(DvsAppError):
    """Event arrays that break the event model (unsorted time, coordinates outside the sensor...)."""


class SourceError(DvsAppError):
    """A live or replayed event source failed (lost stream, missing camera, bad URI)."""


class CheckpointError(DvsAppError):
    """A model checkpoint is missing, corrupt, or does not match its config."""


class LabelError(DvsAppError):
    """A label file or segment list is malformed."""


class ConfigError(DvsAppError):
    """A configuration value is out of range or inconsistent."""


class OutputExistsError(DvsAppError):
    """Refusing to overwrite an existing output file without --force.

    Raise it as ``OutputExistsError(path=out)``: every command then words it the same,
    naming the command-line option (:data:`OUTPUT_EXISTS`).
    """

    def __init__(self, message: str | None = None, *, path: str | os.PathLike | None = None) -> None:
        super().__init__(OUTPUT_EXISTS if message is None else message, path=path)


OUTPUT_EXISTS = "exists; pass --force to overwrite"
"""The one wording of :class:`OutputExistsError`."""


class OutputError(DvsAppError):
    """An output cannot be written: its folder is missing, read-only, full or not permitted.

    Raised before any long work by :func:`dvsapp.core.atomic.check_writable`, and by the
    atomic writers when the disk fills or the folder goes away while writing.
    """
