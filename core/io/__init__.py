"""Readers and writers of DVS event files, behind two entry points.

``open_events(path)`` sniffs the format from the file's bytes (``dvsapp.core.io.sniff``)
and returns an :class:`EventReader` with ``sensor_size``, ``metadata``,
``read_all()`` and a streaming ``packets(max_events=..., dt_us=None)``.

``write_events(path, events, sensor_size)`` and the streaming
``open_writer(path, sensor_size)`` pick the format from the extension
(``.aedat4``, ``.h5``/``.hdf5``, ``.npz``, ``.csv``).  Writers never replace an
existing file without ``force=True`` (:class:`OutputExistsError`); they write a
temporary file in the destination folder and rename it into place only when
everything was written, so a failed write leaves nothing behind.

=========  ==========================  ==============================  =======
format     reader                      decoded by                      writer
=========  ==========================  ==============================  =======
aedat4     Aedat4Reader                aedat (header checked here)     yes (dv-processing)
aedat31    Aedat31Reader               numba / numpy, this package     no
aedat2     Aedat2Reader (DVS128)       numba / numpy, this package     no
evt2       Evt2Reader                  numba / numpy, this package     no
evt3       Evt3Reader                  expelliarmus                    no
dat        DatReader                   numba / numpy, this package     no
nmnist     NmnistReader                numba / numpy, this package     no
npy/npz    NpyReader / NpzReader       numpy                           npz
csv        CsvReader                   numba / numpy                   yes
hdf5       Hdf5Reader                  h5py                            yes
=========  ==========================  ==============================  =======
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from dvsapp.core.atomic import commit, temp_beside
from dvsapp.core.errors import EventDataError, OutputExistsError, UnsupportedFormat
from dvsapp.core.events import EVENT_DTYPE, SensorSize, as_events
from dvsapp.core.io.aedat4 import Aedat4Reader, Aedat4Writer
from dvsapp.core.io.aedat_legacy import Aedat2Reader, Aedat31Reader
from dvsapp.core.io.base import EventReader, packetize
from dvsapp.core.io.hdf5 import Hdf5Reader, Hdf5Writer, read_hdf5_labels
from dvsapp.core.io.nmnist import NmnistReader
from dvsapp.core.io.numpy_io import NpyReader, NpzReader, NpzWriter
from dvsapp.core.io.prophesee import DatReader, Evt2Reader, Evt3Reader
from dvsapp.core.io.sniff import sniff_format
from dvsapp.core.io.text import CsvReader, CsvWriter

__all__ = [
    "EventReader",
    "EventWriter",
    "READERS",
    "WRITERS",
    "open_events",
    "write_events",
    "open_writer",
    "sniff_format",
    "writable_extensions",
    "packetize",
    "read_hdf5_labels",
]

READERS: dict[str, Callable[[Path], EventReader]] = {
    "aedat4": Aedat4Reader,
    "aedat31": Aedat31Reader,
    "aedat2": Aedat2Reader,
    "evt2": Evt2Reader,
    "evt3": Evt3Reader,
    "dat": DatReader,
    "nmnist": NmnistReader,
    "npy": NpyReader,
    "npz": NpzReader,
    "csv": CsvReader,
    "hdf5": Hdf5Reader,
}
"""Format key (from :func:`sniff_format`) -> reader class."""


class _FormatWriter(Protocol):
    def write(self, events: np.ndarray) -> None: ...
    def close(self) -> None: ...


def _aedat4_writer(path: Path, sensor_size: SensorSize, metadata: dict) -> _FormatWriter:
    return Aedat4Writer(path, sensor_size, camera=str(metadata.get("camera") or "dvsapp"))


WRITERS: dict[str, Callable[[Path, SensorSize, dict], _FormatWriter]] = {
    ".aedat4": _aedat4_writer,
    ".h5": Hdf5Writer,
    ".hdf5": Hdf5Writer,
    ".npz": NpzWriter,
    ".csv": CsvWriter,
}
"""Output extension -> writer factory ``(path, sensor_size, metadata)``."""


def writable_extensions() -> list[str]:
    return sorted(WRITERS)


def open_events(path: str | os.PathLike) -> EventReader:
    """Open an event file of any supported format (sniffed from its bytes).

    Raises
    ------
    UnsupportedFormat
        Missing file, directory, empty file, unknown format.
    EventFileError
        Known format but corrupt or truncated header.
    """
    key = sniff_format(path)
    return READERS[key](Path(path))


class EventWriter:
    """A streaming writer: ``write(events)`` any number of times, then ``close()``.

    Checks every chunk (sorted timestamps, also across chunks; coordinates inside
    ``sensor_size``) and raises :class:`EventDataError` on the first violation.
    Use through :func:`open_writer`.
    """

    def __init__(self, path: Path, sensor_size: SensorSize, *, force: bool, metadata: dict | None) -> None:
        self.path = path
        self.sensor_size = SensorSize(*sensor_size)
        suffix = path.suffix.lower()
        if suffix not in WRITERS:
            raise UnsupportedFormat(
                f"cannot write {suffix or 'extensionless'} files (writable: {', '.join(writable_extensions())})",
                path=path,
            )
        if path.exists() and not force:
            raise OutputExistsError(path=path)
        if path.is_dir():
            raise OutputExistsError("is a directory", path=path)
        if not path.parent.is_dir():
            raise UnsupportedFormat("output folder does not exist", path=path.parent)
        self._force = force
        self._tmp = temp_beside(path, suffix)  # created here: an unwritable folder fails now, in one line
        try:
            self._inner = WRITERS[suffix](self._tmp, self.sensor_size, dict(metadata or {}))
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        self._last_t: int | None = None
        self.n_written = 0

    def write(self, events: np.ndarray) -> None:
        """Append events (EVENT_DTYPE or any structured array with x, y, t, p)."""
        events = as_events(events)
        if not len(events):
            return
        from dvsapp.core.events import validate

        validate(events, self.sensor_size, path=self.path)
        if self._last_t is not None and int(events["t"][0]) < self._last_t:
            raise EventDataError(
                f"timestamps are not sorted: chunk starts at t={int(events['t'][0])} us "
                f"after t={self._last_t} us",
                path=self.path,
            )
        self._inner.write(events)
        self._last_t = int(events["t"][-1])
        self.n_written += len(events)

    def close(self) -> None:
        """Finish the file and move it into place."""
        self._inner.close()
        if self.path.exists() and not self._force:
            self._tmp.unlink(missing_ok=True)
            raise OutputExistsError("appeared while writing; use --force to overwrite", path=self.path)
        commit(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial output."""
        with contextlib.suppress(Exception):
            abort = getattr(self._inner, "abort", None)
            (abort or self._inner.close)()
        self._tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def open_writer(
    path: str | os.PathLike,
    sensor_size: SensorSize | tuple,
    *,
    force: bool = False,
    metadata: dict | None = None,
) -> Iterator[EventWriter]:
    """Context manager yielding an :class:`EventWriter`; the file appears only on success.

    Parameters
    ----------
    path : path-like
        Output; format from the extension (``.aedat4 .h5 .hdf5 .npz .csv``).
    sensor_size : SensorSize or (W, H[, P])
        Stored in the file.
    force : bool
        Replace an existing file.
    metadata : dict, optional
        ``camera`` is stored by every format; HDF5 also stores ``labels``
        (segments or ``[K, 3]`` rows) and ``class_names``, and any other
        JSON-able keys; npz stores the dict as JSON.
    """
    writer = EventWriter(Path(path), SensorSize(*sensor_size), force=force, metadata=metadata)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    try:
        writer.close()
    except BaseException:
        writer.abort()
        raise


def write_events(
    path: str | os.PathLike,
    events: np.ndarray,
    sensor_size: SensorSize | tuple,
    *,
    force: bool = False,
    metadata: dict | None = None,
    chunk_events: int = 1 << 20,
) -> Path:
    """Write ``events`` (EVENT_DTYPE ``[N]``) to ``path`` in one call; returns the path."""
    events = as_events(events)
    with open_writer(path, sensor_size, force=force, metadata=metadata) as w:
        for i0 in range(0, len(events), chunk_events):
            w.write(events[i0 : i0 + chunk_events])
    return Path(path)


_ = EVENT_DTYPE  # re-exported for convenience
