"""The DVS emulator: known answers on synthetic frames, noise rates, refractory rule, video input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dvsapp.core.emulator import DvsEmulator, EmulatorConfig, frame_to_intensity, lin_log, video_to_events
from dvsapp.core.errors import ConfigError, EventDataError, EventFileError, UnsupportedFormat
from dvsapp.core.events import EVENT_DTYPE, validate

W, H = 16, 12
BASE = 0.3


def _ideal(**kw) -> DvsEmulator:
    opts = {"mismatch_sigma": 0.0, "refractory_us": 0, "seed": 0}
    opts.update(kw)
    return DvsEmulator(W, H, **opts)


def _flat(level: float = BASE) -> np.ndarray:
    return np.full((H, W), level, dtype=np.float32)


def test_first_step_initialises_and_emits_nothing():
    emu = _ideal()
    out = emu.step(np.random.default_rng(0).uniform(0.1, 1, (H, W)), 5_000)
    assert out.dtype == EVENT_DTYPE and len(out) == 0
    assert emu.t_us == 5_000


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("sign", [1, -1])
def test_step_of_k_thresholds_gives_k_events_at_the_pixel(k, sign):
    emu = _ideal(threshold=0.2)
    emu.step(_flat(), 0)
    frame = _flat()
    # k thresholds and a quarter more, so float rounding cannot decide the count
    frame[4, 7] = BASE * math.exp(sign * 0.2 * (k + 0.25))
    ev = emu.step(frame, 1_000)
    assert len(ev) == k
    assert set(zip(ev["x"].tolist(), ev["y"].tolist())) == {(7, 4)}
    assert ev["p"].tolist() == [sign > 0] * k
    # the way back (to half a threshold past the start) crosses k levels, other polarity
    frame[4, 7] = BASE * math.exp(-sign * 0.1)
    back = emu.step(frame, 2_000)
    assert len(back) == k and back["p"].tolist() == [sign < 0] * k


def test_several_pixels_and_uint8_frames_agree_with_float_frames():
    lv = np.array([[60, 120], [200, 30]], dtype=np.uint8)
    f0 = np.kron(lv, np.ones((H // 2, W // 2), dtype=np.uint8))
    f1 = f0.copy()
    f1[0, 0] = 120  # x2 = log 0.69 -> 3 ON at threshold 0.2
    f1[H - 1, W - 1] = 200  # 30 -> 200: log 1.9 -> 9 ON
    f1[0, W - 1] = 90  # 120 -> 90: log -0.29 -> 1 OFF
    a, b = _ideal(), _ideal()
    a.step(f0, 0)
    b.step(f0.astype(np.float32) / 255, 0)
    ea, eb = a.step(f1, 2_000), b.step(f1.astype(np.float32) / 255, 2_000)
    assert np.array_equal(ea, eb)
    counts = {}
    for x, y, p in zip(ea["x"].tolist(), ea["y"].tolist(), ea["p"].tolist()):
        counts[(x, y, p)] = counts.get((x, y, p), 0) + 1
    assert counts == {(0, 0, True): 3, (W - 1, H - 1, True): 9, (W - 1, 0, False): 1}


def test_event_times_are_interpolated_linearly_in_log_intensity():
    emu = _ideal(threshold=0.2)
    emu.step(_flat(), 10_000)
    frame = _flat()
    frame[2, 3] = BASE * math.exp(0.2 * 4.5)
    ev = emu.step(frame, 11_000)
    # crossings at 1, 2, 3, 4 thresholds out of 4.5 over a 1000 us interval
    expected = [10_000 + round(1000 * j / 4.5) for j in (1, 2, 3, 4)]
    assert ev["t"].tolist() == expected
    assert np.all(np.diff(ev["t"]) >= 0)


def test_events_lie_between_the_frames_and_are_sorted(rng):
    emu = DvsEmulator(W, H, seed=3, shot_noise_rate_hz=50.0, leak_rate_hz=5.0, refractory_us=50)
    t_prev = 0
    emu.step(rng.uniform(0, 1, (H, W)), 0)
    for i in range(1, 30):
        t = i * 1_500
        ev = emu.step(rng.uniform(0, 1, (H, W)), t)
        validate(ev, (W, H))
        assert len(ev) > 0
        assert ev["t"].min() >= t_prev and ev["t"].max() <= t
        t_prev = t


def test_static_scene_without_noise_is_silent():
    emu = DvsEmulator(32, 32, seed=1)  # mismatch on, default refractory
    scene = np.random.default_rng(5).uniform(0.05, 1.0, (32, 32)).astype(np.float32)
    total = sum(len(emu.step(scene, i * 1_000)) for i in range(200))
    assert total == 0


def test_static_scene_gives_shot_noise_at_the_configured_rate():
    rate_hz, n_px, dur_s = 2.0, 64 * 64, 1.0
    emu = DvsEmulator(64, 64, shot_noise_rate_hz=rate_hz, seed=7)
    scene = _flat(0.5)
    evs = [emu.step(np.full((64, 64), 0.5, np.float32), i * 2_000) for i in range(501)]
    ev = np.concatenate(evs)
    expected = rate_hz * n_px * dur_s
    assert abs(len(ev) - expected) < 5 * math.sqrt(expected)
    assert 0.45 < ev["p"].mean() < 0.55  # random polarity
    del scene


def test_static_scene_gives_leak_events_on_only_at_the_configured_rate():
    rate_hz, dur_s = 1.0, 2.0
    emu = DvsEmulator(64, 64, leak_rate_hz=rate_hz, seed=2)
    ev = np.concatenate([emu.step(np.full((64, 64), 0.5, np.float32), i * 4_000) for i in range(501)])
    assert ev["p"].all()  # leak drives the reference down: only ON events
    expected = rate_hz * 64 * 64 * dur_s
    assert abs(len(ev) - expected) < 0.05 * expected
    # spread over the pixels, not a burst: no pixel fires far more than its share
    per_px = np.bincount(ev["y"].astype(int) * 64 + ev["x"], minlength=64 * 64)
    assert per_px.max() <= 4


def test_refractory_period_drops_events_too_close_together():
    emu = _ideal(threshold=0.2, refractory_us=300)
    emu.step(_flat(), 0)
    frame = _flat()
    frame[0, 0] = BASE * math.exp(0.2 * 5.0 + 1e-3)  # crossings every ~200 us
    ev = emu.step(frame, 1_000)
    # sequential rule: keep 1st, skip 2nd (200 us < 300 us later), keep 3rd, skip 4th, keep 5th
    assert ev["t"].tolist() == [round(1000 * 0.2 * j / (1.0 + 1e-3)) for j in (1, 3, 5)]
    # the reference still moved by five thresholds: going back gives OFF events again,
    # the first one only after the dead time since the event at 1000 us
    back = emu.step(_flat(), 2_000)
    assert not back["p"].any() and back["t"].min() >= 1_300


def _reference_emulator(frames, times, th, refr):
    """A scalar, pixel-by-pixel model of the same rules (float32 signal, float64 times)."""
    logs = [lin_log(frame_to_intensity(f), 0.02).reshape(-1) for f in frames]
    ref = logs[0].copy()
    last = np.full(ref.size, -(10**12), dtype=np.int64)
    out = []
    for i in range(1, len(frames)):
        t0, dt = int(times[i - 1]), int(times[i] - times[i - 1])
        prev, new = logs[i - 1], logs[i]
        for px in range(ref.size):
            s0 = np.float32(prev[px] - ref[px])
            s1 = np.float32(new[px] - ref[px])
            for on in (True, False):
                a, b = (float(s0), float(s1)) if on else (-float(s0), -float(s1))
                k = int(np.floor(np.float32(b if on else -s1) / np.float32(th)))
                if k < 1:
                    continue
                ref[px] = ref[px] + np.float32(k * np.float32(th) * (1 if on else -1))
                kept_t = None
                for j in range(1, k + 1):
                    t = t0 + (j * float(np.float32(th)) - a) / (b - a) * dt
                    bound = (last[px] + refr) if kept_t is None else (kept_t + refr)
                    if t >= bound - 1e-6:
                        kept_t = t
                        ti = min(max(int(np.rint(t)), t0), t0 + dt)
                        out.append((px % frames[0].shape[1], px // frames[0].shape[1], ti, on))
                        last[px] = ti
    return sorted(out, key=lambda e: (e[2], e[0], e[1], e[3]))


@pytest.mark.parametrize("refr", [0, 120, 700])
def test_vectorised_emulator_matches_a_scalar_reference(refr):
    rng = np.random.default_rng(refr)
    h, w = 5, 6
    frames = [rng.uniform(0.01, 1.0, (h, w)).astype(np.float32)]
    for _ in range(12):  # random walks in log intensity, some large jumps
        step = rng.normal(0, 0.5, (h, w))
        frames.append(np.clip(frames[-1] * np.exp(step), 0.005, 1.0).astype(np.float32))
    times = np.cumsum(rng.integers(200, 3000, len(frames)))
    emu = DvsEmulator(w, h, threshold=0.2, mismatch_sigma=0.0, refractory_us=refr, seed=0)
    got = np.concatenate([emu.step(f, int(t)) for f, t in zip(frames, times)])
    want = _reference_emulator(frames, times, 0.2, refr)
    assert len(want) > 50
    got_list = sorted(
        zip(got["x"].tolist(), got["y"].tolist(), got["t"].tolist(), got["p"].tolist()),
        key=lambda e: (e[2], e[0], e[1], e[3]),
    )
    assert got_list == want


def test_threshold_mismatch_spreads_counts_around_the_mean():
    emu = DvsEmulator(64, 64, threshold=0.2, mismatch_sigma=0.03, refractory_us=0, seed=11)
    emu.step(np.full((64, 64), 0.2, np.float32), 0)
    ev = emu.step(np.full((64, 64), 0.2 * math.exp(1.0), np.float32), 1_000)  # 5 nominal thresholds
    counts = np.bincount(ev["y"].astype(int) * 64 + ev["x"], minlength=64 * 64)
    # a pixel emits floor(1 / theta) events with theta ~ N(0.2, 0.03):
    # <= 4 events iff theta > 0.2 (half the pixels), >= 6 iff theta <= 1/6 (Phi(-1.11) = 13 %)
    assert abs(np.mean(counts <= 4) - 0.5) < 0.04
    assert abs(np.mean(counts >= 6) - 0.133) < 0.03
    assert counts.min() >= 2


def test_same_seed_same_events_and_reset_replays():
    rng = np.random.default_rng(9)
    frames = [rng.uniform(0, 1, (H, W)) for _ in range(6)]

    def run(emu):
        return np.concatenate([emu.step(f, i * 1000) for i, f in enumerate(frames)])

    a = DvsEmulator(W, H, seed=4, shot_noise_rate_hz=100.0)
    first = run(a)
    a.reset()
    assert np.array_equal(run(a), first)
    assert np.array_equal(run(DvsEmulator(W, H, seed=4, shot_noise_rate_hz=100.0)), first)
    assert not np.array_equal(run(DvsEmulator(W, H, seed=5, shot_noise_rate_hz=100.0)), first)


def test_bgr_frames_are_converted_to_grey():
    grey = np.random.default_rng(1).integers(0, 256, (H, W)).astype(np.uint8)
    bgr = np.repeat(grey[:, :, None], 3, axis=2)
    assert np.allclose(frame_to_intensity(bgr), frame_to_intensity(grey), atol=1e-3)


def test_lin_log_is_continuous_and_monotonic_at_the_floor():
    x = np.linspace(0, 0.1, 2001, dtype=np.float32)
    y = lin_log(x, 0.02)
    assert np.all(np.diff(y) > 0)
    assert abs(float(lin_log(np.float32([0.02 - 1e-6]), 0.02)[0]) - math.log(0.02)) < 1e-3
    assert np.isfinite(lin_log(np.zeros(3, np.float32), 0.02)).all()


def test_bad_input_raises_project_errors():
    emu = _ideal()
    with pytest.raises(EventDataError):
        emu.step(np.zeros((H + 1, W)), 0)
    with pytest.raises(EventDataError):
        emu.step(np.zeros((2, H, W)), 0)
    with pytest.raises(EventDataError):
        emu.step(np.full((H, W), np.nan), 0)
    emu.step(_flat(), 1_000)
    with pytest.raises(EventDataError):
        emu.step(_flat(), 999)
    with pytest.raises(ConfigError):
        DvsEmulator(0, 10)
    with pytest.raises(ConfigError):
        EmulatorConfig(threshold_on=-0.1)
    with pytest.raises(ConfigError):
        DvsEmulator(4, 4, refractory_us=-1)


def test_video_file_to_events(tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "square.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 50.0, (48, 32))
    if not writer.isOpened():
        pytest.skip("no MJPG encoder in this OpenCV build")
    for i in range(20):
        img = np.full((32, 48, 3), 40, np.uint8)
        cv2.rectangle(img, (4 + i, 10), (14 + i, 20), (230, 230, 230), -1)
        writer.write(img)
    writer.release()
    packets = list(video_to_events(path, seed=0))
    assert len(packets) == 19  # the first frame initialises
    ev = np.concatenate([p.events for p in packets])
    validate(ev, (48, 32))
    assert ev["p"].any() and (~ev["p"]).any()  # leading edge ON, trailing edge OFF
    assert ev["y"].min() >= 8 and ev["y"].max() <= 22  # only where the square moves
    assert packets[-1].until_us == round(19 * 1e6 / 50) + 1
    small = list(video_to_events(path, size=(24, 16), max_frames=5))
    assert len(small) == 4 and all(len(p.events) == 0 or p.events["x"].max() < 24 for p in small)


def test_missing_or_non_video_file_raises(tmp_path):
    with pytest.raises(UnsupportedFormat):
        next(video_to_events(tmp_path / "nope.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(EventFileError) as info:
        next(video_to_events(junk))
    assert "junk.mp4" in str(info.value)


@pytest.mark.parametrize("seed", range(4))
def test_event_counts_track_the_total_log_change(seed):
    """Without refractory, leak or noise, ON minus OFF events times the threshold follows the log change."""
    rng = np.random.default_rng(seed)
    h, w, th = 6, 7, 0.15
    emu = DvsEmulator(w, h, threshold=th, mismatch_sigma=0.0, refractory_us=0, seed=seed)
    first = rng.uniform(0.05, 1.0, (h, w)).astype(np.float32)
    frame = first
    emu.step(first, 0)
    parts = []
    t_us = 0
    for _ in range(24):
        frame = np.clip(frame * np.exp(rng.normal(0, 0.3, (h, w))), 0.03, 1.0).astype(np.float32)
        t_us += int(rng.integers(1, 4000))
        parts.append(emu.step(frame, t_us))
    ev = np.concatenate(parts)
    net = np.zeros((h, w))
    np.add.at(net, (ev["y"], ev["x"]), np.where(ev["p"], 1.0, -1.0))
    change = lin_log(frame, 0.02) - lin_log(first, 0.02)
    assert np.all(np.abs(change - th * net) < th + 1e-4)
