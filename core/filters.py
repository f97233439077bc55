"""Event filters: denoise, refractory period, hot pixels, crop and spatial adaptation.

Every filter is a frozen dataclass holding its settings, with

* ``__call__(events) -> events``: the whole array at once, pure (the input is
  never modified; the output is a new array), and
* ``stream()``: a small stateful object whose ``push(events) -> events`` gives,
  over any split of a stream into packets, exactly what ``__call__`` gives on
  the concatenation (the per-pixel memory is carried across packets).

``__call__`` is ``stream().push`` on the whole array, so the two can never drift.
Inputs are :data:`dvsapp.core.events.EVENT_DTYPE` arrays sorted by ``t`` (µs).  All
kernels are vectorised (sorting by pixel, ``np.searchsorted``), no Python loop
per event.

Relation to tonic (``tonic.transforms``)
-----------------------------------------
* :class:`Denoise` = ``Denoise(filter_time)``: keep an event when one of its 4
  neighbours (not the pixel itself) had an event less than ``filter_time_us``
  earlier.  Same output for events with ``t >= filter_time_us``; tonic starts
  its memory as if every pixel had fired at ``t = 0`` (so it keeps events with
  ``t < filter_time`` that have a neighbour inside the sensor), here a pixel
  that never fired never vouches for a neighbour.  ``neighbours=8`` also looks
  at the diagonals (not in tonic).
* :class:`Refractory` = ``RefractoryPeriod(delta)``: keep an event when the
  previous event of the same pixel (kept or not, any polarity) is more than
  ``refractory_us`` older.  Same output for events with ``t > 0``; tonic drops
  a pixel's first event when it has ``t <= 0``.
* :class:`HotPixel` is causal (a live stream cannot look ahead), unlike tonic's
  ``DropPixel(hot_pixel_frequency=...)`` which counts over the whole recording
  with an absolute rate: see the class.
* :class:`Crop` = ``CenterCrop`` / ``RandomCrop`` with a fixed box;
  :class:`Downsample` with an integer factor = ``Downsample(spatial_factor=1/f)``
  for factors that are powers of two (tonic multiplies by a float and truncates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from math import ceil
from typing import Literal, Protocol

import numpy as np

from dvsapp.core.errors import ConfigError, EventDataError
from dvsapp.core.events import EVENT_DTYPE, SensorSize, as_events

__all__ = [
    "Compose",
    "Crop",
    "Denoise",
    "Downsample",
    "EventFilter",
    "FilterStream",
    "HotPixel",
    "Refractory",
    "SpatialAdapter",
]

_NEVER = np.iinfo(np.int64).min // 4
"""Timestamp of a pixel that has not fired yet (far enough from int64's edge for ``t - _NEVER``)."""


class FilterStream(Protocol):
    """Streaming state of one filter."""

    def push(self, events: np.ndarray) -> np.ndarray: ...


class EventFilter(Protocol):
    """A filter: pure on a whole array, stateful through :meth:`stream`."""

    def __call__(self, events: np.ndarray) -> np.ndarray: ...

    def stream(self) -> FilterStream: ...


# --------------------------------------------------------------------------- helpers


def _events(events: np.ndarray) -> np.ndarray:
    ev = as_events(events)
    if ev.ndim != 1:
        raise EventDataError(f"events must be a 1-D structured array, got {ev.ndim} dimensions")
    if len(ev) and (int(ev["x"].min()) < 0 or int(ev["y"].min()) < 0):
        raise EventDataError("events have negative x or y coordinates")
    return ev


def _select(events: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``events[keep]`` (a new array), copying whole records as bytes (faster than field by field)."""
    return events.view(f"V{events.dtype.itemsize}")[keep].view(EVENT_DTYPE)


class _PixelMap:
    """A per-pixel int64 memory that grows with the coordinates it sees.

    Stored with a one-pixel border that is never written, so every 8-neighbour of
    a pixel has a cell: pixel ``(x, y)`` is cell ``(y + 1) * stride + (x + 1)``.
    """

    def __init__(self, fill: int) -> None:
        self.fill = fill
        self.cells = np.full((2, 2), fill, dtype=np.int64)

    @property
    def stride(self) -> int:
        return self.cells.shape[1]

    def fit(self, events: np.ndarray) -> None:
        need_h = int(events["y"].max()) + 3
        need_w = int(events["x"].max()) + 3
        h, w = self.cells.shape
        if need_h > h or need_w > w:
            grown = np.full((max(h, need_h), max(w, need_w)), self.fill, dtype=np.int64)
            grown[:h, :w] = self.cells
            self.cells = grown

    def index(self, events: np.ndarray) -> np.ndarray:
        """Cell index of each event, ``[N]`` intp (call :meth:`fit` first)."""
        idx = np.add(events["y"], 1, dtype=np.intp)
        idx *= self.stride
        idx += events["x"]
        idx += 1
        return idx

    @property
    def flat(self) -> np.ndarray:
        return self.cells.reshape(-1)


def _group_by_cell(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sort events by cell keeping time order inside a cell.

    Returns ``order`` (event index, sorted), ``sorted_cell``, ``first`` and ``last``
    (bool masks over the sorted order marking each cell's first / last event).
    """
    order = np.argsort(cell, kind="stable")
    sorted_cell = cell[order]
    change = sorted_cell[1:] != sorted_cell[:-1]
    first = np.concatenate([[True], change])
    last = np.concatenate([change, [True]])
    return order, sorted_cell, first, last


def _store_last(memory: _PixelMap, sorted_cell: np.ndarray, sorted_t: np.ndarray, last: np.ndarray) -> None:
    memory.flat[sorted_cell[last]] = sorted_t[last]


class _Stateless:
    """Stream of a filter without memory: each packet is filtered on its own."""

    def __init__(self, filt) -> None:
        self._filter = filt

    def push(self, events: np.ndarray) -> np.ndarray:
        return self._filter(events)


# --------------------------------------------------------------------------- denoise


_NEIGHBOURS = {
    4: ((-1, 0), (1, 0), (0, -1), (0, 1)),
    8: ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, -1), (-1, 1), (1, 1)),
}


