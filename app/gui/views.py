"""The result views of the main window: timesteps, attention taps, predictions.

Each view has an ``update_*`` method that takes plain data (numpy arrays, the
core ``Window`` / ``Prediction`` objects) and redraws; the main window calls them
from its redraw timer with the latest result only.  No view talks to the worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from dvsapp.app.gui.render import (
    TAP_NAMES,
    colour_ramp_rgb,
    frames_to_rgb,
    heatmap_rgb,
    input_preview_rgb,
    overlay_heatmap,
    taps_to_numpy,
    token_grid_shape,
)

__all__ = ["TAP_COLOURS", "TAP_NAMES", "AttentionView", "PredictionView", "TimestepView", "taps_to_numpy"]

TAP_COLOURS = {"q": (255, 120, 120), "k": (120, 220, 120), "v": (120, 160, 255), "out": (255, 220, 80)}


def _small_font() -> QtGui.QFont:
    font = QtGui.QFont()
    font.setPointSize(7)
    return font


def _image_box(
    glw: pg.GraphicsLayoutWidget, row: int, col: int, title: str = ""
) -> tuple[pg.ViewBox, pg.ImageItem]:
    if title:
        glw.addLabel(title, row=row, col=col, size="9pt", color=(200, 200, 200))
        row += 1
    vb = glw.addViewBox(row=row, col=col, lockAspect=True, invertY=True, enableMenu=False)
    vb.setMouseEnabled(x=False, y=False)
    img = pg.ImageItem()
    vb.addItem(img)
    return vb, img


class TimestepView(QtWidgets.QWidget):
    """The ``T`` binned frames of the current window, as the model sees them."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._caption = QtWidgets.QLabel("no window yet")
        self._glw = pg.GraphicsLayoutWidget()
        self._glw.setBackground((20, 20, 24))
        self._vb, self._img = _image_box(self._glw, 0, 0)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self._caption)
        layout.addWidget(self._glw)
        self.last_rgb: np.ndarray | None = None

    def update_window(self, window) -> None:
        """Show ``window.frames [T, P, H, W]``."""
        rgb = frames_to_rgb(window.frames)
        self.last_rgb = rgb
        self._img.setImage(rgb, autoLevels=False, levels=(0, 255))
        self._vb.autoRange(padding=0.01)
        t, _, h, w = window.frames.shape
        step_ms = (window.t_end_us - window.t_start_us) / max(t, 1) / 1000
        self._caption.setText(
            f"window {window.index}: T={t} x {step_ms:g} ms, {h}x{w}, {window.n_events} events "
            f"[{window.t_start_us / 1e6:.3f} s, {window.t_end_us / 1e6:.3f} s)"
        )


