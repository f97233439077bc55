"""``dv://HOST:PORT``: a live AEDAT4 event stream from DV software or a dv-processing ``NetworkWriter``.

The real protocol is spoken by ``dv_processing.io.NetworkReader``.  When the stream
drops, the source reconnects with exponential backoff and says so through
``on_status``; timestamps stay non-decreasing across reconnects (a server that
restarts its clock is shifted to continue where the last session ended).

Query parameters: ``retries`` (reconnect attempts per drop, default unlimited;
when they run out the stream ends), ``backoff_s`` (first wait, default 0.1 s,
doubled up to ``backoff_max_s``, default 2 s).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable

import numpy as np

from core.errors import SourceError
from core.events import Packet, SensorSize, concat, make_events
from core.sources.base import Source, SourceURI

__all__ = ["DvNetworkSource", "dv_store_to_events", "open_dv_source"]

_DISCONNECTED = object()


def dv_store_to_events(store) -> np.ndarray:
    """Convert a ``dv_processing.EventStore`` to the event dtype (copies)."""
    arr = store.numpy()
    return make_events(arr["x"], arr["y"], arr["timestamp"], arr["polarity"])


class DvNetworkSource(Source):
    """Live events from a TCP AEDAT4 stream (DV software's network output or ``NetworkWriter``).

    Parameters
    ----------
    host, port : str, int
        The server to connect to.
    retries : float
        Reconnect attempts after each drop (``inf`` = keep trying); when they are
        used up the stream ends cleanly.
    backoff_s, backoff_max_s : float
        First wait between attempts and its cap, seconds (doubled each attempt).
    poll_s : float
        Sleep between polls of the reader when no data is waiting, seconds.

    Raises
    ------
    SourceError
        When the first connection fails or the stream carries no events.
    """

    live = True

    def __init__(
        self,
        host: str,
        port: int,
        *,
        retries: float = math.inf,
        backoff_s: float = 0.1,
        backoff_max_s: float = 2.0,
        poll_s: float = 0.002,
        uri: str | None = None,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.retries = float(retries)
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        self.poll_s = float(poll_s)
        self.reconnects = 0
        self.events_received = 0
        self.out_of_order = 0
        text = uri or f"dv://{host}:{self.port}"
        self._reader = self._connect(text)
        size = self._reader.getEventResolution()
        if size is None:
            raise SourceError("the stream carries no events", path=text)
        super().__init__(SensorSize(int(size[0]), int(size[1])), uri=text, description=text)
        self.camera = str(self._reader.getCameraName())
        self.metadata = {"format": "dv-network", "camera": self.camera}

    def _connect(self, text: str | None = None):
        import dv_processing as dv

        try:
            reader = dv.io.NetworkReader(self.host, self.port)
        except Exception as exc:  # dv raises RuntimeError with a long boost message
            reason = str(exc).split(" [")[0]
            raise SourceError(f"cannot connect: {reason}", path=text or self.uri) from None
        if not reader.isEventStreamAvailable():
            raise SourceError("the stream carries no events", path=text or self.uri)
        return reader

    def _read_some(self, max_wait_s: float = 0.02, max_events: int = 200_000):
        """Collect what the reader has (worker thread); ``_DISCONNECTED`` when the stream is gone."""
        reader = self._reader
        parts = []
        n = 0
        deadline = time.monotonic() + max_wait_s
        while True:
            try:
                store = reader.getNextEventBatch()
            except Exception:
                return parts if parts else _DISCONNECTED
            if store is not None and len(store):
                ev = dv_store_to_events(store)
                parts.append(ev)
                n += len(ev)
                if n >= max_events:
                    return parts
                continue
            if parts:
                return parts
            if not reader.isRunning():
                return _DISCONNECTED
            if time.monotonic() >= deadline:
                return parts
            time.sleep(self.poll_s)

    async def _reconnect(self) -> bool:
        """Try to reconnect with backoff; ``False`` when retries are used up or the source closed."""
        self._reader = None
        wait_s = self.backoff_s
        attempt = 0
        self.status("stream lost, reconnecting")
        while not self._closed and attempt < self.retries:
            attempt += 1
            await asyncio.sleep(wait_s)
            try:
                reader = await asyncio.to_thread(self._connect)
            except SourceError:
                wait_s = min(wait_s * 2, self.backoff_max_s)
                continue
            size = reader.getEventResolution()
            if size is not None and (int(size[0]), int(size[1])) != self.sensor_size[:2]:
                raise SourceError(
                    f"reconnected stream is {size[0]}x{size[1]}, was {self.sensor_size}", path=self.uri
                )
            self._reader = reader
            self.reconnects += 1
            self.status(f"reconnected after {attempt} attempt(s)")
            return True
        if not self._closed:
            self.status(f"gave up after {attempt} reconnect attempt(s)")
        return False

    async def _packets(self) -> AsyncIterator[Packet]:
        until_us: int | None = None  # stream time delivered so far
        offset_us = 0  # shift of the current session
        new_session = True
        held = None  # events sharing the newest timestamp, held until time moves past it
        while not self._closed:
            if self._reader is None:
                break
            got = await asyncio.to_thread(self._read_some)
            if got is _DISCONNECTED:
                if held is not None and len(held):  # the session is over: its last timestamp is complete
                    until_us = int(held["t"][-1]) + 1
                    yield Packet(held, until_us)
                    held = None
                if not await self._reconnect():
                    break
                new_session = True
                continue
            if self._paused:  # a live sensor is not held back: what arrives while paused is dropped
                continue
            if not got:
                continue
            events = concat(got)
            if new_session:
                first = int(events["t"][0])
                if until_us is not None and first + offset_us < until_us:
                    offset_us = until_us - first
                new_session = False
            if offset_us:
                events = events.copy()
                events["t"] += offset_us
            t = events["t"]
            if len(t) > 1 and (np.diff(t) < 0).any():  # a misbehaving sender
                events = events[np.argsort(t, kind="stable")]
                t = events["t"]
            if until_us is not None and t[0] < until_us:
                keep = t >= until_us
                self.out_of_order += int(len(t) - keep.sum())
                events = events[keep]
                t = events["t"]
            self.events_received += len(events)
            if held is not None:
                events = concat([held, events])
                t = events["t"]
            if not len(events):
                continue
            cut = int(np.searchsorted(t, t[-1], side="left"))
            held = events[cut:]
            if cut == 0:
                continue
            until_us = int(t[-1])
            yield Packet(events[:cut], until_us)
        if held is not None and len(held):
            yield Packet(held, int(held["t"][-1]) + 1)

    def close(self) -> None:
        self._reader = None
        super().close()


def open_dv_source(uri: SourceURI) -> DvNetworkSource:
    """Factory for the ``dv`` scheme (``dv://HOST:PORT?retries=N&backoff_s=S``)."""
    host, _, port = uri.target.rpartition(":")
    retries = uri.params.get("retries", "inf")
    return DvNetworkSource(
        host,
        int(port),
        retries=math.inf if retries in ("inf", "", "-1") else uri.number("retries", math.inf),
        backoff_s=uri.number("backoff_s", 0.1),
        backoff_max_s=uri.number("backoff_max_s", 2.0),
        uri=uri.text,
    )


# ------------------------------------------------------------------- serving
_LIVE_WRITERS: list = []
"""Writers of :func:`serve_events`, never destroyed (see its notes)."""

def serve_events(
    events: np.ndarray,
    sensor_size: SensorSize,
    port: int,
    *,
    host: str = "127.0.0.1",
    speed: float = 1.0,
    batch_us: int = 10_000,
    loop: bool = False,
    wait_client_s: float = 30.0,
    camera: str = "dvsapp",
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Serve ``events`` as a dv-processing network event stream (blocking; tests, benchmarks, demos).

    Waits for a first client, then writes the events in batches of ``batch_us``
    paced at ``speed`` (``0`` = as fast as possible), looping if asked.

    Returns
    -------
    int
        Events written.

    Notes
    -----
    Destroying a ``NetworkWriter`` while a client is connected blocks inside
    dv-processing, so the writer is kept alive (in ``_LIVE_WRITERS``) after this
    returns, and a serving process should end with ``os._exit``.
    """
    import dv_processing as dv

    from core.sources.base import iter_packets

    stream = dv.io.Stream.EventStream(0, "events", camera, (int(sensor_size[0]), int(sensor_size[1])))
    writer = dv.io.NetworkWriter(host, int(port), stream)
    _LIVE_WRITERS.append(writer)
    if on_ready is not None:
        on_ready()
    deadline = time.monotonic() + wait_client_s
    while writer.getClientCount() == 0:
        if time.monotonic() > deadline:
            raise SourceError("no client connected", path=f"dv://{host}:{port}")
        time.sleep(0.01)
    time.sleep(0.05)  # let the client finish its handshake
    written = 0
    offset = 0
    span = int(events["t"][-1] - events["t"][0]) + batch_us if len(events) else 0
    while True:
        wall0 = time.monotonic()
        t_ref = None
        for packet in iter_packets(events, packet_us=batch_us):
            if not len(packet.events):
                continue
            t = packet.events["t"]
            if t_ref is None:
                t_ref = int(t[0])
            if speed > 0:
                delay = wall0 + (packet.until_us - t_ref) / speed / 1e6 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            store = dv.EventStore()
            push = store.push_back
            for ti, xi, yi, pi in zip(
                (t + offset).tolist(), packet.events["x"].tolist(), packet.events["y"].tolist(), packet.events["p"].tolist()
            ):
                push(ti, xi, yi, pi)
            writer.writeEvents(store)
            written += len(packet.events)
        if not loop:
            break
        offset += span
    while writer.getQueuedPacketCount() > 0:
        time.sleep(0.01)
    return written


def _serve_main(argv: list[str] | None = None) -> None:
    """``python -m core.sources.dv FILE PORT [--speed S] [--loop] [--linger S]``."""
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(prog="python -m core.sources.dv", description=serve_events.__doc__)
    parser.add_argument("file")
    parser.add_argument("port", type=int)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--loop", action="store_true")
    parser.add_argument("--linger", type=float, default=0.5, help="seconds to keep the connection after the end")
    parser.add_argument("--go-on-stdin", action="store_true", help="print 'ready', bind only after a line on stdin")
    args = parser.parse_args(argv)
    from core.io import open_events

    reader = open_events(args.file)
    events = reader.read_all()
    if args.go_on_stdin:
        print("ready", flush=True)
        sys.stdin.readline()
    n = serve_events(
        events,
        reader.sensor_size,
        args.port,
        speed=args.speed,
        loop=args.loop,
        camera=str(reader.metadata.get("camera") or "dvsapp"),
        on_ready=lambda: print("serving", flush=True),
    )
    print(f"served {n}", flush=True)
    time.sleep(args.linger)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    _serve_main()