@dataclass(frozen=True)
class Denoise:
    """Background-activity filter: drop events with no recent neighbour.

    An event at ``(x, y, t)`` is kept when an earlier event (earlier in the
    stream's order, any polarity) at one of the ``neighbours`` pixels around it
    has ``t - t_neighbour < filter_time_us``.

    Parameters
    ----------
    filter_time_us : int
        Support window (µs).
    neighbours : {4, 8}
        4-neighbourhood (tonic) or 8-neighbourhood.
    """

    filter_time_us: int
    neighbours: Literal[4, 8] = 4

    def __post_init__(self) -> None:
        if not self.filter_time_us > 0:
            raise ConfigError(f"filter_time_us must be > 0, got {self.filter_time_us}")
        if self.neighbours not in _NEIGHBOURS:
            raise ConfigError(f"neighbours must be 4 or 8, got {self.neighbours}")

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return self.stream().push(events)

    def stream(self) -> _DenoiseStream:
        return _DenoiseStream(self)


class _DenoiseStream:
    def __init__(self, settings: Denoise) -> None:
        self.settings = settings
        self.last_t = _PixelMap(_NEVER)

    def push(self, events: np.ndarray) -> np.ndarray:
        ev = _events(events)
        n = len(ev)
        if n == 0:
            return np.zeros(0, dtype=EVENT_DTYPE)
        memory = self.last_t
        memory.fit(ev)
        t = np.ascontiguousarray(ev["t"])
        order, sorted_cell, _, last = _group_by_cell(memory.index(ev))
        sorted_t = t[order]
        # key of (cell, event index), ascending along the sorted order
        keys = sorted_cell.astype(np.int64) * n + order
        newest = np.full(n, _NEVER, dtype=np.int64)  # per event of the sorted order
        for dx, dy in _NEIGHBOURS[self.settings.neighbours]:
            other = sorted_cell + (dy * memory.stride + dx)
            # the latest event of cell `other` before this one, inside this packet; the
            # queries ascend like the keys, which keeps the binary searches cache-friendly
            pos = np.searchsorted(keys, other.astype(np.int64) * n + order) - 1
            pos_ok = np.maximum(pos, 0)
            inside = (pos >= 0) & (sorted_cell[pos_ok] == other)
            t_other = np.where(inside, sorted_t[pos_ok], memory.flat[other])
            np.maximum(newest, t_other, out=newest)
        keep = np.empty(n, dtype=bool)
        keep[order] = (sorted_t - newest) < self.settings.filter_time_us
        _store_last(memory, sorted_cell, sorted_t, last)
        return _select(ev, keep)


# --------------------------------------------------------------------------- refractory period


