"""The reusable widgets (EventView, Timeline) driven with qtbot, offscreen."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6 import QtCore  # noqa: E402

from dvsapp.app.gui.event_view import EventView  # noqa: E402
from dvsapp.app.gui.timeline import Timeline  # noqa: E402
from dvsapp.core.events import SensorSize, make_events  # noqa: E402

pytestmark = pytest.mark.gui


def test_event_view_draws_decayed_events(qtbot):
    view = EventView(SensorSize(40, 30), max_fps=0)
    qtbot.addWidget(view)
    view.add_events(make_events([5, 6], [7, 8], [1000, 1000], [True, False]))
    view.set_time(1000)
    fresh = view.render_rgb()
    assert fresh.shape == (30, 40, 3)
    assert fresh[7, 5].sum() > 300 and fresh[8, 6].sum() > 200
    view.set_decay("window", 500)
    view.set_time(2000)  # 1 ms later, window 0.5 ms: gone
    assert view.render_rgb()[7, 5].sum() == view.render_rgb()[0, 0].sum()
    view.set_decay("linear", 10_000)
    assert view.render_rgb()[7, 5].sum() > view.render_rgb()[0, 0].sum()
    with pytest.raises(ValueError):
        view.set_decay("nope", 1)
    view.clear()
    assert view.render_rgb()[7, 5].sum() == view.render_rgb()[0, 0].sum()


def test_event_view_resize_and_overlay(qtbot):
    view = EventView(max_fps=0)
    qtbot.addWidget(view)
    view.set_sensor_size(SensorSize(64, 48))
    assert view.render_rgb().shape == (48, 64, 3)
    view.set_overlay_rect(8, 0, 48, 48)
    assert view.overlay_rect == (8.0, 0.0, 48.0, 48.0)
    view.set_overlay_rect(None)
    assert view.overlay_rect is None
    view.refresh()  # uploads without error


def test_timeline_seek_segments_and_cursor(qtbot):
    tl = Timeline()
    qtbot.addWidget(tl)
    tl.resize(600, 200)
    tl.show()
    qtbot.waitExposed(tl)
    tl.set_rate(np.linspace(0.0, 4.0, 50), np.full(50, 1e5))
    tl.set_segments("prediction", [(0, 0, 1_000_000), (2, 1_000_000, 3_000_000)], ["a", "b", "c"])
    tl.set_segments("truth", [(1, 0, 4_000_000)])
    assert tl.row_names() == ["prediction", "truth"]
    assert tl.segments("prediction")[1] == (2, 1_000_000, 3_000_000)
    tl.set_cursor(2_500_000)
    assert tl.cursor_us == 2_500_000

    # click in the middle of the rate plot: seeks to about the middle of the 0..4 s range
    vb = tl._rate_vb
    scene_pt = vb.mapViewToScene(QtCore.QPointF(2.0, 5e4))
    view_pt = tl._glw.mapFromScene(scene_pt)
    with qtbot.waitSignal(tl.sigSeek, timeout=2000) as blocker:
        qtbot.mouseClick(tl._glw.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=view_pt)
    assert abs(blocker.args[0] - 2_000_000) < 150_000
    assert tl.cursor_us == blocker.args[0]
    tl.clear_segments()
    assert tl.segments("truth") == []


def test_timeline_legend_names_the_classes_its_strips_show(qtbot):
    from dvsapp.app.gui.render import class_colour

    tl = Timeline()
    qtbot.addWidget(tl)
    tl.show()
    qtbot.waitExposed(tl)
    names = ["hand_clapping", "right_hand_wave", "left_hand_wave", "air_drums"]
    tl.set_segments("prediction", [], names)
    assert not tl.legend.isVisible()  # nothing drawn yet: no legend
    tl.set_segments("prediction", [(0, 0, 1_000_000), (3, 1_000_000, 2_000_000)], names)
    tl.set_segments("truth", [(2, 0, 2_000_000)], names)
    assert tl.legend.isVisible() and tl.legend_classes() == [0, 2, 3]
    text = tl.legend.text()
    for cid in (0, 2, 3):
        r, g, b = class_colour(cid)
        assert names[cid].replace("_", " ") in text and f"rgb({r},{g},{b})" in text
    assert "right hand wave" not in text  # class 1 is in no strip
    tl.clear_segments()
    assert not tl.legend.isVisible()


def _taps(q_peak: float, k_peak: float, steps: int = 4, heads: int = 2, tokens: int = 16):
    rng = np.random.default_rng(0)
    taps = {}
    for name, peak in (("q", q_peak), ("k", k_peak), ("v", 0.1), ("out", 0.05)):
        arr = (rng.random((steps, heads, tokens)) < peak).astype(np.float32)
        arr[:, :, 0] = 1.0 if name == "q" else arr[:, :, 0]
        taps[name] = arr
    return {0: taps}


def test_attention_maps_share_one_colour_scale_shown_beside_them(qtbot):
    from dvsapp.app.gui.views import AttentionView

    view = AttentionView()
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    qtbot.waitExposed(view)
    view.set_model_info("sdsa", (4, 4))
    view.update_taps(_taps(q_peak=0.6, k_peak=0.1), None, 100_000)
    q_top = float(_taps(0.6, 0.1)[0]["q"].mean(axis=(0, 1)).max())
    assert view.scale_vmax == pytest.approx(q_top)  # the bar spans 0 .. the hottest token of any map
    (_, _), (lo, hi) = view._scale_plot.viewRange()
    assert lo == pytest.approx(0) and hi == pytest.approx(q_top)
    assert view._scale_plot.isVisible() and view._scale_plot.getAxis("right").isVisible()
    # one scale: a map that fires less is drawn darker (each map to its own maximum made both hot)
    q_bright = view.last_maps["q"].astype(int).sum(axis=2).max()
    k_bright = view.last_maps["k"].astype(int).sum(axis=2).max()
    assert k_bright < 0.8 * q_bright


def test_firing_rate_legend_is_outside_the_plot(qtbot):
    from dvsapp.app.gui.views import TAP_NAMES, AttentionView

    view = AttentionView()
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    for k in range(5):
        view.update_taps(_taps(0.5, 0.3), None, 100_000 * (k + 1))
    plot = view._rate_plot
    assert plot.legend is None  # no legend box over the curves
    legend = view._rate_legend
    assert all(f"{name}</span>" in legend.text for name in TAP_NAMES)
    below = (
        legend.mapRectToScene(legend.boundingRect()).top()
        >= plot.vb.mapRectToScene(plot.vb.boundingRect()).bottom()
    )
    assert below, "the legend overlaps the curves"
    assert all(len(curve.getData()[0]) == 5 for curve in view._rate_curves.values())