class PredictionView(QtWidgets.QWidget):
    """Class probabilities as horizontal bars and the top label, large, with its confidence."""

    def __init__(self, class_names: Sequence[str] = (), parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._top = QtWidgets.QLabel("-")
        font = self._top.font()
        font.setPointSize(20)
        font.setBold(True)
        self._top.setFont(font)
        self._top.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self._conf = QtWidgets.QLabel("")
        self._conf.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self._plot = pg.PlotWidget(background=(20, 20, 24))
        self._plot.setMouseEnabled(x=False, y=False)
        self._plot.hideButtons()
        self._plot.setXRange(0, 1, padding=0)
        self._plot.getPlotItem().invertY(True)
        self._plot.getAxis("left").setWidth(170)
        small = QtGui.QFont()
        small.setPointSize(8)
        self._plot.getAxis("left").setStyle(hideOverlappingLabels=False, tickFont=small)
        self._plot.getAxis("bottom").setStyle(tickFont=small)
        self._plot.setMinimumHeight(11 * 14 + 30)
        self._bars: pg.BarGraphItem | None = None
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self._top)
        layout.addWidget(self._conf)
        layout.addWidget(self._plot, 1)
        self.class_names: list[str] = []
        self.top_label = ""
        self.top_confidence = 0.0
        self.set_class_names(class_names)

    def set_class_names(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)
        n = len(self.class_names)
        self._plot.getAxis("left").setTicks([[(i, name) for i, name in enumerate(self.class_names)], []])
        self._plot.setYRange(-0.6, max(n, 1) - 0.4, padding=0)
        self.update_probs(np.zeros(n, np.float32), None)

    def update_probs(self, probs: np.ndarray, class_id: int | None, *, label: str | None = None) -> None:
        """Draw ``probs [C]`` and highlight ``class_id`` (None = nothing yet)."""
        from dvsapp.app.gui.render import class_colour

        probs = np.asarray(probs, dtype=np.float64)
        if self._bars is not None:
            self._plot.removeItem(self._bars)
        n = len(probs)
        brushes = [
            QtGui.QColor(*class_colour(i)) if i == class_id else QtGui.QColor(90, 110, 140) for i in range(n)
        ]
        self._bars = pg.BarGraphItem(x0=np.zeros(n), y=np.arange(n), width=probs, height=0.7, brushes=brushes)
        self._plot.addItem(self._bars)
        if class_id is None or n == 0:
            self._top.setText("-")
            self._conf.setText("")
            self.top_label, self.top_confidence = "", 0.0
            return
        name = label if label is not None else self.class_names[class_id]
        self.top_label = name
        self.top_confidence = float(probs[class_id])
        self._top.setText(name.replace("_", " "))
        r, g, b = class_colour(class_id)
        self._top.setStyleSheet(f"color: rgb({r},{g},{b});")
        self._conf.setText(f"confidence {self.top_confidence:.0%}")

    def update_prediction(self, prediction) -> None:
        """Show a :class:`dvsapp.core.classify.Prediction`."""
        self.update_probs(np.asarray(prediction.probs), int(prediction.class_id), label=prediction.label)


