"""Recordings read for labeling: all events with their geometry, the time range, the event rate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvsapp.core.errors import LabelError
from dvsapp.core.events import SensorSize, as_events
from dvsapp.core.labels.segments import PathLike


@dataclass(frozen=True)
class Recording:
    """A recording loaded for labeling: all events plus geometry."""

    path: Path
    events: np.ndarray
    sensor_size: SensorSize

    @property
    def time_range_us(self) -> tuple[int, int] | None:
        """``(first t, last t + 1)``, or ``None`` when there are no events."""
        if len(self.events) == 0:
            return None
        return int(self.events["t"][0]), int(self.events["t"][-1]) + 1


def load_recording(path: PathLike) -> Recording:
    """Read a whole recording with ``dvsapp.core.io.open_events`` (any format it knows)."""
    from dvsapp.core.io import open_events

    reader = open_events(path)
    events = as_events(reader.read_all())
    return Recording(Path(path), events, SensorSize(*reader.sensor_size))


def scan_time_range(path: PathLike) -> tuple[int, int] | None:
    """``(first t, last t + 1)`` of a recording read packet by packet (bounded memory)."""
    from dvsapp.core.io import open_events

    reader = open_events(path)
    first = last = None
    for packet in reader.packets(max_events=1_000_000):
        ev = packet.events
        if len(ev):
            if first is None:
                first = int(ev["t"][0])
            last = int(ev["t"][-1])
    if first is None or last is None:
        return None
    return first, last + 1


def event_rate(
    events: np.ndarray, bin_us: int, *, t_range_us: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Event counts per time bin, for the timeline.

    Returns
    -------
    edges_us : int64 ``[K + 1]`` bin edges (µs), starting at the first event (or ``t_range_us[0]``).
    rate_hz : float64 ``[K]`` events per second in each bin.
    """
    if bin_us <= 0:
        raise LabelError(f"rate bin must be positive, got {bin_us} us")
    if t_range_us is None:
        if len(events) == 0:
            return np.zeros(1, dtype=np.int64), np.zeros(0)
        t_range_us = int(events["t"][0]), int(events["t"][-1]) + 1
    lo, hi = t_range_us
    n_bins = max(1, -(-(hi - lo) // bin_us))
    edges = lo + np.arange(n_bins + 1, dtype=np.int64) * bin_us
    idx = np.searchsorted(events["t"], edges, side="left")
    counts = np.diff(idx).astype(np.float64)
    return edges, counts * (1e6 / bin_us)
