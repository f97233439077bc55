"""``file:PATH?speed=1&loop=0``: any readable recording replayed with pacing, seek and loop."""

from __future__ import annotations

import os
from collections.abc import Iterator

from dvsapp.core.events import Packet
from dvsapp.core.sources.base import ReplaySource, SourceURI

__all__ = ["FileSource", "open_file_source"]


class FileSource(ReplaySource):
    """Replays a recording read by :func:`dvsapp.core.io.open_events`.

    Parameters
    ----------
    path : path-like
        Any format :mod:`dvsapp.core.io` reads (AEDAT4, HDF5, NPZ, CSV, RAW, ...).
    speed : float
        ``1`` = real time, ``0`` = as fast as possible.
    loop : bool
        Replay forever (timestamps keep increasing across passes).
    packet_us : int
        Time span of the packets asked of the reader (pacing granularity), microseconds.
    max_events : int
        Most events per packet (bounds memory whatever the event rate).
    chunk_events : int
        Events decoded per read of the file: small, so that a file damaged part-way
        delivers the events before the damage (then raises).

    Raises
    ------
    EventFileError, UnsupportedFormat
        From :func:`dvsapp.core.io.open_events` when the file cannot be opened; a file
        that turns out corrupt mid-way raises while replaying, after the packets
        before the damage were delivered.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        speed: float = 1.0,
        loop: bool = False,
        packet_us: int = 10_000,
        max_events: int = 65_536,
        chunk_events: int = 4_096,
        uri: str | None = None,
    ) -> None:
        from dvsapp.core.io import open_events  # late: keeps `dvsapp.core.sources` importable on its own
        from dvsapp.core.io.base import packetize

        self.path = os.fspath(path)
        self.reader = open_events(self.path)

        def factory(start_us: int | None) -> Iterator[Packet]:
            # small decode chunks: a file damaged part-way still delivers what precedes the damage
            chunks = self.reader.iter_chunks(chunk_events=chunk_events)
            return packetize(chunks, max_events=max_events, dt_us=packet_us, start_us=start_us)

        super().__init__(
            factory,
            self.reader.sensor_size,
            speed=speed,
            loop=loop,
            uri=uri or f"file:{self.path}",
            description=os.path.basename(self.path),
        )
        self.metadata = dict(getattr(self.reader, "metadata", {}) or {})

    def close(self) -> None:
        close = getattr(self.reader, "close", None)
        if close is not None and not self.closed:
            close()
        super().close()


def open_file_source(uri: SourceURI) -> FileSource:
    """Factory for the ``file`` scheme: ``speed`` (default 1) and ``loop`` (default 0)."""
    return FileSource(
        uri.target,
        speed=uri.number("speed", 1.0),
        loop=bool(uri.integer("loop", 0)),
        packet_us=uri.integer("packet_us", 10_000),
        uri=uri.text,
    )
