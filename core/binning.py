"""Events -> frames ``[T, P, H, W]``: offline binning and a streaming binner.

Two families live here:

* :func:`to_frames` (and :func:`to_frames_torch`) — tonic's ``ToFrame`` with
  every slicing mode (``time_window``, ``event_count``, ``n_time_bins``,
  ``n_event_bins``, with ``overlap``, ``include_incomplete``, ``start_time_us``,
  ``end_time_us``).  For a non-empty input the counts are identical to
  ``tonic.transforms.ToFrame`` (tests check it on random and real recordings).
  :func:`to_voxel_grid` gives the bilinear-in-time alternative.
* :class:`StreamBinner` and its offline reference :func:`bin_windows` — a live
  stream cut into contiguous windows of ``T`` timesteps of ``step_us`` each,
  aligned to a fixed time grid.

Differences from tonic, on purpose
----------------------------------
* Output is always ``[T, P, H, W]`` float32 (tonic: int16 counts that wrap above
  32767, and for an *empty* input float64 zeros shaped ``[T, P, W, H]``).
* Empty input: ``n_time_bins`` / ``n_event_bins`` give ``T`` zero frames and
  ``event_count`` one zero frame, as tonic; ``time_window`` gives one zero frame,
  or, when both ``start_time_us`` and ``end_time_us`` are given, as many zero
  frames as those bounds define (tonic gives one frame whatever the bounds).
* A single-polarity sensor (``P == 1``) counts both polarities into channel 0
  (tonic raises on mixed polarities and overwrites the caller's ``p`` column).
* tonic's own quirks are kept for identical output: ``n_time_bins`` uses the
  bin width ``(t[-1] - t[0]) // T``, so the events after ``t[0] + T * width``
  (always including the last event; for a single event, that event) are not
  counted; ``n_event_bins`` uses ``len // T`` events per bin, dropping the rest.
  The streaming binner has no such loss.

Inputs are event arrays of :data:`dvsapp.core.events.EVENT_DTYPE` sorted by ``t`` (see
:func:`dvsapp.core.events.validate`); coordinates outside the sensor raise
:class:`~dvsapp.core.errors.EventDataError`.  Inputs are never modified.

Streaming contract (:class:`StreamBinner`)
-------------------------------------------
* Grid: ``t0_us`` (constructor) or, by default, the first event's time of the
  first non-empty packet floored to a multiple of ``step_us`` — or, if the very
  first packet is empty, its ``until_us`` floored the same way.  Window ``k``
  covers ``[t0 + k*T*step_us, t0 + (k+1)*T*step_us)``; its timestep ``j`` covers
  ``[start + j*step_us, start + (j+1)*step_us)``.
* A window is emitted as soon as it is known complete: ``until_us >= end`` for
  the latest packet, or an event with ``t >= end`` has arrived (events are
  sorted).  A quiet stretch therefore still closes windows on time, as empty
  windows.
* A run of consecutive empty windows longer than ``max_empty_windows`` is cut:
  only its first ``max_empty_windows`` windows are emitted, the rest are counted
  in ``n_skipped_windows`` (a time jump never floods the consumer).  The next
  non-empty window keeps its true grid ``index``.
* :meth:`StreamBinner.flush` emits the open (partial) window, zero-padded, only
  when it holds events.
* Events earlier than the open window (late, or before a user-given ``t0_us``)
  are dropped and counted in ``n_late_events``.
* Only the events of the open window are carried between pushes.

:func:`bin_windows` on the concatenated stream (with the last packet's
``until_us``) yields exactly the windows :class:`StreamBinner` yields for any
split of that stream into packets.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from dvsapp.core.errors import ConfigError, EventDataError
from dvsapp.core.events import EVENT_DTYPE, Packet, SensorSize, Window, as_events

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "FRAME_MODES",
    "StreamBinner",
    "bin_windows",
    "slice_bounds",
    "to_frames",
    "to_frames_torch",
    "to_voxel_grid",
    "warm_up",
]

_SLICING_KEYS = ("n_time_bins", "time_window_us", "event_count", "n_event_bins")


# --------------------------------------------------------------------------- helpers


def _sensor(sensor_size: SensorSize | Sequence[int]) -> SensorSize:
    try:
        size = SensorSize(*(int(v) for v in sensor_size))
    except (TypeError, ValueError):
        raise ConfigError(f"sensor size {sensor_size!r} is not (width, height[, polarities])") from None
    if size.width <= 0 or size.height <= 0 or size.polarities not in (1, 2):
        raise ConfigError(f"sensor size {tuple(size)} needs width, height > 0 and 1 or 2 polarities")
    return size


def _events(events: np.ndarray) -> np.ndarray:
    ev = as_events(events)
    if ev.ndim != 1:
        raise EventDataError(f"events must be a 1-D structured array, got {ev.ndim} dimensions")
    return ev


def _raw(events: np.ndarray) -> np.ndarray:
    """The records as opaque bytes: numpy copies those with ``memcpy``, not field by field."""
    return events.view(f"V{events.dtype.itemsize}")


def _join(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.concatenate([a, b])`` for event arrays, several times faster."""
    return np.concatenate([_raw(a), _raw(b)]).view(EVENT_DTYPE)


