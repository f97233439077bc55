"""The event model: the one place the event dtype and its containers live.

Events are a numpy structured array with tonic's field names and layout::

    x: int16   column, 0 <= x < width
    y: int16   row,    0 <= y < height
    t: int64   timestamp in microseconds, non-decreasing
    p: bool    polarity, True = ON (brightness up)

An empty array is a valid packet; ``None`` never is.  Columns are addressed by
name, never by position.  Tonic's transforms accept these arrays unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from dvsapp.core.errors import EventDataError

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
"""Tonic's ``events_struct`` layout (packed, 13 bytes per event)."""

Events = np.ndarray  # alias for annotations: a structured array of EVENT_DTYPE


class SensorSize(NamedTuple):
    """Sensor geometry; reads as tonic's ``(W, H, P)`` tuple.

    Immutable (a NamedTuple), so it can be passed anywhere tonic expects
    ``sensor_size`` and used as a dict key.
    """

    width: int
    height: int
    polarities: int = 2

    @property
    def shape_hw(self) -> tuple[int, int]:
        """``(height, width)``, the row-major image shape."""
        return (self.height, self.width)

    @property
    def n_pixels(self) -> int:
        return self.width * self.height

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"

    @classmethod
    def parse(cls, text: str) -> SensorSize:
        """Parse ``"WxH"`` or ``"WxHxP"``."""
        try:
            parts = [int(v) for v in text.lower().split("x")]
            if len(parts) not in (2, 3) or min(parts) <= 0:
                raise ValueError
        except ValueError:
            raise EventDataError(f"sensor size {text!r} is not WIDTHxHEIGHT") from None
        return cls(*parts)


@dataclass(frozen=True)
class Packet:
    """What a source yields.

    ``until_us`` promises that every event with ``t < until_us`` has now been
    delivered, so time advances (and windows close) even when a quiet scene
    yields no events.  All events satisfy ``t < until_us``.
    """

    events: np.ndarray
    until_us: int

    def __len__(self) -> int:
        return len(self.events)


@dataclass(frozen=True)
class Window:
    """``T`` timesteps of ``step_us`` each, ready for the model.

    ``frames`` is ``[T, P, H, W]`` float32 event counts (or voxel values);
    the window covers ``t_start_us <= t < t_end_us``.
    """

    frames: np.ndarray
    t_start_us: int
    t_end_us: int
    n_events: int
    index: int = 0
    #: wall-clock time (time.monotonic()) when the window's last input arrived; set by live pipelines
    arrival_s: float | None = field(default=None, compare=False)

    @property
    def n_steps(self) -> int:
        return int(self.frames.shape[0])


def empty_events(n: int = 0) -> np.ndarray:
    """A zeroed event array of length ``n``."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(x: Sequence | np.ndarray, y, t, p) -> np.ndarray:
    """Build an event array from columns (copied and cast to the event dtype)."""
    x = np.asarray(x)
    n = len(x)
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["x"] = x
    ev["y"] = y
    ev["t"] = t
    ev["p"] = np.asarray(p).astype(bool) if n else p
    return ev


def as_events(arr: np.ndarray) -> np.ndarray:
    """Return ``arr`` as an EVENT_DTYPE array, converting field types by name.

    Accepts any structured array with fields ``x, y, t, p`` (other fields are
    dropped).  Returns ``arr`` itself when it already has the exact dtype.
    """
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None:
        raise EventDataError("events must be a structured array with fields x, y, t, p")
    missing = [k for k in ("x", "y", "t", "p") if k not in arr.dtype.names]
    if missing:
        raise EventDataError(f"events lack field(s) {', '.join(missing)}")
    if arr.dtype == EVENT_DTYPE:
        return arr
    return make_events(arr["x"], arr["y"], arr["t"], arr["p"])


def validate(
    events: np.ndarray,
    sensor_size: SensorSize | tuple | None = None,
    *,
    path: str | os.PathLike | None = None,
) -> np.ndarray:
    """Check the event model's promises; raise :class:`EventDataError` naming the problem.

    Checks dtype, non-decreasing ``t`` and, when ``sensor_size`` is given,
    ``0 <= x < width`` and ``0 <= y < height``.  Returns ``events``.
    """
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
        got = getattr(events, "dtype", type(events).__name__)
        raise EventDataError(f"events have dtype {got}, expected {EVENT_DTYPE}", path=path)
    if len(events) == 0:
        return events
    t = events["t"]
    if len(t) > 1:
        bad = np.flatnonzero(t[1:] < t[:-1])
        if len(bad):
            i = int(bad[0]) + 1
            raise EventDataError(
                f"timestamps are not sorted: event {i} has t={int(t[i])} us after t={int(t[i - 1])} us",
                path=path,
            )
    if sensor_size is not None:
        w, h = int(sensor_size[0]), int(sensor_size[1])
        for name, limit in (("x", w), ("y", h)):
            col = events[name]
            lo, hi = int(col.min()), int(col.max())
            if lo < 0 or hi >= limit:
                i = int(np.flatnonzero((col < 0) | (col >= limit))[0])
                raise EventDataError(
                    f"event {i} has {name}={int(col[i])} outside the {w}x{h} sensor",
                    path=path,
                )
    return events


def concat(parts: Iterable[np.ndarray]) -> np.ndarray:
    """Concatenate event arrays (empty input gives an empty array)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_events()
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts)


