"""The GUI's worker thread: runs a source -> pipeline session off the Qt thread.

Threads and hand-off
--------------------
:class:`PlaybackWorker` is a ``QObject`` living in the GUI thread that owns one
``threading.Thread``.  That thread runs its own asyncio loop with the session
(:func:`_Session.run`): a :class:`dvsapp.core.pipeline.Pipeline` from the source
(file replays paced, paused, sought, looped) through the model's
:class:`~dvsapp.core.recipe.InputRecipe` into the classifier, which steps on the
pipeline's own model thread.

Results leave the thread in two ways, and only the GUI thread touches widgets:

* raw events go into a lock-protected mailbox (:meth:`PlaybackWorker.take_events`)
  that the window drains at its redraw rate (cheap at any event rate);
* each window's ``(Window, Prediction, metrics)`` is emitted as :attr:`sigResult`
  through a queued signal; the window keeps the latest and redraws at ~60 Hz.

Control calls (:meth:`play`, :meth:`pause`, :meth:`seek`, ...) are thread safe:
they are forwarded to the pipeline's thread-safe controls.  The model's state is
only ever touched by the model thread: :meth:`PlaybackWorker.reset_state` goes
through the pipeline's command queue (:meth:`Pipeline.reset_model`).  Heavy work
per window or packet stays off the session's event loop: the energy estimate
runs in a thread of its own, and recording goes through
:class:`dvsapp.core.pipeline.EventRecorder` (a writer thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore

from dvsapp.core.errors import DvsAppError, SourceError
from dvsapp.core.events import Packet, SensorSize, concat, empty_events

MAX_SPEED = 0.0
"""``speed`` value meaning "as fast as possible"."""


@dataclass(frozen=True)
class SourceInfo:
    """What the window needs to know about an opened source."""

    uri: str
    sensor_size: SensorSize
    live: bool
    path: Path | None = None
    t_start_us: int | None = None
    t_end_us: int | None = None
    labels: list = field(default_factory=list)
    rate_t_s: np.ndarray | None = None
    rate_hz: np.ndarray | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What the window shows about the loaded model."""

    name: str
    class_names: tuple[str, ...]
    attention: str
    input_hw: tuple[int, int]
    token_hw: tuple[int, int] | None
    step_us: int
    timesteps: int
    overlay_rect: tuple[int, int, int, int] | None


@dataclass(frozen=True)
class Metrics:
    """Live figures for the status bar."""

    events_per_s: float = 0.0
    model_ms: float = 0.0
    dropped_windows: int = 0
    latency_ms: float = 0.0
    energy_uj: float | None = None
    windows: int = 0
    time_jumps: int = 0


@dataclass(frozen=True)
class Result:
    """One window through the model: what :attr:`PlaybackWorker.sigResult` carries."""

    window: Any
    prediction: Any
    metrics: Metrics
    offset_us: int = 0  # stream time - recording time (grows with each loop pass)
    session_id: int = 0  # which PlaybackWorker.start() produced it (stale results are ignored)


def file_path_of(uri: str) -> Path | None:
    """The file a ``file:PATH`` (or bare path) URI names, or None for live URIs."""
    text = uri.strip()
    if text.startswith("file:"):
        text = text[5:]
        if text.startswith("//"):
            text = text[2:]
        text = text.split("?", 1)[0]
        return Path(text)
    if "://" in text or text.split(":", 1)[0] in {"inivation", "webcam", "synthetic"}:
        return None
    return Path(text)


def model_overlay_rect(sensor: SensorSize, recipe) -> tuple[int, int, int, int]:
    """The sensor region the model sees through ``recipe`` (an :class:`~dvsapp.core.recipe.InputRecipe`)."""
    spatial = recipe.spatial_map(sensor)
    if spatial is None:
        return (0, 0, int(sensor.width), int(sensor.height))
    return tuple(int(v) for v in spatial.source_rect)  # type: ignore[return-value]