@dataclass(frozen=True)
class Refractory:
    """Refractory period per pixel: keep an event when ``t - t_previous > refractory_us``.

    ``t_previous`` is the previous event of the same pixel (any polarity), whether
    that one was kept or not (tonic's ``RefractoryPeriod``).  A pixel's first event
    is always kept.

    Parameters
    ----------
    refractory_us : int
        Refractory period (µs), >= 0.
    """

    refractory_us: int

    def __post_init__(self) -> None:
        if not self.refractory_us >= 0:
            raise ConfigError(f"refractory_us must be >= 0, got {self.refractory_us}")

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return self.stream().push(events)

    def stream(self) -> _RefractoryStream:
        return _RefractoryStream(self)


class _RefractoryStream:
    def __init__(self, settings: Refractory) -> None:
        self.settings = settings
        self.last_t = _PixelMap(_NEVER)

    def push(self, events: np.ndarray) -> np.ndarray:
        ev = _events(events)
        if len(ev) == 0:
            return np.zeros(0, dtype=EVENT_DTYPE)
        memory = self.last_t
        memory.fit(ev)
        order, sorted_cell, first, last = _group_by_cell(memory.index(ev))
        sorted_t = ev["t"][order]
        previous = np.empty_like(sorted_t)
        previous[1:] = sorted_t[:-1]
        previous[first] = memory.flat[sorted_cell[first]]
        keep = np.empty(len(ev), dtype=bool)
        keep[order] = (sorted_t - previous) > self.settings.refractory_us
        _store_last(memory, sorted_cell, sorted_t, last)
        return _select(ev, keep)


# --------------------------------------------------------------------------- hot pixels


@dataclass(frozen=True)
class HotPixel:
    """Drop the events of pixels that fire far more than the typical active pixel.

    Time is cut into blocks of ``block_us`` aligned to multiples of ``block_us``.
    At the start of each block the hot set is decided from the counts of *all
    earlier* events: a pixel is hot when its count is at least ``min_events`` and
    more than ``factor`` times the median count of the pixels that fired at least
    once.  The events of hot pixels are dropped until the next decision.  The rule
    is causal, so a stream and a whole recording give the same output; the first
    block passes unfiltered.  (tonic's ``DropPixel(hot_pixel_frequency)`` instead
    looks at the whole recording and uses an absolute rate in Hz.)

    Parameters
    ----------
    factor : float
        How many times the median count makes a pixel hot.
    min_events : int
        A pixel with fewer events is never hot.
    block_us : int
        How often the hot set is revised (µs).
    """

    factor: float = 20.0
    min_events: int = 20
    block_us: int = 200_000

    def __post_init__(self) -> None:
        if not self.factor > 0:
            raise ConfigError(f"factor must be > 0, got {self.factor}")
        if not self.block_us > 0:
            raise ConfigError(f"block_us must be > 0, got {self.block_us}")

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return self.stream().push(events)

    def stream(self) -> _HotPixelStream:
        return _HotPixelStream(self)