def _check_bounds(events: np.ndarray, size: SensorSize) -> None:
    """Raise if any x/y lies outside the sensor (negative int16 reads as >= 32768 as uint16)."""
    if len(events) == 0:
        return
    for name, limit in (("x", size.width), ("y", size.height)):
        if int(events[name].view(np.uint16).max()) >= limit:
            col = events[name]
            i = int(np.flatnonzero((col < 0) | (col >= limit))[0])
            raise EventDataError(f"event {i} has {name}={int(col[i])} outside the {size} sensor")


_CHUNK = 8192
"""Events per step of the index computation: its temporaries stay in the CPU cache."""


def _pixel_index(events: np.ndarray, size: SensorSize) -> np.ndarray:
    """Flat index ``(p * H + y) * W + x`` of each event, as ``intp`` (shape ``[N]``).

    With one polarity channel, ``p`` is ignored (both polarities count in channel 0).
    Computed in cache-sized chunks straight from the (strided) columns.
    """
    n = len(events)
    out = np.empty(n, dtype=np.intp)
    x, y = events["x"], events["y"]
    p = events["p"].view(np.uint8)
    width, plane = size.width, size.width * size.height
    two = size.polarities == 2
    tmp = np.empty(min(n, _CHUNK), dtype=np.intp)
    for i0 in range(0, n, _CHUNK):
        i1 = min(n, i0 + _CHUNK)
        o = out[i0:i1]
        np.multiply(y[i0:i1], width, out=o, dtype=np.intp)
        np.add(o, x[i0:i1], out=o)
        if two:
            t = tmp[: i1 - i0]
            np.multiply(p[i0:i1], plane, out=t, dtype=np.intp)
            np.add(o, t, out=o)
    return out


def _searchsorted(t: np.ndarray, values) -> np.ndarray:
    """``np.searchsorted(t, values, side="left")`` without copying a strided ``t``.

    ``np.searchsorted`` first makes a contiguous copy of a strided column (the
    ``t`` field of a structured array); for a few values a vectorised bisection
    on the view is much cheaper.
    """
    values = np.asarray(values)
    n = len(t)
    if t.flags.c_contiguous or values.size * 64 * 8 > n:
        return np.searchsorted(t, values)
    lo = np.zeros(values.shape, dtype=np.intp)
    hi = np.full(values.shape, n, dtype=np.intp)
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) // 2
        right = active & (t[np.minimum(mid, n - 1)] < values)
        lo = np.where(right, mid + 1, lo)
        hi = np.where(active & ~right, mid, hi)


def _accumulate(flat: np.ndarray, bounds: np.ndarray, n_cells: int, dtype) -> np.ndarray:
    """Count ``flat[i0:i1]`` into one row per ``(i0, i1)`` pair of ``bounds`` ``[F, 2]`` -> ``[F, n_cells]``.

    The numpy path, used only when numba is missing.  Dense slices use
    ``np.bincount``; slices with far fewer events than cells use ``np.unique``
    counts, so a sparse frame costs its events, not its pixels.
    """
    out = np.zeros((len(bounds), n_cells), dtype=dtype)
    for row, (i0, i1) in enumerate(bounds):
        if i1 <= i0:
            continue
        part = flat[i0:i1]
        if (i1 - i0) * 8 < n_cells:
            cells, counts = np.unique(part, return_counts=True)
            out[row, cells] = counts
        else:
            out[row] = np.bincount(part, minlength=n_cells)
    return out


_PREFETCH_DEPTH = 128
"""Events between an event's cache prefetch and its increment (a power of two).

Measured on the 2-core development VM (about 200 ns to memory) counting 6 M
generated HD events into one 1280x720x2 float32 frame: depth 8, 16, 64, 128 took
53, 48, 27 and 18 ms; without prefetching 46-64 ms.  Deeper (256-1024) gained nothing.
"""

_PREFETCH_MIN_BYTES = 1 << 19
"""Frames smaller than this (bytes) stay in the CPU cache: counted without prefetching."""


def _count_kernel(buf, n, bounds, out, one, width, height, two, prefetch):
    """One pass over every event: check it, then add ``one`` to each frame whose slice holds it.

    ``buf`` is the raw bytes of ``n`` contiguous EVENT_DTYPE records (x int16 at
    byte 0, y int16 at 2, p at 12, little-endian).  ``bounds`` ``[F, 2]`` has
    non-decreasing starts and ends (every slicing mode's do), so the frames that
    hold event ``j`` are a run ``fa <= f < fb`` that only moves forward: the
    events are walked in segments over which that run is constant, each event's
    cell is computed once (also when overlapping frames count it twice), and the
    counts go straight into ``out`` ``[F, P*H*W]`` (zeroed once by the caller).
    With ``prefetch``, each event's output cell is prefetched
    :data:`_PREFETCH_DEPTH` events before it is incremented, so a frame larger
    than the CPU cache costs many overlapped memory reads instead of one stall
    per event.  Every event is checked against the sensor, counted or not;
    returns the first outside it, or -1.
    """
    n_frames = bounds.shape[0]
    plane = width * height
    uw = np.uint64(width)
    uh = np.uint64(height)
    ring = np.zeros(_PREFETCH_DEPTH, dtype=np.int64)
    fa = 0
    fb = 0
    i = 0
    while i < n:
        while fa < n_frames and bounds[fa, 1] <= i:
            fa += 1
        while fb < n_frames and bounds[fb, 0] <= i:
            fb += 1
        stop = n
        if fa < n_frames:
            stop = min(stop, bounds[fa, 1])
        if fb < n_frames:
            stop = min(stop, bounds[fb, 0])
        if fb <= fa:  # between or outside the slices: check only
            for j in range(i, stop):
                if _u16(buf, j * 13) >= uw or _u16(buf, j * 13 + 2) >= uh:
                    return j
        elif fb == fa + 1 and prefetch:
            bad = _count_one_prefetched(buf, i, stop, out[fa:fb], one, width, uw, uh, plane, two, ring)
            if bad >= 0:
                return bad
        else:
            bad = _count_run(buf, i, stop, out[fa:fb], one, width, uw, uh, plane, two, ring, prefetch)
            if bad >= 0:
                return bad
        i = stop
    return -1


