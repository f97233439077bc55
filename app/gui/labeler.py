"""The labeling tool: a thin Qt view over :class:`dvsapp.core.labels.LabelDocument`.

Layout: the event view (scrubbed / played at any speed) and a side panel with the
class list and the segment table on top; below, a zoomable timeline with the
event rate, the segments as coloured regions and the time cursor.

Mouse on the timeline:

- left click: move the cursor (inside a segment: also select it); drag the red cursor line to scrub
- left drag on empty space: create a segment of the current class
- drag inside a segment: move it; drag one of its edges: resize it
- wheel: zoom time; right / middle drag: pan or zoom (pyqtgraph)

Keys: ``I`` / ``O`` mark in / mark out (creates a segment), ``Del`` delete,
``1``..``9``, ``0`` class 1..10 (relabels the selected segment), ``Ctrl+Z`` undo,
``Ctrl+Shift+Z`` / ``Ctrl+Y`` redo, ``Ctrl+S`` save, ``Space`` play / pause,
``Left`` / ``Right`` step (``Shift``: x10), ``+`` / ``-`` zoom, ``F`` fit,
``N`` / ``P`` next / previous segment.

Every edit is autosaved to the sidecar by the document; on open, unsaved edits
from a crash are offered for recovery.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from dvsapp.app.gui.event_view import EventView
from dvsapp.app.gui.render import class_colour
from dvsapp.core.classify import load_classifier
from dvsapp.core.errors import DvsAppError
from dvsapp.core.events import time_slice
from dvsapp.core.labels import (
    LabelDocument,
    Recording,
    Segment,
    event_rate,
    load_recording,
    predict_segments,
    suggest_segments,
)

RATE_BINS = 2000
"""About this many event-rate bins over the whole recording."""

EDGE_GRAB_PX = 4
"""A press this close (screen pixels) to a segment edge drags the edge (resize)."""

OPEN_ACTIVITY = 0.25
"""On open the playhead goes where the event rate first reaches this share of its peak ..."""
OPEN_AFTER_TAUS = 3
"""... and this many decay time constants later, so the view holds that motion."""


def first_activity_us(edges_us: np.ndarray, rate_hz: np.ndarray, default_us: int) -> int:
    """End of the first rate bin at :data:`OPEN_ACTIVITY` of the peak (``default_us`` when all is quiet).

    A recording usually starts quiet (a DVS sees no change): a view of its first
    instant is black, so the labeler opens where something moves.
    """
    rate_hz = np.asarray(rate_hz, dtype=np.float64)
    if len(rate_hz) == 0 or not rate_hz.max() > 0:
        return int(default_us)
    k = int(np.argmax(rate_hz >= OPEN_ACTIVITY * rate_hz.max()))
    return int(edges_us[k + 1])


# --------------------------------------------------------------------------- timeline


class _TimelineViewBox(pg.ViewBox):
    """Left click seeks, left drag on empty space draws a new segment; time zoom only."""

    sigClickS = QtCore.Signal(float)
    sigDrawS = QtCore.Signal(float, float, bool)  # start s, current s, finished

    def __init__(self) -> None:
        super().__init__(enableMenu=False)
        self.setMouseEnabled(x=True, y=False)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 (Qt naming)
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            self.sigClickS.emit(float(self.mapSceneToView(ev.scenePos()).x()))
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            start = float(self.mapSceneToView(ev.buttonDownScenePos()).x())
            now = float(self.mapSceneToView(ev.scenePos()).x())
            self.sigDrawS.emit(start, now, bool(ev.isFinish()))
        else:
            super().mouseDragEvent(ev, axis)


class _SegmentRegion(pg.LinearRegionItem):
    """One segment on the timeline; left click selects it and moves the playhead there."""

    sigSelected = QtCore.Signal(object)
    sigClickedAt = QtCore.Signal(float)  # axis seconds of a left click inside the segment

    def __init__(self, index: int) -> None:
        super().__init__(values=(0, 1), orientation="vertical", swapMode="block")
        self.index = index
        self.setZValue(10)
        for line in self.lines:
            # pyqtgraph sizes an edge's grab zone from its pens: with a 1 px pen it is about
            # +-2 px, so pixel rounding decided between resizing and moving. A wide hover pen
            # gives every edge a grab zone of EDGE_GRAB_PX either side, and the edges sit
            # above the body so a press within it always resizes.
            line.setHoverPen(pg.mkPen((255, 255, 255), width=2 * EDGE_GRAB_PX - 2))
            line.setZValue(1)
        self.full_text = self.short_text = ""
        self.label = pg.TextItem("", anchor=(0, 0), color=(235, 235, 235))
        self.label.setZValue(11)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802
        if ev.button() == QtCore.Qt.MouseButton.LeftButton and not self.moving:
            ev.accept()
            self.sigSelected.emit(self)
            vb = self.getViewBox()
            if vb is not None:
                self.sigClickedAt.emit(float(vb.mapSceneToView(ev.scenePos()).x()))
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev) -> None:  # noqa: N802
        if ev.isStart() and ev.button() == QtCore.Qt.MouseButton.LeftButton:
            self.sigSelected.emit(self)
        super().mouseDragEvent(ev)


class SegmentTimeline(QtWidgets.QWidget):
    """Event rate, editable segment regions, cursor and mark-in line (times in µs).

    Signals
    -------
    sigSeek(int) : the user clicked / scrubbed to a time (µs).
    sigCreate(int, int) : a drag on empty space drew ``[start_us, end_us)``.
    sigEdited(int, int, int) : segment ``index`` was dragged to ``[start_us, end_us)``.
    sigSelect(int) : segment ``index`` was clicked.
    """

    sigSeek = QtCore.Signal(object)
    sigCreate = QtCore.Signal(object, object)
    sigEdited = QtCore.Signal(int, object, object)
    sigSelect = QtCore.Signal(int)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._vb = _TimelineViewBox()
        self.plot_widget = pg.PlotWidget(viewBox=self._vb, background=(20, 20, 24))
        self._plot = self.plot_widget.getPlotItem()
        self._plot.hideButtons()
        self._plot.setLabel("bottom", "time since the first event", units="s")
        self._plot.setLabel("left", "events/s")
        self._plot.getAxis("left").setWidth(60)
        self._curve = self._plot.plot(
            [], [], pen=pg.mkPen((120, 200, 255), width=1), fillLevel=0, brush=(60, 110, 160, 90)
        )
        self._cursor = pg.InfiniteLine(pos=0, angle=90, movable=True, pen=pg.mkPen((255, 80, 80), width=2))
        self._cursor.setZValue(20)
        self._plot.addItem(self._cursor, ignoreBounds=True)
        self._mark = pg.InfiniteLine(
            pos=0,
            angle=90,
            movable=False,
            pen=pg.mkPen((80, 255, 120), width=1, style=QtCore.Qt.PenStyle.DashLine),
        )
        self._mark.setVisible(False)
        self._plot.addItem(self._mark, ignoreBounds=True)
        self._preview = pg.LinearRegionItem(values=(0, 0), movable=False, brush=(200, 200, 200, 60))
        self._preview.setVisible(False)
        self._plot.addItem(self._preview, ignoreBounds=True)
        self._regions: list[_SegmentRegion] = []
        self.origin_us = 0  # the axis shows seconds since this time
        self._pred_item: pg.BarGraphItem | None = None
        self._pred_segments: tuple[Segment, ...] = ()
        self._y_top = 1.0
        self._t_range_us: tuple[int, int] = (0, 1)
        self._vb.sigClickS.connect(lambda t_s: self._seek(self._us(t_s)))
        self._vb.sigDrawS.connect(self._on_draw)
        self._vb.sigXRangeChanged.connect(lambda *_: self._fit_labels())
        self._cursor.sigDragged.connect(lambda line: self._seek(self._us(line.value()), move_line=False))
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot_widget)
        self.setMinimumHeight(160)

    # ----------------------------------------------------------------- API
    def _s(self, t_us: int) -> float:
        """Axis position (seconds since :attr:`origin_us`) of ``t_us``."""
        return (int(t_us) - self.origin_us) / 1e6

    def _us(self, t_s: float) -> int:
        return int(round(t_s * 1e6)) + self.origin_us

    def set_rate(self, edges_us: np.ndarray, rate_hz: np.ndarray) -> None:
        """Plot the event rate (``rate_hz[k]`` in bin ``[edges_us[k], edges_us[k+1])``) and fit the view."""
        edges_us = np.asarray(edges_us, dtype=np.int64)
        if len(rate_hz) == 0:
            self._curve.setData([], [])
            return
        self.origin_us = int(edges_us[0])
        centres_s = ((edges_us[:-1] - self.origin_us) + (edges_us[1:] - self.origin_us)) / 2e6
        self._curve.setData(centres_s, np.asarray(rate_hz, dtype=np.float64))
        self._y_top = max(1.0, float(np.max(rate_hz)) * 1.25)
        self._vb.setYRange(0, self._y_top, padding=0)
        self._vb.setLimits(yMin=0, yMax=self._y_top)
        self._t_range_us = (int(edges_us[0]), int(edges_us[-1]))
        self.fit()

    def fit(self) -> None:
        """Show the whole recording."""
        self.set_range_us(*self._t_range_us)

    def set_range_us(self, t0_us: int, t1_us: int) -> None:
        self._vb.setXRange(self._s(t0_us), self._s(max(t1_us, t0_us + 1)), padding=0.01)

    def x_range_us(self) -> tuple[int, int]:
        lo, hi = self._vb.viewRange()[0]
        return self._us(lo), self._us(hi)

    def zoom(self, factor: float, centre_us: int | None = None) -> None:
        """Zoom the time axis by ``factor`` (> 1 zooms in) around ``centre_us`` (default: the cursor)."""
        lo, hi = self.x_range_us()
        c = self.cursor_us if centre_us is None else int(centre_us)
        half_lo, half_hi = (c - lo) / factor, (hi - c) / factor
        self.set_range_us(int(c - half_lo), int(c + half_hi))

    @property
    def cursor_us(self) -> int:
        return self._us(self._cursor.value())

    def set_cursor(self, t_us: int) -> None:
        self._cursor.blockSignals(True)
        self._cursor.setValue(self._s(int(t_us)))
        self._cursor.blockSignals(False)

    def set_mark(self, t_us: int | None) -> None:
        """Show the mark-in line at ``t_us`` (``None`` hides it)."""
        self._mark.setVisible(t_us is not None)
        if t_us is not None:
            self._mark.setValue(self._s(t_us))

    def set_segments(
        self,
        segments: tuple[Segment, ...],
        class_names: tuple[str, ...],
        selected: int | None,
        bounds: Callable[[int], tuple[int | None, int | None]] | None = None,
    ) -> None:
        """Show ``segments`` (reusing region items), highlight ``selected``; ``bounds(i)`` limits drags."""
        while len(self._regions) > len(segments):
            item = self._regions.pop()
            self._plot.removeItem(item.label)
            self._plot.removeItem(item)
        while len(self._regions) < len(segments):
            item = _SegmentRegion(len(self._regions))
            item.sigRegionChangeFinished.connect(self._on_region_finished)
            item.sigSelected.connect(lambda it: self.sigSelect.emit(it.index))
            item.sigClickedAt.connect(lambda t_s: self._seek(self._us(t_s)))
            self._plot.addItem(item, ignoreBounds=True)
            self._plot.addItem(item.label, ignoreBounds=True)
            self._regions.append(item)
        for i, (item, seg) in enumerate(zip(self._regions, segments)):
            r, g, b = class_colour(seg.class_id)
            chosen = i == selected
            item.blockSignals(True)
            item.setRegion((self._s(seg.start_us), self._s(seg.end_us)))
            lo, hi = bounds(i) if bounds is not None else (None, None)
            item.setBounds((None if lo is None else self._s(lo), None if hi is None else self._s(hi)))
            item.setBrush(pg.mkBrush(r, g, b, 130 if chosen else 70))
            item.setHoverBrush(pg.mkBrush(r, g, b, 160))
            for line in item.lines:
                line.setPen(pg.mkPen((255, 255, 255) if chosen else (r, g, b), width=3 if chosen else 1))
            item.blockSignals(False)
            name = (
                class_names[seg.class_id] if seg.class_id < len(class_names) else f"class {seg.class_id + 1}"
            )
            item.full_text = f"{seg.class_id + 1} {name}"
            item.short_text = f"{seg.class_id + 1}"
            item.label.setPos(self._s(seg.start_us), self._y_top)
        self._fit_labels()

    def _fit_labels(self) -> None:
        """Name the segments wide enough on screen for their class name; others show the number only."""
        lo, hi = self._vb.viewRange()[0]
        width_px = max(1.0, float(self._vb.width()))
        s_per_px = max(1e-12, (hi - lo) / width_px)
        for item in self._regions:
            a, b = item.getRegion()
            text = item.full_text if (b - a) / s_per_px > 7 * len(item.full_text) else item.short_text
            if item.label.textItem.toPlainText() != text:
                item.label.setText(text)

    def set_predictions(self, segments: list[Segment] | tuple[Segment, ...]) -> None:
        """Draw model predictions as a thin strip along the bottom (empty list: remove it)."""
        if self._pred_item is not None:
            self._plot.removeItem(self._pred_item)
            self._pred_item = None
        self._pred_segments = tuple(segments)
        if not segments:
            return
        x0 = np.array([self._s(seg.start_us) for seg in segments])
        x1 = np.array([self._s(seg.end_us) for seg in segments])
        brushes = [pg.mkBrush(*class_colour(seg.class_id), 230) for seg in segments]
        height = 0.07 * self._y_top
        self._pred_item = pg.BarGraphItem(
            x0=x0, x1=x1, y0=np.zeros(len(segments)), height=height, brushes=brushes, pen=pg.mkPen(None)
        )
        self._pred_item.setZValue(5)
        self._pred_item.setToolTip("model predictions")
        self._plot.addItem(self._pred_item, ignoreBounds=True)

    @property
    def predictions(self) -> tuple[Segment, ...]:
        return self._pred_segments

    def region_count(self) -> int:
        return len(self._regions)

    def pos_for(self, t_us: int, y_frac: float = 0.5) -> QtCore.QPoint:
        """Viewport pixel of time ``t_us`` at ``y_frac`` of the plot height (0 bottom, 1 top); for tests."""
        return self.pos_for_f(t_us, y_frac).toPoint()

    def pos_for_f(self, t_us: int, y_frac: float = 0.5) -> QtCore.QPointF:
        """:meth:`pos_for` without rounding to a whole pixel."""
        (_, _), (ylo, yhi) = self._vb.viewRange()
        scene = self._vb.mapViewToScene(QtCore.QPointF(self._s(t_us), ylo + y_frac * (yhi - ylo)))
        return self.plot_widget.viewportTransform().map(scene)

    def edge_hovered(self, index: int) -> int | None:
        """Which edge of segment ``index`` the pointer hovers (0 start, 1 end), ``None`` if neither."""
        for edge, line in enumerate(self._regions[index].lines):
            if line.mouseHovering:
                return edge
        return None

    # ----------------------------------------------------------------- internals
    def _seek(self, t_us: int, *, move_line: bool = True) -> None:
        if move_line:
            self.set_cursor(t_us)
        self.sigSeek.emit(int(t_us))

    def _on_draw(self, start_s: float, now_s: float, finished: bool) -> None:
        a, b = sorted((start_s, now_s))
        if finished:
            self._preview.setVisible(False)
            if b > a:
                self.sigCreate.emit(self._us(a), self._us(b))
        else:
            self._preview.setRegion((a, b))
            self._preview.setVisible(True)

    def _on_region_finished(self, item: _SegmentRegion) -> None:
        a, b = item.getRegion()
        self.sigEdited.emit(item.index, self._us(a), self._us(b))


# --------------------------------------------------------------------------- window


class LabelerWindow(QtWidgets.QMainWindow):
    """Label one recording.

    Parameters
    ----------
    recording : a path (read with ``dvsapp.core.io``) or an already loaded :class:`dvsapp.core.labels.Recording`.
    recover : what to do with unsaved autosaved edits found on open: ``True`` apply,
        ``False`` drop, ``None`` ask.
    ask_on_close : ask to save unsaved edits when the window closes.
    checkpoint : model for the prediction strip (``None``: the bundled model).
    """

    STEP_US = 10_000

    sigPredicted = QtCore.Signal(object)  # list[Segment] or an error message (str), from the worker thread

    def __init__(
        self,
        recording: str | os.PathLike | Recording,
        *,
        recover: bool | None = None,
        ask_on_close: bool = True,
        checkpoint: str | os.PathLike | None = None,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.ask_on_close = ask_on_close
        self.selected: int | None = None
        self.current_class = 0
        self.mark_in_us: int | None = None
        self._shown_us: int | None = None
        self._play_last: float | None = None
        self._updating = False
        self._predict_thread: threading.Thread | None = None
        self._predict_stop = threading.Event()
        self.checkpoint: str | os.PathLike | None = checkpoint
        self.recording: Recording
        self.doc: LabelDocument

        self._build_ui()
        self._build_actions()
        self.load(recording, recover=recover)
        self.resize(1200, 800)

    def load(self, recording: str | os.PathLike | Recording, *, recover: bool | None = None) -> None:
        """Show ``recording`` and its labels (raises a dvsapp error, leaving the window as it was)."""
        rec = recording if isinstance(recording, Recording) else load_recording(recording)
        t_range = rec.time_range_us or (0, 1)
        doc = LabelDocument.open(rec.path, time_range_us=t_range)
        self.stop_predictions()
        self.set_playing(False)
        self.recording, self.doc = rec, doc
        self.selected, self.mark_in_us, self._shown_us = None, None, None
        self.current_class = 0
        self.timeline.set_mark(None)
        self.timeline.set_predictions([])
        self.accept_button.setEnabled(False)
        doc.subscribe(self._refresh)
        edges, rate = event_rate(
            rec.events, max(1000, (t_range[1] - t_range[0]) // RATE_BINS), t_range_us=t_range
        )
        self.timeline.set_rate(edges, rate)
        self.event_view.set_sensor_size(rec.sensor_size)
        # not a black view of the quiet start: where motion begins, plus a few decay times of it
        onset = first_activity_us(edges, rate, t_range[0])
        self.seek(min(onset + OPEN_AFTER_TAUS * int(self.event_view.decay[1]), t_range[1]))
        for warning in doc.warnings:
            self.status(warning)
        if doc.recovery is not None:
            self._offer_recovery(recover)
        self._refresh()

    def open_recording(self, path: str | os.PathLike) -> bool:
        """Switch to another recording (asks about unsaved labels first); errors show, the window stays."""
        if not self._confirm_leave():
            return False
        try:
            self.load(path)
        except DvsAppError as exc:
            self.status(str(exc))
            QtWidgets.QMessageBox.warning(self, "Cannot open", str(exc))
            return False
        self.status(f"opened {path}")
        return True

    def open_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open recording", str(self.recording.path.parent), "Event recordings (*)"
        )
        if path:
            self.open_recording(path)

    # ----------------------------------------------------------------- building
    def _build_ui(self) -> None:
        self.event_view = EventView()
        self.event_view.set_decay("exponential", 30_000)
        self.timeline = SegmentTimeline()
        self.timeline.sigSeek.connect(self.seek)
        self.timeline.sigCreate.connect(self._on_create)
        self.timeline.sigEdited.connect(self._on_region_edited)
        self.timeline.sigSelect.connect(self.select)

        self.class_list = QtWidgets.QListWidget()
        self.class_list.setEditTriggers(
            QtWidgets.QAbstractItemView.EditTrigger.EditKeyPressed
            | QtWidgets.QAbstractItemView.EditTrigger.DoubleClicked
        )
        self.class_list.itemClicked.connect(lambda item: self.choose_class(self.class_list.row(item)))
        self.class_list.itemChanged.connect(self._on_class_renamed)
        add_class = QtWidgets.QPushButton("Add class")
        add_class.clicked.connect(self.add_class)
        remove_class = QtWidgets.QPushButton("Remove last")
        remove_class.clicked.connect(self.remove_last_class)

        self.segment_table = QtWidgets.QTableWidget(0, 4)
        self.segment_table.setHorizontalHeaderLabels(["class", "start (s)", "end (s)", "length (s)"])
        self.segment_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.segment_table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.segment_table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.segment_table.verticalHeader().setVisible(False)
        header = self.segment_table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QtWidgets.QHeaderView.ResizeMode.Stretch)  # the rest of the width
        self.segment_table.setWordWrap(False)
        self.segment_table.setToolTip(
            "times in seconds since the first event; the CSV keeps the recording's microseconds"
        )
        self.segment_table.cellClicked.connect(lambda row, _col: self.select(row, seek=True))

        self.overlap_box = QtWidgets.QCheckBox("Allow overlapping segments")
        self.overlap_box.toggled.connect(self._on_overlap_toggled)
        self.speed_box = QtWidgets.QDoubleSpinBox()
        self.speed_box.setRange(0.01, 100.0)
        self.speed_box.setValue(1.0)
        self.speed_box.setSuffix(" x")
        self.speed_box.setDecimals(2)
        self.play_button = QtWidgets.QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self.set_playing)
        suggest = QtWidgets.QPushButton("Suggest from activity")
        suggest.clicked.connect(self.suggest)
        self.predict_button = QtWidgets.QPushButton("Show model predictions")
        self.predict_button.setToolTip("run the classifier over the recording; draws a strip under the rate")
        self.predict_button.clicked.connect(self.run_predictions)
        self.accept_button = QtWidgets.QPushButton("Add predicted segments")
        self.accept_button.setToolTip(
            "add predicted runs of 0.3 s or more where there are no labels yet (undoable)"
        )
        self.accept_button.setEnabled(False)
        self.accept_button.clicked.connect(lambda: self._guard(self.accept_predictions))
        self.sigPredicted.connect(self._on_predicted)

        self.side_panel = side = QtWidgets.QWidget()
        form = QtWidgets.QVBoxLayout(side)
        form.addWidget(QtWidgets.QLabel("Classes (click: assign / current, F2: rename)"))
        form.addWidget(self.class_list, 2)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(add_class)
        row.addWidget(remove_class)
        form.addLayout(row)
        form.addWidget(QtWidgets.QLabel("Segments"))
        form.addWidget(self.segment_table, 3)
        form.addWidget(self.overlap_box)
        form.addWidget(suggest)
        pred_row = QtWidgets.QHBoxLayout()
        pred_row.addWidget(self.predict_button)
        pred_row.addWidget(self.accept_button)
        form.addLayout(pred_row)
        play_row = QtWidgets.QHBoxLayout()
        play_row.addWidget(self.play_button)
        play_row.addWidget(QtWidgets.QLabel("speed"))
        play_row.addWidget(self.speed_box)
        form.addLayout(play_row)

        self.top_splitter = top = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        top.addWidget(self.event_view)
        top.addWidget(side)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 0)  # extra width goes to the events; the panel keeps what it needs
        top.setCollapsible(1, False)
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(self.timeline)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        self.setCentralWidget(split)
        self.time_label = QtWidgets.QLabel()
        self.statusBar().addPermanentWidget(self.time_label)

        self._play_timer = QtCore.QTimer(self)
        self._play_timer.setInterval(33)
        self._play_timer.timeout.connect(self._play_tick)

    def _build_actions(self) -> None:
        keys = QtGui.QKeySequence.StandardKey
        file_menu = self.menuBar().addMenu("&File")
        edit_menu = self.menuBar().addMenu("&Edit")
        view_menu = self.menuBar().addMenu("&View")
        self.actions_by_name: dict[str, QtGui.QAction] = {}

        def act(menu, name: str, text: str, slot, shortcuts) -> QtGui.QAction:
            action = QtGui.QAction(text, self)
            action.setShortcuts([QtGui.QKeySequence(s) for s in shortcuts])
            action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(lambda _checked=False: self._guard(slot))
            menu.addAction(action)
            self.addAction(action)
            self.actions_by_name[name] = action
            return action

        act(file_menu, "open", "&Open recording...", self.open_dialog, [keys.Open])
        act(file_menu, "save", "&Save labels", self.save, [keys.Save])
        act(file_menu, "import", "&Import DVS Gesture CSV...", self.import_csv_dialog, ["Ctrl+I"])
        act(file_menu, "close", "&Close", self.close, [keys.Close])
        act(edit_menu, "undo", "&Undo", self.doc_undo, [keys.Undo])
        act(edit_menu, "redo", "&Redo", self.doc_redo, ["Ctrl+Shift+Z", "Ctrl+Y"])
        act(edit_menu, "delete", "&Delete segment", self.delete_selected, ["Del", "Backspace"])
        act(edit_menu, "mark_in", "Mark &in", self.mark_in, ["I"])
        act(edit_menu, "mark_out", "Mark &out", self.mark_out, ["O"])
        act(edit_menu, "next", "&Next segment", lambda: self.select_step(1), ["N"])
        act(edit_menu, "prev", "&Previous segment", lambda: self.select_step(-1), ["P"])
        for k in range(10):
            act(
                edit_menu,
                f"class_{k}",
                f"Class {k + 1}",
                lambda k=k: self.choose_class(k),
                [str((k + 1) % 10)],
            )
        act(view_menu, "play", "&Play / pause", lambda: self.play_button.toggle(), ["Space"])
        act(view_menu, "step_fwd", "Step forward", lambda: self.step(1), ["Right"])
        act(view_menu, "step_back", "Step back", lambda: self.step(-1), ["Left"])
        act(view_menu, "step_fwd10", "Step forward x10", lambda: self.step(10), ["Shift+Right"])
        act(view_menu, "step_back10", "Step back x10", lambda: self.step(-10), ["Shift+Left"])
        act(view_menu, "zoom_in", "Zoom &in", lambda: self.timeline.zoom(2.0), ["+", "="])
        act(view_menu, "zoom_out", "Zoom &out", lambda: self.timeline.zoom(0.5), ["-"])
        act(view_menu, "fit", "&Fit", self.timeline.fit, ["F"])

    # ----------------------------------------------------------------- helpers
    def status(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def _guard(self, fn: Callable[[], object]) -> object:
        """Run a user action; a dvsapp error becomes a status-bar message, the window stays usable."""
        try:
            return fn()
        except DvsAppError as exc:
            self.status(str(exc))
            self._refresh()  # snap views back to the document
            return None

    def _offer_recovery(self, recover: bool | None) -> None:
        rec = self.doc.recovery
        assert rec is not None
        if recover is None:
            answer = QtWidgets.QMessageBox.question(
                self,
                "Recover unsaved labels?",
                f"{rec.describe()}.\nRecover them?",
                QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No,
                QtWidgets.QMessageBox.StandardButton.Yes,
            )
            recover = answer == QtWidgets.QMessageBox.StandardButton.Yes
        if recover:
            self.doc.recover()
            self.status("recovered unsaved edits (not saved yet: Ctrl+S)")
        else:
            self.doc.discard_recovery()

    # ----------------------------------------------------------------- time
    def seek(self, t_us: int) -> None:
        """Move the cursor to ``t_us`` and show the events just before it."""
        lo, hi = self.recording.time_range_us or (0, 1)
        t_us = int(min(max(int(t_us), lo), hi))
        ev = self.recording.events
        tau_us = int(self.event_view.decay[1])
        prev = self._shown_us
        if prev is not None and prev <= t_us <= prev + 10 * tau_us:
            self.event_view.add_events(time_slice(ev, prev, t_us))
        else:
            self.event_view.clear()
            self.event_view.add_events(time_slice(ev, t_us - 5 * tau_us, t_us))
        self.event_view.set_time(t_us)
        self._shown_us = t_us
        self.timeline.set_cursor(t_us)
        self.time_label.setText(f"t = {self.rel_s(t_us):.3f} s  ({t_us} us)")

    def rel_s(self, t_us: int) -> float:
        """Seconds since the recording's first event (what the views show)."""
        return (int(t_us) - (self.recording.time_range_us or (0, 1))[0]) / 1e6

    @property
    def cursor_us(self) -> int:
        return self._shown_us if self._shown_us is not None else 0

    def step(self, n: int) -> None:
        self.seek(self.cursor_us + n * self.STEP_US)

    def set_playing(self, playing: bool) -> None:
        if playing:
            self._play_last = time.monotonic()
            self._play_timer.start()
            self.play_button.setText("Pause")
        else:
            self._play_timer.stop()
            self.play_button.setText("Play")

    def _play_tick(self) -> None:
        now = time.monotonic()
        dt_s = now - (self._play_last or now)
        self._play_last = now
        hi = (self.recording.time_range_us or (0, 1))[1]
        t = self.cursor_us + int(dt_s * 1e6 * self.speed_box.value())
        self.seek(t)
        if t >= hi:
            self.play_button.setChecked(False)

    # ----------------------------------------------------------------- editing
    def select(self, index: int | None, *, seek: bool = False) -> None:
        if index is not None and not 0 <= index < len(self.doc.segments):
            index = None
        self.selected = index
        if index is not None:
            self.current_class = self.doc.segments[index].class_id
            if seek:
                self.seek(self.doc.segments[index].start_us)
        self._refresh()

    def select_step(self, step: int) -> None:
        n = len(self.doc.segments)
        if n == 0:
            return
        i = (0 if step > 0 else n - 1) if self.selected is None else (self.selected + step) % n
        self.select(i, seek=True)

    def choose_class(self, class_id: int) -> None:
        """Make ``class_id`` current; relabel the selected segment with it."""
        if not 0 <= class_id < len(self.doc.class_names):
            self.status(f"there is no class {class_id + 1}")
            return
        self.current_class = class_id
        if self.selected is not None:
            self.selected = self.doc.relabel(self.selected, class_id)
        self._refresh()

    def add_segment(self, start_us: int, end_us: int, class_id: int | None = None) -> int:
        """Add a segment (current class by default), clipped to the free gap around its start."""
        lo, hi = self.doc.free_range(t_us=start_us)
        a = start_us if lo is None else max(start_us, lo)
        b = end_us if hi is None else min(end_us, hi)
        index = self.doc.add(self.current_class if class_id is None else class_id, a, b)
        self.select(index)
        return index

    def _on_create(self, start_us: int, end_us: int) -> None:
        self._guard(lambda: self.add_segment(start_us, end_us))

    def _on_region_edited(self, index: int, start_us: int, end_us: int) -> None:
        def apply() -> None:
            old = self.doc.segment(index)
            if end_us - start_us == old.duration_us:
                self.selected = self.doc.move(index, start_us - old.start_us)
            else:
                self.selected = self.doc.resize(index, start_us=start_us, end_us=end_us)
            self._refresh()

        self._guard(apply)

    def mark_in(self) -> None:
        self.mark_in_us = self.cursor_us
        self.timeline.set_mark(self.mark_in_us)
        self.status(f"mark in at {self.rel_s(self.mark_in_us):.3f} s; move and press O to mark out")

    def mark_out(self) -> None:
        if self.mark_in_us is None:
            self.status("press I first to mark the start")
            return
        a, b = sorted((self.mark_in_us, self.cursor_us))
        self.mark_in_us = None
        self.timeline.set_mark(None)
        self.add_segment(a, b)

    def delete_selected(self) -> None:
        if self.selected is None:
            self.status("select a segment first")
            return
        index = self.selected
        self.selected = None
        self.doc.delete(index)
        self.status(f"deleted segment {index + 1} (Ctrl+Z brings it back)")

    def doc_undo(self) -> None:
        self.doc.undo()
        self.select(self.selected)

    def doc_redo(self) -> None:
        self.doc.redo()
        self.select(self.selected)

    def add_class(self) -> None:
        names = [*self.doc.class_names]
        k = len(names) + 1
        while f"class_{k}" in names:
            k += 1
        self._guard(lambda: self.doc.set_class_names([*names, f"class_{k}"]))

    def remove_last_class(self) -> None:
        self._guard(lambda: self.doc.set_class_names(self.doc.class_names[:-1]))

    def _on_class_renamed(self, item: QtWidgets.QListWidgetItem) -> None:
        if self._updating:
            return
        row = self.class_list.row(item)
        names = list(self.doc.class_names)
        text = item.text().split(" ", 1)[-1] if item.text()[:1].isdigit() else item.text()
        names[row] = text.strip()
        self._guard(lambda: self.doc.set_class_names(names))

    def _on_overlap_toggled(self, allow: bool) -> None:
        if self._updating:
            return
        self._guard(lambda: self.doc.set_allow_overlap(allow))

    def suggest(self) -> None:
        """Add segments proposed from event-rate activity where there are none yet (one undoable edit)."""
        found = suggest_segments(self.recording.events, class_id=self.current_class)
        keep = [s for s in found if not any(s.overlaps(o) for o in self.doc.segments)]
        if not keep:
            self.status("no new activity segments found")
            return
        self._guard(lambda: self.doc.replace_all([*self.doc.segments, *keep], "suggest segments"))
        self.status(f"added {len(keep)} suggested segment(s): check their classes and edges")

    def run_predictions(self) -> None:
        """Classify the recording in a worker thread; the strip appears when it is done."""
        if self._predict_thread is not None and self._predict_thread.is_alive():
            self.status("predictions are already running")
            return
        self._predict_stop.clear()
        self.predict_button.setEnabled(False)
        self.status("running the model over the recording...")
        rec, checkpoint, stop = self.recording, self.checkpoint, self._predict_stop

        def work() -> None:
            try:
                classifier = load_classifier(checkpoint)
                result: object = predict_segments(
                    rec.events,
                    rec.sensor_size,
                    classifier,
                    time_range_us=rec.time_range_us,
                    should_stop=stop.is_set,
                )
            except DvsAppError as exc:
                result = str(exc)
            if not stop.is_set():
                self.sigPredicted.emit(result)

        self._predict_thread = threading.Thread(target=work, name="labeler-predict", daemon=True)
        self._predict_thread.start()

    def _on_predicted(self, result: object) -> None:
        self.predict_button.setEnabled(True)
        if isinstance(result, str):
            self.status(f"no predictions: {result}")
            return
        self.timeline.set_predictions(result)
        self.accept_button.setEnabled(bool(result))
        self.status(f"model predictions: {len(result)} run(s) drawn along the bottom of the timeline")

    def accept_predictions(self, min_duration_us: int = 300_000) -> int:
        """Add the predicted runs of at least ``min_duration_us`` that overlap no label (one undoable edit)."""
        n_classes = len(self.doc.class_names)
        keep = [
            s
            for s in self.timeline.predictions
            if s.duration_us >= min_duration_us
            and s.class_id < n_classes
            and not any(s.overlaps(o) for o in self.doc.segments)
        ]
        if not keep:
            self.status("no predicted segment to add (all short, or where labels already are)")
            return 0
        self.doc.replace_all([*self.doc.segments, *keep], "add predicted segments")
        self.status(f"added {len(keep)} predicted segment(s): check their classes and edges")
        return len(keep)

    def stop_predictions(self) -> None:
        self._predict_stop.set()
        if self._predict_thread is not None:
            self._predict_thread.join(timeout=10)
            self._predict_thread = None

    # ----------------------------------------------------------------- files
    def save(self) -> Path:
        path = self.doc.save()
        self.status(f"saved {len(self.doc.segments)} segment(s) to {path}")
        return path

    def import_csv(self, path: str | os.PathLike) -> None:
        self.doc.import_csv(path)
        self.select(None)
        self.status(f"imported {len(self.doc.segments)} segment(s) from {path}")

    def import_csv_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Import labels", str(self.recording.path.parent), "DVS Gesture labels (*.csv)"
        )
        if path:
            self.import_csv(path)

    def _confirm_leave(self) -> bool:
        """Ask to save unsaved labels (when :attr:`ask_on_close`); False means stay."""
        if not (self.doc.dirty and self.ask_on_close):
            return True
        buttons = QtWidgets.QMessageBox.StandardButton
        answer = QtWidgets.QMessageBox.question(
            self,
            "Unsaved labels",
            f"Save the labels of {self.recording.path.name}?",
            buttons.Save | buttons.Discard | buttons.Cancel,
            buttons.Save,
        )
        if answer == buttons.Cancel:
            return False
        if answer == buttons.Save:
            return self._guard(self.save) is not None
        self.doc.discard_recovery()
        return True

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802
        self.set_playing(False)
        if not self._confirm_leave():
            event.ignore()
            return
        self.stop_predictions()
        event.accept()

    # ----------------------------------------------------------------- view refresh
    def _fit_side_panel(self) -> None:
        """Size the side panel to its content: every table column and every class, unclipped.

        The table's columns fit their contents (header and cells) and the class list
        is tall enough for all classes, so neither needs a horizontal scroll bar or cuts a
        name, at any font; the event view takes the rest of the width.
        """
        table, classes = self.segment_table, self.class_list
        header = table.horizontalHeader()
        columns = sum(
            max(header.sectionSizeHint(c), table.sizeHintForColumn(c)) for c in range(table.columnCount())
        )
        rows = classes.count()
        names = max((classes.sizeHintForColumn(0), classes.fontMetrics().horizontalAdvance("M" * 12)))
        need = max(_content_width(table, columns), _content_width(classes, names))
        margins = self.side_panel.layout().contentsMargins()
        self.side_panel.setMinimumWidth(need + margins.left() + margins.right())
        row_h = classes.sizeHintForRow(0) if rows else classes.fontMetrics().height() + 4
        classes.setMinimumHeight(row_h * max(rows, 1) + 2 * classes.frameWidth() + 4)

    def doc_bounds(self, index: int) -> tuple[int | None, int | None]:
        return self.doc.free_range(index)

    def _refresh(self) -> None:
        doc = self.doc
        if self.selected is not None and self.selected >= len(doc.segments):
            self.selected = None
        self._updating = True
        try:
            self.timeline.set_segments(doc.segments, doc.class_names, self.selected, self.doc_bounds)
            if self.class_list.count() != len(doc.class_names) or any(
                self.class_list.item(i).text() != f"{i + 1} {n}" for i, n in enumerate(doc.class_names)
            ):
                self.class_list.clear()
                for i, name in enumerate(doc.class_names):
                    item = QtWidgets.QListWidgetItem(f"{i + 1} {name}")
                    item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsEditable)
                    r, g, b = class_colour(i)
                    item.setIcon(_swatch(r, g, b))
                    self.class_list.addItem(item)
            self.class_list.setCurrentRow(self.current_class)
            table = self.segment_table
            table.setRowCount(len(doc.segments))
            for row, seg in enumerate(doc.segments):
                name = doc.class_names[seg.class_id] if seg.class_id < len(doc.class_names) else "?"
                cells = (
                    f"{seg.class_id + 1} {name}",
                    f"{self.rel_s(seg.start_us):.3f}",
                    f"{self.rel_s(seg.end_us):.3f}",
                    f"{seg.duration_us / 1e6:.3f}",
                )
                for col, text in enumerate(cells):
                    item = table.item(row, col)
                    if item is None:
                        item = QtWidgets.QTableWidgetItem()
                        table.setItem(row, col, item)
                    item.setText(text)
            if self.selected is not None:
                table.selectRow(self.selected)
            else:
                table.clearSelection()
            self.overlap_box.setChecked(doc.allow_overlap)
        finally:
            self._updating = False
        self._fit_side_panel()
        undo, redo = self.actions_by_name["undo"], self.actions_by_name["redo"]
        undo.setEnabled(doc.can_undo)
        undo.setText(f"&Undo {doc.undo_name}" if doc.can_undo else "&Undo")
        redo.setEnabled(doc.can_redo)
        redo.setText(f"&Redo {doc.redo_name}" if doc.can_redo else "&Redo")
        self.setWindowTitle(f"{'*' if doc.dirty else ''}{self.recording.path.name} - dvsapp labeler")


