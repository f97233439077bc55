"""dvsapp.core.binning: identity with tonic's ToFrame, voxel grid, streaming binner."""

from __future__ import annotations

import numpy as np
import pytest
import tonic.transforms as tt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dvsapp.core.binning import (
    FRAME_MODES,
    StreamBinner,
    bin_windows,
    to_frames,
    to_frames_torch,
    to_voxel_grid,
)
from dvsapp.core.errors import ConfigError, EventDataError
from dvsapp.core.events import Packet, SensorSize, concat, make_events, random_events

SIZE = SensorSize(34, 34, 2)

# every slicing mode of tonic's ToFrame, with its options
CASES = [
    {"n_time_bins": 1},
    {"n_time_bins": 7},
    {"n_time_bins": 5, "overlap": 0.3},
    {"n_event_bins": 6},
    {"n_event_bins": 4, "overlap": 0.25},
    {"time_window_us": 3000},
    {"time_window_us": 2500.5},
    {"time_window_us": 3000, "overlap": 1000},
    {"time_window_us": 3000, "overlap": 1000, "include_incomplete": True},
    {"time_window_us": 7000, "start_time_us": 0, "end_time_us": 130_000},
    {"time_window_us": 4000, "start_time_us": 20_000},
    {"time_window_us": 10_000_000},
    {"event_count": 999},
    {"event_count": 999, "overlap": 100},
    {"event_count": 999, "overlap": 100, "include_incomplete": True},
    {"event_count": 10**9},
]


def tonic_frames(events: np.ndarray, size, **kwargs) -> np.ndarray:
    """tonic's ToFrame on a copy (tonic may write into its input)."""
    names = {"time_window_us": "time_window", "start_time_us": "start_time", "end_time_us": "end_time"}
    return tt.ToFrame(sensor_size=tuple(size), **{names.get(k, k): v for k, v in kwargs.items()})(
        events.copy()
    )


