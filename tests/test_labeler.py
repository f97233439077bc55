"""The labeling window, driven by simulated mouse and keys (pytest-qt, offscreen)."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("PySide6")

from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from dvsapp.app.gui.labeler import LabelerWindow  # noqa: E402
from dvsapp.core.events import SensorSize, random_events  # noqa: E402
from dvsapp.core.labels import (  # noqa: E402
    LabelDocument,
    Recording,
    Segment,
    labels_path_for,
    read_labels_csv,
    sidecar_path_for,
    write_labels_csv,
)

pytestmark = pytest.mark.gui

TOL_US = 60_000  # a few pixels of the timeline at the default zoom


@pytest.fixture(autouse=True)
def _no_mouse_rate_limit(monkeypatch):
    """pyqtgraph drops mouse moves closer than 10 ms of wall-clock time (``mouseRateLimit``):
    the simulated gestures would then depend on the machine's load. Deliver every move."""
    import pyqtgraph as pg

    monkeypatch.setitem(pg.CONFIG_OPTIONS, "mouseRateLimit", 0)


@pytest.fixture
def recording(tmp_path):
    ev = random_events(20_000, (64, 64, 2), duration_us=10_000_000, t0_us=1_000, seed=3)
    return Recording(tmp_path / "user05_lab.aedat4", ev, SensorSize(64, 64))


def _open(qtbot, recording, **kwargs) -> LabelerWindow:
    window = LabelerWindow(recording, ask_on_close=False, **kwargs)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    QtWidgets.QApplication.processEvents()
    return window


def _mouse(widget, kind, pos, button, buttons) -> None:
    """Deliver one mouse event to ``widget`` synchronously, at an exact (sub-pixel) position.

    ``QTest.mouseMove`` without a pressed button goes through ``QCursor::setPos``: the hover
    move then depends on the platform (asynchronous under X, dropped when the point lies off
    the virtual screen, skipped when the cursor is already there). Sending the events
    ourselves makes the gesture the same on every machine and at every load.
    """
    event = QtGui.QMouseEvent(
        kind, pos, widget.mapToGlobal(pos), button, buttons, QtCore.Qt.KeyboardModifier.NoModifier
    )
    QtWidgets.QApplication.sendEvent(widget, event)


def _drag(
    window: LabelerWindow, t0_us: int, t1_us: int, y_frac: float = 0.5, *, grab: tuple[int, int] | None = None
) -> None:
    """Drag on the timeline from ``t0_us`` to ``t1_us``; ``grab=(segment, edge)``: check the hover grabbed that edge."""
    timeline = window.timeline
    viewport = timeline.plot_widget.viewport()
    p0, p1 = timeline.pos_for_f(t0_us, y_frac), timeline.pos_for_f(t1_us, y_frac)
    left, none = QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.MouseButton.NoButton
    move, press = QtCore.QEvent.Type.MouseMove, QtCore.QEvent.Type.MouseButtonPress
    # hover first: pyqtgraph picks the dragged item (edge line, region body or empty
    # plot) from the last hover, as it does for a hand on a real mouse
    _mouse(viewport, move, p0, none, none)
    if grab is not None:
        index, edge = grab
        assert timeline.edge_hovered(index) == edge, f"the pointer at {t0_us} us is not on edge {edge}"
    _mouse(viewport, press, p0, left, left)
    for k in range(1, 6):
        _mouse(viewport, move, p0 + (p1 - p0) * (k / 5), none, left)
    _mouse(viewport, QtCore.QEvent.Type.MouseButtonRelease, p1, left, none)
    QtWidgets.QApplication.processEvents()


def _click(window: LabelerWindow, t_us: int, y_frac: float = 0.5) -> None:
    viewport = window.timeline.plot_widget.viewport()
    QTest.mouseClick(
        viewport,
        QtCore.Qt.MouseButton.LeftButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
        window.timeline.pos_for(t_us, y_frac),
    )
    QtWidgets.QApplication.processEvents()


def _key(window, key, modifier=QtCore.Qt.KeyboardModifier.NoModifier) -> None:
    QTest.keyClick(window, key, modifier)
    QtWidgets.QApplication.processEvents()


def _near(a: int, b: int) -> bool:
    return abs(a - b) <= TOL_US


