"""``dvsapp replay FILE --export video.mp4``: the GUI's views rendered to a video, no window.

Every frame is composed with numpy and OpenCV from the same pure renderers the
window uses (:mod:`dvsapp.app.gui.render`): the decayed event view with the model-input
outline, the predicted class and its probability bars, the attention heatmaps of
the first block, the timesteps of the current window, and a timeline strip with
the predictions (and the ground truth when the recording has labels).

The replay runs as fast as possible through the same pipeline as the window
(:class:`dvsapp.core.pipeline.Pipeline`, the model's input recipe); video time
equals recording time divided by ``speed``.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dvsapp.app.gui.render import (
    FrameComposer,
    PixelBuffer,
    draw_rect_outline,
    render_events_rgb,
)
from dvsapp.core.atomic import atomic_path
from dvsapp.core.errors import ConfigError, EventFileError, OutputExistsError
from dvsapp.core.events import SensorSize
from dvsapp.core.sources import ReplaySource

FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class ExportOptions:
    """Settings of a video export.

    Attributes
    ----------
    fps : float
        Video frames per second.
    speed : float
        Recording seconds per video second (> 0).
    size_wh : (int, int)
        Frame size in pixels (width, height).
    decay, tau_us
        Event-view decay kernel and time constant (µs).
    max_duration_s : float, optional
        Stop after this much recording time.
    """

    fps: float = 30.0
    speed: float = 1.0
    size_wh: tuple[int, int] = (1280, 720)
    decay: str = "exponential"
    tau_us: float = 30_000.0
    max_duration_s: float | None = None

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ConfigError(f"export fps must be > 0, got {self.fps}")
        if not self.speed > 0:
            raise ConfigError(
                f"export speed must be > 0 (as fast as possible makes no video), got {self.speed}"
            )
        if min(self.size_wh) < 320:
            raise ConfigError(f"export size {self.size_wh} is too small (at least 320x320)")


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    frames: int
    windows: int
    duration_s: float


def export_video(
    recording: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    options: ExportOptions = ExportOptions(),
    force: bool = False,
    progress: Callable[[float], None] | None = None,
) -> ExportSummary:
    """Replay ``recording`` through the model and write the GUI's views to ``out_path`` (mp4v).

    The recording runs through :class:`dvsapp.core.pipeline.Pipeline` (the model's
    input recipe, the model thread) as a file replay cut into one packet per video
    frame; a tap on the packets feeds the event view, and :class:`_VideoSink`
    draws frame ``f`` (recording time ``u``) with the last prediction whose window
    ended at or before ``u``, exactly what the window shows at that moment.

    Raises
    ------
    OutputExistsError
        ``out_path`` exists and ``force`` is False.
    EventFileError, CheckpointError
        Unreadable recording or checkpoint.
    """
    from dvsapp.app.gui.worker import _file_rate, _model_config, model_overlay_rect
    from dvsapp.core.classify import load_classifier
    from dvsapp.core.io import open_events
    from dvsapp.core.labels import find_labels
    from dvsapp.core.pipeline import Pipeline, run_pipeline

    out_path = Path(out_path)
    if out_path.exists() and not force:
        raise OutputExistsError("output exists (use --force to overwrite)", path=out_path)
    reader = open_events(recording)
    sensor = SensorSize(*reader.sensor_size)
    classifier = load_classifier(None if checkpoint is None else str(checkpoint), record_taps=True)
    cfg = _model_config(classifier)
    class_names = list(getattr(classifier, "class_names", None) or cfg.class_names)
    rect = model_overlay_rect(sensor, classifier.recipe)
    truth = [(s.class_id, s.start_us, s.end_us) for s in (find_labels(recording) or [])]
    _, _, t_start, t_end = _file_rate(open_events(recording))
    if t_start is None:
        raise EventFileError("the recording holds no events", path=recording)
    if options.max_duration_s is not None:
        t_end = min(t_end, t_start + int(options.max_duration_s * 1e6))

    frame_dt_us = max(1, int(round(options.speed * 1e6 / options.fps)))
    stop_us = t_end + frame_dt_us
    # the video is written beside OUT and renamed into place once complete (removed on any error)
    with atomic_path(out_path, suffix=out_path.suffix) as tmp_path:
        writer = cv2.VideoWriter(str(tmp_path), cv2.VideoWriter_fourcc(*"mp4v"), options.fps, options.size_wh)
        if not writer.isOpened():
            raise OutputExistsError("OpenCV cannot write an mp4v video here", path=out_path)
        video = _VideoSink(
            writer,
            FrameComposer(options.size_wh, class_names),
            PixelBuffer.empty(sensor),
            options=options,
            rect=rect,
            truth=truth,
            t_range_us=(t_start, t_end),
            token_hw=tuple(cfg.token_hw),
            title=f"{Path(recording).name}  {sensor}  {cfg.attention} attention",
            progress=progress,
        )

        def frames(start_us):
            # one packet per video frame (no count limit: a busy frame stays one frame), up to the end
            for packet in reader.packets(max_events=1 << 62, dt_us=frame_dt_us):
                if packet.until_us > stop_us:
                    return
                yield packet

        source = ReplaySource(
            frames, sensor, speed=0.0, uri=f"file:{recording}", description=Path(recording).name
        )
        try:
            run_pipeline(
                Pipeline(source, classifier, sinks=[video], on_packet=video.on_packet),
                handle_signals=False,
            )
        finally:
            writer.release()
        if video.n_frames == 0:
            raise EventFileError("nothing to export: the recording is empty", path=recording)
    return ExportSummary(out_path, video.n_frames, video.n_windows, video.n_frames / options.fps)


@dataclass(frozen=True)
class _Shown:
    window: object
    prediction: object


class _VideoSink:
    """The export as a pipeline sink: packets (tapped) become frames once the predictions that precede them are in.

    Frame ``f`` stands at its packet's ``until_us`` and shows the latest prediction of a
    window ending at or before it.  Predictions arrive in window order after the
    packets that completed them, so when a window ending at ``e`` arrives, every
    pending frame before ``e`` is final and is drawn.  Drawing and encoding run on a
    thread (``asyncio.to_thread``), one frame after the other, off the pipeline's loop.
    """

    def __init__(
        self, writer, composer: FrameComposer, buffer: PixelBuffer, *, options: ExportOptions, rect,
        truth, t_range_us: tuple[int, int], token_hw, title: str, progress,
    ) -> None:  # fmt: skip
        self.writer, self.composer, self.buffer = writer, composer, buffer
        self.options, self.rect, self.token_hw, self.title, self.progress = (
            options,
            rect,
            token_hw,
            title,
            progress,
        )
        self.t_range_us = t_range_us
        self.pred_segs: list[tuple[int, int, int]] = []
        self.rows: dict[str, list[tuple[int, int, int]]] = {"prediction": self.pred_segs}
        if truth:
            self.rows["truth"] = truth
        self.pending: deque = deque()  # (events, until_us) of packets not drawn yet
        self.latest: _Shown | None = None
        self.n_frames = 0
        self.n_windows = 0

    def on_packet(self, packet) -> None:
        """The pipeline's packet tap (on its loop): one packet = one video frame."""
        self.pending.append((packet.events, int(packet.until_us)))

    async def consume(self, window, prediction) -> None:
        await asyncio.to_thread(self._draw_before, int(window.t_end_us))
        self.latest = _Shown(window, prediction)
        self.n_windows += 1
        cid = int(prediction.class_id)
        segs = self.pred_segs
        if segs and segs[-1][0] == cid and segs[-1][2] == window.t_start_us:
            segs[-1] = (cid, segs[-1][1], int(window.t_end_us))
        else:
            segs.append((cid, int(window.t_start_us), int(window.t_end_us)))

    async def close(self) -> None:
        await asyncio.to_thread(self._draw_before, None)

    def _draw_before(self, end_us: int | None) -> None:
        """Draw every pending frame standing before ``end_us`` (all of them for ``None``)."""
        while self.pending and (end_us is None or self.pending[0][1] < end_us):
            events, until_us = self.pending.popleft()
            self._draw(events, until_us)

    def _draw(self, events: np.ndarray, until_us: int) -> None:
        opts = self.options
        self.buffer.write(events)
        events_rgb = render_events_rgb(
            self.buffer.last_t_us, self.buffer.last_p, until_us, mode=opts.decay, tau_us=opts.tau_us
        )
        draw_rect_outline(events_rgb, self.rect)
        frame = self.composer.compose(
            events_rgb,
            result=self.latest,
            token_hw=self.token_hw,
            rows=self.rows,
            t_range_us=self.t_range_us,
            cursor_us=until_us,
            title=self.title,
        )
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.n_frames += 1
        if self.progress is not None:
            t0, t1 = self.t_range_us
            self.progress(min(1.0, (until_us - t0) / max(1, t1 - t0)))
