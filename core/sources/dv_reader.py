"""The ``dv://`` reading process: ``dv_processing.io.NetworkReader`` isolated in a child process.

Why a process of its own: dv-processing's reader aborts the whole process
(``std::terminate``) when the stream carries garbage, and it holds the GIL while
it connects, so a server that accepts and then says nothing would freeze every
thread of the app (the GUI included).  In a child process a crash or a hang only
ends that child; the parent (:class:`dvsapp.core.sources.dv.DvNetworkSource`) notices,
reports it and reconnects.

The child writes :mod:`dvsapp.core.sources.dv_wire` frames to the pipe whose file
descriptor it is given (a header, event batches, and a stop reason when it stops
on its own); it writes nothing to stdout or stderr itself.  It exits 0 when the
server ends the stream or the parent goes away, 1 when a read fails and 2 when it
cannot connect.  It only ever connects out; it never listens.

Run as ``python -m dvsapp.core.sources.dv_reader HOST PORT FD [POLL_S]``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import BinaryIO

from dvsapp.core.sources.dv_wire import EVENTS, HEADER, STOPPED, dv_store_to_events, write_frame


def _reason(exc: BaseException) -> str:
    """dv raises RuntimeError with a long boost message: keep its first part."""
    return str(exc).split(" [")[0].strip() or type(exc).__name__


def run_reader(host: str, port: int, out: BinaryIO, *, poll_s: float = 0.001) -> int:
    """Read the stream at ``host:port`` and write it to ``out`` as frames; returns the exit status."""
    import dv_processing as dv

    def stop(code: int, why: str) -> int:
        try:
            write_frame(out, STOPPED, why.encode("utf-8", "replace"))
        except OSError:
            pass
        return code

    try:
        reader = dv.io.NetworkReader(host, port)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is reported the same way
        return stop(2, _reason(exc))
    size = reader.getEventResolution() if reader.isEventStreamAvailable() else None
    if size is None:
        return stop(2, "the stream carries no events")
    head = {"width": int(size[0]), "height": int(size[1]), "camera": str(reader.getCameraName())}
    try:
        write_frame(out, HEADER, json.dumps(head).encode())
    except OSError:
        return 0  # the parent went away
    while True:
        try:
            store = reader.getNextEventBatch()
        except Exception as exc:  # noqa: BLE001
            return stop(1, f"read failed: {_reason(exc)}")
        if store is not None and len(store):
            try:
                write_frame(out, EVENTS, dv_store_to_events(store).tobytes())
            except OSError:
                return 0  # the parent went away
            continue
        if not reader.isRunning():
            return stop(0, "the server closed the stream")
        time.sleep(poll_s)


def _main(argv: list[str]) -> int:
    host, port, fd = argv[0], int(argv[1]), int(argv[2])
    poll_s = float(argv[3]) if len(argv) > 3 else 0.001
    with os.fdopen(fd, "wb") as out:
        return run_reader(host, port, out, poll_s=poll_s)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