def test_create_move_resize_relabel_delete_undo_save_reopen(qtbot, recording):
    Key = QtCore.Qt.Key
    window = _open(qtbot, recording)
    # create by dragging on empty timeline
    _drag(window, 2_000_000, 4_000_000)
    assert len(window.doc.segments) == 1
    seg = window.doc.segments[0]
    assert seg.class_id == 0 and _near(seg.start_us, 2_000_000) and _near(seg.end_us, 4_000_000)
    assert window.timeline.region_count() == 1
    # move: drag from inside the segment
    _drag(window, 3_000_000, 4_000_000)
    moved = window.doc.segments[0]
    assert _near(moved.start_us, 3_000_000) and moved.duration_us == seg.duration_us
    # resize: drag the right edge
    _drag(window, moved.end_us, 6_500_000, grab=(0, 1))
    resized = window.doc.segments[0]
    assert resized.start_us == moved.start_us and _near(resized.end_us, 6_500_000)
    # relabel with a number key, then from the class list
    _key(window, Key.Key_3)
    assert window.doc.segments[0].class_id == 2
    item = window.class_list.item(6)
    QTest.mouseClick(
        window.class_list.viewport(),
        QtCore.Qt.MouseButton.LeftButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
        window.class_list.visualItemRect(item).center(),
    )
    assert window.doc.segments[0].class_id == 6
    # a second segment with mark in / mark out
    window.seek(8_000_000)
    _key(window, Key.Key_I)
    window.seek(9_000_000)
    _key(window, Key.Key_O)
    assert window.doc.segments[1] == Segment(6, 8_000_000, 9_000_000)
    # delete it, undo the delete
    _key(window, Key.Key_Delete)
    assert len(window.doc.segments) == 1
    _key(window, Key.Key_Z, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert len(window.doc.segments) == 2
    # undo the mark-out segment and the list relabel; redo one
    _key(window, Key.Key_Z, QtCore.Qt.KeyboardModifier.ControlModifier)
    _key(window, Key.Key_Z, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert window.doc.segments == (Segment(2, resized.start_us, resized.end_us),)
    _key(window, Key.Key_Y, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert window.doc.segments[0].class_id == 6
    assert window.windowTitle().startswith("*")
    # save
    _key(window, Key.Key_S, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert not window.doc.dirty and not window.windowTitle().startswith("*")
    csv = labels_path_for(recording.path)
    final = window.doc.segments
    assert csv.read_text() == f"class,startTime_usec,endTime_usec\n7,{final[0].start_us},{final[0].end_us}\n"
    window.close()
    # reopen: same segments, no recovery
    again = _open(qtbot, recording)
    assert again.doc.recovery is None
    assert again.doc.segments == final
    assert tuple(read_labels_csv(csv)) == final
    assert again.timeline.region_count() == 1


def test_click_seeks_and_selects(qtbot, recording):
    window = _open(qtbot, recording)
    window.doc.add(1, 2_000_000, 3_000_000)
    window.doc.add(2, 5_000_000, 6_000_000)
    _click(window, 7_000_000)
    assert _near(window.cursor_us, 7_000_000) and window.selected is None
    _click(window, 5_500_000)
    assert window.selected == 1
    assert window.segment_table.currentRow() == 1 or window.segment_table.selectedItems()
    _key(window, QtCore.Qt.Key.Key_P)
    assert window.selected == 0 and window.cursor_us == 2_000_000


def test_overlaps_are_refused_or_clipped(qtbot, recording):
    window = _open(qtbot, recording)
    window.doc.add(0, 4_000_000, 5_000_000)
    # drawing across an existing segment is clipped to the free gap
    _drag(window, 2_000_000, 4_600_000)
    assert len(window.doc.segments) == 2
    first = window.doc.segments[0]
    assert _near(first.start_us, 2_000_000) and first.end_us == 4_000_000
    # moving a segment onto its neighbour stops at the neighbour (drag bounds)
    _drag(window, 3_000_000, 3_900_000)
    assert window.doc.segments[0].end_us <= 4_000_000
    # with overlaps allowed, a drag inside a segment still moves it, and add may overlap
    window.overlap_box.setChecked(True)
    assert window.doc.allow_overlap
    window.doc.add(3, 4_500_000, 7_000_000)
    assert len(window.doc.segments) == 3
    # forbidding again is refused while they overlap: the box snaps back, status says why
    window.overlap_box.setChecked(False)
    assert window.doc.allow_overlap and window.overlap_box.isChecked()
    assert "overlap" in window.statusBar().currentMessage()


def test_recovery_after_unsaved_edit(qtbot, recording):
    write_labels_csv(labels_path_for(recording.path), [Segment(0, 1_000_000, 2_000_000)])
    doc = LabelDocument.open(recording.path)
    doc.add(4, 3_000_000, 4_000_000)  # autosaved only (as if the app died now)
    window = _open(qtbot, recording, recover=True)
    assert window.doc.segments == (Segment(0, 1_000_000, 2_000_000), Segment(4, 3_000_000, 4_000_000))
    assert window.doc.dirty
    window.close()
    dropped = _open(qtbot, recording, recover=False)
    assert dropped.doc.segments == (Segment(0, 1_000_000, 2_000_000),)
    assert LabelDocument.open(recording.path).recovery is None


def test_recovery_question_is_asked(qtbot, recording, monkeypatch):
    LabelDocument.open(recording.path).add(4, 3_000_000, 4_000_000)
    asked = []

    def answer(*args, **_kwargs):
        asked.append(args[2])
        return QtWidgets.QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QtWidgets.QMessageBox, "question", answer)
    window = _open(qtbot, recording)
    assert asked and "unsaved edits" in asked[0]
    assert window.doc.segments == (Segment(4, 3_000_000, 4_000_000),)


def test_close_asks_to_save(qtbot, recording, monkeypatch):
    window = _open(qtbot, recording)
    window.ask_on_close = True
    window.doc.add(1, 1_000_000, 2_000_000)
    monkeypatch.setattr(
        QtWidgets.QMessageBox, "question", lambda *a, **k: QtWidgets.QMessageBox.StandardButton.Cancel
    )
    assert not window.close()
    monkeypatch.setattr(
        QtWidgets.QMessageBox, "question", lambda *a, **k: QtWidgets.QMessageBox.StandardButton.Save
    )
    assert window.close()
    assert read_labels_csv(labels_path_for(recording.path)) == [Segment(1, 1_000_000, 2_000_000)]


def test_class_list_edit_is_saved_with_the_project(qtbot, recording):
    window = _open(qtbot, recording)
    window.add_class()
    assert window.class_list.count() == 12
    item = window.class_list.item(11)
    item.setText("12 thumbs_up")  # what an in-place edit does
    assert window.doc.class_names[-1] == "thumbs_up"
    window.choose_class(11)
    window.add_segment(1_000_000, 2_000_000)
    window.save()
    assert labels_path_for(recording.path).read_text().splitlines()[1] == "12,1000000,2000000"
    window.close()
    again = _open(qtbot, recording)
    assert again.doc.class_names[-1] == "thumbs_up"
    assert again.class_list.item(11).text() == "12 thumbs_up"
    assert sidecar_path_for(recording.path).is_file()


def test_import_csv_then_save_is_exact(qtbot, recording, tmp_path):
    src = tmp_path / "other_labels.csv"
    text = "class,startTime_usec,endTime_usec\n3,1500000,2500000\n11,4000000,5000000\n"
    src.write_text(text)
    window = _open(qtbot, recording)
    window.import_csv(src)
    assert window.timeline.region_count() == 2
    assert window.save().read_text() == text


def test_play_scrub_zoom_and_suggest(qtbot, recording):
    window = _open(qtbot, recording)
    window.seek(2_000_000)
    window.speed_box.setValue(10.0)
    _key(window, QtCore.Qt.Key.Key_Space)
    assert window.play_button.isChecked()
    qtbot.waitUntil(lambda: window.cursor_us > 2_300_000, timeout=3000)
    _key(window, QtCore.Qt.Key.Key_Space)
    assert not window.play_button.isChecked()
    assert window.event_view.time_us == window.cursor_us
    assert window.event_view.render_rgb().any()  # events shown around the cursor
    stopped = window.cursor_us
    _key(window, QtCore.Qt.Key.Key_Right)
    assert window.cursor_us == stopped + window.STEP_US
    lo, hi = window.timeline.x_range_us()
    _key(window, QtCore.Qt.Key.Key_Plus)
    lo2, hi2 = window.timeline.x_range_us()
    assert (hi2 - lo2) < 0.6 * (hi - lo)
    _key(window, QtCore.Qt.Key.Key_F)
    lo3, hi3 = window.timeline.x_range_us()
    assert (hi3 - lo3) > 0.9 * (hi - lo)
    window.suggest()  # uniform random events: nothing or whole-recording activity; never an error
    assert window.doc.problems() == []


class _Pred:
    def __init__(self, class_id: int) -> None:
        self.class_id, self.confidence = class_id, 0.9


class _FakeClassifier:
    input_size = SensorSize(32, 32)
    step_us = 20_000
    steps_per_window = 5

    def reset(self) -> None:
        pass

    def step(self, window):
        return _Pred(int(window.t_start_us // 2_000_000) % 4)


def test_prediction_strip_runs_in_a_worker(qtbot, recording, monkeypatch):
    import dvsapp.app.gui.labeler as labeler

    monkeypatch.setattr(labeler, "load_classifier", lambda checkpoint=None: _FakeClassifier())
    window = _open(qtbot, recording)
    QTest.mouseClick(window.predict_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.timeline.predictions) > 0, timeout=10_000)
    preds = window.timeline.predictions
    assert [p.class_id for p in preds] == [0, 1, 2, 3, 0]  # 2 s per class over 10 s
    assert (
        preds[0].start_us == recording.time_range_us[0]
    )  # windows on the live grid, clipped to the recording
    assert window.predict_button.isEnabled()
    assert window.doc.segments == ()  # predictions never edit the labels by themselves
    window.doc.add(5, 2_500_000, 3_000_000)
    assert window.accept_predictions() == 4  # the run overlapping the label stays out
    assert [s.class_id for s in window.doc.segments] == [0, 5, 2, 3, 0]
    _key(window, QtCore.Qt.Key.Key_Z, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert window.doc.segments == (Segment(5, 2_500_000, 3_000_000),)


def test_prediction_errors_show_in_the_status_bar(qtbot, recording, monkeypatch):
    import dvsapp.app.gui.labeler as labeler
    from dvsapp.core.errors import CheckpointError

    def missing(checkpoint=None):
        raise CheckpointError("no bundled model yet", path="tiny.safetensors")

    monkeypatch.setattr(labeler, "load_classifier", missing)
    window = _open(qtbot, recording)
    window.run_predictions()
    qtbot.waitUntil(lambda: window.predict_button.isEnabled(), timeout=10_000)
    assert "no bundled model yet" in window.statusBar().currentMessage()
    assert window.timeline.predictions == ()


def test_open_another_recording_and_a_broken_one(qtbot, recording, tmp_path, monkeypatch):
    pytest.importorskip("dvsapp.core.io")
    from dvsapp.core.io import write_events

    other = tmp_path / "other.npz"
    write_events(other, random_events(3000, (32, 32, 2), duration_us=2_000_000, seed=9), SensorSize(32, 32))
    write_labels_csv(labels_path_for(other), [Segment(9, 100_000, 900_000)])
    broken = tmp_path / "broken.aedat4"
    broken.write_bytes(b"#!AER-DAT4.0\r\n garbage")
    warnings = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    window = _open(qtbot, recording)
    window.doc.add(1, 1_000_000, 2_000_000)
    window.save()
    assert not window.open_recording(broken)
    assert warnings and str(broken) in warnings[0]
    assert window.recording.path == recording.path and len(window.doc.segments) == 1  # still usable
    _drag(window, 4_000_000, 5_000_000)
    assert len(window.doc.segments) == 2
    window.ask_on_close = True
    monkeypatch.setattr(
        QtWidgets.QMessageBox, "question", lambda *a, **k: QtWidgets.QMessageBox.StandardButton.Save
    )
    assert window.open_recording(other)
    assert read_labels_csv(labels_path_for(recording.path))[1].class_id == 0  # saved on the way out
    assert window.doc.segments == (Segment(9, 100_000, 900_000),)
    assert window.event_view.sensor_size == SensorSize(32, 32)
    assert window.timeline.region_count() == 1


# --------------------------------------------------------------------------- new-user fixes (issue 15)
def _quiet_then_busy(tmp_path) -> Recording:
    """A second of sparse noise, then a burst of motion: what a DVS recording usually starts like."""
    import numpy as np

    from dvsapp.core.events import concat

    quiet = random_events(40, (64, 64, 2), duration_us=1_000_000, t0_us=0, seed=4)
    busy = random_events(40_000, (64, 64, 2), duration_us=2_000_000, t0_us=1_000_000, seed=5)
    events = concat([quiet, busy])
    assert np.all(np.diff(events["t"]) >= 0)
    return Recording(tmp_path / "user07_quiet_start.aedat4", events, SensorSize(64, 64))


def _lit(window) -> int:
    return int((window.event_view.render_rgb().max(axis=2) > 60).sum())


def test_the_event_view_shows_events_as_soon_as_a_recording_opens(qtbot, tmp_path):
    window = _open(qtbot, _quiet_then_busy(tmp_path))
    assert not window.play_button.isChecked()
    assert 1_000_000 <= window.cursor_us <= 1_100_000  # at the first activity, not the quiet start
    assert window.event_view.time_us == window.cursor_us
    assert _lit(window) > 100, "the view is black until Play"
    window.seek(window.recording.time_range_us[0])  # the quiet start itself stays reachable
    assert window.cursor_us == window.recording.time_range_us[0]


def test_the_bundled_recording_opens_on_visible_events(qtbot):
    from conftest import RECORDINGS

    path = RECORDINGS / "gestures.aedat4"
    if not path.is_file():
        pytest.skip("needs the bundled recording")
    window = LabelerWindow(path, ask_on_close=False, recover=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert _lit(window) > 200


def test_clicking_inside_a_segment_selects_it_and_moves_the_playhead(qtbot, recording):
    window = _open(qtbot, recording)
    window.doc.add(3, 2_000_000, 4_000_000)
    window.seek(recording.time_range_us[0])
    _click(window, 3_200_000)
    assert window.selected == 0
    assert _near(window.cursor_us, 3_200_000), window.cursor_us
    assert _near(window.timeline.cursor_us, 3_200_000)
    assert f"{window.rel_s(window.cursor_us):.3f} s" in window.time_label.text()
    _click(window, 6_000_000)  # and outside any segment, as before
    assert window.selected == 0 and _near(window.cursor_us, 6_000_000)


@pytest.mark.parametrize("point_size", [None, 14])
def test_at_1600x1000_the_segment_table_and_class_list_are_not_clipped(qtbot, recording, point_size):
    from dvsapp.core.gestures import GESTURE_CLASSES

    app = QtWidgets.QApplication.instance()
    font = app.font()
    if point_size is not None:  # a desktop with larger fonts than the test platform's
        bigger = QtGui.QFont(font)
        bigger.setPointSize(point_size)
        app.setFont(bigger)
    try:
        window = _open(qtbot, recording)
        longest = max(range(len(GESTURE_CLASSES)), key=lambda i: len(GESTURE_CLASSES[i]))
        for k in range(11):  # eleven segments, the longest class name among them
            window.doc.add(longest if k == 3 else k, 200_000 + k * 800_000, 800_000 + k * 800_000)
        window.resize(1600, 1000)
        qtbot.waitUntil(lambda: window.width() == 1600)
        QtWidgets.QApplication.processEvents()
        table = window.segment_table
        header = table.horizontalHeader()
        assert header.length() <= table.viewport().width(), (header.length(), table.viewport().width())
        assert not table.horizontalScrollBar().isVisible()
        for col in range(4):  # every column at least as wide as its header and its cells
            need = max(header.sectionSizeHint(col), table.sizeHintForColumn(col))
            assert header.sectionSize(col) >= need, (col, header.sectionSize(col), need)
        classes = window.class_list
        last = classes.visualItemRect(classes.item(classes.count() - 1))
        assert classes.count() == len(GESTURE_CLASSES)
        assert last.bottom() <= classes.viewport().height(), "the class list is cut off"
        widest = max(classes.sizeHintForColumn(0), 0)
        assert widest <= classes.viewport().width()
        assert window.event_view.width() > 700  # the events keep most of the window
    finally:
        app.setFont(font)


def test_screenshot_of_the_labeler(qtbot, tmp_path):
    """A PNG of the labeler at 1600x1000 on the bundled recording (``$DVSAPP_LABELER_SCREENSHOT`` names it)."""
    import os
    from pathlib import Path

    import numpy as np
    from conftest import RECORDINGS

    path = RECORDINGS / "gestures.aedat4"
    if not path.is_file():
        pytest.skip("needs the bundled recording")
    window = LabelerWindow(path, ask_on_close=False, recover=False)
    qtbot.addWidget(window)
    window.resize(1600, 1000)
    window.show()
    qtbot.waitExposed(window)
    window.select(3, seek=True)  # the air_drums segment, selected, the playhead inside it
    window.seek(window.doc.segments[3].start_us + 700_000)
    qtbot.wait(300)
    out = Path(os.environ.get("DVSAPP_LABELER_SCREENSHOT", tmp_path / "labeler.png"))
    image = window.grab().toImage()
    assert image.save(str(out))
    rgb = image.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    pixels = np.frombuffer(rgb.constBits(), np.uint8).reshape(rgb.height(), rgb.bytesPerLine())
    pixels = pixels[:, : rgb.width() * 3].reshape(rgb.height(), rgb.width(), 3)
    view = window.event_view
    corner = view.mapTo(window, QtCore.QPoint(0, 0))
    ratio = rgb.width() / window.width()
    x0, y0 = int(corner.x() * ratio), int(corner.y() * ratio)
    area = pixels[y0 : y0 + int(view.height() * ratio), x0 : x0 + int(view.width() * ratio)].astype(int)
    lit = (area.max(axis=2) > 80).sum()
    assert lit > 300, f"the event view shows {lit} lit pixels"