def time_slice(events: np.ndarray, t_start_us: int | None = None, t_end_us: int | None = None) -> np.ndarray:
    """Events with ``t_start_us <= t < t_end_us`` (a view; ``None`` leaves a side open)."""
    t = events["t"]
    i0 = 0 if t_start_us is None else int(np.searchsorted(t, t_start_us, side="left"))
    i1 = len(events) if t_end_us is None else int(np.searchsorted(t, t_end_us, side="left"))
    return events[i0 : max(i0, i1)]


def time_bounds(events: np.ndarray, edges_us: np.ndarray) -> np.ndarray:
    """Index of the first event with ``t >= edge`` for each edge (``np.searchsorted`` on t)."""
    return np.searchsorted(events["t"], np.asarray(edges_us, dtype=np.int64), side="left")


def duration_us(events: np.ndarray) -> int:
    """``t[-1] - t[0]`` (0 for fewer than two events)."""
    if len(events) < 2:
        return 0
    return int(events["t"][-1] - events["t"][0])


def random_events(
    n: int,
    sensor_size: SensorSize | tuple = (128, 128, 2),
    *,
    duration_us: int = 1_000_000,
    t0_us: int = 0,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """Uniform random sorted events (for tests and benchmarks)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ev = empty_events(n)
    ev["x"] = rng.integers(0, sensor_size[0], n)
    ev["y"] = rng.integers(0, sensor_size[1], n)
    ev["t"] = np.sort(rng.integers(t0_us, t0_us + max(1, duration_us), n))
    ev["p"] = rng.integers(0, 2, n).astype(bool)
    return ev


# --------------------------------------------------------------------------------------------------
# Triggers and IMU samples: separate arrays beside the events (never mixed into them)
# --------------------------------------------------------------------------------------------------

TRIGGER_DTYPE = np.dtype([("t", np.int64), ("channel", np.int16), ("value", np.int8)])
"""External triggers and other timing markers, sorted by ``t``::

    t:       int64  timestamp in microseconds, on the same clock as the events
    channel: int16  0..31: an external input (Prophesee trigger id, DAVIS input 0/1/2);
                    the named ``TRIGGER_*`` channels below for markers that are no input
    value:   int8   TRIGGER_FALLING (0) / TRIGGER_RISING (1) edge, or TRIGGER_PULSE (2)

For the marker channels, RISING means a start (frame / exposure start, generator
high) and FALLING an end; a timestamp reset is a PULSE.
"""

TRIGGER_FALLING = 0
TRIGGER_RISING = 1
TRIGGER_PULSE = 2

TRIGGER_GENERATOR = 32
"""Channel of a DAVIS / DV external *generator* output edge (not an input)."""
TRIGGER_APS_FRAME = 33
"""Channel of APS frame start (RISING) / end (FALLING) markers."""
TRIGGER_APS_EXPOSURE = 34
"""Channel of APS exposure start (RISING) / end (FALLING) markers."""
TRIGGER_TIMESTAMP_RESET = 35
"""Channel of a device timestamp reset (value PULSE)."""


def empty_triggers(n: int = 0) -> np.ndarray:
    """A zeroed trigger array (TRIGGER_DTYPE) of length ``n``."""
    return np.zeros(n, dtype=TRIGGER_DTYPE)


def trigger_lookup(codes: dict[int, tuple[int, int]], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Lookup arrays for a format's trigger codes: ``(channel[code], value[code])``, channel -1 if unknown.

    ``codes`` maps a format's code to its ``(channel, value)`` in :data:`TRIGGER_DTYPE`.
    """
    channel = np.full(size, -1, dtype=np.int16)
    value = np.zeros(size, dtype=np.int8)
    for code, (ch, val) in codes.items():
        channel[code], value[code] = ch, val
    return channel, value


def make_triggers(t: Sequence | np.ndarray, channel, value) -> np.ndarray:
    """Build a trigger array from columns (copied and cast to TRIGGER_DTYPE)."""
    t = np.asarray(t)
    out = np.empty(len(t), dtype=TRIGGER_DTYPE)
    out["t"] = t
    out["channel"] = channel
    out["value"] = value
    return out


def concat_triggers(parts: Iterable[np.ndarray]) -> np.ndarray:
    """Concatenate trigger arrays (empty input gives an empty TRIGGER_DTYPE array)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_triggers()
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


IMU_DTYPE = np.dtype(
    [
        ("t", np.int64),
        ("accel_x", np.float32),
        ("accel_y", np.float32),
        ("accel_z", np.float32),
        ("temperature", np.float32),
        ("gyro_x", np.float32),
        ("gyro_y", np.float32),
        ("gyro_z", np.float32),
    ]
)
"""Six-axis IMU samples: ``t`` in microseconds, acceleration in g, temperature in
degrees Celsius, angular rate in degrees per second."""
