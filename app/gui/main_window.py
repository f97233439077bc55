"""The dvsapp main window: event view, timesteps, attention firing, predictions, timeline.

Only this (GUI) thread touches widgets.  The session runs in
:class:`dvsapp.app.gui.worker.PlaybackWorker`'s thread; its results arrive through
queued signals and are stored as "latest"; a ``QTimer`` redraws the views at
most :attr:`MainWindow.MAX_FPS` times per second from the latest data, so the
redraw cost is independent of the event and window rates.

Settings (window layout, recent files, last model) are kept in ``QSettings``
under organisation/application ``dvsapp``; set ``DVSAPP_SETTINGS=/path/file.ini``
to keep them in an INI file instead (tests do).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from dvsapp.app.gui.event_view import EventView
from dvsapp.app.gui.render import DECAYS
from dvsapp.app.gui.timeline import Timeline
from dvsapp.app.gui.views import AttentionView, PredictionView, TimestepView
from dvsapp.app.gui.worker import MAX_SPEED, ModelInfo, PlaybackWorker, Result, SourceInfo, file_path_of
from dvsapp.core.errors import DvsAppError
from dvsapp.core.gestures import GESTURE_CLASSES

ORGANISATION = "dvsapp"
APPLICATION = "dvsapp"
SETTINGS_ENV = "DVSAPP_SETTINGS"
MAX_RECENT = 8

SPEEDS: tuple[tuple[str, float], ...] = (
    ("0.1x", 0.1),
    ("0.25x", 0.25),
    ("0.5x", 0.5),
    ("1x", 1.0),
    ("2x", 2.0),
    ("5x", 5.0),
    ("10x", 10.0),
    ("max", MAX_SPEED),
)
"""Speed choices: label -> factor (``MAX_SPEED`` = as fast as possible)."""

SOURCE_CHOICES: tuple[tuple[str, str], ...] = (
    ("File...", ""),
    ("DV network stream", "dv://127.0.0.1:7777"),
    ("iniVation USB camera", "inivation"),
    ("Webcam (DVS emulator)", "webcam:0"),
    ("Synthetic gestures", "synthetic:0"),
)
"""Source picker entries: label -> URI template (empty = ask for a file)."""


def make_settings() -> QtCore.QSettings:
    """The app's QSettings; an INI file when ``$DVSAPP_SETTINGS`` names one."""
    path = os.environ.get(SETTINGS_ENV)
    if path:
        return QtCore.QSettings(path, QtCore.QSettings.Format.IniFormat)
    return QtCore.QSettings(ORGANISATION, APPLICATION)


def _settings_list(settings: QtCore.QSettings, key: str) -> list[str]:
    value = settings.value(key, [])
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]


