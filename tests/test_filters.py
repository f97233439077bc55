"""dvsapp.core.filters: equality with tonic where it has the filter, stream = whole array, purity."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import tonic.transforms as tt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dvsapp.core.errors import ConfigError, EventDataError
from dvsapp.core.events import SensorSize, make_events, random_events
from dvsapp.core.filters import Compose, Crop, Denoise, Downsample, HotPixel, Refractory, SpatialAdapter


@pytest.fixture(scope="module")
def events() -> np.ndarray:
    # starts well after t=0, where tonic's initial pixel memory no longer matters
    return random_events(12_000, (32, 32, 2), duration_us=600_000, t0_us=50_000, seed=3)


def _aedat_slice(path, n: int) -> np.ndarray:
    import aedat

    parts = [p["events"] for p in aedat.Decoder(str(path)) if "events" in p]
    ev = np.concatenate(parts)[:n]
    return make_events(ev["x"], ev["y"], ev["t"].astype(np.int64), ev["on"])


@pytest.mark.parametrize("filter_time_us", [500, 5_000, 40_000])
def test_denoise_identical_to_tonic(events, filter_time_us):
    ours = Denoise(filter_time_us)(events)
    theirs = tt.Denoise(filter_time=filter_time_us)(events.copy())
    assert 0 < len(ours) < len(events)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("refractory_us", [0, 1_000, 30_000])
def test_refractory_identical_to_tonic(events, refractory_us):
    ours = Refractory(refractory_us)(events)
    theirs = tt.RefractoryPeriod(delta=refractory_us)(events.copy())
    np.testing.assert_array_equal(ours, theirs)
    if refractory_us:
        assert len(ours) < len(events)


def test_denoise_and_refractory_identical_to_tonic_real(shared_data):
    ev = _aedat_slice(shared_data / "dvxplorer_320x240.aedat4", 15_000)
    for ours, theirs in (
        (Denoise(2_000), tt.Denoise(filter_time=2_000)),
        (Refractory(1_000), tt.RefractoryPeriod(delta=1_000)),
    ):
        got = ours(ev)
        assert 0 < len(got) < len(ev)
        np.testing.assert_array_equal(got, theirs(ev.copy()))


def test_denoise_documented_differences_from_tonic():
    # two neighbours firing in turn at t < filter_time: tonic counts its initial memory as a neighbour
    ev = make_events([5, 6, 6], [5, 5, 9], [10, 20, 30], [True, True, True])
    ours = Denoise(1_000)(ev)
    np.testing.assert_array_equal(ours["t"], [20])  # (6,5) has the earlier (5,5) beside it
    theirs = tt.Denoise(filter_time=1_000)(ev.copy())
    assert len(theirs) == 3  # tonic keeps them all: every pixel "fired" at t=0
    # an 8-neighbourhood sees the diagonal, the 4-neighbourhood does not
    diag = make_events([3, 4], [3, 4], [100, 200], [False, True])
    assert len(Denoise(1_000)(diag)) == 0
    np.testing.assert_array_equal(Denoise(1_000, neighbours=8)(diag)["t"], [200])
    # the pixel itself never vouches for its own events
    same = make_events([3, 3], [3, 3], [100, 200], [False, True])
    assert len(Denoise(1_000, neighbours=8)(same)) == 0


def test_refractory_documented_differences_from_tonic():
    ev = make_events([1, 1, 1, 2], [1, 1, 1, 2], [0, 50, 200, 0], [True, False, True, True])
    ours = Refractory(100)(ev)
    # first event of each pixel kept; 50 is 50 us after 0 -> dropped; 200 is 150 us after 50 -> kept
    np.testing.assert_array_equal(ours["t"], [0, 200, 0])
    theirs = tt.RefractoryPeriod(delta=100)(ev.copy())
    np.testing.assert_array_equal(theirs["t"], [200])  # tonic drops first events at t <= 0


def _hot_recording(seed: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    size = SensorSize(40, 30, 2)
    ev = random_events(60_000, size, duration_us=3_000_000, seed=seed)
    hot = (17, 9)
    ev["x"][::40], ev["y"][::40] = hot  # 1500 events ~ 500 Hz at one pixel, others ~ 25 events
    return ev, hot


def test_hot_pixel_removed_after_first_block():
    ev, (hx, hy) = _hot_recording()
    f = HotPixel(factor=10, min_events=20, block_us=200_000)
    out = f(ev)
    at_hot = (ev["x"] == hx) & (ev["y"] == hy)
    out_hot = (out["x"] == hx) & (out["y"] == hy)
    # only the first block passes: its events are all kept, the rest of the hot pixel is gone
    first_block_end = (int(ev["t"][0]) // 200_000 + 1) * 200_000
    assert out_hot.sum() == (at_hot & (ev["t"] < first_block_end)).sum() > 0
    np.testing.assert_array_equal(out[~out_hot], ev[~at_hot])  # no other pixel touched
    s = f.stream()
    for part in np.array_split(ev, 9):
        s.push(part)
    np.testing.assert_array_equal(s.hot_pixels(), [[hx, hy]])
    # tonic's whole-recording rule finds the same pixel
    theirs = tt.DropPixel(hot_pixel_frequency=100)(ev.copy())
    assert len(theirs) == len(ev) - at_hot.sum()


def test_hot_pixel_keeps_uniform_activity():
    ev = random_events(30_000, (20, 20, 2), duration_us=2_000_000, seed=9)
    np.testing.assert_array_equal(HotPixel()(ev), ev)


def test_spatial_adapter_pad_keeps_everything_and_aspect():
    in_size = SensorSize(320, 240, 2)
    ev = random_events(50_000, in_size, seed=1)
    pad = SpatialAdapter(in_size, (64, 64), mode="pad")
    assert pad.out_size == SensorSize(64, 64, 2) and pad.scale == Fraction(1, 5)
    out = pad(ev)
    assert len(out) == len(ev)
    # 320x240 * 1/5 = 64x48, centred vertically: rows 8..55
    assert (out["x"].min(), out["x"].max(), out["y"].min(), out["y"].max()) == (0, 63, 8, 55)
    np.testing.assert_array_equal(out["x"], ev["x"] // 5)
    np.testing.assert_array_equal(out["y"], ev["y"] // 5 + 8)
    np.testing.assert_array_equal(out["t"], ev["t"])
    np.testing.assert_array_equal(out["p"], ev["p"])
    assert pad.source_rect == (0, 0, 320, 240)


def test_spatial_adapter_crop_fills_output_centred():
    in_size = SensorSize(346, 260, 2)
    ev = random_events(80_000, in_size, seed=2)
    crop = SpatialAdapter(in_size, SensorSize(128, 128, 2), mode="crop")
    assert crop.scale == Fraction(128, 260)
    out = crop(ev)
    assert 0 < len(out) < len(ev)
    assert (out["x"].min(), out["x"].max(), out["y"].min(), out["y"].max()) == (0, 127, 0, 127)
    # the kept band of columns is centred: as many columns cut on the left as on the right
    row = make_events(np.arange(346), np.full(346, 130), np.arange(346), np.ones(346))
    kept_x = row["x"][np.isin(row["t"], crop(row)["t"])]
    assert len(kept_x) == kept_x.max() - kept_x.min() + 1 < 346
    assert kept_x.min() == 346 - 1 - kept_x.max()
    x, y, w, h = crop.source_rect  # 260 rows fill 128: a centred 260x260 square of the sensor
    assert (x, y, w, h) == (43, 0, 260, 260)
    assert (kept_x.min(), kept_x.max() + 1) == (x, x + w)
    # every output pixel is hit about equally often (no empty rows or columns from rounding)
    per_col = np.bincount(out["x"], minlength=128)
    assert per_col.min() > 0.5 * per_col.mean()


def test_spatial_adapter_integer_factor_matches_downsample_and_tonic():
    ev = random_events(20_000, (128, 128, 2), seed=4)
    a = SpatialAdapter((128, 128), (64, 64), mode="crop")(ev)
    b = Downsample(2)(ev)
    np.testing.assert_array_equal(a, b)
    for factor in (2, 4):
        theirs = tt.Downsample(spatial_factor=1 / factor)(ev.copy())
        np.testing.assert_array_equal(Downsample(factor)(ev), theirs)
    assert Downsample(3).output_size((128, 128, 2)) == SensorSize(43, 43, 2)


def test_crop_matches_tonic_center_crop():
    size = SensorSize(50, 40, 2)
    ev = random_events(10_000, size, seed=6)
    ours = Crop.centered(size, 20, 30)(ev)
    theirs = tt.CenterCrop(sensor_size=tuple(size), size=(20, 30))(ev.copy())
    np.testing.assert_array_equal(ours, theirs)
    assert Crop(5, 5, 20, 30).output_size(size) == SensorSize(20, 30, 2)


ALL_FILTERS = [
    Denoise(3_000),
    Denoise(3_000, neighbours=8),
    Refractory(2_000),
    HotPixel(factor=3, min_events=5, block_us=20_000),
    SpatialAdapter((12, 9), (8, 8), mode="pad"),
    SpatialAdapter((12, 9), (8, 8), mode="crop"),
    Crop(2, 1, 6, 5),
    Downsample(3),
    Compose((Refractory(500), Denoise(4_000), SpatialAdapter((12, 9), (6, 6), mode="crop"))),
]


@pytest.mark.parametrize("filt", ALL_FILTERS, ids=lambda f: type(f).__name__)
def test_filters_never_modify_input(filt):
    ev = random_events(3_000, (12, 9, 2), duration_us=200_000, seed=8)
    before = ev.copy()
    out = filt(ev)
    assert out.dtype == ev.dtype
    np.testing.assert_array_equal(ev, before)
    if len(out):
        out["x"] = 0  # the output never aliases the input
        np.testing.assert_array_equal(ev, before)
    empty = filt(ev[:0])
    assert len(empty) == 0 and empty.dtype == ev.dtype


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    which=st.integers(0, len(ALL_FILTERS) - 1),
    n=st.integers(0, 800),
    seed=st.integers(0, 2**16),
    n_cuts=st.integers(0, 10),
    growing=st.booleans(),
)
def test_stream_equals_whole_array(which, n, seed, n_cuts, growing):
    filt = ALL_FILTERS[which]
    rng = np.random.default_rng(seed)
    ev = random_events(n, (12, 9, 2), duration_us=int(rng.integers(1, 200_000)), seed=rng)
    if growing and n:  # coordinates reach further out later in the stream: the pixel memory grows
        ev["x"] = np.minimum(ev["x"], np.linspace(0, 11, n).astype(np.int16))
    cuts = np.sort(rng.integers(0, n + 1, n_cuts))
    stream = filt.stream()
    parts = [stream.push(part) for part in np.split(ev, cuts)]
    got = np.concatenate(parts) if parts else ev[:0]
    np.testing.assert_array_equal(got, filt(ev))


def test_bad_input_and_settings_raise():
    neg = make_events([-1], [0], [0], [True])
    for filt in (Denoise(10), Refractory(10), HotPixel(), Downsample(2), Crop(0, 0, 2, 2)):
        with pytest.raises(EventDataError):
            filt(neg)
    with pytest.raises(EventDataError):
        Denoise(10)(np.zeros(4))
    for make in (
        lambda: Denoise(0),
        lambda: Denoise(10, neighbours=6),
        lambda: Refractory(-1),
        lambda: HotPixel(factor=0),
        lambda: Downsample(0),
        lambda: Crop(0, 0, 0, 5),
        lambda: SpatialAdapter((10, 10), (5, 5), mode="stretch"),
        lambda: SpatialAdapter((10, 0), (5, 5)),
    ):
        with pytest.raises(ConfigError):
            make()
