"""The source contract, the URI parser and the in-memory replay machinery.

Stream contract
---------------
A :class:`Source` is an async iterator of :class:`~dvsapp.core.events.Packet`.  Every
packet holds events sorted by ``t`` (microseconds) with ``t < until_us``; the
``until_us`` of successive packets never decreases, and an empty packet is fine
(it only moves time forward).  ``sensor_size`` is known as soon as the source is
open.  ``live`` tells the pipeline which backpressure policy applies: a live
source is never blocked (late windows are dropped), a replayed one is (nothing
is dropped).

Sources are opened by :func:`dvsapp.core.sources.open_source` from a URI::

    file:PATH?speed=1&loop=0   (or a bare PATH)
    dv://HOST:PORT
    inivation[:SERIAL]
    webcam[:INDEX]
    synthetic[:SEED]

Controls (``pause``, ``resume``, ``set_speed``, ``seek``) are called from the
thread that runs the source's event loop (the pipeline forwards calls made from
other threads).  ``seek`` and ``set_speed`` exist only where ``seekable`` /
``pace-able`` make sense; elsewhere they raise :class:`~dvsapp.core.errors.SourceError`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

import numpy as np

from dvsapp.core.errors import DvsAppError, EventFileError, SourceError
from dvsapp.core.events import Packet, SensorSize, empty_events

StatusCallback = Callable[[str], None]

__all__ = [
    "ArraySource",
    "ReplaySource",
    "Source",
    "SourceURI",
    "iter_packets",
    "parse_uri",
]


# --------------------------------------------------------------------------- URI
@dataclass(frozen=True)
class SourceURI:
    """A parsed source URI.

    Attributes
    ----------
    scheme : str
        ``file``, ``dv``, ``inivation``, ``webcam`` or ``synthetic``.
    target : str
        What follows the scheme: a path, ``HOST:PORT``, a serial, an index, a seed
        (empty when absent).
    params : dict of str to str
        The query parameters (``?speed=1&loop=0``).
    text : str
        The URI as given.
    """

    scheme: str
    target: str
    params: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def number(self, name: str, default: float) -> float:
        """Query parameter ``name`` as a float (``SourceError`` when it is not a number)."""
        raw = self.params.get(name)
        if raw is None or raw == "":
            return float(default)
        try:
            value = float(raw)
        except ValueError:
            raise SourceError(f"parameter {name}={raw!r} is not a number", path=self.text) from None
        if math.isnan(value):
            raise SourceError(f"parameter {name} is NaN", path=self.text)
        return value

    def integer(self, name: str, default: int) -> int:
        value = self.number(name, default)
        if value != int(value):
            raise SourceError(f"parameter {name}={value} is not an integer", path=self.text)
        return int(value)


_NAMED_SCHEMES = ("inivation", "webcam", "synthetic")


def parse_uri(text: str) -> SourceURI:
    """Parse a source URI; a string without a known scheme is a file path.

    ``file:`` URIs accept ``file:PATH``, ``file://PATH`` and ``file:///abs/PATH``;
    ``?`` starts the query only for URIs, so a bare path may contain ``?``.

    Raises
    ------
    SourceError
        Empty text, ``dv://`` without ``HOST:PORT``, or ``NAME://...`` with a scheme
        that is none of the known ones (listed in the message).
    """
    raw = str(text).strip()
    if not raw:
        raise SourceError("empty source URI")
    lower = raw.lower()

    def split_query(rest: str) -> tuple[str, dict[str, str]]:
        if "?" not in rest:
            return rest, {}
        head, query = rest.split("?", 1)
        return head, {k.lower(): v for k, v in parse_qsl(query, keep_blank_values=True)}

    if lower.startswith("file:"):
        rest = raw[5:]
        if rest.startswith("//"):
            rest = rest[2:]
        path, params = split_query(rest)
        if not path:
            raise SourceError("file: URI has no path", path=raw)
        return SourceURI("file", unquote(path), params, raw)
    if lower.startswith("dv://") or lower.startswith("tcp://"):
        rest, params = split_query(raw.split("://", 1)[1])
        host, sep, port = rest.rstrip("/").rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SourceError("expected dv://HOST:PORT", path=raw)
        return SourceURI("dv", f"{host}:{int(port)}", params, raw)
    for scheme in _NAMED_SCHEMES:
        if lower == scheme or lower.startswith(scheme + ":") or lower.startswith(scheme + "?"):
            rest, params = split_query(raw[len(scheme) :])
            return SourceURI(scheme, rest.lstrip(":"), params, raw)
    scheme, sep, _ = raw.partition("://")
    if sep and scheme and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
        known = ", ".join(("file", "dv", *_NAMED_SCHEMES))
        raise SourceError(f"unknown source scheme {scheme!r}; known: {known} (or a file path)", path=raw)
    return SourceURI("file", raw, {}, raw)


# ------------------------------------------------------------------------ Source
class Source:
    """Base class of every event source: an async iterator of :class:`Packet`.

    Subclasses implement :meth:`_packets` and set ``sensor_size``, ``live`` and
    ``description``.  ``on_status`` (settable) receives one-line status messages
    (reconnects, loops, ...); the pipeline forwards them to its metrics and the CLI.
    """

    live: bool = False
    seekable: bool = False
    #: URI the source was opened from
    uri: str = ""

    def __init__(self, sensor_size: SensorSize, *, uri: str = "", description: str = "") -> None:
        self.sensor_size = SensorSize(*sensor_size)
        self.uri = uri
        self.description = description or uri or type(self).__name__
        self.on_status: StatusCallback | None = None
        self.metadata: dict = {}
        self._closed = False
        self._paused = False
        self._resume_event: asyncio.Event | None = None

    # ----------------------------------------------------------- iteration
    def __aiter__(self) -> AsyncIterator[Packet]:
        if self._closed:
            raise SourceError("source is closed", path=self.uri or None)
        return self._packets()

    async def _packets(self) -> AsyncIterator[Packet]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield  # makes this an async generator

    # ------------------------------------------------------------- controls
    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Stop producing packets until :meth:`resume` (a replay holds its place)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if self._resume_event is not None:
            self._resume_event.set()

    async def _wait_while_paused(self) -> float:
        """Sleep while paused; return the seconds spent paused."""
        if not self._paused:
            return 0.0
        start = time.monotonic()
        if self._resume_event is None:
            self._resume_event = asyncio.Event()
        while self._paused:
            self._resume_event.clear()
            try:
                await asyncio.wait_for(self._resume_event.wait(), timeout=0.1)
            except TimeoutError:
                pass
        return time.monotonic() - start

    def set_speed(self, speed: float) -> None:
        """Change the replay speed (only replayed sources)."""
        raise SourceError("this source plays in real time; its speed cannot change", path=self.uri or None)

    def seek(self, t_us: int) -> None:
        """Jump to recording time ``t_us`` (only replayed sources)."""
        raise SourceError("this source cannot seek", path=self.uri or None)

    def status(self, message: str) -> None:
        """Report a one-line status message through ``on_status``."""
        if self.on_status is not None:
            self.on_status(f"{self.description}: {message}")

    def close(self) -> None:
        """Release the device / file (idempotent)."""
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description} {self.sensor_size} live={self.live}>"


# ---------------------------------------------------------------- packetizing
def iter_packets(
    events: np.ndarray,
    *,
    packet_us: int = 10_000,
    max_events: int | None = None,
    start_us: int | None = None,
) -> Iterator[Packet]:
    """Cut sorted events into packets of ``packet_us`` of time (and at most ``max_events``).

    Packets tile time from ``floor(start_us / packet_us) * packet_us`` (``start_us``
    defaults to the first event's time) to past the last event; quiet spans yield
    empty packets so time keeps moving.  This is :func:`dvsapp.core.io.base.packetize`
    (the one packetizer) on an in-memory array.
    """
    from dvsapp.core.io.base import packetize

    if len(events) == 0:
        return iter(())
    limit = len(events) if max_events is None else int(max_events)
    return packetize(iter((events,)), max_events=limit, dt_us=int(packet_us), start_us=start_us)


PacketIterFactory = Callable[[int | None], Iterator[Packet]]
"""``factory(start_us) -> packets`` of a recording from ``start_us`` (``None`` = its beginning)."""


class ReplaySource(Source):
    """Replays a recording: real-time pacing x ``speed`` (``0`` = as fast as possible), seek, loop.

    Parameters
    ----------
    factory : callable
        ``factory(start_us)`` returns a fresh iterator of the recording's packets
        starting at recording time ``start_us`` (``None``: from the beginning).
        It is called in a worker thread and iterated there (decoding blocks).
    sensor_size : SensorSize
    speed : float
        Playback speed; ``1`` is real time, ``0`` as fast as possible.
    loop : bool
        Start again at the end; timestamps keep increasing across loops (each pass
        is shifted by the recording's span).
    batch_events : int
        A worker-thread call gathers packets until it holds this many events (or
        ``batch_packets`` packets), which keeps thread hand-offs cheap.
    """

    live = False
    seekable = True
    PACED_BATCH_US = 20_000
    """When paced, one worker-thread fetch covers at most this much stream time."""

    def __init__(
        self,
        factory: PacketIterFactory,
        sensor_size: SensorSize,
        *,
        speed: float = 1.0,
        loop: bool = False,
        uri: str = "",
        description: str = "",
        batch_events: int = 50_000,
        batch_packets: int = 16,
    ) -> None:
        super().__init__(sensor_size, uri=uri, description=description)
        self._factory = factory
        self._speed = self._check_speed(speed)
        self.loop = bool(loop)
        self._seek_to: int | None = None
        self._batch_events = int(batch_events)
        self._batch_packets = int(batch_packets)
        self._anchor: tuple[int, float] | None = None  # (stream t_us, monotonic s)
        self.position_us: int | None = None  # recording time of the last delivered packet's end
        self.passes = 0
        self._pending_error: DvsAppError | None = None

    def _check_speed(self, speed: float) -> float:
        speed = float(speed)
        if not math.isfinite(speed) or speed < 0:
            raise SourceError(f"speed {speed} must be >= 0 (0 = as fast as possible)", path=self.uri or None)
        return speed

    @property
    def speed(self) -> float:
        return self._speed

    def set_speed(self, speed: float) -> None:
        self._speed = self._check_speed(speed)
        self._anchor = None  # re-anchor pacing at the next packet

    def seek(self, t_us: int) -> None:
        """Jump to recording time ``t_us`` (the recording's own timestamps); takes effect at the next packet."""
        self._seek_to = int(t_us)
        self._anchor = None

    def resume(self) -> None:
        self._anchor = None
        super().resume()

    def _next_batch(self, it: Iterator[Packet]) -> list[Packet] | None:
        """Pull packets from ``it`` (worker thread); ``None`` at the end.

        When the recording fails part-way (corrupt or truncated file), the packets
        gathered before the failure are returned first and the error is raised by
        the next call, so nothing decoded before the damage is lost.
        """
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise error
        out: list[Packet] = []
        n_events = 0
        try:
            for packet in it:
                out.append(packet)
                n_events += len(packet.events)
                if n_events >= self._batch_events or len(out) >= self._batch_packets:
                    break
                if self._speed > 0 and packet.until_us - out[0].until_us >= self.PACED_BATCH_US:
                    break  # paced: fetch ahead only a little stream time (seek and pause stay prompt)
        except DvsAppError as exc:
            if not out:
                raise
            self._pending_error = exc
        except OSError as exc:  # the file vanished or became unreadable while replaying
            error = EventFileError(
                f"read failed while replaying: {exc.strerror or exc}", path=self.uri or None
            )
            if not out:
                raise error from None
            self._pending_error = error
        return out or None

    async def _pace(self, until_us: int) -> None:
        """Sleep until the wall clock reaches stream time ``until_us`` (x speed)."""
        while True:
            if self._paused:
                await self._wait_while_paused()
            speed = self._speed
            if speed <= 0:
                return
            now = time.monotonic()
            if self._anchor is None:
                self._anchor = (until_us, now)
                return
            t_ref, wall_ref = self._anchor
            due = wall_ref + (until_us - t_ref) / speed / 1e6
            if due <= now + 0.001:  # within a millisecond: not worth a wake-up of the loop
                if now - due > 0.5:  # fell far behind (slow consumer): do not try to catch up
                    self._anchor = (until_us, now)
                return
            await asyncio.sleep(min(due - now, 0.05))
            if self._anchor is None or self._paused:
                continue  # speed changed or paused while sleeping: re-anchor
            if time.monotonic() >= due:
                return

    async def _packets(self) -> AsyncIterator[Packet]:
        offset_us = 0  # added to recording times (grows with each loop pass)
        loop_base_us: int | None = None  # where the next pass must start (stream time)
        start_us: int | None = None
        while not self._closed:
            it = await asyncio.to_thread(self._factory, start_us)
            delivered = False
            try:
                while not self._closed:
                    batch = await asyncio.to_thread(self._next_batch, it)
                    if batch is None:
                        break
                    for packet in batch:
                        if loop_base_us is not None:
                            first_raw = int(packet.events["t"][0]) if len(packet.events) else packet.until_us
                            offset_us = max(offset_us, loop_base_us - first_raw)
                            loop_base_us = None
                        await self._pace(packet.until_us + offset_us)
                        if self._seek_to is not None or self._closed:
                            break
                        events = packet.events
                        if offset_us:
                            events = events.copy()
                            events["t"] += offset_us
                        self.position_us = packet.until_us
                        delivered = True
                        yield Packet(events, packet.until_us + offset_us)
                    if self._seek_to is not None:
                        break
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    await asyncio.to_thread(close)
            if self._seek_to is not None:
                start_us, self._seek_to = self._seek_to, None
                self.status(f"seek to {start_us} us")
                continue
            self.passes += 1
            if not self.loop or not delivered or self.position_us is None:
                return
            loop_base_us = self.position_us + offset_us
            start_us = None
            self.status(f"loop pass {self.passes + 1}")


class ArraySource(ReplaySource):
    """Replays an in-memory event array (tests, benchmarks, the GUI's loaded file).

    ``live=True`` makes it behave as a live sensor for the backpressure policy
    (useful to simulate overload).
    """

    def __init__(
        self,
        events: np.ndarray,
        sensor_size: SensorSize,
        *,
        speed: float = 0.0,
        loop: bool = False,
        packet_us: int = 10_000,
        max_events: int | None = None,
        live: bool = False,
        description: str = "memory",
    ) -> None:
        self._events = events if len(events) else empty_events()

        def factory(start_us: int | None) -> Iterator[Packet]:
            return iter_packets(self._events, packet_us=packet_us, max_events=max_events, start_us=start_us)

        super().__init__(factory, sensor_size, speed=speed, loop=loop, uri="memory:", description=description)
        self.live = bool(live)
        self.metadata = {"format": "memory", "n_events": len(events)}
