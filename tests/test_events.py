"""The event model: dtype, containers, helpers, and tonic compatibility."""

from __future__ import annotations

import numpy as np
import pytest
import tonic.transforms as T

from dvsapp.core.errors import EventDataError
from dvsapp.core.events import (
    EVENT_DTYPE,
    Packet,
    SensorSize,
    as_events,
    concat,
    duration_us,
    empty_events,
    make_events,
    random_events,
    time_slice,
    validate,
)


def test_dtype_matches_tonic_layout():
    from tonic.io import make_structured_array

    theirs = make_structured_array(np.array([1]), np.array([2]), np.array([3]), np.array([1]))
    assert theirs.dtype.names == EVENT_DTYPE.names
    assert [EVENT_DTYPE[n] for n in "xytp"] == [
        np.dtype(np.int16),
        np.dtype(np.int16),
        np.dtype(np.int64),
        np.dtype(bool),
    ]


def test_sensor_size_reads_as_tonic_tuple():
    s = SensorSize(320, 240)
    assert tuple(s) == (320, 240, 2)
    w, h, p = s
    assert (w, h, p) == (320, 240, 2)
    assert s.shape_hw == (240, 320)
    assert SensorSize.parse("346x260") == SensorSize(346, 260, 2)
    with pytest.raises(EventDataError):
        SensorSize.parse("12by4")


def test_tonic_transforms_accept_our_arrays_unchanged():
    sensor = SensorSize(64, 48)
    ev = random_events(5000, sensor, duration_us=100_000, seed=3)
    before = ev.copy()
    frames = T.ToFrame(sensor_size=tuple(sensor), n_time_bins=4)(ev)
    assert frames.shape == (4, 2, 48, 64)
    # tonic's n_time_bins slicing leaves the very last event out (half-open last bin)
    assert len(ev) - 1 <= frames.sum() <= len(ev)
    kept = T.Denoise(filter_time=10_000)(ev)
    assert kept.dtype == EVENT_DTYPE and 0 < len(kept) <= len(ev)
    flipped = T.RandomFlipLR(sensor_size=tuple(sensor), p=1.0)(ev)
    np.testing.assert_array_equal(flipped["x"], sensor.width - 1 - ev["x"])
    np.testing.assert_array_equal(ev, before)  # none of them touched our array


def test_make_and_validate():
    ev = make_events([0, 5], [1, 2], [10, 20], [0, 1])
    assert ev.dtype == EVENT_DTYPE and ev["p"].tolist() == [False, True]
    assert validate(ev, SensorSize(6, 3)) is ev
    with pytest.raises(EventDataError, match="x=5 outside the 5x3 sensor"):
        validate(ev, SensorSize(5, 3), path="rec.h5")
    unsorted = make_events([0, 0], [0, 0], [20, 10], [0, 0])
    with pytest.raises(EventDataError, match="not sorted") as info:
        validate(unsorted, path="rec.h5")
    assert str(info.value).startswith("rec.h5: ") and "\n" not in str(info.value)
    with pytest.raises(EventDataError, match="dtype"):
        validate(np.zeros(3))
    assert len(validate(empty_events(), SensorSize(1, 1))) == 0


def test_as_events_converts_by_name():
    other = np.zeros(3, dtype=[("t", "<u8"), ("p", "i1"), ("y", "<u2"), ("x", "<u2"), ("extra", "f4")])
    other["x"] = [1, 2, 3]
    other["t"] = [5, 6, 7]
    other["p"] = [0, 1, -1]
    ev = as_events(other)
    assert ev.dtype == EVENT_DTYPE
    assert ev["x"].tolist() == [1, 2, 3] and ev["p"].tolist() == [False, True, True]
    with pytest.raises(EventDataError, match="lack field"):
        as_events(np.zeros(2, dtype=[("x", "i2"), ("y", "i2")]))


def test_slice_and_concat_partition_the_stream():
    ev = random_events(1000, duration_us=10_000, seed=1)
    edges = [0, 2500, 2500, 7000, 10_001]
    parts = [time_slice(ev, a, b) for a, b in zip(edges[:-1], edges[1:])]
    assert all(np.all((p["t"] >= a) & (p["t"] < b)) for p, a, b in zip(parts, edges[:-1], edges[1:]))
    np.testing.assert_array_equal(concat(parts), ev)
    assert len(concat([])) == 0 and concat([]).dtype == EVENT_DTYPE
    assert duration_us(ev) == int(ev["t"][-1] - ev["t"][0])
    assert len(time_slice(ev, 5000, 1000)) == 0


def test_packet_is_frozen():
    pk = Packet(empty_events(), until_us=100)
    assert len(pk) == 0
    with pytest.raises(AttributeError):
        pk.until_us = 5  # type: ignore[misc]
