"""The ``dv://`` reading process: ``dv_processing.io.NetworkReader`` isolated in a child process.

Why a process of its own: dv-processing's reader aborts the whole process
(``std::terminate``) when the stream carries garbage, and it holds the GIL while
it connects, so a server that accepts and then says nothing would freeze every
thread of the app (the GUI included).  In a child process a crash or a hang only
ends that child; the parent (:class:`dvsapp.core.sources.dv.DvNetworkSource`) notices,
reports it and reconnects.

Protocol on the child's stdout (binary):

* one header line, JSON: ``{"width": W, "height": H, "camera": NAME}``;
* then frames: ``b"E"``, a little-endian uint32 byte count, and that many bytes
  of ``EVENT_DTYPE`` records (one event batch as the reader delivered it).

The child exits 0 when the server ends the stream; a failure to connect exits 2
with one line on stderr.  It only ever connects out; it never listens.

Run as ``python -m dvsapp.core.sources.dv_reader HOST PORT``.
"""

from __future__ import annotations

import json
import struct
import sys
import time

FRAME_HEAD = struct.Struct("<cI")
"""A frame's head: the tag ``b"E"`` and the payload's byte count."""


def _main(argv: list[str]) -> int:
    import dv_processing as dv

    from dvsapp.core.sources.dv import dv_store_to_events

    host, port = argv[0], int(argv[1])
    poll_s = float(argv[2]) if len(argv) > 2 else 0.001
    try:
        reader = dv.io.NetworkReader(host, port)
    except Exception as exc:  # noqa: BLE001 - dv raises RuntimeError with a long boost message
        print(str(exc).split(" [")[0].strip() or type(exc).__name__, file=sys.stderr, flush=True)
        return 2
    size = reader.getEventResolution() if reader.isEventStreamAvailable() else None
    if size is None:
        print("the stream carries no events", file=sys.stderr, flush=True)
        return 2
    out = sys.stdout.buffer
    head = {"width": int(size[0]), "height": int(size[1]), "camera": str(reader.getCameraName())}
    out.write((json.dumps(head) + "\n").encode())
    out.flush()
    while True:
        try:
            store = reader.getNextEventBatch()
        except Exception as exc:  # noqa: BLE001
            print(f"read failed: {str(exc).split(' [')[0]}", file=sys.stderr, flush=True)
            return 1
        if store is not None and len(store):
            payload = dv_store_to_events(store).tobytes()
            try:
                out.write(FRAME_HEAD.pack(b"E", len(payload)))
                out.write(payload)
                out.flush()
            except (BrokenPipeError, OSError):
                return 0  # the parent went away
            continue
        if not reader.isRunning():
            return 0
        time.sleep(poll_s)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