class _SourceControls:
    """Pipeline-like controls for a session without a model (events only): forwarded to the source."""

    def __init__(self, source, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        self.source, self.loop, self._stop = source, loop, stop

    def _call(self, fn, *args) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def pause(self) -> None:
        self._call(self.source.pause)

    def resume(self) -> None:
        self._call(self.source.resume)

    def set_speed(self, speed: float) -> None:
        if self.source.live:
            self.source.set_speed(speed)  # raises SourceError
        self._call(self.source.set_speed, speed)

    def seek(self, t_us: int) -> None:
        if not self.source.seekable:
            self.source.seek(t_us)  # raises SourceError
        self._call(self.source.seek, t_us)

    def stop(self) -> None:
        self._call(self._stop.set)

    def reset_model(self) -> None:
        """No model in this session: nothing to reset."""


class PlaybackWorker(QtCore.QObject):
    """Runs one source/model session at a time in a worker thread (a :class:`dvsapp.core.pipeline.Pipeline`).

    Signals
    -------
    sigSource(SourceInfo)    a source opened (sensor size, labels, rate curve)
    sigModel(ModelInfo)      a model loaded
    sigResult(Result)        one classified window
    sigSeeked(int)           the stream jumped back in time (a loop pass); views should clear
    sigError(str)            a one-line error; the session may have stopped
    sigFinished(int)         session ``session_id`` ended (end of file without loop, error or stop)
    sigMessage(str)          a one-line notice for the status bar

    Control methods are called from the GUI thread; they remember the setting and
    forward it to the running pipeline (whose controls are thread-safe).
    """

    sigSource = QtCore.Signal(object)
    sigModel = QtCore.Signal(object)
    sigResult = QtCore.Signal(object)
    sigSeeked = QtCore.Signal(object)
    sigError = QtCore.Signal(str)
    sigFinished = QtCore.Signal(object)
    sigMessage = QtCore.Signal(str)

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: threading.Thread | None = None
        self._session: _Session | None = None
        self._lock = threading.Lock()
        self._mail: list[np.ndarray] = []
        self._mail_until_us: int | None = None
        self._mail_offset_us = 0
        self._mail_n = 0
        self.max_mail_events = 2_000_000
        self.paused = False
        self.speed = 1.0
        self.loop = False
        self.record_path: Path | None = None
        self.pending_seek_us: int | None = None
        self.session_id = 0

    # --------------------------------------------------------------- control
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, uri: str, checkpoint: str | Path | None = None, *, use_model: bool = True) -> None:
        """Stop any running session and start one on ``uri`` with ``checkpoint`` (None = bundled)."""
        self.stop()
        self.take_events()
        self.pending_seek_us = None
        self.session_id += 1
        self._session = _Session(self, uri, checkpoint, use_model, self.session_id)
        self._thread = threading.Thread(
            target=self._session.run_blocking, name="dvsapp-gui-worker", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the session to end and wait for its thread (at most ``timeout_s``)."""
        if self._session is not None:
            self._session.request_stop()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._thread = None
        self._session = None

    def _controls(self):
        return None if self._session is None else self._session.controls

    def _forward(self, name: str, *args) -> None:
        ctl = self._controls()
        if ctl is None:
            return
        try:
            getattr(ctl, name)(*args)
        except DvsAppError as exc:
            self.sigMessage.emit(str(exc))

    def play(self) -> None:
        self.paused = False
        self._forward("resume")

    def pause(self) -> None:
        self.paused = True
        self._forward("pause")

    def set_speed(self, speed: float) -> None:
        """Replay speed factor (0.1 .. 10), or :data:`MAX_SPEED` (0) for as fast as possible."""
        self.speed = max(0.0, float(speed))
        session = self._session
        if session is not None and session.source is not None and session.source.live:
            return  # a live source plays in real time
        self._forward("set_speed", self.speed)

    def set_loop(self, loop: bool) -> None:
        self.loop = bool(loop)
        session = self._session
        if session is not None and session.source is not None and hasattr(session.source, "loop"):
            session.source.loop = self.loop

    def seek(self, t_us: int) -> None:
        """Jump a file replay to ``t_us`` (recording time); the pipeline restarts the model state there.

        Before the session's pipeline exists the jump is kept and applied when it starts.
        """
        if self._controls() is None:
            self.pending_seek_us = int(t_us)
            return
        self._forward("seek", int(t_us))

    def reset_state(self) -> None:
        """Forget the model's membrane state: the model thread does it before its next window."""
        self._forward("reset_model")

    def start_recording(self, path: str | Path) -> None:
        """Write the incoming events to ``path`` (AEDAT4) until :meth:`stop_recording`."""
        self.record_path = Path(path)

    def stop_recording(self) -> None:
        self.record_path = None

    # ------------------------------------------------------------- hand-off
    def _post_events(self, events: np.ndarray, until_us: int, offset_us: int = 0) -> None:
        with self._lock:
            if len(events):
                self._mail.append(events)
                self._mail_n += len(events)
                while self._mail_n > self.max_mail_events and len(self._mail) > 1:
                    self._mail_n -= len(self._mail.pop(0))
            self._mail_until_us = until_us
            self._mail_offset_us = offset_us

    def take_events(self) -> tuple[np.ndarray, int | None, int]:
        """Events posted since the last call, the latest ``until_us`` and the loop offset (GUI thread).

        The offset is what a looping replay added to the recording's timestamps
        (``stream time - offset = recording time``).
        """
        with self._lock:
            parts, until, offset = self._mail, self._mail_until_us, self._mail_offset_us
            self._mail, self._mail_n = [], 0
        return (concat(parts) if parts else empty_events()), until, offset


class _Session:
    """One run of a source through the pipeline, inside the worker thread."""

    ENERGY_EVERY_S = 2.0

    def __init__(self, worker: PlaybackWorker, uri: str, checkpoint, use_model: bool, session_id: int = 0):
        self.worker = worker
        self.session_id = session_id
        self.uri = uri
        self.checkpoint = checkpoint
        self.use_model = use_model
        self.path = file_path_of(uri)
        self.classifier = None
        self.energy_model = None
        self.model_info: ModelInfo | None = None
        self.source = None
        self.controls = None
        self.recorder = None  # an EventRecorder while recording
        self.writer_path: Path | None = None
        self.sensor: SensorSize | None = None
        self.offset_us = 0
        self.last_until_us: int | None = None
        self.energy_uj: float | None = None
        self._energy_at = 0.0
        self._energy_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._energy_job: concurrent.futures.Future | None = None
        self._stop_requested = False

    def request_stop(self) -> None:
        self._stop_requested = True
        ctl = self.controls
        if ctl is not None:
            ctl.stop()

    # ------------------------------------------------------------ lifecycle
    def run_blocking(self) -> None:
        try:
            asyncio.run(self.run())
        except DvsAppError as exc:
            self.worker.sigError.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 (the GUI must survive any session failure)
            self.worker.sigError.emit(f"{type(exc).__name__}: {exc}")
        finally:
            self._close_writer(wait=True)
            if self._energy_pool is not None:
                self._energy_pool.shutdown(wait=True, cancel_futures=True)
            self.worker.sigFinished.emit(self.session_id)

    async def run(self) -> None:
        from dvsapp.core.sources import open_source

        if self.use_model:
            await asyncio.to_thread(self._load_model)
        w = self.worker
        params = {} if self.path is None else {"speed": w.speed, "loop": int(w.loop)}
        self.source = source = await asyncio.to_thread(open_source, self.uri, **params)
        self.sensor = SensorSize(*source.sensor_size)
        info = SourceInfo(self.uri, self.sensor, bool(source.live))
        if self.path is not None:
            info = await asyncio.to_thread(self._file_info, info)
        w.sigSource.emit(info)
        if self.model_info is not None:
            rect = model_overlay_rect(self.sensor, self.classifier.recipe)
            self.model_info = ModelInfo(**{**self.model_info.__dict__, "overlay_rect": rect})
            w.sigModel.emit(self.model_info)
        if self._stop_requested:
            source.close()
            return
        if self.classifier is not None:
            from dvsapp.core.pipeline import CallbackSink, Pipeline

            pipeline = Pipeline(
                source,
                self.classifier,
                sinks=[CallbackSink(self._on_result)],
                on_status=lambda text: w.sigMessage.emit(text),
                on_packet=self._on_packet,
            )
            self.controls = pipeline
            if w.paused:
                pipeline.pause()
            if w.pending_seek_us is not None and source.seekable:
                pipeline.seek(w.pending_seek_us)
            w.pending_seek_us = None
            if self._stop_requested:
                pipeline.stop()
            await pipeline.run()
        else:
            stop = asyncio.Event()
            self.controls = _SourceControls(source, asyncio.get_running_loop(), stop)
            if w.paused:
                source.pause()
            try:
                await _drain(source, stop, self._on_packet)
            finally:
                source.close()

    # ---------------------------------------------------------------- model
    def _load_model(self) -> None:
        import copy

        from dvsapp.core.classify import load_classifier

        try:
            self.classifier = load_classifier(
                None if self.checkpoint is None else str(self.checkpoint), record_taps=True
            )
        except DvsAppError as exc:  # play the events anyway; the window says why there is no model
            self.worker.sigError.emit(f"{exc} (showing events only)")
            return
        cfg = _model_config(self.classifier)
        recipe = self.classifier.recipe
        self.energy_model = copy.deepcopy(self.classifier.model)  # used off the model thread
        name = Path(str(self.checkpoint)).name if self.checkpoint else "bundled model"
        self.model_info = ModelInfo(
            name=name,
            class_names=tuple(self.classifier.class_names),
            attention=str(cfg.attention),
            input_hw=(int(recipe.input_size.height), int(recipe.input_size.width)),
            token_hw=tuple(cfg.token_hw),
            step_us=int(recipe.step_us),
            timesteps=int(recipe.timesteps),
            overlay_rect=None,
        )

    def _file_info(self, info: SourceInfo) -> SourceInfo:
        from dvsapp.core.io import open_events

        labels: list = []
        try:
            from dvsapp.core.labels import find_labels

            labels = find_labels(self.path) or []
        except DvsAppError as exc:
            self.worker.sigMessage.emit(f"labels ignored: {exc}")
        rate_t, rate_hz, t_start, t_end = _file_rate(open_events(self.path))
        return SourceInfo(
            info.uri, info.sensor_size, False, self.path, t_start, t_end, list(labels), rate_t, rate_hz
        )

    # ------------------------------------------------------- stream callbacks
    def _on_packet(self, packet: Packet) -> None:
        """Runs on the pipeline's loop for every packet: hand the events to the GUI, record them."""
        position = getattr(self.source, "position_us", None)
        offset = packet.until_us - position if position is not None else 0
        if offset != self.offset_us:
            self.offset_us = offset
            self.worker.sigSeeked.emit(packet.until_us - offset)  # a new loop pass
        self.last_until_us = packet.until_us
        self.worker._post_events(packet.events, packet.until_us, offset)
        self._record(packet.events)

    def _on_result(self, window, prediction, snapshot) -> None:
        """Runs on the pipeline's loop for every prediction: emit it to the GUI (queued).

        Every ``ENERGY_EVERY_S`` the energy estimate of a window is started on a thread of
        its own (it runs the model once more); its figure shows in later results.
        """
        now = time.monotonic()
        busy = self._energy_job is not None and not self._energy_job.done()
        if self.energy_model is not None and not busy and now - self._energy_at > self.ENERGY_EVERY_S:
            self._energy_at = now
            if self._energy_pool is None:
                self._energy_pool = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="dvsapp-energy"
                )
            self._energy_job = self._energy_pool.submit(_energy_uj, self.energy_model, window)
            self._energy_job.add_done_callback(self._energy_done)
        self.worker.sigResult.emit(
            Result(window, prediction, _metrics(snapshot, self.energy_uj), self.offset_us, self.session_id)
        )

    def _energy_done(self, job: concurrent.futures.Future) -> None:
        if not job.cancelled() and job.exception() is None:
            self.energy_uj = job.result()

    # ------------------------------------------------------------- recording
    def _record(self, events: np.ndarray) -> None:
        """Queue ``events`` for the file the user asked for (the recorder is opened/closed as the request changes).

        The writing itself happens on the recorder's thread, never on the pipeline's loop.
        """
        want = self.worker.record_path
        if want != self.writer_path:
            self._close_writer()
            if want is not None:
                from dvsapp.core.pipeline import EventRecorder

                self.recorder = EventRecorder(
                    want,
                    self.sensor,
                    force=True,
                    on_error=self._recording_failed,
                    on_saved=self._recording_saved,
                )
                self.writer_path = want
                self.worker.sigMessage.emit(f"recording to {want}")
        if self.recorder is not None:
            self.recorder.write(events)

    def _recording_failed(self, exc: BaseException) -> None:
        """From the recorder's thread: a full disk or a bad path stops the recording, not the session."""
        self.worker.record_path = None
        self.worker.sigError.emit(str(exc))

    def _recording_saved(self, path: Path) -> None:
        self.worker.sigMessage.emit(f"recording saved to {path}")

    def _close_writer(self, *, wait: bool = False) -> None:
        """Finish the recording: at once on the loop (the recorder's thread closes the file), or waiting for it."""
        recorder = self.recorder
        if recorder is None:
            return
        self.recorder = self.writer_path = None
        recorder.close(wait=wait)