# The event decode is written out in each loop below: the same lines behind a helper
# function (inlined by numba or by LLVM) ran 2-3x slower in the prefetching loop.


def _count_one_prefetched(buf, i0, i1, rows, one, width, uw, uh, plane, two, ring):
    """Events ``i0:i1`` into the one frame ``rows[0]``; each cell prefetched ``len(ring)`` events ahead."""
    depth = ring.shape[0]
    mask = depth - 1
    row = rows[0]
    fill = min(i1, i0 + depth)
    for j in range(i0, fill):
        o = j * 13
        x = _u16(buf, o)
        y = _u16(buf, o + 2)
        if x >= uw or y >= uh:
            return j
        cell = np.int64(y) * width + np.int64(x)
        if two and buf[o + 12]:
            cell += plane
        _prefetch(row, cell)
        ring[j & mask] = cell
    for j in range(fill, i1):  # steady state: prefetch event j, count event j - depth
        o = j * 13
        x = _u16(buf, o)
        y = _u16(buf, o + 2)
        if x >= uw or y >= uh:
            return j
        cell = np.int64(y) * width + np.int64(x)
        if two and buf[o + 12]:
            cell += plane
        _prefetch(row, cell)
        slot = j & mask
        rows[0, ring[slot]] += one
        ring[slot] = cell
    for k in range(max(i0, i1 - depth), i1):
        rows[0, ring[k & mask]] += one
    return -1


def _count_run(buf, i0, i1, rows, one, width, uw, uh, plane, two, ring, prefetch):
    """Events ``i0:i1`` into every frame of ``rows`` ``[k, cells]`` (overlapping slices, or small frames)."""
    depth = ring.shape[0]
    mask = depth - 1
    n_rows = rows.shape[0]
    if not prefetch:
        for j in range(i0, i1):
            o = j * 13
            x = _u16(buf, o)
            y = _u16(buf, o + 2)
            if x >= uw or y >= uh:
                return j
            cell = np.int64(y) * width + np.int64(x)
            if two and buf[o + 12]:
                cell += plane
            for f in range(n_rows):
                rows[f, cell] += one
        return -1
    for j in range(i0, i1 + depth):
        cell = 0
        if j < i1:
            o = j * 13
            x = _u16(buf, o)
            y = _u16(buf, o + 2)
            if x >= uw or y >= uh:
                return j
            cell = np.int64(y) * width + np.int64(x)
            if two and buf[o + 12]:
                cell += plane
            for f in range(n_rows):
                _prefetch(rows[f], cell)
        k = j - depth
        if k >= i0:
            late = ring[k & mask]
            for f in range(n_rows):
                rows[f, late] += one
        ring[j & mask] = cell
    return -1


def _u16(buf, o):
    """The little-endian 16-bit word at byte ``o`` (a negative int16 reads as >= 32768)."""
    return np.uint64(buf[o]) | (np.uint64(buf[o + 1]) << np.uint64(8))


try:
    import numba
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def _prefetch(typingctx, arr, index):
        """``llvm.prefetch`` (write, high locality) of ``arr[index]`` (1-D): a hint, never a fault."""
        sig = numba.types.void(arr, index)

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = cgutils.get_item_pointer(
                context, builder, signature.args[0], ary, [args[1]], wraparound=False
            )
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            builder.call(
                fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)]
            )
            return context.get_dummy_value()

        return sig, codegen

    _u16 = numba.njit(inline="always")(_u16)
    _count_one_prefetched = numba.njit(nogil=True, boundscheck=False)(_count_one_prefetched)
    _count_run = numba.njit(nogil=True, boundscheck=False)(_count_run)
    _count_kernel = numba.njit(cache=True, nogil=True, boundscheck=False)(_count_kernel)
    HAVE_NUMBA = sys.byteorder == "little"
except ImportError:  # pragma: no cover - numba is a declared dependency
    HAVE_NUMBA = False

assert EVENT_DTYPE.itemsize == 13 and [EVENT_DTYPE.fields[k][1] for k in "xyp"] == [0, 2, 12]

_DIRECT_DTYPES = frozenset(
    np.dtype(d) for d in (np.float32, np.float64, np.int32, np.int64, np.uint32, np.uint64)
)
"""Output dtypes counted in place; any other is counted in int64 and cast (numpy's cast of the count)."""


