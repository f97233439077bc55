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