def assert_same_frames(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == np.float32
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


@pytest.fixture(scope="module")
def events() -> np.ndarray:
    return random_events(20_000, SIZE, duration_us=120_000, t0_us=5_000, seed=7)


@pytest.mark.parametrize("kwargs", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_identical_to_tonic_random(events, kwargs):
    assert_same_frames(to_frames(events, SIZE, **kwargs), tonic_frames(events, SIZE, **kwargs))


@st.composite
def slicing(draw):
    mode = draw(st.sampled_from(["n_time_bins", "n_event_bins", "time_window_us", "event_count"]))
    if mode in ("n_time_bins", "n_event_bins"):
        kw = {mode: draw(st.integers(1, 12)), "overlap": draw(st.sampled_from([0, 0.0, 0.1, 0.5, 0.9]))}
    elif mode == "time_window_us":
        window = draw(st.one_of(st.integers(1, 5_000), st.floats(0.5, 5_000)))
        kw = {mode: window, "overlap": draw(st.integers(0, 100)) * window / 101}
        kw["include_incomplete"] = draw(st.booleans())
        if draw(st.booleans()):
            kw["start_time_us"] = draw(st.integers(0, 3_000))
            kw["end_time_us"] = kw["start_time_us"] + draw(st.integers(0, 12_000))
    else:
        count = draw(st.integers(1, 400))
        kw = {
            mode: count,
            "overlap": draw(st.integers(0, count - 1)),
            "include_incomplete": draw(st.booleans()),
        }
    return kw


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(
    n=st.integers(1, 400), seed=st.integers(0, 2**16), kwargs=slicing(), polarities=st.sampled_from([1, 2])
)
def test_identical_to_tonic_any_slicing(n, seed, kwargs, polarities):
    size = SensorSize(7, 5, polarities)
    ev = random_events(n, size, duration_us=10_000, t0_us=1_000, seed=seed)
    if polarities == 1:
        ev["p"] = False  # tonic accepts one polarity only on a single-polarity sensor
    assert_same_frames(to_frames(ev, size, **kwargs), tonic_frames(ev, size, **kwargs))


@pytest.mark.parametrize("kwargs", CASES[::2], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_torch_path_matches_numpy(events, kwargs):
    torch = pytest.importorskip("torch")
    got = to_frames_torch(events, SIZE, **kwargs)
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), to_frames(events, SIZE, **kwargs))


@pytest.mark.parametrize(
    "kwargs",
    [{"n_time_bins": 3}, {"n_event_bins": 3}, {"time_window_us": 100}, {"event_count": 5}],
    ids=str,
)
def test_single_event_identical_to_tonic(kwargs):
    one = make_events([3], [4], [1234], [True])
    ours = to_frames(one, SIZE, **kwargs)
    assert_same_frames(ours, tonic_frames(one, SIZE, **kwargs))
    # documented quirk kept for identity: the bin modes lose the last event, the others keep it
    expected_total = 0 if ("n_time_bins" in kwargs or "n_event_bins" in kwargs) else 1
    assert ours.sum() == expected_total
    if expected_total:
        assert ours[0, 1, 4, 3] == 1


@pytest.mark.parametrize(
    ("kwargs", "n_frames"),
    [
        ({"n_time_bins": 4}, 4),
        ({"n_event_bins": 5}, 5),
        ({"time_window_us": 100}, 1),
        ({"event_count": 7}, 1),
        ({"time_window_us": 100, "start_time_us": 0, "end_time_us": 1000}, 10),
    ],
    ids=str,
)
def test_empty_input_our_choice(kwargs, n_frames):
    empty = np.zeros(0, dtype=random_events(1).dtype)
    size = SensorSize(5, 3, 2)  # not square: shows the axis order
    ours = to_frames(empty, size, **kwargs)
    assert ours.shape == (n_frames, 2, 3, 5) and ours.dtype == np.float32
    assert not ours.any()
    theirs = tonic_frames(empty, size, **kwargs)
    # tonic: [T, P, W, H] float64 zeros, one frame for time_window whatever the bounds
    assert theirs.shape[2:] == (5, 3) and theirs.dtype == np.float64
    if "start_time_us" not in kwargs:
        assert theirs.shape[0] == n_frames


def test_single_polarity_sensor_counts_both_polarities():
    ev = random_events(500, (8, 8, 2), seed=3)
    ours = to_frames(ev, (8, 8, 1), n_time_bins=2)
    assert ours.shape == (2, 1, 8, 8)
    both = to_frames(ev, (8, 8, 2), n_time_bins=2)
    np.testing.assert_array_equal(ours[:, 0], both.sum(axis=1))
    off_only = ev[~ev["p"]]
    assert_same_frames(
        to_frames(off_only, (8, 8, 1), n_time_bins=2), tonic_frames(off_only, (8, 8, 1), n_time_bins=2)
    )


def test_input_not_modified(events):
    before = events.copy()
    to_frames(events, SIZE, time_window_us=1000)
    to_voxel_grid(events, SIZE, 4, signed=True)
    bin_windows(events, SIZE, 1000, 5)
    np.testing.assert_array_equal(events, before)


def test_counts_above_int16_are_exact():
    n = 40_000  # tonic's int16 frames wrap here
    ev = make_events(np.zeros(n), np.zeros(n), np.arange(n), np.ones(n))
    assert to_frames(ev, (2, 2, 2), event_count=n)[0, 1, 0, 0] == n


@pytest.mark.parametrize(
    "bad",
    [
        make_events([34], [0], [0], [True]),
        make_events([0], [-1], [0], [True]),
        make_events([0], [40], [0], [True]),
    ],
)
def test_events_outside_sensor_raise(bad):
    with pytest.raises(EventDataError):
        to_frames(bad, SIZE, n_time_bins=2)
    with pytest.raises(EventDataError):
        StreamBinner(SIZE, 100, 2).push(Packet(bad, 10))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"n_time_bins": 2, "event_count": 3},
        {"n_time_bins": 0},
        {"time_window_us": -5},
        {"time_window_us": 100, "overlap": 100},
        {"event_count": 10, "overlap": 10},
        {"n_time_bins": 3, "overlap": 1.0},
        {"n_time_bins": 2.5},
    ],
    ids=str,
)
def test_bad_slicing_raises_config_error(events, kwargs):
    with pytest.raises(ConfigError):
        to_frames(events, SIZE, **kwargs)


def test_bad_sensor_and_stream_settings_raise():
    ev = random_events(10, (4, 4))
    with pytest.raises(ConfigError):
        to_frames(ev, (4, 4, 3), n_time_bins=1)
    with pytest.raises(ConfigError):
        StreamBinner((4, 4, 2), 0, 4)
    with pytest.raises(ConfigError):
        StreamBinner((4, 4, 2), 100, 4, mode="fancy")
    with pytest.raises(EventDataError):
        to_frames(np.zeros(3), (4, 4, 2), n_time_bins=1)


# --------------------------------------------------------------------------- real recordings


def _sorted(ev: np.ndarray) -> np.ndarray:
    return ev[np.argsort(ev["t"], kind="stable")]


