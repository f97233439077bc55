"""Pure numpy rendering behind the GUI views and the video export (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from dvsapp.app.gui.render import (
    BACKGROUND_RGB,
    NEVER_US,
    OFF_RGB,
    ON_RGB,
    PixelBuffer,
    decay_intensity,
    draw_rect_outline,
    frames_to_rgb,
    heatmap_rgb,
    render_events_rgb,
    token_grid_shape,
)
from dvsapp.core.events import SensorSize, make_events, random_events


def test_buffer_keeps_latest_event_per_pixel():
    buf = PixelBuffer.empty(SensorSize(4, 3))
    ev = make_events([1, 1, 2, 9], [0, 0, 2, 0], [10, 20, 30, 40], [True, False, True, True])
    buf.write(ev)
    assert buf.last_t_us[0, 1] == 20 and not buf.last_p[0, 1]
    assert buf.last_t_us[2, 2] == 30 and buf.last_p[2, 2]
    # x=9 lies outside the 4-wide sensor: dropped, nothing else touched
    assert (buf.last_t_us == NEVER_US).sum() == 12 - 2


def test_render_colours_and_empty_pixels():
    buf = PixelBuffer.empty(SensorSize(3, 1))
    buf.write(make_events([0, 1], [0, 0], [1000, 1000], [True, False]))
    rgb = render_events_rgb(buf.last_t_us, buf.last_p, 1000, mode="exponential", tau_us=1000)
    assert rgb.shape == (1, 3, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == ON_RGB
    assert tuple(rgb[0, 1]) == OFF_RGB
    assert tuple(rgb[0, 2]) == BACKGROUND_RGB


@pytest.mark.parametrize(
    ("mode", "age_us", "expected"),
    [
        ("exponential", 1000, np.exp(-1.0)),
        ("linear", 250, 0.75),
        ("linear", 2000, 0.0),
        ("window", 999, 1.0),
        ("window", 1000, 0.0),
    ],
)
def test_decay_kernels(mode, age_us, expected):
    last = np.array([[5000 - age_us, NEVER_US]], dtype=np.int64)
    a = decay_intensity(last, 5000, mode, 1000)
    assert a[0, 0] == pytest.approx(expected, abs=1e-6)
    assert a[0, 1] == 0.0


def test_decay_monotone_in_time_and_future_events_are_fresh(rng):
    buf = PixelBuffer.empty(SensorSize(32, 32))
    buf.write(random_events(500, (32, 32, 2), duration_us=10_000, seed=rng))
    a1 = decay_intensity(buf.last_t_us, 10_000, "exponential", 5_000)
    a2 = decay_intensity(buf.last_t_us, 30_000, "exponential", 5_000)
    assert (a2 <= a1).all() and a2.sum() < a1.sum()
    a0 = decay_intensity(buf.last_t_us, 0, "linear", 5_000)  # "now" before the events
    assert a0[buf.last_t_us > NEVER_US].min() == pytest.approx(1.0)


def test_bad_decay_arguments_raise():
    last = np.zeros((2, 2), np.int64)
    with pytest.raises(ValueError, match="not one of"):
        decay_intensity(last, 0, "cubic", 10)
    with pytest.raises(ValueError, match="> 0"):
        decay_intensity(last, 0, "linear", 0)


def test_rect_outline_clipped_to_image():
    img = np.zeros((10, 10, 3), np.uint8)
    draw_rect_outline(img, (2, 3, 4, 5), colour=(1, 2, 3))
    assert tuple(img[3, 2]) == (1, 2, 3) and tuple(img[7, 5]) == (1, 2, 3)
    assert img[5, 4].sum() == 0  # inside stays untouched
    draw_rect_outline(img, (-5, -5, 100, 100))  # larger than the image: no error
    assert img[0, 0].any() and img[9, 9].any()


def test_frames_to_rgb_lays_timesteps_side_by_side():
    frames = np.zeros((3, 2, 4, 5), np.float32)
    frames[1, 1, 2, 3] = 4.0  # an ON count in timestep 1
    frames[2, 0, 0, 0] = 4.0  # an OFF count in timestep 2
    rgb = frames_to_rgb(frames)
    assert rgb.shape == (4, 3 * 6 - 1, 3)
    assert tuple(rgb[2, 6 + 3]) == ON_RGB
    assert tuple(rgb[0, 12]) == OFF_RGB
    assert tuple(rgb[0, 0]) == BACKGROUND_RGB
    with pytest.raises(ValueError):
        frames_to_rgb(np.zeros((2, 4, 5)))


def test_heatmap_and_token_grid():
    h = heatmap_rgb(np.array([[0.0, 1.0]]))
    assert h.shape == (1, 2, 3) and h[0, 1].sum() > h[0, 0].sum()
    assert token_grid_shape(64) == (8, 8)
    assert token_grid_shape(48, 4 / 3) == (6, 8)
    assert token_grid_shape(0) == (0, 0)
