"""One streaming pass over an event file that summarises it (``dvsapp info``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from dvsapp.core.events import TRIGGER_FALLING, TRIGGER_RISING
from dvsapp.core.gestures import labels_path_for
from dvsapp.core.io import open_events
from dvsapp.core.io.base import DEFAULT_CHUNK_EVENTS


@dataclass(frozen=True)
class FileInfo:
    """Facts about an event file; times in microseconds, rate in events per second."""

    path: str
    format: str
    width: int
    height: int
    camera: str | None
    n_events: int
    t_first_us: int | None
    t_last_us: int | None
    duration_us: int
    event_rate_hz: float
    on_fraction: float | None
    n_on: int
    n_off: int
    labels_path: str | None
    n_triggers: int = 0
    n_triggers_rising: int = 0
    n_triggers_falling: int = 0
    trigger_channels: tuple[int, ...] = ()
    n_imu_samples: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def describe(
    path: str | os.PathLike, *, progress: Callable[[int, int | None], None] | None = None
) -> FileInfo:
    """Read ``path`` once (streaming) and summarise it.

    Every event is decoded and checked, so a corrupt file raises here
    (:class:`dvsapp.core.errors.EventFileError`).  ``labels_path`` is the DVS Gesture
    ``<stem>_labels.csv`` beside the file when it exists.  Triggers are counted
    (rising / falling edges and the channels seen, see ``TRIGGER_DTYPE``); the
    stream formats decode them in the same pass.  ``n_imu_samples`` is what the
    reader states (None when the format does not say).
    """
    reader = open_events(path)
    total = reader.metadata.get("n_events")
    n = n_on = 0
    t_first = t_last = None
    for chunk in reader.iter_chunks(DEFAULT_CHUNK_EVENTS):
        if not len(chunk):
            continue
        if t_first is None:
            t_first = int(chunk["t"][0])
        t_last = int(chunk["t"][-1])
        n += len(chunk)
        n_on += int(chunk["p"].sum())
        if progress is not None:
            progress(n, total)
    triggers = reader.read_triggers()
    duration = (t_last - t_first) if n else 0
    rate = n / (duration * 1e-6) if duration > 0 else 0.0
    labels = labels_path_for(reader.path)
    return FileInfo(
        path=str(reader.path),
        format=str(reader.metadata["format"]),
        width=int(reader.sensor_size.width),
        height=int(reader.sensor_size.height),
        camera=reader.metadata.get("camera"),
        n_events=n,
        t_first_us=t_first,
        t_last_us=t_last,
        duration_us=int(duration),
        event_rate_hz=float(rate),
        on_fraction=(n_on / n) if n else None,
        n_on=n_on,
        n_off=n - n_on,
        labels_path=str(labels) if labels.is_file() else None,
        n_triggers=len(triggers),
        n_triggers_rising=int((triggers["value"] == TRIGGER_RISING).sum()),
        n_triggers_falling=int((triggers["value"] == TRIGGER_FALLING).sum()),
        trigger_channels=tuple(int(c) for c in np.unique(triggers["channel"])),
        n_imu_samples=reader.metadata.get("n_imu_samples"),
    )