def _read_aedat4(path) -> np.ndarray:
    import aedat

    parts = [p["events"] for p in aedat.Decoder(str(path)) if "events" in p]
    ev = np.concatenate(parts)
    return _sorted(make_events(ev["x"], ev["y"], ev["t"].astype(np.int64), ev["on"]))


def _read_expelliarmus(path, encoding: str) -> np.ndarray:
    import expelliarmus

    ev = expelliarmus.Wizard(encoding=encoding).read(str(path))
    return _sorted(make_events(ev["x"], ev["y"], ev["t"], ev["p"]))


def _read_nmnist(path) -> np.ndarray:
    from tonic.io import read_mnist_file

    dtype = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
    ev = read_mnist_file(str(path), dtype=dtype)
    return _sorted(make_events(ev["x"], ev["y"], ev["t"], ev["p"]))


REAL = {
    "dvxplorer_320x240.aedat4": (_read_aedat4, SensorSize(320, 240, 2), 111_954),
    "prophesee_evt2_640x480.raw": (lambda p: _read_expelliarmus(p, "evt2"), SensorSize(640, 480, 2), 521_252),
    "nmnist_sample.bin": (_read_nmnist, SensorSize(34, 34, 2), 4_325),
    "ncars_sample.dat": (lambda p: _read_expelliarmus(p, "dat"), SensorSize(120, 100, 2), 2_009),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_identical_to_tonic_real_recordings(shared_data, name):
    reader, size, n_expected = REAL[name]
    ev = reader(shared_data / name)
    assert len(ev) == n_expected
    span = int(ev["t"][-1] - ev["t"][0])
    for kwargs in (
        {"n_time_bins": 10},
        {"n_time_bins": 6, "overlap": 0.5},
        {"n_event_bins": 8, "overlap": 0.1},
        {"time_window_us": max(1, span // 7), "overlap": max(0, span // 30), "include_incomplete": True},
        {"event_count": len(ev) // 5 + 3, "include_incomplete": True},
    ):
        ours = to_frames(ev, size, **kwargs)
        assert_same_frames(ours, tonic_frames(ev, size, **kwargs))
    # the streaming reference sees every event of a real recording exactly once
    windows = bin_windows(ev, size, max(1, span // 40), 8)
    assert sum(w.n_events for w in windows) == len(ev)
    assert sum(float(w.frames.sum()) for w in windows) == len(ev)


# --------------------------------------------------------------------------- HD sensor (the prefetching path)

HD = SensorSize(1280, 720, 2)


def hd_events(n: int, seed: int = 0) -> np.ndarray:
    """Clustered 1280x720 events like a real HD recording: moving object edges whose pixels
    fire repeatedly, read out row by row within each 100 us, plus 5 % noise; sorted ``t``."""
    rng = np.random.default_rng(seed)
    n_noise = n // 20
    centre = rng.uniform((0, 0), (HD.width, HD.height), (8, 2))
    velocity = rng.uniform(-300, 300, (8, 2))  # px/s
    obj = rng.integers(0, 8, n - n_noise)
    t = rng.integers(0, 500_000, n - n_noise)
    angle = rng.uniform(0, 2 * np.pi, n - n_noise)
    radius = rng.uniform(20, 150, 8)[obj] + rng.normal(0, 1.0, n - n_noise)
    pos = centre[obj] + velocity[obj] * (t[:, None] / 1e6)
    x = pos[:, 0] + radius * np.cos(angle)
    y = pos[:, 1] + radius * np.sin(angle)
    x = np.concatenate([x, rng.uniform(0, HD.width, n_noise)])
    y = np.concatenate([y, rng.uniform(0, HD.height, n_noise)])
    t = np.concatenate([t, rng.integers(0, 500_000, n_noise)])
    x = np.clip(x, 0, HD.width - 1).astype(np.int64)
    y = np.clip(y, 0, HD.height - 1).astype(np.int64)
    order = np.lexsort((x, y, t // 100))
    return make_events(x[order], y[order], np.sort(t), rng.random(n) < 0.5)


@pytest.fixture(scope="module")
def hd() -> np.ndarray:
    return hd_events(300_000, seed=11)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_time_bins": 10},
        {"n_time_bins": 4, "overlap": 0.5},
        {"n_event_bins": 10},
        {"time_window_us": 60_000, "overlap": 30_000, "include_incomplete": True},
        {"time_window_us": 100_000, "start_time_us": 50_000, "end_time_us": 420_000},
        {"event_count": 70_000, "overlap": 20_000, "include_incomplete": True},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_identical_to_tonic_hd_sensor(hd, kwargs):
    assert_same_frames(to_frames(hd, HD, **kwargs), tonic_frames(hd, HD, **kwargs))


def test_hd_single_polarity_and_other_dtypes(hd):
    off = hd[~hd["p"]]
    size1 = SensorSize(HD.width, HD.height, 1)
    assert_same_frames(to_frames(off, size1, n_time_bins=5), tonic_frames(off, size1, n_time_bins=5))
    ref = to_frames(hd, HD, n_time_bins=5)
    for dtype in (np.float64, np.uint16):  # counted in place; counted in int64 and cast
        got = to_frames(hd, HD, n_time_bins=5, dtype=dtype)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, ref)


def test_int16_output_wraps_like_tonic():
    n = 40_000  # one cell past int16: counted in int64, then cast as numpy casts
    ev = make_events(np.zeros(n), np.zeros(n), np.arange(n), np.ones(n))
    got = to_frames(ev, (2, 2, 2), event_count=n, dtype=np.int16)
    theirs = tonic_frames(ev, (2, 2, 2), event_count=n)
    assert got.dtype == np.int16 and got[0, 1, 0, 0] == n - 2**16
    np.testing.assert_array_equal(got, theirs)


@pytest.mark.parametrize("where", ["counted", "after the last bin"])
def test_hd_event_outside_sensor_is_named(hd, where):
    bad = hd.copy()
    i = len(bad) // 3 if where == "counted" else len(bad) - 1  # n_time_bins never counts the last event
    bad["x"][i] = HD.width
    with pytest.raises(EventDataError, match=f"event {i} has x={HD.width}"):
        to_frames(bad, HD, n_time_bins=10)
    bad["x"][i], bad["y"][i] = 5, -3
    with pytest.raises(EventDataError, match=f"event {i} has y=-3"):
        to_frames(bad, HD, time_window_us=50_000, overlap=25_000)


def test_hd_input_may_be_a_strided_view(hd):
    view = hd[::3]
    assert not view.flags.c_contiguous
    assert_same_frames(to_frames(view, HD, n_time_bins=3), tonic_frames(view, HD, n_time_bins=3))


# --------------------------------------------------------------------------- voxel grid


def _voxel_reference(ev, size, n_bins, start, end, signed):
    """Per-event loop of the documented definition."""
    channels = 1 if signed else size.polarities
    grid = np.zeros((n_bins, channels, size.height, size.width))
    width = (end - start) / n_bins
    for e in ev:
        if not start <= e["t"] < end:
            continue
        u = (e["t"] - start) / width - 0.5
        i = int(np.floor(u))
        f = u - i
        c = 0 if (signed or size.polarities == 1) else int(e["p"])
        s = (1.0 if e["p"] else -1.0) if signed else 1.0
        for b, w in ((i, 1 - f), (i + 1, f)):
            grid[min(max(b, 0), n_bins - 1), c, e["y"], e["x"]] += s * w
    return grid


@pytest.mark.parametrize("signed", [False, True])
def test_voxel_grid_matches_definition(signed):
    size = SensorSize(6, 5, 2)
    ev = random_events(400, size, duration_us=9_000, t0_us=1_000, seed=11)
    got = to_voxel_grid(ev, size, 5, start_time_us=1_500, end_time_us=9_500, signed=signed)
    want = _voxel_reference(ev, size, 5, 1_500, 9_500, signed)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    inside = ev[(ev["t"] >= 1_500) & (ev["t"] < 9_500)]
    total = (2 * inside["p"].sum() - len(inside)) if signed else len(inside)
    assert got.sum() == pytest.approx(total, abs=1e-3)


def test_voxel_grid_bilinear_weights():
    size = SensorSize(2, 1, 2)
    # span [0, 400): 4 bins of 100 us, centres at 50, 150, 250, 350
    ev = make_events([0, 0, 1, 1], [0, 0, 0, 0], [10, 100, 150, 399], [True, True, False, True])
    grid = to_voxel_grid(ev, size, 4, start_time_us=0, end_time_us=400)
    np.testing.assert_allclose(grid[:, 1, 0, 0], [1.0 + 0.5, 0.5, 0, 0])  # t=10 clamps to bin 0; t=100 halves
    np.testing.assert_allclose(grid[:, 0, 0, 1], [0, 1.0, 0, 0])  # t=150 sits on bin 1's centre
    np.testing.assert_allclose(grid[:, 1, 0, 1], [0, 0, 0, 1.0])  # t=399 clamps to the last bin


# --------------------------------------------------------------------------- streaming binner


def _split_into_packets(ev: np.ndarray, cuts, extra_until: int = 1, jitter=None) -> list[Packet]:
    """Packets at index ``cuts``; each ``until_us`` lies between its last event and the next packet's first."""
    parts = np.split(ev, sorted(cuts))
    packets = []
    last_t = int(ev["t"][-1]) if len(ev) else 0
    for i, part in enumerate(parts):
        nxt = next((int(p["t"][0]) for p in parts[i + 1 :] if len(p)), last_t + extra_until)
        lo = int(part["t"][-1]) + 1 if len(part) else (packets[-1].until_us if packets else nxt)
        lo = min(lo, nxt)
        until = lo if jitter is None else lo + int(jitter[i % len(jitter)] * (nxt - lo))
        packets.append(Packet(part, until))
    return packets


def _stream(binner: StreamBinner, packets) -> list:
    out = []
    for pk in packets:
        out.extend(binner.push(pk))
    return out + binner.flush()


def _assert_same_windows(got, want) -> None:
    assert [(w.index, w.t_start_us, w.t_end_us, w.n_events) for w in got] == [
        (w.index, w.t_start_us, w.t_end_us, w.n_events) for w in want
    ]
    for a, b in zip(got, want):
        assert a.frames.dtype == np.float32
        np.testing.assert_array_equal(a.frames, b.frames)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    n=st.integers(0, 300),
    seed=st.integers(0, 2**16),
    step_us=st.integers(20, 700),
    steps=st.integers(1, 5),
    n_cuts=st.integers(0, 12),
    mode=st.sampled_from(sorted(FRAME_MODES)),
    extra_until=st.integers(1, 5000),
    jitter=st.lists(st.floats(0, 1), min_size=1, max_size=4),
    t0_offset=st.one_of(st.none(), st.integers(-2000, 2000)),
)
def test_stream_equals_whole_recording(n, seed, step_us, steps, n_cuts, mode, extra_until, jitter, t0_offset):
    size = SensorSize(5, 4, 2)
    rng = np.random.default_rng(seed)
    ev = random_events(
        n, size, duration_us=int(rng.integers(1, 10_000)), t0_us=int(rng.integers(0, 10**6)), seed=rng
    )
    if n and rng.random() < 0.3:  # bursts of equal timestamps across packet borders
        ev["t"] = np.sort(ev["t"] // 500 * 500)
    cuts = rng.integers(0, n + 1, n_cuts)
    packets = _split_into_packets(ev, cuts, extra_until, jitter)
    t0_us = None if (t0_offset is None or n == 0) else int(ev["t"][0]) + t0_offset
    binner = StreamBinner(size, step_us, steps, t0_us=t0_us, mode=mode, max_empty_windows=None)
    got = _stream(binner, packets)
    until = packets[-1].until_us
    if t0_us is None and n == 0:
        t0_us = packets[0].until_us // step_us * step_us
    want = bin_windows(ev, size, step_us, steps, t0_us, until_us=until, mode=mode)
    _assert_same_windows(got, want)
    # contiguous grid, nothing lost or doubled
    if got:
        assert all(b.t_start_us == a.t_end_us for a, b in zip(got, got[1:]))
    kept = ev[ev["t"] >= (t0_us if t0_us is not None else -(2**62))]
    assert sum(w.n_events for w in got) + binner.n_late_events == len(ev)
    assert sum(w.n_events for w in got) == len(kept)


def test_window_frames_equal_to_frames_time_window():
    size = SensorSize(16, 12, 2)
    ev = random_events(3_000, size, duration_us=50_000, t0_us=1_234, seed=5)
    step_us, steps = 700, 6
    windows = bin_windows(ev, size, step_us, steps)
    t0 = windows[0].t_start_us
    assert t0 == 1_234 // step_us * step_us
    stacked = np.concatenate([w.frames for w in windows])
    end = windows[-1].t_end_us
    ref = to_frames(ev, size, time_window_us=step_us, start_time_us=t0, end_time_us=end)
    np.testing.assert_array_equal(stacked, ref[: len(stacked)])
    assert_same_frames(
        stacked[: len(ref)],
        tonic_frames(ev, size, time_window_us=step_us, start_time_us=t0, end_time_us=end)[: len(stacked)],
    )


def test_quiet_stretch_closes_windows_on_time():
    size = SensorSize(4, 4, 2)
    b = StreamBinner(size, 1_000, 5)  # 5 ms windows
    first = make_events([1, 2], [1, 1], [10_000, 10_400], [True, False])
    assert b.push(Packet(first, 11_000)) == []
    assert b.t0_us == 10_000
    assert b.push(Packet(first[:0], 14_999)) == []
    out = b.push(Packet(first[:0], 15_000))  # window [10000, 15000) is now complete
    assert [(w.t_start_us, w.n_events) for w in out] == [(10_000, 2)]
    assert out[0].frames[0, 1, 1, 1] == 1 and out[0].frames[0, 0, 1, 2] == 1 and out[0].frames.sum() == 2
    out = b.push(Packet(first[:0], 31_000))  # three quiet windows close, empty
    assert [(w.index, w.t_start_us, w.n_events) for w in out] == [
        (1, 15_000, 0),
        (2, 20_000, 0),
        (3, 25_000, 0),
    ]
    assert all(not w.frames.any() and w.frames.shape == (5, 2, 4, 4) for w in out)
    assert b.flush() == []  # open window holds no events


def test_flush_emits_partial_window_and_arrival_time():
    size = SensorSize(4, 4, 2)
    b = StreamBinner(size, 100, 4)
    ev = make_events([0, 1, 2], [0, 0, 0], [50, 120, 430], [True, True, True])
    out = b.push(Packet(ev, 431), arrival_s=12.5)
    assert [(w.t_start_us, w.t_end_us, w.n_events, w.arrival_s) for w in out] == [(0, 400, 2, 12.5)]
    last = b.flush(arrival_s=13.0)
    assert [(w.index, w.t_start_us, w.n_events, w.arrival_s) for w in last] == [(1, 400, 1, 13.0)]
    assert last[0].frames[0, 1, 0, 2] == 1 and last[0].frames[1:].sum() == 0  # zero-padded
    assert b.flush() == []


def test_time_jump_is_capped_and_counted():
    size = SensorSize(4, 4, 2)
    b = StreamBinner(size, 1_000, 2, max_empty_windows=3)
    a = make_events([0], [0], [0], [True])
    z = make_events([1], [1], [10_000_000], [False])
    out = b.push(Packet(a, 1)) + b.push(Packet(z, 10_000_001)) + b.flush()
    assert [w.index for w in out] == [0, 1, 2, 3, 5_000]
    assert b.n_skipped_windows == 5_000 - 1 - 3
    assert out[-1].t_start_us == 10_000_000 and out[-1].n_events == 1
    ref = bin_windows(concat([a, z]), size, 1_000, 2, until_us=10_000_001, max_empty_windows=3)
    _assert_same_windows(out, ref)


def test_late_events_are_dropped_and_counted():
    size = SensorSize(4, 4, 2)
    b = StreamBinner(size, 100, 2, t0_us=1_000)
    early = make_events([0, 1], [0, 0], [900, 1_050], [True, True])
    assert b.push(Packet(early, 1_200))[0].n_events == 1
    assert b.n_late_events == 1
    late = make_events([2], [0], [1_150], [True])  # its window [1000, 1200) already closed
    assert b.push(Packet(late, 1_300)) == []
    assert b.n_late_events == 2


def test_unsorted_packet_raises():
    b = StreamBinner(SensorSize(4, 4, 2), 100, 2)
    with pytest.raises(EventDataError, match="not sorted"):
        b.push(Packet(make_events([0, 1], [0, 0], [50, 10], [True, True]), 100))


def test_empty_first_packet_sets_grid_from_until():
    b = StreamBinner(SensorSize(4, 4, 2), 1_000, 2)
    assert b.push(Packet(make_events([], [], [], []), 5_500)) == []
    assert b.t0_us == 5_000
    out = b.push(Packet(make_events([1], [1], [6_100], [True]), 7_000))
    assert [(w.t_start_us, w.n_events) for w in out] == [(5_000, 1)]
    assert out[0].frames[1, 1, 1, 1] == 1


def test_carries_only_open_window():
    size = SensorSize(8, 8, 2)
    ev = random_events(20_000, size, duration_us=1_000_000, seed=2)
    b = StreamBinner(size, 1_000, 10)
    for part in np.array_split(ev, 50):
        b.push(Packet(part, int(part["t"][-1]) + 1))
        assert len(b._buf) <= 20_000 * 10_000 / 1_000_000 * 3  # ~ one window's worth, never the stream
        if len(b._buf):
            assert b._buf["t"][0] >= b.t0_us + b.next_index * b.window_us