def _content_width(view: QtWidgets.QAbstractScrollArea, inner: int) -> int:
    """Width ``view`` needs to show ``inner`` pixels of content beside a vertical scroll bar."""
    bar = view.verticalScrollBar().sizeHint().width()
    return inner + bar + 2 * view.frameWidth() + 4


def _swatch(r: int, g: int, b: int) -> QtGui.QIcon:
    pix = QtGui.QPixmap(12, 12)
    pix.fill(QtGui.QColor(r, g, b))
    return QtGui.QIcon(pix)


def run_labeler(
    recording: str | os.PathLike, *, recover: bool | None = None, checkpoint: str | os.PathLike | None = None
) -> int:
    """Open the labeling window on ``recording`` and run the Qt event loop; returns the exit status.

    Ctrl-C closes the window at any moment (unsaved edits stay in the autosave sidecar,
    offered for recovery on the next open); the status is then 130.
    """
    from dvsapp.app.gui.app import INTERRUPTED, SigintCloser, application, exec_window

    closer = SigintCloser()
    try:
        application()
        window = LabelerWindow(recording, recover=recover, checkpoint=checkpoint)
    except BaseException:
        closer.restore()
        raise
    if closer.interrupted:  # Ctrl-C while the window was being built
        closer.restore()
        return INTERRUPTED
    window.show()
    return exec_window(window, closer)
