"""AEDAT 4.0 (iniVation DV) reading and writing.

Reading uses the ``aedat`` package's streaming decoder (measured faster than
``dv_processing.io.MonoCameraRecording`` for whole files and it streams packet
by packet); only the event stream is taken, IMU / trigger / frame streams are
skipped without decoding them into events.  Header facts (camera name, event
resolution, recording time range) come from ``dv_processing``, which reads
them from the file's XML info node.

Writing uses ``dv_processing.io.MonoCameraWriter`` with an event-only config
(LZ4 compression), so files open in DV, dv-processing and ``aedat`` alike.
Timestamps stay in microseconds as recorded (AEDAT 4 clocks are Unix time).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from core.errors import EventFileError
from core.events import EVENT_DTYPE, SensorSize, concat, empty_events
from core.io.base import EventReader


def _from_aedat(arr: np.ndarray) -> np.ndarray:
    """``aedat`` event records (t u8, x u2, y u2, on bool) -> EVENT_DTYPE."""
    ev = np.empty(len(arr), dtype=EVENT_DTYPE)
    ev["x"] = arr["x"]
    ev["y"] = arr["y"]
    ev["t"] = arr["t"]
    ev["p"] = arr["on"]
    return ev


class Aedat4Reader(EventReader):
    """AEDAT 4.0 reader: events of the first event stream; other streams skipped."""

    format_name = "aedat4"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        import aedat
        import dv_processing as dv

        try:
            decoder = aedat.Decoder(str(self.path))
            streams = decoder.id_to_stream()
        except Exception as exc:  # the decoder reports corrupt headers as generic errors
            raise EventFileError(f"cannot read the AEDAT 4 header: {_one_line(exc)}", path=self.path) from None
        event_ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
        if not event_ids:
            raise EventFileError("AEDAT 4 file holds no event stream", path=self.path)
        self._stream_id = event_ids[0]
        info = streams[self._stream_id]
        self._sensor_size = SensorSize(int(info["width"]), int(info["height"]))
        camera = None
        duration = None
        try:
            rec = dv.io.MonoCameraRecording(str(self.path))
            camera = rec.getCameraName() or None
            t0, t1 = rec.getTimeRange()
            duration = int(t1 - t0)
        except Exception:  # header facts are optional; the aedat decoder already validated the file
            pass
        self.metadata.update(
            camera=camera,
            duration_us=duration,
            streams={int(k): v.get("type") for k, v in streams.items()},
        )

    def _decoder(self):
        import aedat

        return aedat.Decoder(str(self.path))

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        parts: list[np.ndarray] = []
        n = 0
        try:
            for packet in self._decoder():
                if packet.get("stream_id") != self._stream_id or "events" not in packet:
                    continue
                ev = packet["events"]
                parts.append(ev)
                n += len(ev)
                if n >= chunk_events:
                    yield _from_aedat(np.concatenate(parts) if len(parts) > 1 else parts[0])
                    parts, n = [], 0
        except EventFileError:
            raise
        except Exception as exc:
            raise EventFileError(f"corrupt AEDAT 4 data: {_one_line(exc)}", path=self.path) from None
        if parts:
            yield _from_aedat(np.concatenate(parts) if len(parts) > 1 else parts[0])


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class Aedat4Writer:
    """Streaming AEDAT 4 writer (``dv_processing.io.MonoCameraWriter``, event-only, LZ4).

    Parameters
    ----------
    path : Path
        Destination (the caller handles temp files and renaming).
    sensor_size : SensorSize
        Written as the event stream's resolution.
    camera : str
        Camera name stored in the file's info node.
    """

    def __init__(self, path: Path, sensor_size: SensorSize, camera: str = "dvsapp") -> None:
        import dv_processing as dv

        self._dv = dv
        config = dv.io.MonoCameraWriter.EventOnlyConfig(camera, (int(sensor_size[0]), int(sensor_size[1])))
        self._writer = dv.io.MonoCameraWriter(str(path), config)

    def write(self, events: np.ndarray) -> None:
        if not len(events):
            return
        store = self._dv.EventStore()
        push = store.push_back
        for t, x, y, p in zip(
            events["t"].tolist(), events["x"].tolist(), events["y"].tolist(), events["p"].tolist(), strict=True
        ):
            push(t, x, y, p)
        self._writer.writeEvents(store)

    def close(self) -> None:
        # the writer flushes and finalises the file (data table) when destroyed
        del self._writer


def read_with_dv_processing(path: str | os.PathLike) -> np.ndarray:
    """All events via ``dv_processing`` (used to cross-check files we write, and in benchmarks)."""
    import dv_processing as dv

    rec = dv.io.MonoCameraRecording(str(path))
    parts = []
    while True:
        batch = rec.getNextEventBatch()
        if batch is None:
            break
        arr = batch.numpy()
        ev = np.empty(len(arr), dtype=EVENT_DTYPE)
        ev["x"], ev["y"], ev["t"], ev["p"] = arr["x"], arr["y"], arr["timestamp"], arr["polarity"]
        parts.append(ev)
    return concat(parts) if parts else empty_events()
