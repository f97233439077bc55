"""A DV test server: a real dv-processing ``NetworkWriter`` serving a recording on 127.0.0.1.

Run as ``python tests/dvnet_server.py FILE PORT [--speed S] [--loop] [--linger S] [--go-on-stdin]``
(``tests/dvnet.py`` starts it).  It prints ``serving`` once it listens (``ready``
first with ``--go-on-stdin``, binding only after a line on stdin) and ``served N``
at the end; tests read those lines.  The app under test only ever connects out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from dvsapp.core.errors import SourceError
from dvsapp.core.events import SensorSize

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
    """Serve ``events`` as a dv-processing network event stream (blocking).

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
    returns, and the serving process ends with ``os._exit``.
    """
    import dv_processing as dv

    from dvsapp.core.sources.base import iter_packets

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
                (t + offset).tolist(),
                packet.events["x"].tolist(),
                packet.events["y"].tolist(),
                packet.events["p"].tolist(),
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python tests/dvnet_server.py", description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("port", type=int)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--loop", action="store_true")
    parser.add_argument(
        "--linger", type=float, default=0.5, help="seconds to keep the connection after the end"
    )
    parser.add_argument(
        "--go-on-stdin", action="store_true", help="print 'ready', bind only after a line on stdin"
    )
    args = parser.parse_args(argv)
    from dvsapp.core.io import open_events

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
    main()
