"""The reader contract shared by every file family, and the packetizer.

A reader decodes its file as a sequence of *chunks*: event arrays of bounded
length (``chunk_events``), in file order.  Everything else is built here on top
of that one method:

* :meth:`EventReader.read_all` concatenates the chunks (formats with a faster
  whole-file path override it);
* :meth:`EventReader.packets` regroups the chunks into :class:`dvsapp.core.events.Packet`
  objects, by event count or by time slice, so that memory stays bounded by a
  chunk whatever the file size;
* every chunk is checked as it passes: timestamps non-decreasing (also across
  chunk boundaries) and coordinates inside the sensor.  A violation raises
  :class:`dvsapp.core.errors.EventFileError` naming the file and the event index.

Packet contract (see ``dvsapp.core.events.Packet``): all events of a packet have
``t < until_us`` and once a packet is yielded every event with ``t < until_us``
has been delivered.  A packet never splits events that share a timestamp,
so ``until_us`` is always the timestamp of the first event not yet delivered
(or ``last t + 1`` at the end of the file).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dvsapp.core.errors import EventFileError, UnsupportedFormat
from dvsapp.core.events import (
    EVENT_DTYPE,
    TRIGGER_DTYPE,
    Packet,
    SensorSize,
    concat,
    empty_events,
    empty_triggers,
)
from dvsapp.core.io import _kernels

#: the largest sensor side a file may state: the event layout's coordinates are int16
MAX_SENSOR_SIDE = int(np.iinfo(EVENT_DTYPE["x"]).max) + 1

DEFAULT_CHUNK_EVENTS = 1 << 20
"""Events decoded per chunk (about 13 MB of EVENT_DTYPE)."""

DEFAULT_PACKET_EVENTS = 100_000
"""Default ``max_events`` of :meth:`EventReader.packets`."""


def check_input_file(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path if it is a readable, non-empty regular file.

    Raises
    ------
    UnsupportedFormat
        Missing file, a directory, or zero bytes.
    """
    p = Path(path)
    if not p.exists():
        raise UnsupportedFormat("no such file", path=p)
    if p.is_dir():
        raise UnsupportedFormat("is a directory, not an event file", path=p)
    if not p.is_file():
        raise UnsupportedFormat("is not a regular file", path=p)
    if p.stat().st_size == 0:
        raise UnsupportedFormat("file is empty (0 bytes)", path=p)
    return p


class EventChecker:
    """Streaming check of the event model's promises on consecutive chunks.

    Holds the last timestamp seen and the running event index, so the error
    message names the event's position in the whole file.
    """

    def __init__(self, path: Path, sensor_size: SensorSize | None) -> None:
        self.path = path
        self.sensor_size = sensor_size
        self.last_t: int | None = None
        self.n_seen = 0

    def __call__(self, events: np.ndarray) -> np.ndarray:
        n = len(events)
        if n == 0:
            return events
        if _kernels.HAVE_NUMBA:
            w, h = (
                (1 << 30, 1 << 30)
                if self.sensor_size is None
                else (int(self.sensor_size[0]), int(self.sensor_size[1]))
            )
            last = np.iinfo(np.int64).min if self.last_t is None else self.last_t
            i, kind = _kernels.check_events(events["x"], events["y"], events["t"], w, h, last)
            if i >= 0:
                self._raise(events, int(i), int(kind))
        else:
            self._check_numpy(events)
        self.last_t = int(events["t"][-1])
        self.n_seen += n
        return events

    def _raise(self, events: np.ndarray, i: int, kind: int) -> None:
        if kind == 1:
            before = self.last_t if i == 0 else int(events["t"][i - 1])
            raise EventFileError(
                f"timestamps are not sorted: event {self.n_seen + i} has t={int(events['t'][i])} us "
                f"after t={before} us",
                path=self.path,
            )
        w, h = int(self.sensor_size[0]), int(self.sensor_size[1])
        x, y = int(events["x"][i]), int(events["y"][i])
        name, value = ("x", x) if not 0 <= x < w else ("y", y)
        raise EventFileError(
            f"event {self.n_seen + i} has {name}={value} outside the {w}x{h} sensor", path=self.path
        )

    def _check_numpy(self, events: np.ndarray) -> None:
        t = events["t"]
        if self.last_t is not None and int(t[0]) < self.last_t:
            self._raise(events, 0, 1)
        if len(t) > 1:
            d = np.diff(t)
            if d.min() < 0:
                self._raise(events, int(np.flatnonzero(d < 0)[0]) + 1, 1)
        if self.sensor_size is not None:
            w, h = int(self.sensor_size[0]), int(self.sensor_size[1])
            bad = (events["x"] < 0) | (events["x"] >= w) | (events["y"] < 0) | (events["y"] >= h)
            if bad.any():
                self._raise(events, int(np.flatnonzero(bad)[0]), 2)


