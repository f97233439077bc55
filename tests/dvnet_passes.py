"""A DV test server that plays one recording several times, each pass with its original timestamps.

A real dv-processing ``NetworkWriter`` on 127.0.0.1, as DV software looping a
playback sends it: at each new pass the stream's time goes back to the
recording's start.  Run as ``python tests/dvnet_passes.py FILE PORT [--passes N]
[--speed S]``; it prints ``serving`` once it listens and ``served N`` at the end
(the protocol of ``tests/dvnet_server.py``, so ``tests/dvnet.py`` helpers apply).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_LIVE_WRITERS: list = []
"""The writer, never destroyed while a client is connected (that blocks in dv-processing)."""


def main(argv: list[str] | None = None) -> None:
    import dv_processing as dv

    from dvsapp.core.io import open_events
    from dvsapp.core.sources.base import iter_packets

    parser = argparse.ArgumentParser(prog="python tests/dvnet_passes.py", description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("port", type=int)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args(argv)
    reader = open_events(args.file)
    events = reader.read_all()
    size = reader.sensor_size
    stream = dv.io.Stream.EventStream(0, "events", "dvsapp", (int(size[0]), int(size[1])))
    writer = dv.io.NetworkWriter("127.0.0.1", args.port, stream)
    _LIVE_WRITERS.append(writer)
    print("serving", flush=True)
    deadline = time.monotonic() + 30
    while writer.getClientCount() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # let the client finish its handshake
    written = 0
    for _ in range(args.passes):
        wall0 = time.monotonic()
        t0 = int(events["t"][0])
        for packet in iter_packets(events, packet_us=10_000):
            if not len(packet.events):
                continue
            delay = wall0 + (packet.until_us - t0) / args.speed / 1e6 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            store = dv.EventStore()
            ev = packet.events
            for ti, xi, yi, pi in zip(ev["t"].tolist(), ev["x"].tolist(), ev["y"].tolist(), ev["p"].tolist()):
                store.push_back(ti, xi, yi, pi)
            writer.writeEvents(store)
            written += len(ev)
    while writer.getQueuedPacketCount() > 0:
        time.sleep(0.01)
    print(f"served {written}", flush=True)
    time.sleep(0.5)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