def _monotone(bounds: np.ndarray) -> bool:
    return len(bounds) < 2 or bool((np.diff(bounds, axis=0) >= 0).all())


def _count_frames(events: np.ndarray, bounds: np.ndarray, size: SensorSize, dtype) -> np.ndarray:
    """Count frames ``[F, P*H*W]`` of ``dtype`` for ``bounds`` ``[F, 2]``; checks every event's x/y.

    Raises :class:`~dvsapp.core.errors.EventDataError` naming the first event
    outside the sensor.
    """
    dtype = np.dtype(dtype)
    n_cells = size.polarities * size.height * size.width
    bounds = np.ascontiguousarray(bounds, dtype=np.int64)
    if not HAVE_NUMBA or not _monotone(bounds):  # pragma: no cover - every slicing mode is monotone
        _check_bounds(events, size)
        flat = _pixel_index(events, size) if len(events) else np.zeros(0, dtype=np.intp)
        return _accumulate(flat, bounds, n_cells, dtype)
    count_dtype = dtype if dtype in _DIRECT_DTYPES else np.dtype(np.int64)
    out = np.zeros((len(bounds), n_cells), dtype=count_dtype)
    if len(events):
        raw = np.ascontiguousarray(events).view(np.uint8)
        bad = _count_kernel(
            raw,
            len(events),
            bounds,
            out,
            count_dtype.type(1),
            size.width,
            size.height,
            size.polarities == 2,
            n_cells * count_dtype.itemsize >= _PREFETCH_MIN_BYTES,
        )
        if bad >= 0:
            _check_bounds(events, size)  # names the event in the usual words
    return out if count_dtype == dtype else out.astype(dtype)


def warm_up() -> None:
    """Load the compiled counting kernel now instead of inside the first window.

    The first call of the numba kernel in a process costs 0.5-0.9 s (LLVM set-up and
    loading the cached machine code), even when the cache is warm.  A live source
    that starts before it would see that stall as its first windows arriving late,
    and the live policy drops them.  One event counted into a 1x1 frame of the
    streaming path's dtype (float32) takes that cost here, once per process.
    """
    one = np.zeros(1, dtype=EVENT_DTYPE)
    _count_frames(one, np.array([[0, 1]], dtype=np.int64), SensorSize(1, 1, 2), np.float32)


# --------------------------------------------------------------------------- slicing (tonic's semantics)


def _time_window_bounds(
    t: np.ndarray,
    time_window_us: float,
    overlap: float,
    include_incomplete: bool,
    start_time_us: float | None,
    end_time_us: float | None,
) -> np.ndarray:
    stride = time_window_us - overlap
    if not stride > 0:
        raise ConfigError(f"overlap {overlap} must be smaller than time_window_us {time_window_us}")
    if len(t) == 0 and (start_time_us is None or end_time_us is None):
        return np.zeros((1, 2), dtype=np.int64)
    start = t[0] if start_time_us is None else start_time_us
    end = t[-1] if end_time_us is None else end_time_us
    ratio = np.float64(end - start - time_window_us) / stride
    n = int(np.ceil(ratio) if include_incomplete else np.floor(ratio)) + 1
    n = max(n, 1)
    starts = np.arange(n) * stride + start
    ends = starts + time_window_us
    return np.stack([_searchsorted(t, starts), _searchsorted(t, ends)], axis=1)


def _event_count_bounds(
    n_events: int, event_count: int, overlap: int, include_incomplete: bool
) -> np.ndarray:
    stride = event_count - overlap
    if stride <= 0:
        raise ConfigError(f"overlap {overlap} must be smaller than event_count {event_count}")
    count = min(event_count, n_events)
    ratio = (n_events - count) / stride
    n = int(math.ceil(ratio) if include_incomplete else math.floor(ratio)) + 1
    starts = np.arange(n, dtype=np.int64) * stride
    ends = np.minimum(starts + count, n_events)
    return np.stack([np.minimum(starts, n_events), ends], axis=1)


def _time_bins_bounds(t: np.ndarray, n_bins: int, overlap: float) -> np.ndarray:
    if len(t) == 0:
        return np.zeros((n_bins, 2), dtype=np.int64)
    width = (t[-1] - t[0]) // n_bins * (1 + overlap)
    stride = width * (1 - overlap)
    starts = np.arange(n_bins) * stride + t[0]
    ends = starts + width
    return np.stack([_searchsorted(t, starts), _searchsorted(t, ends)], axis=1)