def check_triggers(triggers: np.ndarray, path: Path) -> np.ndarray:
    """Raise :class:`EventFileError` when trigger timestamps go back; returns ``triggers``."""
    if triggers.dtype != TRIGGER_DTYPE:  # pragma: no cover - readers build this dtype
        raise EventFileError(f"triggers have dtype {triggers.dtype}, expected {TRIGGER_DTYPE}", path=path)
    t = triggers["t"]
    if len(t) > 1:
        bad = np.flatnonzero(t[1:] < t[:-1])
        if len(bad):
            i = int(bad[0]) + 1
            raise EventFileError(
                f"trigger timestamps are not sorted: trigger {i} has t={int(t[i])} us after t={int(t[i - 1])} us",
                path=path,
            )
    return triggers


class EventReader:
    """Base class of every format's reader.

    Attributes
    ----------
    path : Path
        The file being read.
    sensor_size : SensorSize
        Sensor geometry (from the header, or inferred as documented per format).
    metadata : dict
        At least ``format`` (str), ``camera`` (str or None), ``duration_us``
        (int or None), ``n_events`` (int or None when unknown without a full
        read), plus format-specific keys.

    Subclasses implement :meth:`_chunks`; they may override :meth:`read_all`.
    Formats that hold triggers implement :meth:`_decode_triggers`; those whose
    :meth:`_chunks` decodes them on the way set ``self._triggers`` at the end of a
    complete pass and use ``_decode_triggers = _triggers_from_a_pass``, so a full
    read followed by :meth:`read_triggers` decodes the file once.
    """

    format_name: str = "?"
    may_have_triggers: bool = False
    """Whether the format can hold triggers (:meth:`read_triggers` may be non-empty)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = check_input_file(path)
        self._sensor_size: SensorSize | None = None
        self._triggers: np.ndarray | None = None  # set by a decoding pass that reads them on the way
        self.metadata: dict[str, Any] = {
            "format": self.format_name,
            "camera": None,
            "duration_us": None,
            "n_events": None,
        }

    # -- geometry ---------------------------------------------------------------------------------
    @property
    def sensor_size(self) -> SensorSize:
        size = self._sensor_size
        if size is None:
            size = self._sensor_size = self._infer_sensor_size()
        if not (0 < size.width <= MAX_SENSOR_SIDE and 0 < size.height <= MAX_SENSOR_SIDE):
            # a header can state any number; the event layout holds int16 coordinates
            raise EventFileError(
                f"states a sensor of {size.width}x{size.height} pixels; width and height must be "
                f"1..{MAX_SENSOR_SIDE}",
                path=self.path,
            )
        return size

    def _infer_sensor_size(self) -> SensorSize:
        """Fallback when the file states no geometry: max coordinate + 1 (one streaming pass)."""
        w = h = 0
        for chunk in self._chunks(DEFAULT_CHUNK_EVENTS):
            if len(chunk):
                w = max(w, int(chunk["x"].max()) + 1)
                h = max(h, int(chunk["y"].max()) + 1)
        return SensorSize(max(w, 1), max(h, 1))

    # -- decoding ---------------------------------------------------------------------------------
    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        """Yield EVENT_DTYPE arrays of about ``chunk_events`` events, in file order (unchecked)."""
        raise NotImplementedError

    def _all_chunk_events(self) -> int:
        """Chunk length :meth:`read_all` decodes with.

        Readers that know their record count from the file size return it, so the
        whole file decodes as one chunk (no concatenation); the default keeps chunks.
        """
        return DEFAULT_CHUNK_EVENTS

    def iter_chunks(self, chunk_events: int = DEFAULT_CHUNK_EVENTS) -> Iterator[np.ndarray]:
        """Decoded and checked chunks, in file order.

        Raises
        ------
        EventFileError
            Unsorted timestamps or coordinates outside :attr:`sensor_size`.
        """
        check = EventChecker(self.path, self.sensor_size)
        for chunk in self._chunks(max(1, int(chunk_events))):
            yield check(chunk)

    def read_all(self) -> np.ndarray:
        """All events of the file, EVENT_DTYPE, sorted by ``t``.

        Returns
        -------
        np.ndarray
            Structured array ``[N]`` of EVENT_DTYPE; ``t`` in microseconds.
        """
        events = concat(list(self.iter_chunks(max(DEFAULT_CHUNK_EVENTS, self._all_chunk_events()))))
        if events.dtype != EVENT_DTYPE:  # pragma: no cover - defensive
            events = events.astype(EVENT_DTYPE)
        return events

    def read_triggers(self) -> np.ndarray:
        """External triggers and timing markers of the file, beside its events.

        Returns
        -------
        np.ndarray
            ``[K]`` TRIGGER_DTYPE (``t`` us, ``channel``, ``value``), sorted by ``t``;
            empty for formats (and files) that hold none.  Also sets
            ``metadata["n_triggers"]``.

        Raises
        ------
        EventFileError
            Corrupt data, or trigger timestamps that go back.
        """
        if self._triggers is None:
            self._triggers = self._decode_triggers()
        triggers = self._triggers
        check_triggers(triggers, self.path)
        self.metadata["n_triggers"] = len(triggers)
        return triggers

    @property
    def triggers(self) -> np.ndarray:
        """:meth:`read_triggers` (decoded once, then kept)."""
        return self.read_triggers()

    def _decode_triggers(self) -> np.ndarray:
        """Every trigger of the file (the default: a format without triggers)."""
        return empty_triggers()

    def _triggers_from_a_pass(self) -> np.ndarray:
        """For readers whose :meth:`_chunks` collects the triggers: run one pass, events unused."""
        for _ in self._chunks(DEFAULT_CHUNK_EVENTS):
            pass
        return empty_triggers() if self._triggers is None else self._triggers

    def packets(self, max_events: int = DEFAULT_PACKET_EVENTS, dt_us: int | None = None) -> Iterator[Packet]:
        """Stream the file as packets (memory bounded by a chunk, not the file).

        Parameters
        ----------
        max_events : int
            Upper bound on events per packet.  Exceeded only when more than
            ``max_events`` events share one timestamp (they are never split).
        dt_us : int, optional
            When given, packets are consecutive time slices of ``dt_us``
            microseconds aligned to ``floor(t_first / dt_us) * dt_us``; quiet
            slices yield empty packets so time keeps advancing.  Slices with more
            than ``max_events`` events are split further.

        Yields
        ------
        Packet
            ``events`` (EVENT_DTYPE) and ``until_us`` (see the module docstring).
        """
        return packetize(self.iter_chunks(), max_events=max_events, dt_us=dt_us)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, sensor_size={self._sensor_size})"


def _split_by_count(events: np.ndarray, max_events: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``events`` after at most ``max_events`` events, on a timestamp boundary.

    Returns ``(head, tail)``; ``head`` is empty only when ``events`` is.  When the
    first ``max_events + 1`` events all share one timestamp, ``head`` holds every
    event with that timestamp.
    """
    n = len(events)
    if n <= max_events:
        return events, events[n:]
    t = events["t"]
    cut_t = t[max_events]
    i = int(np.searchsorted(t[:max_events], cut_t, side="left"))
    if i == 0:  # a single timestamp fills the packet: keep all of its events together
        i = int(np.searchsorted(t, cut_t, side="right"))
    return events[:i], events[i:]


