"""Readers and writers of DVS event files, behind two entry points.

``open_events(path)`` sniffs the format from the file's bytes (``dvsapp.core.io.sniff``)
and returns an :class:`EventReader` with ``sensor_size``, ``metadata``,
``read_all()``, a streaming ``packets(max_events=..., dt_us=None)`` and
``read_triggers()`` (external triggers and timing markers, TRIGGER_DTYPE; empty
for formats without).

``write_events(path, events, sensor_size)`` and the streaming
``open_writer(path, sensor_size)`` pick the format from the extension
(``.aedat4``, ``.h5``/``.hdf5``, ``.npz``, ``.csv``); AEDAT 4 (opened with
``with_triggers=True``) and HDF5 also hold triggers (``write_triggers``).
Writers never replace an existing file without ``force=True``
(:class:`OutputExistsError`); they write a temporary file in the destination
folder and rename it into place only when everything was written, so a failed
write leaves nothing behind.

=========  ==========================  ==============================  =======
format     reader                      decoded by                      writer
=========  ==========================  ==============================  =======
aedat4     Aedat4Reader                aedat (header checked here)     yes (dv-processing)
aedat31    Aedat31Reader               numba / numpy, this package     no
aedat2     Aedat2Reader                numba / numpy (DVS128, DAVIS)   no
evt2       Evt2Reader                  numba / numpy, this package     no
evt3       Evt3Reader                  numba, this package (evt3.py)   no
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

from dvsapp.core.atomic import check_writable, commit, temp_beside
from dvsapp.core.errors import EventDataError, OutputExistsError, UnsupportedFormat
from dvsapp.core.events import EVENT_DTYPE, TRIGGER_DTYPE, SensorSize, as_events
from dvsapp.core.io.aedat4 import Aedat4Reader, Aedat4Writer
from dvsapp.core.io.aedat_legacy import Aedat2Reader, Aedat31Reader
from dvsapp.core.io.base import EventReader, packetize
from dvsapp.core.io.evt3 import Evt3Reader
from dvsapp.core.io.hdf5 import Hdf5Reader, Hdf5Writer, read_hdf5_labels
from dvsapp.core.io.nmnist import NmnistReader
from dvsapp.core.io.numpy_io import NpyReader, NpzReader, NpzWriter
from dvsapp.core.io.prophesee import DatReader, Evt2Reader
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
    return Aedat4Writer(
        path,
        sensor_size,
        camera=str(metadata.get("camera") or "dvsapp"),
        with_triggers=bool(metadata.get("with_triggers")),
    )


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

    def __init__(
        self,
        path: Path,
        sensor_size: SensorSize,
        *,
        force: bool,
        metadata: dict | None,
        with_triggers: bool = False,
    ) -> None:
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
        check_writable(path)  # a missing, read-only, full or blocked folder: one line, before any work
        self._force = force
        self._tmp = temp_beside(path, suffix)  # created here: an unwritable folder fails now, in one line
        meta = dict(metadata or {})
        meta.pop("with_triggers", None)
        if with_triggers:
            meta["with_triggers"] = True  # read by the AEDAT 4 factory, never stored
        try:
            self._inner = WRITERS[suffix](self._tmp, self.sensor_size, meta)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        self._last_t: int | None = None
        self._last_trigger_t: int | None = None
        self.n_written = 0
        self.n_triggers_written = 0

    @property
    def holds_triggers(self) -> bool:
        """Whether :meth:`write_triggers` can store triggers in this output."""
        return bool(getattr(self._inner, "holds_triggers", False))

    def write_triggers(self, triggers: np.ndarray) -> None:
        """Append triggers (TRIGGER_DTYPE, sorted, also across calls).

        Raises
        ------
        UnsupportedFormat
            The output format holds no triggers (see :attr:`holds_triggers`).
        EventDataError
            Wrong dtype or unsorted timestamps.
        """
        if not self.holds_triggers:
            hint = " (open it with with_triggers=True)" if self.path.suffix.lower() == ".aedat4" else ""
            raise UnsupportedFormat(f"this {self.path.suffix} output holds no triggers{hint}", path=self.path)
        if not isinstance(triggers, np.ndarray) or triggers.dtype != TRIGGER_DTYPE:
            got = getattr(triggers, "dtype", type(triggers).__name__)
            raise EventDataError(f"triggers have dtype {got}, expected {TRIGGER_DTYPE}", path=self.path)
        if not len(triggers):
            return
        t = triggers["t"]
        last = self._last_trigger_t
        if (len(t) > 1 and bool((t[1:] < t[:-1]).any())) or (last is not None and int(t[0]) < last):
            raise EventDataError("trigger timestamps are not sorted", path=self.path)
        self._inner.write_triggers(triggers)
        self._last_trigger_t = int(t[-1])
        self.n_triggers_written += len(triggers)

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
    with_triggers: bool = False,
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
    with_triggers : bool
        Give an AEDAT 4 output a trigger stream (HDF5 always holds triggers;
        npz and CSV never do): see :meth:`EventWriter.write_triggers`.
    """
    writer = EventWriter(
        Path(path), SensorSize(*sensor_size), force=force, metadata=metadata, with_triggers=with_triggers
    )
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
    triggers: np.ndarray | None = None,
) -> Path:
    """Write ``events`` (EVENT_DTYPE ``[N]``) to ``path`` in one call; returns the path.

    ``triggers`` (TRIGGER_DTYPE), when given, are stored too; the format must hold them
    (AEDAT 4, HDF5), else :class:`UnsupportedFormat`.
    """
    events = as_events(events)
    with open_writer(
        path, sensor_size, force=force, metadata=metadata, with_triggers=triggers is not None
    ) as w:
        for i0 in range(0, len(events), chunk_events):
            w.write(events[i0 : i0 + chunk_events])
        if triggers is not None:
            w.write_triggers(triggers)
    return Path(path)


_ = EVENT_DTYPE  # re-exported for convenience