async def _drain(source, stop: asyncio.Event, on_packet) -> None:
    """Iterate ``source`` until it ends or ``stop`` is set, showing each packet to ``on_packet`` (no model)."""
    agen = source.__aiter__()
    while not stop.is_set():
        nxt = asyncio.ensure_future(agen.__anext__())
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if nxt not in done:
            nxt.cancel()
            break
        try:
            on_packet(nxt.result())
        except StopAsyncIteration:
            break


def _metrics(snapshot, energy_uj: float | None) -> Metrics:
    if snapshot is None:
        return Metrics(energy_uj=energy_uj)
    return Metrics(
        events_per_s=float(snapshot.events_per_s),
        model_ms=float(snapshot.model_ms_mean or snapshot.model_ms),
        dropped_windows=int(snapshot.dropped_windows),
        latency_ms=float(snapshot.latency_p50_ms or 0.0),
        energy_uj=energy_uj,
        windows=int(snapshot.windows_done),
        time_jumps=int(getattr(snapshot, "time_jumps", 0)),
    )


# ------------------------------------------------------------------ helpers
def _model_config(classifier):
    for holder in (classifier, getattr(classifier, "model", None)):
        cfg = getattr(holder, "config", None)
        if cfg is not None and hasattr(cfg, "input_hw"):
            return cfg
    raise SourceError("the classifier exposes no model config")