class AttentionView(QtWidgets.QWidget):
    """Attention neuron firing: Q/K/V/out heatmaps over the token grid, and a raster and rate trace.

    Heatmaps show, per token, the fraction of the selected head's channels that
    spiked, averaged over the window's timesteps, laid over the model input.  The
    raster shows the selected tap's tokens (rows) over the recent timesteps
    (columns); the trace, the mean firing of each tap per window.
    """

    HISTORY_STEPS = 160
    HISTORY_WINDOWS = 200

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._info = QtWidgets.QLabel("attention: no model output yet")
        self._info.setWordWrap(True)
        self._block = QtWidgets.QComboBox()
        self._head = QtWidgets.QComboBox()
        self._raster_tap = QtWidgets.QComboBox()
        self._raster_tap.addItems(TAP_NAMES)
        self._raster_tap.setCurrentText("out")
        bar = QtWidgets.QHBoxLayout()
        for text, w in (("block", self._block), ("head", self._head), ("raster", self._raster_tap)):
            bar.addWidget(QtWidgets.QLabel(text))
            bar.addWidget(w)
        bar.addStretch(1)

        self._glw = pg.GraphicsLayoutWidget()
        self._glw.setBackground((20, 20, 24))
        self._maps: dict[str, pg.ImageItem] = {}
        self._map_boxes: dict[str, pg.ViewBox] = {}
        for i, name in enumerate(TAP_NAMES):
            vb, img = _image_box(self._glw, 0, i, title=name.upper())  # Q K V OUT: equal columns
            self._maps[name], self._map_boxes[name] = img, vb
        # one colour scale for the four maps: the fraction of the head's channels that spiked
        self._scale_plot = self._glw.addPlot(row=1, col=len(TAP_NAMES))
        self._scale_plot.hideButtons()
        self._scale_plot.setMouseEnabled(x=False, y=False)
        self._scale_plot.hideAxis("bottom")
        self._scale_plot.hideAxis("left")
        self._scale_plot.showAxis("right")
        self._scale_plot.getAxis("right").setWidth(38)
        self._scale_plot.getAxis("right").setStyle(tickFont=_small_font())
        self._scale_plot.setMinimumWidth(52)
        self._scale_plot.setMaximumWidth(52)
        self._glw.ci.layout.setColumnFixedWidth(len(TAP_NAMES), 52)
        for col in range(len(TAP_NAMES)):  # the four maps equally wide
            self._glw.ci.layout.setColumnStretchFactor(col, 1)
        self._scale_plot.setToolTip("colour scale of the maps: share of the head's channels spiking")
        self._scale_img = pg.ImageItem(colour_ramp_rgb(128)[::-1])  # row 0 at the bottom of the plot
        self._scale_plot.addItem(self._scale_img)
        self.scale_vmax = 0.0
        self._set_scale(1.0)
        # the raster and the rate trace in a layout of their own, so their widths do not
        # skew the map columns above
        self._plots_glw = pg.GraphicsLayoutWidget()
        self._plots_glw.setBackground((20, 20, 24))
        self._raster_plot = self._plots_glw.addPlot(row=0, col=0, title="raster (token x timestep)")
        self._raster_plot.hideButtons()
        self._raster_plot.setMouseEnabled(x=False, y=False)
        self._raster_plot.invertY(True)
        self._raster_img = pg.ImageItem()
        self._raster_plot.addItem(self._raster_img)
        self._rate_plot = self._plots_glw.addPlot(row=0, col=1, title="firing rate per window")
        self._rate_plot.hideButtons()
        # the legend is a line of coloured names under the plot: inside it, it covered the curves
        legend = "&nbsp;&nbsp; ".join(
            f"<span style='color: rgb{TAP_COLOURS[n]}'>&#9472;&#9472; {n}</span>" for n in TAP_NAMES
        )
        self._rate_legend = self._plots_glw.addLabel(legend, row=1, col=1, size="8pt")
        self._rate_curves = {
            name: self._rate_plot.plot([], [], pen=pg.mkPen(TAP_COLOURS[name], width=1), name=name)
            for name in TAP_NAMES
        }
        self._rate_plot.setLabel("bottom", "time", units="s")
        for plot in (self._raster_plot, self._rate_plot):
            plot.setMaximumHeight(130)
            plot.setMinimumHeight(90)
        self._rate_plot.setYRange(0, 0.05)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self._info)
        layout.addLayout(bar)
        layout.addWidget(self._glw, 3)
        layout.addWidget(self._plots_glw, 2)

        self._attention_name = "?"
        self._raster: deque[np.ndarray] = deque(maxlen=self.HISTORY_STEPS)
        self._rates_t: deque[float] = deque(maxlen=self.HISTORY_WINDOWS)
        self._rates: dict[str, deque[float]] = {n: deque(maxlen=self.HISTORY_WINDOWS) for n in TAP_NAMES}
        self.last_maps: dict[str, np.ndarray] = {}
        self.token_hw: tuple[int, int] | None = None
        self._block.currentIndexChanged.connect(self._reset_history)
        self._head.currentIndexChanged.connect(self._reset_history)
        self._raster_tap.currentIndexChanged.connect(self._reset_history)

    def set_model_info(self, attention: str, token_hw: tuple[int, int] | None = None) -> None:
        """Name of the attention variant (``ssa``, ``sdsa``, ``lrf``, ``lsssa``) and the token grid."""
        self._attention_name = attention
        self.token_hw = tuple(token_hw) if token_hw else None
        self._info.setText(f"attention variant: {attention}")
        self._reset_history()

    def reset(self) -> None:
        self._reset_history()

    def _reset_history(self, *_args) -> None:
        self._raster.clear()
        self._rates_t.clear()
        for d in self._rates.values():
            d.clear()

    def _sync_choices(self, taps: dict[int, dict[str, np.ndarray]]) -> None:
        blocks = sorted(taps)
        if [self._block.itemText(i) for i in range(self._block.count())] != [str(b) for b in blocks]:
            self._block.blockSignals(True)
            self._block.clear()
            self._block.addItems([str(b) for b in blocks])
            self._block.blockSignals(False)
        any_tap = next(iter(taps[blocks[0]].values()))
        heads = any_tap.shape[1]
        want = ["mean"] + [str(h) for h in range(heads)]
        if [self._head.itemText(i) for i in range(self._head.count())] != want:
            self._head.blockSignals(True)
            self._head.clear()
            self._head.addItems(want)
            self._head.blockSignals(False)

    def update_taps(self, taps, frames: np.ndarray | None, t_us: int) -> None:
        """Redraw from one window's taps.

        Parameters
        ----------
        taps
            A ``TapRecorder`` or ``{block: {name: [T, heads, N]}}``.
        frames : np.ndarray, optional
            The window's model input ``[T, P, H, W]``, drawn under the heatmaps.
        t_us : int
            Window end time (µs), the x of the rate trace.
        """
        data = taps_to_numpy(taps)
        if not data:
            self._info.setText(f"attention variant: {self._attention_name} (no taps recorded)")
            return
        self._sync_choices(data)
        block = int(self._block.currentText() or sorted(data)[0])
        named = data.get(block) or data[sorted(data)[0]]
        head_text = self._head.currentText() or "mean"
        base = input_preview_rgb(frames) if frames is not None else None
        rates_text = []
        grids: dict[str, np.ndarray] = {}
        for name in TAP_NAMES:
            if name not in named:
                continue
            tap = named[name]  # [T, heads, N]
            per_head = tap.mean(axis=1) if head_text == "mean" else tap[:, int(head_text)]  # [T, N]
            n_tok = per_head.shape[1]
            hw = self.token_hw
            if hw is None or hw[0] * hw[1] != n_tok:
                aspect = base.shape[1] / base.shape[0] if base is not None else 1.0
                hw = token_grid_shape(n_tok, aspect)
            grids[name] = per_head.mean(axis=0).reshape(hw)
            rate = float(tap.mean())
            self._rates[name].append(rate)
            rates_text.append(f"{name}={rate:.3f}")
            if name == self._raster_tap.currentText():
                for step in per_head:
                    self._raster.append(step)
        vmax = max([float(g.max()) for g in grids.values()] + [1e-3])  # one scale for every map
        for name, grid in grids.items():
            rgb = overlay_heatmap(base, grid, vmax=vmax) if base is not None else heatmap_rgb(grid, vmax=vmax)
            self.last_maps[name] = rgb
            self._maps[name].setImage(rgb, autoLevels=False, levels=(0, 255))
            self._map_boxes[name].autoRange(padding=0.01)
        self._set_scale(vmax)
        self._rates_t.append(t_us / 1e6)
        t_arr = np.asarray(self._rates_t)
        top = 0.0
        for name, curve in self._rate_curves.items():
            vals = np.asarray(self._rates[name])
            if len(vals) == len(t_arr):
                curve.setData(t_arr, vals)
                top = max(top, float(vals.max()) if len(vals) else 0.0)
            else:
                curve.setData([], [])
        self._rate_plot.setYRange(0, max(0.05, top * 1.15), padding=0)
        if self._raster:
            raster = np.stack(self._raster, axis=1)  # [N, steps]
            self._raster_img.setImage(
                heatmap_rgb(raster, vmax=max(float(raster.max()), 1e-3)), autoLevels=False
            )
        heads = next(iter(named.values())).shape[1]
        self._info.setText(
            f"attention variant: {self._attention_name} | {len(data)} block(s), {heads} head(s), "
            f"block {block} firing: " + ", ".join(rates_text)
        )

    def _set_scale(self, vmax: float) -> None:
        """Stretch the colour bar over ``0 .. vmax`` (the maps' shared top value)."""
        self.scale_vmax = float(vmax)
        self._scale_img.setRect(QtCore.QRectF(0, 0, 1, self.scale_vmax))
        self._scale_plot.setYRange(0, self.scale_vmax, padding=0)
        self._scale_plot.setXRange(0, 1, padding=0)

    def raster_array(self) -> np.ndarray:
        """The raster as ``[tokens, timesteps]`` (empty before any taps)."""
        return np.stack(self._raster, axis=1) if self._raster else np.zeros((0, 0), np.float32)