def packetize(
    chunks: Iterator[np.ndarray],
    *,
    max_events: int = DEFAULT_PACKET_EVENTS,
    dt_us: int | None = None,
    start_us: int | None = None,
) -> Iterator[Packet]:
    """Regroup sorted event chunks into :class:`Packet` objects: the one packetizer.

    Files (:meth:`EventReader.packets`), file replays and in-memory replays
    (:func:`dvsapp.core.sources.iter_packets`) all cut their streams here.

    Parameters
    ----------
    chunks : iterator of np.ndarray
        EVENT_DTYPE arrays, globally sorted by ``t``.
    max_events : int
        Upper bound on events per packet (see :meth:`EventReader.packets`).
    dt_us : int, optional
        Time-slice length in microseconds; ``None`` packs by count only.  Slices
        tile time on the grid of multiples of ``dt_us``; quiet slices yield empty
        packets so time keeps advancing.
    start_us : int, optional
        Events before it are dropped; with ``dt_us`` the slices start at the one
        holding ``start_us`` (default: the one holding the first event).
    """
    max_events = max(1, int(max_events))
    step = None if dt_us is None else int(dt_us)
    if step is not None and step <= 0:
        raise ValueError("dt_us must be positive")
    buf = empty_events()
    edge = 0  # end of the current time slice (dt_us mode)
    started = False

    def drain_count(buf: np.ndarray) -> Iterator[Packet | np.ndarray]:
        # emit count-limited packets while a later event exists to bound them
        while len(buf) > max_events:
            head, tail = _split_by_count(buf, max_events)
            if not len(tail):
                break
            yield Packet(head, int(tail["t"][0]))
            buf = tail
        yield buf

    for chunk in chunks:
        if start_us is not None and len(chunk) and int(chunk["t"][0]) < start_us:
            chunk = chunk[int(np.searchsorted(chunk["t"], start_us, side="left")) :]
        if not len(chunk):
            continue
        if not started:
            started = True
            if step is not None:
                first = int(chunk["t"][0]) if start_us is None else int(start_us)
                edge = (first // step) * step + step
        buf = concat([buf, chunk]) if len(buf) else chunk
        if step is not None:
            t = np.ascontiguousarray(buf["t"])  # one copy per chunk, not one per slice
            last, i = int(t[-1]), 0
            while last >= edge:  # the slice ending at edge is complete
                j = int(np.searchsorted(t, edge, side="left"))
                yield from _slice_packets(buf[i:j], edge, max_events)
                i = j
                edge += step
            buf = buf[i:]
        *ready, buf = drain_count(buf)
        yield from ready
    if len(buf):
        end = edge if step is not None else int(buf["t"][-1]) + 1
        yield from _slice_packets(buf, end, max_events)


def _slice_packets(events: np.ndarray, until_us: int, max_events: int) -> Iterator[Packet]:
    """Packets of a complete stretch of events that ends at ``until_us`` (empty -> one empty packet)."""
    if not len(events):
        yield Packet(events, until_us)
        return
    while len(events):
        head, events = _split_by_count(events, max_events)
        yield Packet(head, int(events["t"][0]) if len(events) else until_us)
