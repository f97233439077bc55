"""``dv://HOST:PORT``: a live AEDAT4 event stream from DV software or a dv-processing ``NetworkWriter``.

The real protocol is spoken by ``dv_processing.io.NetworkReader``, run in a child
process (:mod:`dvsapp.core.sources.dv_reader`, which sends what it reads back over a
pipe in the frames of :mod:`dvsapp.core.sources.dv_wire`): garbage on the wire makes that reader abort
its process, and it holds the GIL while connecting, so in-process it could take the
whole app down or freeze it.  When the stream drops (server killed or restarted,
connection cut or closed mid-packet, garbage, or no data for ``stall_s``), the
source says why through ``on_status`` and reconnects with exponential backoff.
Time jumps, within a connection or across a reconnect (the camera restarted, DV
looping a playback, a restarted server), are cut by
:class:`~dvsapp.core.sources.timejump.TimeJumpGuard`: every event is delivered,
a timeline that went back is shifted to continue where the last one ended (so
timestamps never decrease), and the first packet after a jump is a
:class:`~dvsapp.core.sources.timejump.RestartPacket` (the pipeline restarts its
binner and model there).  The source only connects out: nothing of the app
listens on a port.

Query parameters: ``retries`` (reconnect attempts per drop, default unlimited;
when they run out the stream ends), ``backoff_s`` (first wait, default 0.1 s,
doubled up to ``backoff_max_s``, default 2 s), ``stall_s`` (default 5 s; 0 = never
treat silence as a stall), ``connect_timeout_s`` (default 5 s), ``max_gap_s``
(a step forward in time larger than this is a jump; default 10 s, 0 = never).
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from collections.abc import AsyncIterator

import numpy as np

from dvsapp.core.errors import SourceError
from dvsapp.core.events import EVENT_DTYPE, Packet, SensorSize, concat
from dvsapp.core.sources.base import Source, SourceURI
from dvsapp.core.sources.dv_wire import EVENTS, HEADER, STOPPED, dv_store_to_events, read_frame
from dvsapp.core.sources.timejump import RestartPacket, TimeJumpGuard

__all__ = ["DvNetworkSource", "dv_store_to_events", "open_dv_source"]

_DISCONNECTED = object()


class _ReaderProcess:
    """One connection: a :mod:`dvsapp.core.sources.dv_reader` child process and the thread that reads its frames.

    Raises
    ------
    SourceError
        The child could not connect (its one-line reason), or gave no header
        within ``connect_timeout_s``.
    """

    def __init__(self, host: str, port: int, *, connect_timeout_s: float, text: str, max_batches: int = 256):
        import json
        import os
        import subprocess
        import sys

        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dvsapp.core.sources.dv_reader", host, str(int(port)), str(write_fd)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(write_fd,),
            )
        except OSError:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child holds its own copy; the pipe ends when the child does
        self.frames = os.fdopen(read_fd, "rb")
        self.stop_reason: str | None = None
        self.batches: queue.Queue = queue.Queue(max_batches)
        self.ended = False
        self._killed = False
        self._thread = threading.Thread(target=self._pump, name="dvsapp-dv-reader", daemon=True)
        self._thread.start()
        try:
            kind, value = self.batches.get(timeout=connect_timeout_s)
        except queue.Empty:
            self.kill()
            raise SourceError(f"no answer within {connect_timeout_s:g} s", path=text) from None
        if kind != "head":
            reason = self.reason()
            self.kill()
            raise SourceError(f"cannot connect: {reason}", path=text)
        try:
            head = json.loads(value)
            self.sensor_size = SensorSize(int(head["width"]), int(head["height"]))
            self.camera = str(head.get("camera", ""))
        except (ValueError, KeyError, TypeError):
            self.kill()
            raise SourceError("the reader sent a bad header", path=text) from None

    def _pump(self) -> None:
        """Read the child's frames into ``batches`` (thread); ``("end", None)`` last."""
        f = self.frames
        try:
            frame = read_frame(f)
            if frame is None or frame[0] != HEADER:
                if frame is not None and frame[0] == STOPPED:
                    self.stop_reason = frame[1].decode("utf-8", "replace").strip()
                return
            if not self._put(("head", frame[1])):
                return
            item = EVENT_DTYPE.itemsize
            while True:
                frame = read_frame(f)
                if frame is None:
                    return
                tag, payload = frame
                if tag == STOPPED:
                    self.stop_reason = payload.decode("utf-8", "replace").strip()
                    return
                if tag != EVENTS or len(payload) % item:
                    return
                if not self._put(("events", np.frombuffer(payload, EVENT_DTYPE))):
                    return
        except (OSError, ValueError):
            return
        finally:
            self._put(("end", None))

    def _put(self, item) -> bool:
        """Queue ``item`` (waiting while the queue is full); ``False`` once the reader is killed."""
        while not self._killed:
            try:
                self.batches.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read_some(self, max_wait_s: float, max_events: int):
        """Event arrays received so far (waits up to ``max_wait_s`` for the first); ``_DISCONNECTED`` at the end."""
        if self.ended:
            return _DISCONNECTED
        parts: list[np.ndarray] = []
        n = 0
        try:
            kind, value = self.batches.get(timeout=max_wait_s)
            while True:
                if kind == "end":
                    self.ended = True
                    return parts if parts else _DISCONNECTED
                if kind == "events":
                    parts.append(value)
                    n += len(value)
                    if n >= max_events:
                        return parts
                kind, value = self.batches.get_nowait()
        except queue.Empty:
            return parts

    def reason(self) -> str:
        """Why the child ended: the reason it sent, else the last line of its stderr or its exit status."""
        try:
            code = self.proc.wait(timeout=2)
        except subprocess_timeout():
            return "the reader did not exit"
        try:
            text = self.proc.stderr.read().decode("utf-8", "replace") if self.proc.stderr else ""
        except (OSError, ValueError):
            text = ""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if code not in (0, 1, 2):
            what = lines[-1] if lines else f"exit status {code}"
            return f"the reader crashed on bad data ({what})"
        if self.stop_reason:
            return self.stop_reason
        return lines[-1] if lines else "the server closed the stream"

    def kill(self) -> None:
        self._killed = True
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess_timeout():  # pragma: no cover - a killed child always exits
            pass
        for f in (self.frames, self.proc.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self._thread.join(timeout=5)


def subprocess_timeout() -> type[Exception]:
    import subprocess

    return subprocess.TimeoutExpired


class DvNetworkSource(Source):
    """Live events from a TCP AEDAT4 stream (DV software's network output or ``NetworkWriter``).

    The stream is read by ``dv_processing.io.NetworkReader`` in a child process
    (:mod:`dvsapp.core.sources.dv_reader`), so a stream that crashes or hangs the reader
    only costs a reconnect.  The source only connects out.

    Parameters
    ----------
    host, port : str, int
        The server to connect to.
    retries : float
        Reconnect attempts after each drop (``inf`` = keep trying); when they are
        used up the stream ends cleanly.
    backoff_s, backoff_max_s : float
        First wait between attempts and its cap, seconds (doubled each attempt).
    stall_s : float
        No event for this long: report the stall and reconnect (``0`` = never).
        A quiet scene also sends nothing, so keep it well above the quietest spell.
    connect_timeout_s : float
        Longest wait for a server to answer a connection, seconds.
    max_gap_s : float or None
        A step forward in stream time larger than this is a time jump (``None``: never).

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
        stall_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        poll_s: float = 0.02,
        max_gap_s: float | None = 10.0,
        uri: str | None = None,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.retries = float(retries)
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        self.stall_s = float(stall_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.poll_s = float(poll_s)
        self.reconnects = 0
        self.stalls = 0
        self.events_received = 0
        self.out_of_order = 0  # events within the guard's jitter that arrived after their time was delivered
        self.jump_guard = TimeJumpGuard(max_gap_us=None if not max_gap_s else round(max_gap_s * 1e6))
        self.last_drop_reason: str | None = None
        text = uri or f"dv://{host}:{self.port}"
        self._reader: _ReaderProcess | None = self._connect(text)
        super().__init__(self._reader.sensor_size, uri=text, description=text)
        self.camera = self._reader.camera
        self.metadata = {"format": "dv-network", "camera": self.camera}

    def _connect(self, text: str | None = None) -> _ReaderProcess:
        return _ReaderProcess(
            self.host, self.port, connect_timeout_s=self.connect_timeout_s, text=text or self.uri
        )

    def _read_some(self, max_events: int = 200_000):
        """What the reader has (worker thread); ``_DISCONNECTED`` when the stream is gone."""
        reader = self._reader
        if reader is None:
            return _DISCONNECTED
        return reader.read_some(self.poll_s, max_events)

    def _drop_reader(self) -> str:
        """Stop the current reader; return why its stream ended."""
        reader, self._reader = self._reader, None
        if reader is None:
            return "closed"
        reason = reader.reason() if reader.ended else "stalled"
        reader.kill()
        return reason

    async def _reconnect(self, why: str) -> bool:
        """Try to reconnect with backoff; ``False`` when retries are used up or the source closed."""
        self.last_drop_reason = why
        wait_s = self.backoff_s
        attempt = 0
        self.status(f"stream lost ({why}), reconnecting")
        while not self._closed and attempt < self.retries:
            attempt += 1
            await asyncio.sleep(wait_s)
            if self._closed:
                break
            try:
                reader = await asyncio.to_thread(self._connect)
            except SourceError as exc:
                wait_s = min(wait_s * 2, self.backoff_max_s)
                if attempt in (1, 3) or attempt % 10 == 0:
                    self.status(f"reconnect attempt {attempt} failed: {exc.reason}; next in {wait_s:g} s")
                continue
            if reader.sensor_size[:2] != self.sensor_size[:2]:
                reader.kill()
                raise SourceError(
                    f"reconnected stream is {reader.sensor_size}, was {self.sensor_size}", path=self.uri
                )
            if self._closed:
                reader.kill()
                break
            self._reader = reader
            self.reconnects += 1
            self.status(f"reconnected after {attempt} attempt(s)")
            return True
        if not self._closed:
            self.status(f"gave up after {attempt} reconnect attempt(s)")
        return False

    async def _packets(self) -> AsyncIterator[Packet]:
        until_us: int | None = None  # stream time delivered so far
        held = None  # events sharing the newest timestamp, held until time moves past it
        restart = None  # the time jump the next packet starts with
        last_data = time.monotonic()

        def packet(events, until: int) -> Packet:
            nonlocal restart
            jump, restart = restart, None
            return Packet(events, until) if jump is None else RestartPacket(events, until, jump=jump)

        while not self._closed:
            if self._reader is None:
                break
            got = await asyncio.to_thread(self._read_some)
            now = time.monotonic()
            if got is not _DISCONNECTED and not got and self.stall_s > 0 and now - last_data > self.stall_s:
                self.stalls += 1
                self.status(f"no data for {now - last_data:.1f} s")
                got = _DISCONNECTED
            if got is _DISCONNECTED:
                if held is not None and len(held):  # the session is over: its last timestamp is complete
                    until_us = int(held["t"][-1]) + 1
                    yield packet(held, until_us)
                    held = None
                why = await asyncio.to_thread(self._drop_reader)
                if self._closed or not await self._reconnect(why):
                    break
                last_data = time.monotonic()
                continue
            if got:
                last_data = now
            if self._paused:  # a live sensor is not held back: what arrives while paused is dropped
                continue
            if not got:
                continue
            for events, jump in self.jump_guard.split(concat(got)):
                if jump is not None:  # a new timeline: the old one's last timestamp is complete
                    if held is not None and len(held):
                        until_us = int(held["t"][-1]) + 1
                        yield packet(held, until_us)
                    held = None
                    restart = jump
                t = events["t"]
                if len(t) > 1 and (np.diff(t) < 0).any():  # reordered within the guard's jitter
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
                yield packet(events[:cut], until_us)
        if held is not None and len(held):
            yield packet(held, int(held["t"][-1]) + 1)

    def close(self) -> None:
        super().close()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.kill()


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
        stall_s=uri.number("stall_s", 5.0),
        connect_timeout_s=uri.number("connect_timeout_s", 5.0),
        max_gap_s=uri.number("max_gap_s", 10.0) or None,
        uri=uri.text,
    )
