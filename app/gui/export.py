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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dvsapp.app.gui.render import (
    TAP_NAMES,
    PixelBuffer,
    class_colour,
    draw_rect_outline,
    frames_to_rgb,
    heatmap_rgb,
    input_preview_rgb,
    overlay_heatmap,
    render_events_rgb,
    taps_to_numpy,
    token_grid_shape,
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


def _fit(img: np.ndarray, w: int, h: int, *, nearest: bool = True) -> np.ndarray:
    """Scale ``img`` to fit ``w x h`` keeping the aspect ratio, centred on a dark canvas."""
    canvas = np.full((h, w, 3), 20, np.uint8)
    if img.size == 0:
        return canvas
    ih, iw = img.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = max(1, int(iw * s)), max(1, int(ih * s))
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    small = cv2.resize(img, (nw, nh), interpolation=interp)
    y0, x0 = (h - nh) // 2, (w - nw) // 2
    canvas[y0 : y0 + nh, x0 : x0 + nw] = small
    return canvas


def _text(
    img: np.ndarray, text: str, xy: tuple[int, int], scale: float = 0.5, colour=(220, 220, 220), thick=1
):
    cv2.putText(img, text, xy, FONT, scale, colour, thick, cv2.LINE_AA)


def draw_probabilities(
    probs: np.ndarray | None, class_names: Sequence[str], class_id: int | None, w: int, h: int
) -> np.ndarray:
    """Top label, confidence and one bar per class, as an RGB panel ``[h, w, 3]``."""
    panel = np.full((h, w, 3), 24, np.uint8)
    if probs is None or class_id is None:
        _text(panel, "waiting for the first window...", (10, 30), 0.6)
        return panel
    name = class_names[class_id] if class_id < len(class_names) else str(class_id)
    _text(panel, name.replace("_", " "), (10, 34), 0.9, class_colour(class_id), 2)
    _text(panel, f"confidence {float(probs[class_id]):.0%}", (10, 58), 0.5)
    n = len(probs)
    top = 70
    row_h = max(8, (h - top - 6) // max(n, 1))
    label_w = min(190, w // 2)
    for i, p in enumerate(probs):
        y = top + i * row_h
        colour = class_colour(i) if i == class_id else (90, 110, 140)
        bar = int((w - label_w - 16) * float(np.clip(p, 0, 1)))
        cv2.rectangle(panel, (label_w, y + 2), (label_w + bar, y + row_h - 3), colour, -1)
        label = class_names[i] if i < len(class_names) else str(i)
        _text(panel, label[:22], (6, y + row_h - 5), min(0.42, row_h / 30), (200, 200, 200))
    return panel


def draw_attention(taps, frames: np.ndarray | None, w: int, h: int, token_hw=None) -> np.ndarray:
    """Q/K/V/out heatmaps of block 0 (head mean, averaged over timesteps) on the model input."""
    panel = np.full((h, w, 3), 24, np.uint8)
    data = taps_to_numpy(taps) if taps is not None else {}
    if not data:
        _text(panel, "no attention taps", (10, 24), 0.5)
        return panel
    named = data[sorted(data)[0]]
    base = input_preview_rgb(frames) if frames is not None else None
    tile_w = w // 4
    for i, name in enumerate(TAP_NAMES):
        if name not in named:
            continue
        per_tok = named[name].mean(axis=(0, 1))  # [N]
        hw = token_hw if token_hw and token_hw[0] * token_hw[1] == len(per_tok) else None
        if hw is None:
            aspect = base.shape[1] / base.shape[0] if base is not None else 1.0
            hw = token_grid_shape(len(per_tok), aspect)
        grid = per_tok.reshape(hw)
        vmax = max(float(grid.max()), 1e-3)
        rgb = overlay_heatmap(base, grid, vmax=vmax) if base is not None else heatmap_rgb(grid, vmax=vmax)
        tile = _fit(rgb, tile_w - 6, h - 26)
        panel[22 : 22 + tile.shape[0], i * tile_w + 3 : i * tile_w + 3 + tile.shape[1]] = tile
        _text(panel, f"{name} {float(named[name].mean()):.3f}", (i * tile_w + 6, 16), 0.45)
    return panel


def draw_timeline(
    rows: dict[str, list[tuple[int, int, int]]], t0_us: int, t1_us: int, cursor_us: int, w: int, h: int
) -> np.ndarray:
    """Named strips of ``(class_id, start_us, end_us)`` bands over ``[t0_us, t1_us]`` with a cursor."""
    panel = np.full((h, w, 3), 24, np.uint8)
    label_w = 90
    span = max(1, t1_us - t0_us)

    def x_of(t: int) -> int:
        return label_w + int((w - label_w - 4) * (t - t0_us) / span)

    row_h = max(10, (h - 16) // max(1, len(rows)))
    for r, (name, segs) in enumerate(rows.items()):
        y = 4 + r * row_h
        _text(panel, name, (4, y + row_h - 6), 0.45)
        for cid, a, b in segs:
            cv2.rectangle(
                panel, (x_of(a), y + 2), (max(x_of(a) + 1, x_of(b)), y + row_h - 3), class_colour(cid), -1
            )
    cx = x_of(cursor_us)
    cv2.line(panel, (cx, 0), (cx, h - 1), (255, 80, 80), 2)
    _text(panel, f"{(cursor_us - t0_us) / 1e6:.2f} s", (min(cx + 4, w - 70), h - 4), 0.4)
    return panel


class FrameComposer:
    """Lays the panels out on one ``size_wh`` RGB frame (pure numpy/OpenCV)."""

    def __init__(self, size_wh: tuple[int, int], class_names: Sequence[str]) -> None:
        self.w, self.h = size_wh
        self.class_names = list(class_names)

    def compose(
        self,
        events_rgb: np.ndarray,
        *,
        result=None,
        token_hw=None,
        rows: dict[str, list[tuple[int, int, int]]],
        t_range_us: tuple[int, int],
        cursor_us: int,
        title: str = "",
    ) -> np.ndarray:
        w, h = self.w, self.h
        frame = np.full((h, w, 3), 16, np.uint8)
        left_w = int(w * 0.52)
        tl_h = max(60, h // 9)
        ts_h = max(60, h // 7)
        ev_h = h - tl_h - ts_h
        frame[0:ev_h, 0:left_w] = _fit(events_rgb, left_w, ev_h)
        _text(frame, title, (8, 20), 0.5)
        prob_h = int(ev_h * 0.5)
        if result is not None:
            pred = result.prediction
            probs, cid, frames = np.asarray(pred.probs), int(pred.class_id), result.window.frames
            taps = getattr(pred, "taps", None)
        else:
            probs, cid, frames, taps = None, None, None, None
        frame[0:prob_h, left_w:w] = draw_probabilities(probs, self.class_names, cid, w - left_w, prob_h)
        frame[prob_h:ev_h, left_w:w] = draw_attention(taps, frames, w - left_w, ev_h - prob_h, token_hw)
        if frames is not None:
            frame[ev_h : ev_h + ts_h, 0:w] = _fit(frames_to_rgb(frames), w, ts_h)
        frame[h - tl_h : h, 0:w] = draw_timeline(rows, t_range_us[0], t_range_us[1], cursor_us, w, tl_h)
        return frame


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