def _energy_uj(model, window) -> float | None:
    """Estimated energy of one window in µJ (:func:`dvsapp.core.model.estimate_energy` on ``model``), or None."""
    try:
        import torch

        from dvsapp.core.model import estimate_energy

        frames = torch.as_tensor(np.asarray(window.frames, dtype=np.float32))
        with torch.inference_mode():
            report = estimate_energy(model, frames)
        return float(report.energy_pj) * 1e-6
    except Exception:  # noqa: BLE001 (an optional figure: never break playback for it)
        return None


def _file_rate(
    reader, bin_us: int = 10_000, max_points: int = 1000
) -> tuple[np.ndarray, np.ndarray, int | None, int | None]:
    """Event rate of a whole file in one streaming pass, and its first and last timestamps.

    Counts go into ``bin_us`` bins (grown as the file goes on); the curve is then
    merged down to at most ``max_points`` points.  Returns ``(t_s, rate_hz, t_start_us, t_end_us)``.
    """
    counts = np.zeros(0, np.int64)
    t_start = t_end = None
    for packet in reader.packets(max_events=500_000):
        t = packet.events["t"]
        if not len(t):
            continue
        if t_start is None:
            t_start = int(t[0]) // bin_us * bin_us
        t_end = int(t[-1])
        idx = ((t - t_start) // bin_us).astype(np.intp)
        part = np.bincount(idx)
        if len(part) > len(counts):
            counts = np.pad(counts, (0, len(part) - len(counts)))
        counts[: len(part)] += part
    if t_start is None:
        return np.zeros(0), np.zeros(0), None, None
    merge = max(1, -(-len(counts) // max_points))
    counts = np.pad(counts, (0, (-len(counts)) % merge)).reshape(-1, merge).sum(axis=1)
    width_us = bin_us * merge
    t_s = (t_start + (np.arange(len(counts)) + 0.5) * width_us) / 1e6
    return t_s, counts * (1e6 / width_us), t_start, t_end
