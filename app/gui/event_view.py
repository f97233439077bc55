"""Live event display whose cost does not grow with the event rate.

:class:`EventView` holds one :class:`~dvsapp.app.gui.render.PixelBuffer` (last
timestamp and polarity per pixel).  ``add_events`` scatters events into it
(vectorised, cheap); drawing decays the buffer against the display time
(``set_time``) and uploads one RGB image to a pyqtgraph ``ImageItem``.  Redraws
are throttled to ``max_fps`` by a timer and happen only when something changed.

Thread safety: call every method from the GUI thread; a worker hands events over
through a queued signal (see :mod:`dvsapp.app.gui.worker`).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from dvsapp.app.gui.render import DECAYS, PixelBuffer, render_events_rgb
from dvsapp.core.events import SensorSize

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)


class EventView(QtWidgets.QWidget):
    """ON/OFF coloured event display with decay and an optional model-input overlay.

    Parameters
    ----------
    sensor_size : SensorSize, optional
        Initial geometry (default 128x128).
    max_fps : float
        Upper bound on automatic redraws per second (0 disables the timer; call
        :meth:`refresh` yourself).
    """

    sigClicked = QtCore.Signal(int, int)  # pixel x, y clicked

    def __init__(
        self,
        sensor_size: SensorSize = SensorSize(128, 128),
        parent: QtWidgets.QWidget | None = None,
        *,
        max_fps: float = 60.0,
    ) -> None:
        super().__init__(parent)
        self._mode = "exponential"
        self._tau_us = 30_000.0
        self._now_us = 0
        self._rect: tuple[float, float, float, float] | None = None
        self._dirty = True

        self._glw = pg.GraphicsLayoutWidget()
        self._glw.setBackground((12, 12, 16))
        self._vb = self._glw.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self._vb.setMouseEnabled(x=False, y=False)
        self._image = pg.ImageItem()
        self._vb.addItem(self._image)
        self._overlay = QtWidgets.QGraphicsRectItem()
        pen = pg.mkPen((0, 255, 120), width=2, style=QtCore.Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._overlay.setPen(pen)
        self._overlay.setVisible(False)
        self._vb.addItem(self._overlay)
        self._label = pg.TextItem("", color=(200, 200, 200), anchor=(0, 0))
        self._vb.addItem(self._label)
        self._glw.scene().sigMouseClicked.connect(self._on_click)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._glw)

        self._buffer = PixelBuffer.empty(sensor_size)
        self._sensor_size = sensor_size
        self.set_sensor_size(sensor_size)

        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self._tick)
        if max_fps > 0:
            self._timer.start(max(1, int(1000 / max_fps)))

    # ----------------------------------------------------------------- state
    @property
    def sensor_size(self) -> SensorSize:
        return self._sensor_size

    @property
    def buffer(self) -> PixelBuffer:
        return self._buffer

    @property
    def decay(self) -> tuple[str, float]:
        """``(mode, tau_us)``."""
        return self._mode, self._tau_us

    @property
    def time_us(self) -> int:
        return self._now_us

    def set_sensor_size(self, sensor_size: SensorSize) -> None:
        """Reset the buffer to a new geometry and fit the view to it."""
        sensor_size = SensorSize(*sensor_size)
        self._sensor_size = sensor_size
        self._buffer = PixelBuffer.empty(sensor_size)
        self._vb.setRange(
            xRange=(0, sensor_size.width), yRange=(0, sensor_size.height), padding=0.02, disableAutoRange=True
        )
        self._dirty = True
        self.refresh()

    def add_events(self, events: np.ndarray) -> None:
        """Write events into the per-pixel buffer (vectorised; the display catches up at the next redraw)."""
        if len(events):
            self._buffer.write(events)
            self._dirty = True

    def set_time(self, t_us: int) -> None:
        """Set the display time ("now") the buffer is decayed against."""
        t_us = int(t_us)
        if t_us != self._now_us:
            self._now_us = t_us
            self._dirty = True

    def set_decay(self, mode: str, tau_us: float) -> None:
        """Choose the decay kernel (``"exponential"``, ``"linear"`` or ``"window"``) and its time constant (µs)."""
        if mode not in DECAYS:
            raise ValueError(f"decay {mode!r} is not one of {', '.join(DECAYS)}")
        if not tau_us > 0:
            raise ValueError(f"decay time constant must be > 0 us, got {tau_us}")
        self._mode, self._tau_us = mode, float(tau_us)
        self._dirty = True

    def set_overlay_rect(self, x: float | None, y: float = 0, w: float = 0, h: float = 0) -> None:
        """Outline the model's input region (sensor pixels); ``set_overlay_rect(None)`` hides it."""
        if x is None:
            self._rect = None
            self._overlay.setVisible(False)
            return
        self._rect = (float(x), float(y), float(w), float(h))
        self._overlay.setRect(QtCore.QRectF(*self._rect))
        self._overlay.setVisible(True)

    @property
    def overlay_rect(self) -> tuple[float, float, float, float] | None:
        return self._rect

    def set_text(self, text: str) -> None:
        """A small caption drawn at the top-left corner of the image."""
        self._label.setText(text)

    def clear(self) -> None:
        """Forget every event (e.g. after a seek)."""
        self._buffer.clear()
        self._dirty = True
        self.refresh()

    # --------------------------------------------------------------- drawing
    def render_rgb(self) -> np.ndarray:
        """The current picture as ``[H, W, 3]`` uint8 RGB (pure numpy, no overlay)."""
        return render_events_rgb(
            self._buffer.last_t_us, self._buffer.last_p, self._now_us, mode=self._mode, tau_us=self._tau_us
        )

    def refresh(self) -> None:
        """Redraw now (decay + upload), whether or not anything changed."""
        self._image.setImage(self.render_rgb(), autoLevels=False, levels=(0, 255))
        self._dirty = False

    def _tick(self) -> None:
        if self._dirty and self.isVisible():
            self.refresh()

    def _on_click(self, ev) -> None:
        pos = self._vb.mapSceneToView(ev.scenePos())
        x, y = int(pos.x()), int(pos.y())
        if 0 <= x < self._sensor_size.width and 0 <= y < self._sensor_size.height:
            self.sigClicked.emit(x, y)