class MainWindow(QtWidgets.QMainWindow):
    """The desktop GUI.

    Parameters
    ----------
    settings : QSettings, optional
        Where layout and recent files live (default :func:`make_settings`).
    """

    MAX_FPS = 60.0
    SEEK_STEP_US = 1_000_000

    def __init__(self, settings: QtCore.QSettings | None = None, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("dvsapp")
        self.setObjectName("dvsapp-main")
        self.settings = settings if settings is not None else make_settings()
        self.worker = PlaybackWorker(self)
        self.uri: str | None = None
        self.checkpoint: str | None = None
        self.source_info: SourceInfo | None = None
        self.model_info: ModelInfo | None = None
        self.last_error: str | None = None
        self.latest: Result | None = None
        self._latest_drawn = True
        self._pred_segments: list[tuple[int, int, int]] = []
        self.predictions: list[tuple[int, int]] = []  # (t_us, class_id) history
        self.display_time_us = 0
        self.redraw_count = 0
        self._redraw_times: list[float] = []

        self._build_views()
        self._build_controls()
        self._build_menus()
        self._build_status()
        self._build_shortcuts()
        self._connect_worker()
        self._restore_settings()

        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self.redraw)
        self._timer.start(int(1000 / self.MAX_FPS))

    # ----------------------------------------------------------------- layout
    def _dock(self, title: str, widget: QtWidgets.QWidget, area) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower().replace(' ', '-')}")
        dock.setWidget(widget)
        dock.setFeatures(
            QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(area, dock)
        return dock

    def _build_views(self) -> None:
        Area = QtCore.Qt.DockWidgetArea
        central = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(central)
        lay.setContentsMargins(2, 2, 2, 2)
        self.error_banner = QtWidgets.QLabel()
        self.error_banner.setStyleSheet(
            "background: #5a1d1d; color: #ffd9d9; padding: 4px; border-radius: 3px;"
        )
        self.error_banner.setWordWrap(True)
        self.error_banner.setVisible(False)
        self.error_banner.mousePressEvent = lambda _ev: self.error_banner.setVisible(
            False
        )  # click to dismiss
        lay.addWidget(self.error_banner)
        self.event_view = EventView(max_fps=0)
        lay.addWidget(self.event_view, 1)
        decay_row = QtWidgets.QHBoxLayout()
        decay_row.addWidget(QtWidgets.QLabel("decay"))
        self.decay_combo = QtWidgets.QComboBox()
        self.decay_combo.addItems(list(DECAYS))
        self.tau_spin = QtWidgets.QDoubleSpinBox()
        self.tau_spin.setRange(0.5, 5000.0)
        self.tau_spin.setValue(30.0)
        self.tau_spin.setSuffix(" ms")
        self.tau_spin.setDecimals(1)
        decay_row.addWidget(self.decay_combo)
        decay_row.addWidget(self.tau_spin)
        self.overlay_check = QtWidgets.QCheckBox("model input")
        self.overlay_check.setChecked(True)
        decay_row.addWidget(self.overlay_check)
        decay_row.addStretch(1)
        lay.addLayout(decay_row)
        self.setCentralWidget(central)
        self.decay_combo.currentTextChanged.connect(self._apply_decay)
        self.tau_spin.valueChanged.connect(self._apply_decay)
        self.overlay_check.toggled.connect(self._apply_overlay)

        self.prediction_view = PredictionView(GESTURE_CLASSES)
        self.timestep_view = TimestepView()
        self.attention_view = AttentionView()
        self.timeline = Timeline()
        self.timeline.set_segments("prediction", [], GESTURE_CLASSES)
        self.timeline.set_segments("truth", [], GESTURE_CLASSES)
        self.dock_predictions = self._dock("Predictions", self.prediction_view, Area.RightDockWidgetArea)
        self.dock_attention = self._dock("Attention", self.attention_view, Area.RightDockWidgetArea)
        self.dock_timesteps = self._dock("Timesteps", self.timestep_view, Area.BottomDockWidgetArea)
        self.timeline_panel = QtWidgets.QWidget()
        self.dock_timeline = self._dock("Timeline", self.timeline_panel, Area.BottomDockWidgetArea)
        self.setCorner(QtCore.Qt.Corner.BottomRightCorner, Area.RightDockWidgetArea)
        self.setCorner(QtCore.Qt.Corner.TopRightCorner, Area.RightDockWidgetArea)
        self.splitDockWidget(self.dock_predictions, self.dock_attention, QtCore.Qt.Orientation.Vertical)
        self.splitDockWidget(self.dock_timesteps, self.dock_timeline, QtCore.Qt.Orientation.Vertical)
        self._layout_restored = False

    def default_dock_sizes(self) -> None:
        """Split the window between the views (used until the user's own layout is saved)."""
        h = max(600, self.height())
        V, H = QtCore.Qt.Orientation.Vertical, QtCore.Qt.Orientation.Horizontal
        self.resizeDocks([self.dock_predictions, self.dock_attention], [int(h * 0.33), int(h * 0.67)], V)
        self.resizeDocks([self.dock_timesteps, self.dock_timeline], [int(h * 0.18), int(h * 0.24)], V)
        self.resizeDocks([self.dock_predictions], [int(self.width() * 0.42)], H)

    def showEvent(self, event: QtGui.QShowEvent) -> None:  # noqa: N802 (Qt naming)
        super().showEvent(event)
        if not self._layout_restored:
            self._layout_restored = True
            QtCore.QTimer.singleShot(0, self.default_dock_sizes)

    def _build_controls(self) -> None:
        style = self.style()
        SP = QtWidgets.QStyle.StandardPixmap
        # transport row under the timeline
        self.play_button = QtWidgets.QToolButton()
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("play / pause (space)")
        self._icon_play = style.standardIcon(SP.SP_MediaPlay)
        self._icon_pause = style.standardIcon(SP.SP_MediaPause)
        self.play_button.setIcon(self._icon_play)
        self.play_button.clicked.connect(lambda checked: self.play() if checked else self.pause())
        self.speed_combo = QtWidgets.QComboBox()
        for label, value in SPEEDS:
            self.speed_combo.addItem(label, value)
        self.speed_combo.setCurrentText("1x")
        self.speed_combo.setToolTip("replay speed (+ / -)")
        self.speed_combo.currentIndexChanged.connect(
            lambda _i: self.worker.set_speed(float(self.speed_combo.currentData()))
        )
        self.loop_check = QtWidgets.QCheckBox("loop")
        self.loop_check.toggled.connect(self.worker.set_loop)
        self.reset_button = QtWidgets.QPushButton("reset state")
        self.reset_button.setToolTip("forget the model's membrane state")
        self.reset_button.clicked.connect(self.reset_state)
        self.record_button = QtWidgets.QPushButton("record")
        self.record_button.setCheckable(True)
        self.record_button.setToolTip("record the incoming events to an AEDAT4 file")
        self.record_button.clicked.connect(self._record_clicked)
        self.time_label = QtWidgets.QLabel("0.000 s")
        self.time_label.setMinimumWidth(140)
        row = QtWidgets.QHBoxLayout()
        for w in (self.play_button, QtWidgets.QLabel("speed"), self.speed_combo, self.loop_check):
            row.addWidget(w)
        row.addWidget(self.time_label)
        row.addStretch(1)
        row.addWidget(self.reset_button)
        row.addWidget(self.record_button)
        lay = QtWidgets.QVBoxLayout(self.timeline_panel)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(row)
        lay.addWidget(self.timeline, 1)
        self.timeline.sigSeek.connect(self.seek)

        # toolbar: source and model pickers
        bar = QtWidgets.QToolBar("Source and model")
        bar.setObjectName("toolbar-source")
        self.addToolBar(bar)
        bar.addWidget(QtWidgets.QLabel(" source "))
        self.source_combo = QtWidgets.QComboBox()
        for label, uri in SOURCE_CHOICES:
            self.source_combo.addItem(label, uri)
        bar.addWidget(self.source_combo)
        self.uri_edit = QtWidgets.QLineEdit()
        self.uri_edit.setPlaceholderText("URI: file path, dv://host:port, inivation, webcam:0, synthetic:0")
        self.uri_edit.setMinimumWidth(260)
        bar.addWidget(self.uri_edit)
        self.source_combo.currentIndexChanged.connect(
            lambda _i: self.uri_edit.setText(str(self.source_combo.currentData() or ""))
        )
        open_btn = QtWidgets.QPushButton("Open")
        open_btn.clicked.connect(self._open_from_picker)
        self.uri_edit.returnPressed.connect(self._open_from_picker)
        bar.addWidget(open_btn)
        bar.addSeparator()
        model_btn = QtWidgets.QPushButton("Model...")
        model_btn.setToolTip("load a checkpoint (.safetensors)")
        model_btn.clicked.connect(self._choose_model)
        bar.addWidget(model_btn)
        self.model_label = QtWidgets.QLabel(" model: - ")
        bar.addWidget(self.model_label)

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        act = file_menu.addAction("&Open...", self._open_file_dialog)
        act.setShortcut(QtGui.QKeySequence.StandardKey.Open)
        file_menu.addAction("Open &source...", self._focus_picker)
        self.recent_menu = file_menu.addMenu("&Recent files")
        file_menu.addAction("Open &model...", self._choose_model)
        file_menu.addSeparator()
        file_menu.addAction("&Record to AEDAT4...", lambda: self._record_clicked(True))
        file_menu.addSeparator()
        act = file_menu.addAction("&Quit", self.close)
        act.setShortcut(QtGui.QKeySequence.StandardKey.Quit)
        view_menu = menu.addMenu("&View")
        for dock in (self.dock_predictions, self.dock_attention, self.dock_timesteps, self.dock_timeline):
            view_menu.addAction(dock.toggleViewAction())
        help_menu = menu.addMenu("&Help")
        help_menu.addAction("&About dvsapp", self._about)
        self._rebuild_recent_menu()

    def _build_status(self) -> None:
        bar = self.statusBar()
        self.status_labels: dict[str, QtWidgets.QLabel] = {}
        for key, tip in (
            ("events", "events per second arriving"),
            ("model", "model time per window"),
            ("dropped", "windows dropped because the model fell behind"),
            ("jumps", "times a live source's clock jumped (binner and model restarted at each)"),
            ("latency", "time from a window's last event to its prediction"),
            ("energy", "estimated energy of the model per window (45 nm figures)"),
        ):
            label = QtWidgets.QLabel("-")
            label.setToolTip(tip)
            label.setMinimumWidth(110)
            bar.addPermanentWidget(label)
            self.status_labels[key] = label
        self.fps_label = QtWidgets.QLabel("")
        bar.addPermanentWidget(self.fps_label)

    def _build_shortcuts(self) -> None:
        def sc(keys: str, slot) -> None:
            s = QtGui.QShortcut(QtGui.QKeySequence(keys), self)
            s.setContext(QtCore.Qt.ShortcutContext.WindowShortcut)
            s.activated.connect(slot)

        sc("Space", self.toggle_play)
        sc("Right", lambda: self.seek_relative(self.SEEK_STEP_US))
        sc("Left", lambda: self.seek_relative(-self.SEEK_STEP_US))
        sc("Shift+Right", lambda: self.seek_relative(10 * self.SEEK_STEP_US))
        sc("Shift+Left", lambda: self.seek_relative(-10 * self.SEEK_STEP_US))
        sc("+", lambda: self.step_speed(+1))
        sc("=", lambda: self.step_speed(+1))
        sc("-", lambda: self.step_speed(-1))
        sc("Ctrl+R", self.reset_state)

    def _connect_worker(self) -> None:
        w = self.worker
        Queued = QtCore.Qt.ConnectionType.QueuedConnection
        w.sigSource.connect(self._on_source, Queued)
        w.sigModel.connect(self._on_model, Queued)
        w.sigResult.connect(self._on_result, Queued)
        w.sigSeeked.connect(self._on_seeked, Queued)
        w.sigError.connect(self.show_error, Queued)
        w.sigMessage.connect(lambda text: self.statusBar().showMessage(text, 5000), Queued)
        w.sigFinished.connect(self._on_finished, Queued)

    # --------------------------------------------------------------- settings
    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 950)
        state = self.settings.value("window/state")
        if state is not None:
            self._layout_restored = bool(self.restoreState(state))
        decay = self.settings.value("view/decay", "exponential")
        if decay in DECAYS:
            self.decay_combo.setCurrentText(str(decay))
        try:
            self.tau_spin.setValue(float(self.settings.value("view/tau_ms", 30.0)))
        except (TypeError, ValueError):
            pass
        self._apply_decay()
        last_model = self.settings.value("model/last")
        if last_model and Path(str(last_model)).is_file():
            self.checkpoint = str(last_model)

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("view/decay", self.decay_combo.currentText())
        s.setValue("view/tau_ms", float(self.tau_spin.value()))
        if self.checkpoint:
            s.setValue("model/last", self.checkpoint)
        s.sync()

    def recent_files(self) -> list[str]:
        return _settings_list(self.settings, "recent/files")

    def _add_recent(self, path: Path) -> None:
        text = str(Path(path).resolve())
        files = [f for f in self.recent_files() if f != text]
        files.insert(0, text)
        self.settings.setValue("recent/files", files[:MAX_RECENT])
        self._rebuild_recent_menu()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = self.recent_files()
        if not files:
            self.recent_menu.addAction("(none)").setEnabled(False)
            return
        for f in files:
            self.recent_menu.addAction(Path(f).name, lambda f=f: self.open_file(f)).setToolTip(f)

    # ------------------------------------------------------------ public API
    def open_uri(self, uri: str, checkpoint: str | os.PathLike | None = None, *, play: bool = True) -> None:
        """Start a session on ``uri`` (file path or source URI) with ``checkpoint`` (None = current/bundled)."""
        if checkpoint is not None:
            self.checkpoint = str(checkpoint)
        self.uri = uri
        self._clear_views()
        self.uri_edit.setText(uri)
        if play:
            self.worker.play()
        else:
            self.worker.pause()
        self.worker.set_speed(float(self.speed_combo.currentData()))
        self.worker.set_loop(self.loop_check.isChecked())
        self.worker.start(uri, self.checkpoint)
        self._set_play_state(play)
        path = file_path_of(uri)
        self.setWindowTitle(f"dvsapp - {path.name if path else uri}")
        if path is not None and path.is_file():
            self._add_recent(path)

    def open_file(self, path: str | os.PathLike) -> None:
        self.open_uri(str(path))

    def set_checkpoint(self, path: str | os.PathLike | None) -> bool:
        """Use the checkpoint ``path`` (None = bundled); restarts the current source.

        A bad checkpoint shows an error and keeps the current model.  Returns True on success.
        """
        if path is not None:
            try:
                from dvsapp.core.model import load_checkpoint

                load_checkpoint(path)
            except DvsAppError as exc:
                self.show_error(str(exc))
                return False
        self.checkpoint = None if path is None else str(path)
        if self.uri is not None:
            self.open_uri(self.uri, play=not self.worker.paused)
        return True

    def play(self) -> None:
        """Play; after the end of a file (or an error) this starts the source again."""
        if not self.worker.running and self.uri is not None:
            self.worker.play()
            self.open_uri(self.uri, play=True)
            return
        self.worker.play()
        self._set_play_state(True)

    def pause(self) -> None:
        self.worker.pause()
        self._set_play_state(False)

    def toggle_play(self) -> None:
        if self.worker.paused:
            self.play()
        else:
            self.pause()

    def set_speed(self, speed: float) -> None:
        """Pick the speed entry closest to ``speed`` (0 = as fast as possible)."""
        values = [v for _, v in SPEEDS]
        idx = min(
            range(len(values)),
            key=lambda i: abs(values[i] - speed) if values[i] else (0 if speed == 0 else 1e9),
        )
        self.speed_combo.setCurrentIndex(idx)
        self.worker.set_speed(values[idx])

    def step_speed(self, direction: int) -> None:
        i = self.speed_combo.currentIndex() + (1 if direction > 0 else -1)
        self.speed_combo.setCurrentIndex(max(0, min(self.speed_combo.count() - 1, i)))

    def seek(self, t_us: int) -> None:
        """Jump a file replay to ``t_us`` (recording time, µs)."""
        if self.source_info is None or self.source_info.live:
            self.statusBar().showMessage("seeking needs a file source", 3000)
            return
        lo = self.source_info.t_start_us or 0
        hi = self.source_info.t_end_us if self.source_info.t_end_us is not None else t_us
        t_us = int(min(max(t_us, lo), hi))
        if not self.worker.running and self.uri is not None:  # the replay had ended: play again from there
            self.open_uri(self.uri, play=True)
        self.worker.take_events()  # drop what arrived from before the jump
        self.worker.seek(t_us)
        self._on_seeked(t_us)

    def seek_relative(self, delta_us: int) -> None:
        self.seek(self.display_time_us + delta_us)

    def reset_state(self) -> None:
        self.worker.reset_state()
        self.attention_view.reset()
        self.statusBar().showMessage("model state reset", 2000)

    def start_recording(self, path: str | os.PathLike) -> None:
        self.worker.start_recording(path)
        self.record_button.setChecked(True)

    def stop_recording(self) -> None:
        self.worker.stop_recording()
        self.record_button.setChecked(False)

    def show_error(self, message: str) -> None:
        """Show a one-line error without blocking; the window stays usable."""
        self.last_error = message
        self.error_banner.setText(f"error: {message}   (click to dismiss)")
        self.error_banner.setVisible(True)
        self.statusBar().showMessage(f"error: {message}", 10000)

    def clear_error(self) -> None:
        self.last_error = None
        self.error_banner.setVisible(False)

    # --------------------------------------------------------- worker signals
    def _on_source(self, info: SourceInfo) -> None:
        self.source_info = info
        self.event_view.set_sensor_size(info.sensor_size)
        self._apply_overlay()
        if info.rate_t_s is not None and len(info.rate_t_s):
            self.timeline.set_rate(info.rate_t_s, info.rate_hz)
        if info.t_start_us is not None:
            self.display_time_us = info.t_start_us
            self.timeline.set_range_us(info.t_start_us, info.t_end_us or info.t_start_us + 1)
        truth = [(int(s.class_id), int(s.start_us), int(s.end_us)) for s in info.labels]
        self.timeline.set_segments("truth", truth, self.prediction_view.class_names)
        kind = "live" if info.live else "file"
        self.statusBar().showMessage(f"opened {kind} source {info.uri} ({info.sensor_size})", 5000)

    def _on_model(self, info: ModelInfo) -> None:
        self.model_info = info
        self.prediction_view.set_class_names(info.class_names)
        self.attention_view.set_model_info(info.attention, info.token_hw)
        self.model_label.setText(
            f" model: {info.name} | {info.attention} attention | input {info.input_hw[1]}x{info.input_hw[0]}"
            f" | T={info.timesteps} x {info.step_us / 1000:g} ms "
        )
        self._apply_overlay()

    def _on_result(self, result: Result) -> None:
        if result.session_id != self.worker.session_id:
            return  # from a session that has since been replaced
        self.latest = result
        self._latest_drawn = False
        pred = result.prediction
        t_end = int(result.window.t_end_us) - result.offset_us
        t_start = int(result.window.t_start_us) - result.offset_us
        cid = int(pred.class_id)
        self.predictions.append((t_end, cid))
        segs = self._pred_segments
        if segs and segs[-1][0] == cid and abs(segs[-1][2] - t_start) <= 1:
            segs[-1] = (cid, segs[-1][1], t_end)
        else:
            segs.append((cid, t_start, t_end))

    def _on_seeked(self, t_us) -> None:
        """The stream jumped (a user seek or a new loop pass) to recording time ``t_us``."""
        self.event_view.clear()
        self.display_time_us = int(t_us)
        self.timeline.set_cursor(self.display_time_us)
        self.attention_view.reset()
        self.latest = None
        # predictions at or after the new position are stale
        self._pred_segments = [s for s in self._pred_segments if s[2] <= t_us]
        self.predictions = [p for p in self.predictions if p[0] <= t_us]
        self.timeline.set_segments("prediction", self._pred_segments, self.prediction_view.class_names)

    def _on_finished(self, session_id) -> None:
        if session_id != self.worker.session_id:
            return  # a replaced session said goodbye; the current one plays on
        self._set_play_state(False)
        self.worker.pause()

    # ----------------------------------------------------------------- redraw
    def redraw(self) -> None:
        """Draw the latest data (called by the timer at most MAX_FPS times per second)."""
        events, until_us, offset_us = self.worker.take_events()
        if len(events):
            self.event_view.add_events(events)
        if until_us is not None:
            self.display_time_us = int(until_us) - offset_us
            self.event_view.set_time(int(until_us))
        self.event_view.refresh()
        self.timeline.set_cursor(self.display_time_us)
        self.time_label.setText(f"{self.display_time_us / 1e6:.3f} s")
        if not self._latest_drawn and self.latest is not None:
            self._draw_result(self.latest)
            self._latest_drawn = True
        now = time.monotonic()
        self._redraw_times.append(now)
        if len(self._redraw_times) > 60:
            del self._redraw_times[: len(self._redraw_times) - 60]
        if len(self._redraw_times) > 1 and self.redraw_count % 15 == 0:
            span = self._redraw_times[-1] - self._redraw_times[0]
            if span > 0:
                self.fps_label.setText(f"{(len(self._redraw_times) - 1) / span:.0f} fps")
        self.redraw_count += 1

    def _draw_result(self, result: Result) -> None:
        self.timestep_view.update_window(result.window)
        self.prediction_view.update_prediction(result.prediction)
        taps = getattr(result.prediction, "taps", None)
        if taps is not None:
            self.attention_view.update_taps(taps, result.window.frames, int(result.window.t_end_us))
        self.timeline.set_segments("prediction", self._pred_segments, self.prediction_view.class_names)
        m = result.metrics
        self.status_labels["events"].setText(f"{m.events_per_s / 1e3:,.1f} kev/s")
        self.status_labels["model"].setText(f"model {m.model_ms:.1f} ms/win")
        self.status_labels["dropped"].setText(f"dropped {m.dropped_windows}")
        self.status_labels["jumps"].setText(f"time jumps {m.time_jumps}")
        self.status_labels["latency"].setText(f"latency {m.latency_ms:.0f} ms")
        self.status_labels["energy"].setText(
            "energy -" if m.energy_uj is None else f"energy {m.energy_uj:.2f} uJ/win"
        )

    # ---------------------------------------------------------------- helpers
    def _clear_views(self) -> None:
        self.clear_error()
        self.latest = None
        self._pred_segments = []
        self.predictions = []
        self.event_view.clear()
        self.timeline.clear_segments()
        self.attention_view.reset()

    def _set_play_state(self, playing: bool) -> None:
        self.play_button.setChecked(playing)
        self.play_button.setIcon(self._icon_pause if playing else self._icon_play)

    def _apply_decay(self, *_args) -> None:
        self.event_view.set_decay(self.decay_combo.currentText(), self.tau_spin.value() * 1000.0)

    def _apply_overlay(self, *_args) -> None:
        rect = self.model_info.overlay_rect if self.model_info is not None else None
        if rect is not None and self.overlay_check.isChecked():
            self.event_view.set_overlay_rect(*rect)
        else:
            self.event_view.set_overlay_rect(None)

    def _open_from_picker(self) -> None:
        uri = self.uri_edit.text().strip()
        if not uri:
            self._open_file_dialog()
            return
        self.open_uri(uri)

    def _focus_picker(self) -> None:
        self.uri_edit.setFocus()
        self.uri_edit.selectAll()

    def _open_file_dialog(self) -> None:
        start = self.recent_files()[0] if self.recent_files() else str(Path.cwd())
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self,
            "Open event recording",
            str(Path(start).parent),
            "Event files (*.aedat4 *.aedat *.h5 *.hdf5 *.npz *.csv *.raw *.dat *.bin);;All files (*)",
        )
        if path:
            self.open_file(path)

    def _choose_model(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open model checkpoint", "", "Checkpoints (*.safetensors);;All files (*)"
        )
        if path:
            self.set_checkpoint(path)

    def _record_clicked(self, checked: bool) -> None:
        if not checked:
            self.stop_recording()
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Record events to", "recording.aedat4", "AEDAT4 (*.aedat4)"
        )
        if path:
            self.start_recording(path)
        else:
            self.record_button.setChecked(False)

    def _about(self) -> None:
        QtWidgets.QMessageBox.about(
            self,
            "About dvsapp",
            "<b>dvsapp</b><br>Event-camera (DVS) streaming vision: a stateful spiking transformer "
            "(Norse) classifying gestures live, with the attention neurons' firing on show.",
        )

    #: seconds a close waits for the worker to end: a playing session stops within a window, one
    #: still starting stops once its model and source are open, a recording finishes its file
    CLOSE_WAIT_S = 10.0

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 (Qt naming)
        self._timer.stop()
        self.worker.stop(timeout_s=self.CLOSE_WAIT_S)
        self.save_settings()
        super().closeEvent(event)


__all__ = ["MainWindow", "make_settings", "SPEEDS", "SOURCE_CHOICES"]
