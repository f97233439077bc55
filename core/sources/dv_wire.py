"""The wire between the ``dv://`` source and its reader process, and the dv event conversion both use.

:mod:`dvsapp.core.sources.dv_reader` (the child) writes frames to a pipe the parent
(:class:`dvsapp.core.sources.dv.DvNetworkSource`) hands it; the parent reads them.
Each frame is a tag byte, a little-endian uint32 byte count and that many bytes:

* ``H``: the stream header, JSON ``{"width": W, "height": H, "camera": NAME}``, first;
* ``E``: one event batch as the reader delivered it, ``EVENT_DTYPE`` records;
* ``X``: why the reader stopped (UTF-8 text, one line), last, before it exits.

A pipe that ends without an ``X`` frame means the child died (the parent then
looks at its exit status and at what the native library wrote to stderr).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

import numpy as np

from dvsapp.core.events import make_events

FRAME_HEAD = struct.Struct("<cI")
"""A frame's head: the tag byte and the payload's byte count."""

HEADER, EVENTS, STOPPED = b"H", b"E", b"X"
TAGS = (HEADER, EVENTS, STOPPED)
MAX_TEXT_BYTES = 1 << 16
"""Longest header or stop message accepted (an event frame is bounded by its batch)."""


def dv_store_to_events(store) -> np.ndarray:
    """Convert a ``dv_processing.EventStore`` to the event dtype (copies)."""
    arr = store.numpy()
    return make_events(arr["x"], arr["y"], arr["timestamp"], arr["polarity"])


def write_frame(out: BinaryIO, tag: bytes, payload: bytes) -> None:
    """Write one frame to ``out`` and flush it."""
    out.write(FRAME_HEAD.pack(tag, len(payload)))
    out.write(payload)
    out.flush()


def read_frame(f: BinaryIO) -> tuple[bytes, bytes] | None:
    """The next ``(tag, payload)`` from ``f``; ``None`` at the end of the pipe or on a malformed frame."""
    head = f.read(FRAME_HEAD.size)
    if len(head) < FRAME_HEAD.size:
        return None
    tag, n = FRAME_HEAD.unpack(head)
    if tag not in TAGS or (tag != EVENTS and n > MAX_TEXT_BYTES):
        return None
    payload = f.read(n)
    if len(payload) < n:
        return None
    return tag, payload
