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


# --------------------------------------------------------------------------- colour scale, video frames
def test_colour_ramp_runs_from_hot_at_the_top_to_cold():
    from dvsapp.app.gui.render import colour_ramp_rgb

    ramp = colour_ramp_rgb(64)
    assert ramp.shape == (64, 1, 3) and ramp.dtype == np.uint8
    brightness = ramp[:, 0].astype(int).sum(axis=1)
    assert brightness[0] == brightness.max() and brightness[-1] == brightness.min()
    assert np.all(np.diff(brightness) <= 0)
    np.testing.assert_array_equal(ramp[0, 0], heatmap_rgb(np.ones((1, 1)))[0, 0])


def _text_columns(panel, y0, y1, x0=0, x1=None):
    """Columns of ``panel[y0:y1, x0:x1]`` holding bright (text) pixels."""
    band = panel[y0:y1, x0:x1].max(axis=2)
    return np.flatnonzero((band > 120).any(axis=0)) + x0


def _grey_text(rgb):
    """Pixels of the grey (200, 200, 200) label text, anti-aliased edges included; not the blue bars."""
    rgb = rgb.astype(int)
    return (rgb.max(axis=2) > 50) & (rgb.max(axis=2) - rgb.min(axis=2) < 20)


@pytest.mark.parametrize("size_wh", [(1280, 720), (640, 360)])
def test_video_probability_panel_shows_every_class_name_whole(size_wh):
    from dvsapp.app.gui.render import (
        FrameComposer,
        class_label,
        draw_probabilities,
        probability_rows,
        text_width,
    )
    from dvsapp.core.gestures import GESTURE_CLASSES

    names = list(GESTURE_CLASSES)
    box = FrameComposer(size_wh, names).layout()["probabilities"]
    w, h = box[2], box[3]
    panel = draw_probabilities(np.full(len(names), 0.05), names, 0, w, h)
    top, row_h = probability_rows(h, len(names))
    assert top + len(names) * row_h <= h  # every row inside the panel

    def drawn_width(i: int) -> int:
        cols = np.flatnonzero(_grey_text(panel[top + i * row_h : top + (i + 1) * row_h - 2]).any(axis=0))
        return int(cols.max() - cols.min())

    long_i = names.index("right_arm_counter_clockwise")  # 27 characters: cut to 22 before
    short_i = names.index("right_arm_clockwise")
    expected = text_width(class_label(names, long_i), 1.0) / text_width(class_label(names, short_i), 1.0)
    assert drawn_width(long_i) / drawn_width(short_i) == pytest.approx(expected, rel=0.08)
    bar_x0 = int(
        np.flatnonzero((panel[top + row_h : top + 2 * row_h - 3] == (90, 110, 140)).all(axis=2).any(axis=0))[
            0
        ]
    )
    for i in range(1, len(names)):  # every label ends before the bars begin
        band = _grey_text(panel[top + i * row_h : top + (i + 1) * row_h - 2])
        assert np.flatnonzero(band.any(axis=0)).max() < bar_x0, names[i]


def test_video_title_is_not_covered_by_the_model_input_box():
    from dvsapp.app.gui.render import TITLE_H, FrameComposer, draw_rect_outline
    from dvsapp.core.gestures import GESTURE_CLASSES

    composer = FrameComposer((1280, 720), GESTURE_CLASSES)
    events = np.full((128, 128, 3), BACKGROUND_RGB, np.uint8)
    draw_rect_outline(events, (0, 0, 128, 128), colour=(0, 255, 120), thickness=2)  # the whole sensor
    frame = composer.compose(
        events,
        rows={"prediction": []},
        t_range_us=(0, 1_000_000),
        cursor_us=0,
        title="user01_natural.aedat4  128x128",
    )
    x, y, w, h = composer.layout()["title"]
    strip = frame[y : y + h, x : x + w].astype(int)
    green = (strip[..., 1] > 200) & (strip[..., 0] < 60) & (strip[..., 2] < 160)
    assert not green.any(), "the model-input outline is drawn over the title"
    assert (strip.max(axis=2) > 150).sum() > 50  # the title itself is there
    ex, ey, ew, eh = composer.layout()["events"]
    assert ey >= y + TITLE_H and (frame[ey : ey + eh, ex : ex + ew, 1] > 200).any()  # the box, below it


def test_video_timeline_has_a_legend_of_the_classes_it_shows():
    from dvsapp.app.gui.render import class_colour, draw_timeline

    names = ["alpha", "beta", "gamma"]
    rows = {"prediction": [(0, 0, 500_000), (2, 500_000, 1_000_000)], "truth": [(2, 0, 1_000_000)]}
    with_legend = draw_timeline(rows, 0, 1_000_000, 100_000, 600, 90, names)
    without = draw_timeline(rows, 0, 1_000_000, 100_000, 600, 90)
    bottom = with_legend[-16:]
    for cid in (0, 2):  # a swatch of each shown class in the legend strip
        assert (bottom == np.array(class_colour(cid), np.uint8)).all(axis=2).sum() > 20, cid
    assert not (bottom == np.array(class_colour(1), np.uint8)).all(axis=2).any()  # beta is not shown
    assert not (without[-16:] == np.array(class_colour(0), np.uint8)).all(axis=2).any()
