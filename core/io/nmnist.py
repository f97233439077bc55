"""N-MNIST / N-Caltech101 40-bit ``.bin`` files (ATIS saccade recordings).

No header: 5 bytes per event, ``byte0 = x``, ``byte1 = y``, ``byte2 bit 7 =
polarity``, ``(byte2 & 0x7F) << 16 | byte3 << 8 | byte4`` = timestamp in us.
An event with ``y == 240`` is a timestamp-overflow marker, not an event; as in
the datasets' reference reader (and tonic), each marker adds 2**13 us to every
later timestamp.

Sensor size: 34x34 (N-MNIST) when every event fits, else 240x180 (the
N-Caltech101 ATIS crop) when every event fits that, else the largest
coordinates + 1.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import numpy as np

from dvsapp.core.errors import EventFileError
from dvsapp.core.events import EVENT_DTYPE, SensorSize
from dvsapp.core.io import _kernels
from dvsapp.core.io.base import DEFAULT_CHUNK_EVENTS, EventReader

OVERFLOW_Y = 240
OVERFLOW_INCREMENT_US = 1 << 13


def decode_nmnist(raw: np.ndarray, overflows: int) -> tuple[np.ndarray, int]:
    """Decode ``[N, 5]`` uint8 records; return (events without markers, updated overflow count)."""
    x = raw[:, 0]
    y = raw[:, 1]
    b2 = raw[:, 2].astype(np.int64)
    t = ((b2 & 0x7F) << 16) | (raw[:, 3].astype(np.int64) << 8) | raw[:, 4]
    marker = y == OVERFLOW_Y
    if marker.any():
        steps = np.cumsum(marker) + overflows
        t += steps * OVERFLOW_INCREMENT_US
        new_overflows = int(steps[-1])
        keep = ~marker
    else:
        t += overflows * OVERFLOW_INCREMENT_US
        new_overflows = overflows
        keep = None
    ev = np.empty(len(raw), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, (b2 & 0x80) != 0
    return (ev if keep is None else ev[keep]), new_overflows


class NmnistReader(EventReader):
    """N-MNIST / N-Caltech101 ``.bin`` reader."""

    format_name = "nmnist"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        size = self.path.stat().st_size
        if size % 5:
            raise EventFileError(
                f"truncated: {size} bytes is not a whole number of 5-byte events", path=self.path
            )
        self._n_raw = size // 5
        with open(self.path, "rb") as fh:
            self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.metadata.update(camera="ATIS")

    def _raw(self, i0: int, n: int) -> np.ndarray:
        return np.frombuffer(self._mm, dtype=np.uint8, count=5 * n, offset=5 * i0).reshape(n, 5)

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        overflows = 0
        for i0 in range(0, self._n_raw, chunk_events):
            raw = self._raw(i0, min(chunk_events, self._n_raw - i0))
            if _kernels.HAVE_NUMBA:
                ev = np.empty(len(raw), dtype=EVENT_DTYPE)
                k, overflows = _kernels.decode_nmnist(
                    raw, OVERFLOW_Y, OVERFLOW_INCREMENT_US, overflows, ev["x"], ev["y"], ev["t"], ev["p"]
                )
                yield ev if k == len(raw) else ev[:k]
                continue
            ev, overflows = decode_nmnist(raw, overflows)
            yield ev

    def _all_chunk_events(self) -> int:
        return self._n_raw

    def _infer_sensor_size(self) -> SensorSize:
        w = h = 0
        for i0 in range(0, self._n_raw, DEFAULT_CHUNK_EVENTS):
            raw = self._raw(i0, min(DEFAULT_CHUNK_EVENTS, self._n_raw - i0))
            if _kernels.HAVE_NUMBA:
                cw, ch = _kernels.nmnist_extent(raw, OVERFLOW_Y)
                w, h = max(w, int(cw)), max(h, int(ch))
                continue
            ev = raw[raw[:, 1] != OVERFLOW_Y]
            if len(ev):
                w, h = max(w, int(ev[:, 0].max()) + 1), max(h, int(ev[:, 1].max()) + 1)
        if w <= 34 and h <= 34:
            return SensorSize(34, 34)
        if w <= 240 and h <= 180:
            return SensorSize(240, 180)
        return SensorSize(w, h)