class _HotPixelStream:
    def __init__(self, settings: HotPixel) -> None:
        self.settings = settings
        self.counts = _PixelMap(0)
        self.hot = np.zeros(0, dtype=bool)  # flat over counts' cells; empty = nothing hot yet
        self.block_end_us: int | None = None

    def hot_pixels(self) -> np.ndarray:
        """``[K, 2]`` (x, y) of the pixels currently judged hot."""
        if not self.hot.any():
            return np.zeros((0, 2), dtype=np.int64)
        y, x = np.divmod(np.flatnonzero(self.hot), self.counts.stride)
        return np.stack([x - 1, y - 1], axis=1)

    def _decide(self) -> None:
        counts = self.counts.flat
        active = counts[counts > 0]
        if len(active) == 0:
            self.hot = np.zeros(len(counts), dtype=bool)
            return
        limit = self.settings.factor * float(np.median(active))
        self.hot = (counts > limit) & (counts >= self.settings.min_events)

    def push(self, events: np.ndarray) -> np.ndarray:
        ev = _events(events)
        if len(ev) == 0:
            return np.zeros(0, dtype=EVENT_DTYPE)
        block_us = int(self.settings.block_us)
        t = ev["t"]
        if self.block_end_us is None:
            self.block_end_us = (int(t[0]) // block_us + 1) * block_us
        old_stride = self.counts.stride
        self.counts.fit(ev)
        if self.counts.stride != old_stride or len(self.hot) != self.counts.flat.size:
            self._regrid_hot(old_stride)
        cell = self.counts.index(ev)
        keep = np.ones(len(ev), dtype=bool)
        start = 0
        while start < len(ev):
            stop = int(np.searchsorted(t, self.block_end_us, side="left"))
            if stop > start:
                part = cell[start:stop]
                keep[start:stop] = ~self.hot[part]
                self.counts.flat[:] += np.bincount(part, minlength=self.counts.flat.size)
            if stop < len(ev):  # an event at or after the block end: decide for the next block
                self._decide()
                self.block_end_us = (int(t[stop]) // block_us + 1) * block_us
            start = stop
        return _select(ev, keep)

    def _regrid_hot(self, old_stride: int) -> None:
        """Carry the hot set over to a grown pixel map."""
        hot = np.zeros(self.counts.flat.size, dtype=bool)
        if self.hot.any():
            y, x = np.divmod(np.flatnonzero(self.hot), old_stride)
            hot[y * self.counts.stride + x] = True
        self.hot = hot


# --------------------------------------------------------------------------- geometry


def _moved(events: np.ndarray, keep: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = _select(events, keep)  # a copy: boolean indexing never aliases the input
    out["x"] = x[keep]
    out["y"] = y[keep]
    return out


@dataclass(frozen=True)
class Crop:
    """Keep the box ``x <= X < x + width``, ``y <= Y < y + height``, shifted to the origin.

    ``output_size(in_size)`` is ``(width, height, P)``.
    """

    x: int
    y: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.x < 0 or self.y < 0:
            raise ConfigError(f"crop box {self} needs x, y >= 0 and width, height > 0")

    @classmethod
    def parse(cls, text: str) -> Crop:
        """Parse the command line's ``"X,Y,WIDTH,HEIGHT"``."""
        try:
            x0, y0, w, h = (int(v) for v in text.split(","))
        except ValueError:
            raise ConfigError(f"crop {text!r} is not X,Y,WIDTH,HEIGHT (integers)") from None
        if x0 < 0 or y0 < 0 or w <= 0 or h <= 0:
            raise ConfigError(f"crop {text!r} needs X,Y >= 0 and WIDTH,HEIGHT > 0")
        return cls(x0, y0, w, h)

    def check_fits(self, in_size: SensorSize | Sequence[int]) -> None:
        """``ConfigError`` when the box does not lie inside a sensor of ``in_size``."""
        if self.x + self.width > in_size[0] or self.y + self.height > in_size[1]:
            raise ConfigError(
                f"crop {self.x},{self.y},{self.width},{self.height} does not fit the "
                f"{in_size[0]}x{in_size[1]} sensor"
            )

    @classmethod
    def centered(cls, in_size: SensorSize | Sequence[int], width: int, height: int) -> Crop:
        """The centred box of ``width`` x ``height`` (tonic's ``CenterCrop`` offsets)."""
        return cls(max(0, (in_size[0] - width) // 2), max(0, (in_size[1] - height) // 2), width, height)

    def output_size(self, in_size: SensorSize | Sequence[int]) -> SensorSize:
        p = in_size[2] if len(in_size) > 2 else 2
        return SensorSize(self.width, self.height, p)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        ev = _events(events)
        x = ev["x"].astype(np.int64) - self.x
        y = ev["y"].astype(np.int64) - self.y
        keep = (x >= 0) & (x < self.width) & (y >= 0) & (y < self.height)
        return _moved(ev, keep, x, y)

    def stream(self) -> FilterStream:
        return _Stateless(self)


@dataclass(frozen=True)
class Downsample:
    """Integer spatial downsampling: ``x // factor``, ``y // factor`` (no event is dropped)."""

    factor: int

    def __post_init__(self) -> None:
        if int(self.factor) != self.factor or self.factor < 1:
            raise ConfigError(f"downsample factor must be a positive integer, got {self.factor}")

    def output_size(self, in_size: SensorSize | Sequence[int]) -> SensorSize:
        p = in_size[2] if len(in_size) > 2 else 2
        return SensorSize(ceil(in_size[0] / self.factor), ceil(in_size[1] / self.factor), p)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        ev = _events(events)
        keep = np.ones(len(ev), dtype=bool)
        return _moved(ev, keep, ev["x"] // int(self.factor), ev["y"] // int(self.factor))

    def stream(self) -> FilterStream:
        return _Stateless(self)


def _as_size(size: SensorSize | Sequence[int], polarities: int) -> SensorSize:
    values = [int(v) for v in size]
    if len(values) == 2:
        values.append(polarities)
    if len(values) != 3 or min(values) <= 0:
        raise ConfigError(f"sensor size {tuple(size)!r} is not (width, height[, polarities])")
    return SensorSize(*values)


@dataclass(frozen=True)
class SpatialAdapter:
    """Fit a sensor onto the model's input size, keeping the aspect ratio.

    ``mode="pad"`` scales by ``s = min(out_w / in_w, out_h / in_h)`` so the whole
    sensor fits, centred, with empty borders; ``mode="crop"`` scales by
    ``s = max(...)`` so the output is filled and the overhanging sides (centred)
    are cut.  Pixel centres are mapped: ``x_out = floor((x + 1/2) * s + o_x)`` with
    ``o_x = (out_w - in_w * s) / 2`` (exact rational arithmetic, vectorised);
    events falling outside the output are dropped.

    Parameters
    ----------
    in_size, out_size : SensorSize or (W, H[, P])
        ``out_size`` without polarities takes ``in_size``'s.
    mode : {"crop", "pad"}
    """

    in_size: SensorSize
    out_size: SensorSize
    mode: Literal["crop", "pad"] = "crop"
    _map: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        in_size = _as_size(self.in_size, 2)
        out_size = _as_size(self.out_size, in_size.polarities)
        if self.mode not in _SCALE_PICK:
            raise ConfigError(f"spatial mode {self.mode!r} is not one of {', '.join(_SCALE_PICK)}")
        object.__setattr__(self, "in_size", in_size)
        object.__setattr__(self, "out_size", out_size)
        scale = _SCALE_PICK[self.mode](
            Fraction(out_size.width, in_size.width), Fraction(out_size.height, in_size.height)
        )
        axes = []
        for n_in, n_out in ((in_size.width, out_size.width), (in_size.height, out_size.height)):
            offset = (n_out - n_in * scale) / 2
            # x_out = floor(((2x + 1) * s + 2 o) / 2) = floor(((2x + 1) * a + b) / d) with integers a, b, d
            d = 2 * scale.denominator * offset.denominator
            a = scale.numerator * offset.denominator
            b = 2 * offset.numerator * scale.denominator
            axes.append((a, b, d, n_out))
        object.__setattr__(self, "_map", tuple(axes))

    @property
    def scale(self) -> Fraction:
        """Output pixels per input pixel."""
        a, _, d, _ = self._map[0]
        return Fraction(2 * a, d)

    @property
    def source_rect(self) -> tuple[int, int, int, int]:
        """``(x, y, width, height)`` of the sensor region the output shows (whole pixels).

        The whole sensor for ``pad``; the centred band that survives for ``crop``.
        """
        scale = self.scale
        rect = []
        for n_in, n_out in (
            (self.in_size.width, self.out_size.width),
            (self.in_size.height, self.out_size.height),
        ):
            span = min(Fraction(n_in), n_out / scale)
            start = (n_in - span) / 2
            rect.append((int(round(start)), int(round(span))))
        (x, w), (y, h) = rect
        return (x, y, w, h)

    def output_size(self, in_size: SensorSize | Sequence[int] | None = None) -> SensorSize:
        return self.out_size

    def __call__(self, events: np.ndarray) -> np.ndarray:
        ev = _events(events)
        out = []
        keep = np.ones(len(ev), dtype=bool)
        for name, (a, b, d, n_out) in zip(("x", "y"), self._map):
            v = ev[name].astype(np.int64) * 2 + 1
            v *= a
            v += b
            v //= d
            keep &= (v >= 0) & (v < n_out)
            out.append(v)
        return _moved(ev, keep, *out)

    def stream(self) -> FilterStream:
        return _Stateless(self)


_SCALE_PICK = {"crop": max, "pad": min}


# --------------------------------------------------------------------------- chains


@dataclass(frozen=True)
class Compose:
    """Apply filters in order; ``stream()`` chains their streams."""

    filters: tuple = ()

    def __call__(self, events: np.ndarray) -> np.ndarray:
        out = _events(events)
        for f in self.filters:
            out = f(out)
        return out if out is not events else out.copy()

    def stream(self) -> _ComposeStream:
        return _ComposeStream([f.stream() for f in self.filters])


class _ComposeStream:
    def __init__(self, streams: list) -> None:
        self.streams = streams

    def push(self, events: np.ndarray) -> np.ndarray:
        out = _events(events)
        for s in self.streams:
            out = s.push(out)
        return out if out is not events else out.copy()