def _event_bins_bounds(n_events: int, n_bins: int, overlap: float) -> np.ndarray:
    count = int(n_events // n_bins * (1 + overlap))
    stride = int(count * (1 - overlap))
    starts = np.arange(n_bins, dtype=np.int64) * stride
    ends = np.minimum(starts + count, n_events)
    return np.stack([np.minimum(starts, n_events), ends], axis=1)


def slice_bounds(
    events: np.ndarray,
    *,
    n_time_bins: int | None = None,
    time_window_us: float | None = None,
    event_count: int | None = None,
    n_event_bins: int | None = None,
    overlap: float = 0,
    include_incomplete: bool = False,
    start_time_us: float | None = None,
    end_time_us: float | None = None,
) -> np.ndarray:
    """Index pairs ``[F, 2]`` (int64, ``events[i0:i1]`` is frame ``f``) for tonic's slicing modes.

    Exactly one of ``n_time_bins``, ``time_window_us`` (µs), ``event_count`` or
    ``n_event_bins`` must be given.  ``overlap`` is in µs for ``time_window_us``,
    in events for ``event_count`` and a fraction of a bin (``0 <= overlap < 1``)
    for the two bin modes.  ``include_incomplete`` and the time bounds apply to
    the ``time_window_us``/``event_count`` modes as in tonic.
    """
    given = {
        "n_time_bins": n_time_bins,
        "time_window_us": time_window_us,
        "event_count": event_count,
        "n_event_bins": n_event_bins,
    }
    chosen = [k for k, v in given.items() if v is not None]
    if len(chosen) != 1:
        raise ConfigError(
            f"give exactly one of {', '.join(_SLICING_KEYS)} (got {', '.join(chosen) or 'none'})"
        )
    key = chosen[0]
    value = given[key]
    if not value > 0:
        raise ConfigError(f"{key} must be > 0, got {value}")
    if key in ("n_time_bins", "n_event_bins", "event_count") and int(value) != value:
        raise ConfigError(f"{key} must be an integer, got {value}")
    if key in ("n_time_bins", "n_event_bins") and not 0 <= overlap < 1:
        raise ConfigError(f"overlap for {key} is a fraction of a bin in [0, 1), got {overlap}")
    if overlap < 0:
        raise ConfigError(f"overlap must be >= 0, got {overlap}")
    t = events["t"]
    if key == "time_window_us":
        return _time_window_bounds(t, value, overlap, include_incomplete, start_time_us, end_time_us)
    if key == "event_count":
        return _event_count_bounds(len(events), int(value), int(overlap), include_incomplete)
    if key == "n_time_bins":
        return _time_bins_bounds(t, int(value), overlap)
    return _event_bins_bounds(len(events), int(value), overlap)


# --------------------------------------------------------------------------- offline binning


def to_frames(
    events: np.ndarray,
    sensor_size: SensorSize | Sequence[int],
    *,
    n_time_bins: int | None = None,
    time_window_us: float | None = None,
    event_count: int | None = None,
    n_event_bins: int | None = None,
    overlap: float = 0,
    include_incomplete: bool = False,
    start_time_us: float | None = None,
    end_time_us: float | None = None,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Accumulate events into count frames, as ``tonic.transforms.ToFrame``.

    Parameters
    ----------
    events : ndarray [N] of EVENT_DTYPE
        Sorted by ``t`` (µs).  Not modified.
    sensor_size : SensorSize or (W, H, P)
        ``P`` is 1 (polarity ignored) or 2 (``p=False`` -> channel 0, ``True`` -> 1).
    n_time_bins, time_window_us, event_count, n_event_bins
        The slicing mode: exactly one of them (see :func:`slice_bounds`).
    overlap, include_incomplete, start_time_us, end_time_us
        As in tonic's ``ToFrame`` (times in µs).
    dtype
        Output dtype (float32 by default; counts are exact up to 2**24 per cell).

    Returns
    -------
    ndarray [F, P, H, W]
        Event counts per frame, polarity channel and pixel.
    """
    size = _sensor(sensor_size)
    ev = _events(events)
    bounds = slice_bounds(
        ev,
        n_time_bins=n_time_bins,
        time_window_us=time_window_us,
        event_count=event_count,
        n_event_bins=n_event_bins,
        overlap=overlap,
        include_incomplete=include_incomplete,
        start_time_us=start_time_us,
        end_time_us=end_time_us,
    )
    frames = _count_frames(ev, bounds, size, dtype)
    return frames.reshape(len(bounds), size.polarities, size.height, size.width)


def to_frames_torch(
    events: np.ndarray,
    sensor_size: SensorSize | Sequence[int],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    **slicing,
) -> torch.Tensor:
    """:func:`to_frames` computed with ``torch.bincount`` on ``device``.

    The slice bounds are found on the CPU (``np.searchsorted``, cheap); the per-event
    flat indices and the counting run on ``device``.  Same values as :func:`to_frames`.

    Returns
    -------
    torch.Tensor [F, P, H, W]
        ``dtype`` (default float32) on ``device``.
    """
    import torch

    size = _sensor(sensor_size)
    ev = _events(events)
    _check_bounds(ev, size)
    bounds = slice_bounds(ev, **slicing)
    n_cells = size.polarities * size.height * size.width
    dtype = torch.float32 if dtype is None else dtype
    n_frames = len(bounds)
    lengths = np.maximum(bounds[:, 1] - bounds[:, 0], 0)
    total = int(lengths.sum())
    if total == 0:
        return torch.zeros((n_frames, size.polarities, size.height, size.width), dtype=dtype, device=device)

    def col(name: str) -> torch.Tensor:
        arr = np.ascontiguousarray(ev[name])
        return torch.from_numpy(arr.view(np.uint8) if arr.dtype == bool else arr).to(device)

    flat = col("y").long() * size.width + col("x").long()
    if size.polarities == 2:
        flat += col("p").long() * (size.width * size.height)
    lens_t = torch.from_numpy(lengths).to(device)
    frame_of = torch.repeat_interleave(torch.arange(n_frames, device=device), lens_t)
    # position k of the concatenated slices reads event bounds[f, 0] + (k - first position of f)
    first_pos = torch.cumsum(lens_t, 0) - lens_t
    shift = torch.from_numpy(bounds[:, 0]).to(device) - first_pos
    event_idx = torch.arange(total, device=device) + torch.repeat_interleave(shift, lens_t)
    index = frame_of * n_cells + flat[event_idx]
    counts = torch.bincount(index, minlength=n_frames * n_cells)
    return counts.to(dtype).reshape(n_frames, size.polarities, size.height, size.width)


def to_voxel_grid(
    events: np.ndarray,
    sensor_size: SensorSize | Sequence[int],
    n_time_bins: int,
    *,
    start_time_us: int | None = None,
    end_time_us: int | None = None,
    signed: bool = False,
) -> np.ndarray:
    """Voxel grid with bilinear interpolation in time.

    The span ``[start_time_us, end_time_us)`` (default ``[t[0], t[-1] + 1)``) is cut
    into ``n_time_bins`` bins of width ``w``; bin ``i`` is centred on
    ``start + (i + 0.5) * w``.  An event at ``t`` sits at ``u = (t - start) / w - 0.5``
    bins and adds ``1 - frac(u)`` to bin ``floor(u)`` and ``frac(u)`` to
    ``floor(u) + 1``; weight falling before bin 0 or after the last bin goes to that
    end bin, so each event adds exactly 1 in total.  Events outside the span are
    ignored.

    Parameters
    ----------
    signed : bool
        ``False``: one channel per polarity (``[T, P, H, W]``, weights >= 0).
        ``True``: one channel, ON events add ``+w``, OFF events ``-w`` (``[T, 1, H, W]``,
        the Zhu et al. 2019 event volume, which tonic's ``ToVoxelGrid`` also builds
        with a different time normalisation).

    Returns
    -------
    ndarray [T, P or 1, H, W] float32
    """
    size = _sensor(sensor_size)
    ev = _events(events)
    _check_bounds(ev, size)
    if int(n_time_bins) != n_time_bins or n_time_bins <= 0:
        raise ConfigError(f"n_time_bins must be a positive integer, got {n_time_bins}")
    n_bins = int(n_time_bins)
    channels = 1 if signed else size.polarities
    n_cells = channels * size.height * size.width
    shape = (n_bins, channels, size.height, size.width)
    if len(ev) == 0 and (start_time_us is None or end_time_us is None):
        return np.zeros(shape, dtype=np.float32)
    start = int(ev["t"][0]) if start_time_us is None else int(start_time_us)
    end = int(ev["t"][-1]) + 1 if end_time_us is None else int(end_time_us)
    if end <= start:
        raise ConfigError(f"voxel grid span [{start}, {end}) us is empty")
    ev = ev[(ev["t"] >= start) & (ev["t"] < end)] if len(ev) else ev
    if len(ev) == 0:
        return np.zeros(shape, dtype=np.float32)
    u = (ev["t"] - start).astype(np.float64) * (n_bins / (end - start)) - 0.5
    left = np.floor(u)
    frac = u - left
    left = left.astype(np.intp)
    right = np.clip(left + 1, 0, n_bins - 1)
    left = np.clip(left, 0, n_bins - 1)
    if signed:
        spatial = np.multiply(ev["y"], size.width, dtype=np.intp)
        spatial += ev["x"]
        sign = np.where(ev["p"], 1.0, -1.0)
    else:
        spatial = _pixel_index(ev, size)
        sign = 1.0
    index = np.concatenate([left * n_cells + spatial, right * n_cells + spatial])
    weights = np.concatenate([(1.0 - frac) * sign, frac * sign])
    grid = np.bincount(index, weights=weights, minlength=n_bins * n_cells)
    return grid.astype(np.float32).reshape(shape)


# --------------------------------------------------------------------------- window frames (per mode)


def _window_counts(
    events: np.ndarray, size: SensorSize, t_start_us: int, step_us: int, n_steps: int
) -> np.ndarray:
    edges = t_start_us + step_us * np.arange(n_steps + 1, dtype=np.int64)
    cut = _searchsorted(events["t"], edges)
    bounds = np.stack([cut[:-1], cut[1:]], axis=1)
    frames = _count_frames(events, bounds, size, np.float32)
    return frames.reshape(n_steps, size.polarities, size.height, size.width)


def _window_binary(
    events: np.ndarray, size: SensorSize, t_start_us: int, step_us: int, n_steps: int
) -> np.ndarray:
    frames = _window_counts(events, size, t_start_us, step_us, n_steps)
    np.minimum(frames, 1.0, out=frames)
    return frames


def _window_voxel(
    events: np.ndarray, size: SensorSize, t_start_us: int, step_us: int, n_steps: int
) -> np.ndarray:
    return to_voxel_grid(
        events, size, n_steps, start_time_us=t_start_us, end_time_us=t_start_us + step_us * n_steps
    )


FrameFn = Callable[[np.ndarray, SensorSize, int, int, int], np.ndarray]

FRAME_MODES: dict[str, FrameFn] = {
    "counts": _window_counts,
    "binary": _window_binary,
    "voxel": _window_voxel,
}
"""Window frame builders by mode name: ``(events, sensor, t_start_us, step_us, T) -> [T, P, H, W]``.

``counts``: events per step; ``binary``: counts clipped to 1; ``voxel``: the
bilinear voxel grid of :func:`to_voxel_grid` over the window (per polarity).
"""


def _check_stream_args(step_us: int, steps_per_window: int, mode: str, max_empty_windows: int | None) -> None:
    if int(step_us) != step_us or step_us <= 0:
        raise ConfigError(f"step_us must be a positive integer, got {step_us}")
    if int(steps_per_window) != steps_per_window or steps_per_window <= 0:
        raise ConfigError(f"steps_per_window must be a positive integer, got {steps_per_window}")
    if mode not in FRAME_MODES:
        raise ConfigError(f"binning mode {mode!r} is not one of {', '.join(FRAME_MODES)}")
    if max_empty_windows is not None and max_empty_windows < 0:
        raise ConfigError(f"max_empty_windows must be >= 0 or None, got {max_empty_windows}")


# --------------------------------------------------------------------------- offline reference


def bin_windows(
    events: np.ndarray,
    sensor_size: SensorSize | Sequence[int],
    step_us: int,
    steps_per_window: int,
    t0_us: int | None = None,
    *,
    until_us: int | None = None,
    mode: str = "counts",
    max_empty_windows: int | None = None,
) -> list[Window]:
    """Cut a whole recording into windows, exactly as :class:`StreamBinner` would.

    Window ``k`` covers ``[t0 + k*T*step_us, t0 + (k+1)*T*step_us)`` with
    ``T = steps_per_window``.  Emitted: every window that ends at or before
    ``max(until_us, t[-1])`` (empty ones too, runs of empty windows cut to
    ``max_empty_windows`` when given), then the partial window holding the
    remaining events, if any.  ``t0_us`` defaults to ``t[0]`` floored to a
    multiple of ``step_us`` (or ``until_us`` floored when there are no events);
    events before ``t0_us`` are ignored.

    Returns
    -------
    list of Window
        ``frames`` ``[T, P, H, W]`` float32, ``index`` ``k``.
    """
    size = _sensor(sensor_size)
    _check_stream_args(step_us, steps_per_window, mode, max_empty_windows)
    ev = _events(events)
    _check_bounds(ev, size)
    step_us, n_steps = int(step_us), int(steps_per_window)
    window_us = step_us * n_steps
    if t0_us is None:
        if len(ev):
            t0_us = int(ev["t"][0]) // step_us * step_us
        elif until_us is not None:
            t0_us = int(until_us) // step_us * step_us
        else:
            return []
    t0_us = int(t0_us)
    ev = ev[int(_searchsorted(ev["t"], t0_us)) :]
    horizon = -(2**62) if until_us is None else int(until_us)
    if len(ev):
        horizon = max(horizon, int(ev["t"][-1]))
    n_closed = max(0, (horizon - t0_us) // window_us)
    last_event_window = -1 if len(ev) == 0 else (int(ev["t"][-1]) - t0_us) // window_us
    n_total = max(n_closed, last_event_window + 1)
    build = FRAME_MODES[mode]
    windows: list[Window] = []
    empty_run = 0
    t = ev["t"]
    for k in range(n_total):
        start = t0_us + k * window_us
        i0, i1 = _searchsorted(t, [start, start + window_us])
        part = ev[i0:i1]
        if len(part) == 0:
            if k >= n_closed:
                continue
            empty_run += 1
            if max_empty_windows is not None and empty_run > max_empty_windows:
                continue
        else:
            empty_run = 0
        frames = build(part, size, start, step_us, n_steps)
        windows.append(Window(frames, start, start + window_us, len(part), index=k))
    return windows


# --------------------------------------------------------------------------- streaming


class StreamBinner:
    """Cut a live stream of :class:`~dvsapp.core.events.Packet` into :class:`~dvsapp.core.events.Window` s.

    Parameters
    ----------
    sensor_size : SensorSize or (W, H, P)
    step_us : int
        Length of one timestep (µs).
    steps_per_window : int
        ``T``, timesteps per window; a window lasts ``T * step_us`` µs.
    t0_us : int, optional
        Start of window 0.  Default: see the module docstring.
    mode : {"counts", "binary", "voxel"}
        Frame builder (:data:`FRAME_MODES`).
    max_empty_windows : int or None
        Longest run of consecutive empty windows emitted (None: no limit).

    Attributes
    ----------
    n_late_events : int
        Events dropped because their window had already closed.
    n_skipped_windows : int
        Empty windows not emitted because of ``max_empty_windows``.

    Notes
    -----
    The binner holds only the events of the open window.  It is not thread-safe;
    one producer pushes.
    """

    def __init__(
        self,
        sensor_size: SensorSize | Sequence[int],
        step_us: int,
        steps_per_window: int,
        *,
        t0_us: int | None = None,
        mode: str = "counts",
        max_empty_windows: int | None = 1000,
    ) -> None:
        _check_stream_args(step_us, steps_per_window, mode, max_empty_windows)
        self.sensor_size = _sensor(sensor_size)
        self.step_us = int(step_us)
        self.steps_per_window = int(steps_per_window)
        self.mode = mode
        self.max_empty_windows = max_empty_windows
        self._t0_given = None if t0_us is None else int(t0_us)
        self._build = FRAME_MODES[mode]
        self.reset()

    @property
    def window_us(self) -> int:
        """Length of one window (µs)."""
        return self.step_us * self.steps_per_window

    @property
    def t0_us(self) -> int | None:
        """Start of window 0 (None until the first packet when not given)."""
        return self._t0

    @property
    def next_index(self) -> int:
        """Index of the open window (the next one to be emitted)."""
        return self._k

    def reset(self) -> None:
        """Forget the stream: the next packet starts a new grid (unless ``t0_us`` was given)."""
        self._t0: int | None = self._t0_given
        self._k = 0
        self._buf = np.zeros(0, dtype=EVENT_DTYPE)
        self._empty_run = 0
        self.n_late_events = 0
        self.n_skipped_windows = 0

    def _window_start(self, k: int) -> int:
        assert self._t0 is not None
        return self._t0 + k * self.window_us

    def push(self, packet: Packet, *, arrival_s: float | None = None) -> list[Window]:
        """Add a packet; return the windows it completes (possibly none), oldest first.

        ``arrival_s`` is copied into the emitted windows' ``arrival_s``.  Raises
        :class:`~dvsapp.core.errors.EventDataError` for events outside the sensor or out
        of time order inside the packet.
        """
        ev = _events(packet.events)
        _check_bounds(ev, self.sensor_size)
        if len(ev) > 1:
            t = ev["t"]
            if bool((t[1:] < t[:-1]).any()):
                i = int(np.flatnonzero(t[1:] < t[:-1])[0]) + 1
                raise EventDataError(f"packet events are not sorted by time: event {i} has t={int(t[i])} us")
        until_us = int(packet.until_us)
        if self._t0 is None:
            first = int(ev["t"][0]) if len(ev) else until_us
            self._t0 = first // self.step_us * self.step_us
        if len(ev):
            open_start = self._window_start(self._k)
            if ev["t"][0] < open_start:
                n_late = int(_searchsorted(ev["t"], open_start))
                self.n_late_events += n_late
                ev = ev[n_late:]
        if len(ev):
            self._buf = _join(self._buf, ev) if len(self._buf) else ev
        horizon = until_us
        if len(self._buf):
            horizon = max(horizon, int(self._buf["t"][-1]))
        n_close = (horizon - self._window_start(self._k)) // self.window_us
        if n_close <= 0:
            return []
        return self._close(self._k + n_close, arrival_s)

    def flush(self, *, arrival_s: float | None = None) -> list[Window]:
        """Emit the open window (zero-padded) if it holds events; the stream may go on after it."""
        if len(self._buf) == 0:
            return []
        return self._close(self._k + 1, arrival_s)

    def _close(self, k_stop: int, arrival_s: float | None) -> list[Window]:
        """Emit windows ``self._k .. k_stop-1`` (empty runs capped) and keep the rest of the buffer."""
        window_us = self.window_us
        t = self._buf["t"]
        stop_us = self._window_start(k_stop)
        n_in = int(_searchsorted(t, stop_us))
        closing, self._buf = self._buf[:n_in], _raw(self._buf[n_in:]).copy().view(EVENT_DTYPE)
        # windows with events, and where their events sit in `closing`
        if n_in:
            ct = closing["t"]
            k_first = (int(ct[0]) - self._t0) // window_us
            k_last = (int(ct[-1]) - self._t0) // window_us
            if k_last - k_first <= n_in:  # usual case: cut at the window edges
                ks = np.arange(k_first, k_last + 2, dtype=np.int64)
                edges = _searchsorted(ct, self._t0 + ks * window_us)
                nonempty = np.flatnonzero(edges[1:] > edges[:-1])
                busy, cuts = ks[nonempty], np.append(edges[nonempty], n_in)
            else:  # events far apart (a time jump): only their own windows
                busy, first = np.unique((ct - self._t0) // window_us, return_index=True)
                cuts = np.append(first, n_in)
        else:
            busy, cuts = np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
        windows: list[Window] = []
        k = self._k
        for j, kb in enumerate([*busy.tolist(), k_stop]):
            windows.extend(self._empty_windows(k, kb, arrival_s))
            if kb == k_stop:
                break
            part = closing[cuts[j] : cuts[j + 1]]
            start = self._window_start(kb)
            frames = self._build(part, self.sensor_size, start, self.step_us, self.steps_per_window)
            windows.append(Window(frames, start, start + window_us, len(part), index=kb, arrival_s=arrival_s))
            self._empty_run = 0
            k = kb + 1
        self._k = k_stop
        return windows

    def _empty_windows(self, k_from: int, k_to: int, arrival_s: float | None) -> list[Window]:
        """Empty windows ``k_from .. k_to-1``, honouring the cap on a run of empty windows."""
        n = k_to - k_from
        if n <= 0:
            return []
        cap = self.max_empty_windows
        n_emit = n if cap is None else max(0, min(n, cap - self._empty_run))
        self.n_skipped_windows += n - n_emit
        self._empty_run += n
        size, n_steps = self.sensor_size, self.steps_per_window
        shape = (n_steps, size.polarities, size.height, size.width)
        out = []
        for k in range(k_from, k_from + n_emit):
            start = self._window_start(k)
            out.append(Window(np.zeros(shape, np.float32), start, start + self.window_us, 0, k, arrival_s))
        return out
