"""A seekable timeline: event rate over time, a cursor, and labelled segment strips.

Two pyqtgraph plots share the x axis (seconds, in the recording's own time
base): the event rate on top and one row per named strip below (e.g.
``"prediction"`` and ``"truth"``), each segment a band coloured by class, and
under them a legend naming the colour of every class the strips show.
Clicking or dragging anywhere emits :attr:`Timeline.sigSeek` with the time in
microseconds; the mouse wheel zooms the x axis only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from dvsapp.app.gui.render import class_colour, class_label


class _SeekViewBox(pg.ViewBox):
    """A ViewBox that turns left clicks and drags into seek requests and zooms x only."""

    sigSeekS = QtCore.Signal(float)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, enableMenu=False, **kwargs)
        self.setMouseEnabled(x=True, y=False)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 (Qt naming)
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            self.sigSeekS.emit(float(self.mapSceneToView(ev.scenePos()).x()))
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            self.sigSeekS.emit(float(self.mapSceneToView(ev.scenePos()).x()))
        else:
            super().mouseDragEvent(ev, axis)


class Timeline(QtWidgets.QWidget):
    """Event-rate plot with a seek cursor and segment strips.

    Signals
    -------
    sigSeek(int)
        Requested time in microseconds (click or drag, left button).
    """

    sigSeek = QtCore.Signal(object)  # int µs (object: Qt's int is 32-bit)

    ROW_HEIGHT_PX = 18

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._glw = pg.GraphicsLayoutWidget()
        self._glw.setBackground((20, 20, 24))
        self._glw.ci.setSpacing(0)
        self._rate_vb = _SeekViewBox()
        self._rate_plot = self._glw.addPlot(row=0, col=0, viewBox=self._rate_vb)
        self._rate_plot.setLabel("left", "rate", units="ev/s")
        self._rate_plot.hideButtons()
        self._rate_plot.getAxis("bottom").setStyle(showValues=False)
        self._rate_curve = self._rate_plot.plot(
            [], [], pen=pg.mkPen((120, 200, 255), width=1), fillLevel=0, brush=(60, 110, 160, 90)
        )
        self._strip_vb = _SeekViewBox()
        self._strip_plot = self._glw.addPlot(row=1, col=0, viewBox=self._strip_vb)
        self._strip_plot.hideButtons()
        self._strip_plot.setLabel("bottom", "time", units="s")
        self._strip_plot.setXLink(self._rate_plot)
        self._strip_plot.getAxis("left").setWidth(self._rate_plot.getAxis("left").width())
        self._rate_plot.getAxis("left").setWidth(80)
        self._strip_plot.getAxis("left").setWidth(80)
        self._strip_plot.setMaximumHeight(self.ROW_HEIGHT_PX * 2 + 40)
        self._strip_plot.setMinimumHeight(self.ROW_HEIGHT_PX * 2 + 30)

        self._cursors = []
        for plot in (self._rate_plot, self._strip_plot):
            line = pg.InfiniteLine(pos=0, angle=90, movable=False, pen=pg.mkPen((255, 80, 80), width=2))
            plot.addItem(line, ignoreBounds=True)
            self._cursors.append(line)

        self._rows: dict[str, pg.BarGraphItem | None] = {}
        self._row_segments: dict[str, list[tuple[int, int, int]]] = {}
        self._texts: list[pg.TextItem] = []
        self._cursor_us = 0
        self._rate_vb.sigSeekS.connect(self._emit_seek)
        self._strip_vb.sigSeekS.connect(self._emit_seek)

        # which colour is which class, for the classes the strips show
        self.legend = QtWidgets.QLabel()
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet("font-size: 8pt; padding-left: 82px;")  # the palette's text colour
        self.legend.setToolTip("colours of the prediction and truth strips")
        self._class_names: list[str] = []

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        layout.addWidget(self._glw, 1)
        layout.addWidget(self.legend)
        self.setMinimumHeight(140)
        self._update_legend()

    # ------------------------------------------------------------- public API
    def set_rate(self, t_s: np.ndarray, rate_hz: np.ndarray) -> None:
        """Plot the event rate ``rate_hz`` (events/s) at times ``t_s`` (seconds), and fit the x range."""
        t_s = np.asarray(t_s, dtype=np.float64)
        rate_hz = np.asarray(rate_hz, dtype=np.float64)
        self._rate_curve.setData(t_s, rate_hz)
        if len(t_s):
            self.set_range_us(int(t_s[0] * 1e6), int(t_s[-1] * 1e6))
            self._rate_plot.setYRange(0, max(1.0, float(rate_hz.max()) * 1.05), padding=0)

    def set_range_us(self, t0_us: int, t1_us: int) -> None:
        """Show ``[t0_us, t1_us]`` on the x axis."""
        if t1_us <= t0_us:
            t1_us = t0_us + 1
        self._rate_plot.setXRange(t0_us / 1e6, t1_us / 1e6, padding=0.01)

    def x_range_us(self) -> tuple[int, int]:
        lo, hi = self._rate_vb.viewRange()[0]
        return int(lo * 1e6), int(hi * 1e6)

    def set_cursor(self, t_us: int) -> None:
        """Move the red cursor to ``t_us``."""
        self._cursor_us = int(t_us)
        for line in self._cursors:
            line.setValue(self._cursor_us / 1e6)

    @property
    def cursor_us(self) -> int:
        return self._cursor_us

    def set_segments(
        self,
        name: str,
        segments: Sequence[tuple[int, int, int]],
        class_names: Sequence[str] = (),
    ) -> None:
        """Draw ``segments`` ``(class_id, start_us, end_us)`` as coloured bands in the row ``name``.

        Rows appear in the order they are first set; setting an empty list keeps the
        row, empty.  ``class_names`` label bands wide enough to hold text.
        """
        if name not in self._rows:
            self._rows[name] = None
            self._update_row_axis()
        self._row_segments[name] = [(int(c), int(a), int(b)) for c, a, b in segments]
        if class_names:
            self._class_names = list(class_names)
        self._redraw_row(name)
        self._update_legend()

    def legend_classes(self) -> list[int]:
        """The class ids the legend lists: every class that a strip shows, in id order."""
        return sorted({c for segs in self._row_segments.values() for c, _a, _b in segs})

    def segments(self, name: str) -> list[tuple[int, int, int]]:
        """The segments last set on row ``name`` (empty if none)."""
        return list(self._row_segments.get(name, []))

    def row_names(self) -> list[str]:
        return list(self._rows)

    def clear_segments(self) -> None:
        for name in list(self._rows):
            self._row_segments[name] = []
            self._redraw_row(name)
        self._update_legend()

    # -------------------------------------------------------------- internals
    def _row_index(self, name: str) -> int:
        return list(self._rows).index(name)

    def _update_row_axis(self) -> None:
        n = len(self._rows)
        ticks = [(n - 1 - i + 0.5, name) for i, name in enumerate(self._rows)]
        self._strip_plot.getAxis("left").setTicks([ticks, []])
        self._strip_plot.setYRange(0, max(1, n), padding=0.05)
        h = self.ROW_HEIGHT_PX * max(1, n) + 30
        self._strip_plot.setMaximumHeight(h)
        self._strip_plot.setMinimumHeight(h)
        for other in list(self._rows):
            if self._rows[other] is not None:
                self._redraw_row(other)

    def _redraw_row(self, name: str) -> None:
        old = self._rows.get(name)
        if old is not None:
            self._strip_plot.removeItem(old)
            self._rows[name] = None
        segs = self._row_segments.get(name, [])
        if not segs:
            return
        arr = np.asarray(segs, dtype=np.float64)
        y0 = len(self._rows) - 1 - self._row_index(name) + 0.1
        brushes = [QtGui.QBrush(QtGui.QColor(*class_colour(int(c)))) for c in arr[:, 0]]
        item = pg.BarGraphItem(
            x0=arr[:, 1] / 1e6,
            x1=arr[:, 2] / 1e6,
            y0=np.full(len(arr), y0),
            height=0.8,
            brushes=brushes,
            pen=pg.mkPen(None),
        )
        item.setToolTip(name)
        self._strip_plot.addItem(item)
        self._rows[name] = item

    def _update_legend(self) -> None:
        items = []
        for cid in self.legend_classes():
            r, g, b = class_colour(cid)
            items.append(
                f"<span style='color: rgb({r},{g},{b}); font-size: 11pt'>&#9632;</span>&nbsp;"
                f"{class_label(self._class_names, cid)}"
            )
        self.legend.setText("&nbsp;&nbsp; ".join(items))
        self.legend.setVisible(bool(items))

    def _emit_seek(self, t_s: float) -> None:
        t_us = int(round(t_s * 1e6))
        self.set_cursor(t_us)
        self.sigSeek.emit(t_us)
