"""Pipeline sinks: where each ``(window, prediction)`` pair goes, in stream order.

A sink has ``async consume(window, prediction)`` (awaited on the pipeline's event
loop: keep it quick, or hand heavy work to a thread) and ``close()`` (called once at
shutdown; may be a coroutine function; must flush).  ``bind(pipeline)``, when
defined, is called once before the run.

* :class:`ListSink` keeps everything in memory (tests, small files);
* :class:`JsonLinesSink` and :class:`CsvSink` write one line per prediction, flushed;
* :class:`StatsSink` counts and scores against ground truth (:func:`segments_truth`);
* :class:`CallbackSink` calls a function with the live metrics (the GUI);
* :class:`EventRecorder` writes raw events to a file from its own thread.
"""

from __future__ import annotations

import bisect
import inspect
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from dvsapp.core.classify import Prediction
from dvsapp.core.errors import OutputExistsError
from dvsapp.core.events import Window

if TYPE_CHECKING:  # pragma: no cover
    from dvsapp.core.pipeline.engine import MetricsSnapshot, Pipeline

__all__ = [
    "CSV_COLUMNS",
    "CallbackSink",
    "CsvSink",
    "EventRecorder",
    "JsonLinesSink",
    "ListSink",
    "Sink",
    "StatsSink",
    "segments_truth",
]


@runtime_checkable
class Sink(Protocol):
    """Receives every (window, prediction) pair, in stream order.

    ``consume`` is awaited on the pipeline's event loop (keep it quick, or hand the
    work to another thread); ``close`` is called once at shutdown (it may be a
    coroutine function) and must flush.  A sink may define ``bind(pipeline)``,
    called once before the run, to reach :meth:`Pipeline.metrics`.
    """

    async def consume(self, window: Window, prediction: Prediction) -> None: ...

    def close(self) -> None: ...


class CallbackSink:
    """Calls ``callback(window, prediction, metrics)`` for every prediction.

    ``metrics`` is a :class:`MetricsSnapshot`.  The callback runs on the pipeline's
    thread: a GUI emits a queued Qt signal from it.  ``on_close`` (optional) is
    called at shutdown.
    """

    def __init__(
        self,
        callback: Callable[[Window, Prediction, MetricsSnapshot], Any],
        *,
        on_close: Callable[[], Any] | None = None,
    ) -> None:
        self.callback = callback
        self.on_close = on_close
        self._pipeline: Pipeline | None = None

    def bind(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def consume(self, window: Window, prediction: Prediction) -> None:
        metrics = self._pipeline.metrics() if self._pipeline is not None else None
        result = self.callback(window, prediction, metrics)
        if inspect.isawaitable(result):
            await result

    def close(self) -> None:
        if self.on_close is not None:
            self.on_close()


class ListSink:
    """Keeps every prediction (and optionally the window) in memory: for tests and small files."""

    def __init__(self, keep_windows: bool = False) -> None:
        self.predictions: list[Prediction] = []
        self.windows: list[Window] = []
        self.keep_windows = keep_windows
        self.closed = False

    async def consume(self, window: Window, prediction: Prediction) -> None:
        self.predictions.append(prediction)
        if self.keep_windows:
            self.windows.append(window)

    def close(self) -> None:
        self.closed = True


class JsonLinesSink:
    """Writes one JSON object per prediction (:meth:`Prediction.as_dict`) to a text stream, flushed per line."""

    def __init__(self, stream: IO[str], *, with_probs: bool = True) -> None:
        self.stream = stream
        self.with_probs = with_probs

    async def consume(self, window: Window, prediction: Prediction) -> None:
        row = prediction.as_dict()
        if not self.with_probs:
            row.pop("probs")
        self.stream.write(json.dumps(row) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


CSV_COLUMNS = (
    "window",
    "t_start_us",
    "t_us",
    "n_events",
    "label",
    "class_id",
    "confidence",
    "latency_ms",
)


class CsvSink:
    """Predictions to a CSV file, written and flushed line by line (a crash keeps what came before).

    Columns: ``window,t_start_us,t_us,n_events,label,class_id,confidence,latency_ms``, named as in
    the JSON lines (:meth:`Prediction.as_dict`; ``t_us`` is the window's end, the prediction's time).

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is false.
    """

    def __init__(self, path: str | os.PathLike, *, force: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not force:
            raise OutputExistsError("exists; pass --force to overwrite", path=self.path)
        try:
            self._file: IO[str] | None = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise OutputExistsError(f"cannot write: {exc.strerror or exc}", path=self.path) from None
        self._file.write(",".join(CSV_COLUMNS) + "\n")
        self._file.flush()

    async def consume(self, window: Window, prediction: Prediction) -> None:
        if self._file is None:
            return
        p = prediction
        self._file.write(
            f"{p.window_index},{p.t_start_us},{p.t_us},{p.n_events},{p.label},{p.class_id},"
            f"{p.confidence:.6f},{p.latency_us / 1000:.3f}\n"
        )
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


def segments_truth(segments: Sequence) -> Callable[[int], int | None]:
    """``truth(t_us)``: the ``class_id`` of the segment containing ``t_us`` (``None`` outside all).

    ``segments`` are objects with ``class_id``, ``start_us``, ``end_us`` (half-open),
    e.g. :class:`dvsapp.core.labels.Segment`.
    """
    ordered = sorted(segments, key=lambda s: (s.start_us, s.end_us))
    starts = [s.start_us for s in ordered]

    def truth(t_us: int) -> int | None:
        for i in range(bisect.bisect_right(starts, t_us) - 1, -1, -1):
            seg = ordered[i]
            if seg.start_us <= t_us < seg.end_us:
                return int(seg.class_id)
        return None

    return truth


class StatsSink:
    """Counts predictions per class and scores them against ground truth.

    Parameters
    ----------
    class_names : sequence of str
    truth : callable, optional
        ``truth(t_us) -> class_id | None``; a prediction is scored against
        ``truth(t_us - 1)`` (the last instant its window covers); ``None`` or a
        negative id means "not scored".
    """

    def __init__(self, class_names: Sequence[str], truth: Callable[[int], int | None] | None = None) -> None:
        self.class_names = tuple(class_names)
        self.truth = truth
        self.counts: Counter[int] = Counter()
        self.n_scored = 0
        self.n_correct = 0
        self.latencies_ms: list[float] = []
        self.model_ms: list[float] = []
        self.n_predictions = 0
        self.n_events = 0

    async def consume(self, window: Window, prediction: Prediction) -> None:
        self.add(prediction)

    def add(self, prediction: Prediction) -> None:
        self.n_predictions += 1
        self.n_events += prediction.n_events
        self.counts[prediction.class_id] += 1
        self.latencies_ms.append(prediction.latency_us / 1000.0)
        self.model_ms.append(prediction.model_ms)
        if self.truth is not None:
            want = self.truth(prediction.t_us - 1)
            if want is not None and want >= 0:
                self.n_scored += 1
                self.n_correct += int(want == prediction.class_id)

    @property
    def accuracy(self) -> float | None:
        return self.n_correct / self.n_scored if self.n_scored else None

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable: predictions, per-class counts, accuracy, latency and model-time percentiles."""
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else None
        mod = np.asarray(self.model_ms) if self.model_ms else None
        return {
            "predictions": self.n_predictions,
            "per_class": {
                (self.class_names[k] if 0 <= k < len(self.class_names) else str(k)): int(v)
                for k, v in sorted(self.counts.items())
            },
            "scored": self.n_scored,
            "accuracy": None if self.accuracy is None else round(self.accuracy, 4),
            "latency_p50_ms": None if lat is None else round(float(np.percentile(lat, 50)), 3),
            "latency_p99_ms": None if lat is None else round(float(np.percentile(lat, 99)), 3),
            "model_ms_mean": None if mod is None else round(float(mod.mean()), 3),
        }

    def close(self) -> None:
        pass


# --------------------------------------------------------------------- recorder
class EventRecorder:
    """Writes raw events to a file from a thread of its own: :meth:`write` never blocks the caller.

    The pipeline's loop (a packet tap, ``Pipeline(on_packet=...)``) hands packets to
    :meth:`write`, which only queues them; the recorder's thread opens the file
    (:func:`dvsapp.core.io.open_writer`, atomic: the file appears complete or not at
    all), writes and closes it.  Errors (cannot write, disk full) go to ``on_error``
    once, from the recorder's thread; the recorder then discards what follows.

    Parameters
    ----------
    path : path-like
        Output (format from the extension, ``.aedat4``, ``.h5``...).
    sensor_size : SensorSize
    force : bool
        Replace an existing file.
    on_error : callable, optional
        ``on_error(exc)`` with the :class:`~dvsapp.core.errors.DvsAppError`.
    on_saved : callable, optional
        ``on_saved(path)`` once the file is complete.
    max_pending_events : int
        Events that may wait for the disk; beyond that new events are dropped and
        counted in :attr:`dropped_events` (memory stays bounded on a stalled disk).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sensor_size,
        *,
        force: bool = False,
        on_error: Callable[[BaseException], Any] | None = None,
        on_saved: Callable[[Path], Any] | None = None,
        max_pending_events: int = 20_000_000,
    ) -> None:
        import queue
        import threading

        self.path = Path(path)
        self.sensor_size = sensor_size
        self.force = force
        self.on_error = on_error
        self.on_saved = on_saved
        self.max_pending_events = int(max_pending_events)
        self.n_events = 0
        self.dropped_events = 0
        self.failed = False
        self._pending = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="dvsapp-recorder", daemon=True)
        self._thread.start()

    def write(self, events: np.ndarray) -> None:
        """Queue ``events`` (sorted, after the previous ones) for the file; returns at once."""
        n = len(events)
        if n == 0 or self._closing:
            return
        with self._lock:
            if self.failed or self._pending + n > self.max_pending_events:
                self.dropped_events += n
                return
            self._pending += n
        self._queue.put(events)

    def close(self, *, wait: bool = True, timeout_s: float | None = 30.0) -> None:
        """Finish the file (idempotent); with ``wait``, return once it is complete."""
        if not self._closing:
            self._closing = True
            self._queue.put(None)
        if wait:
            self._thread.join(timeout_s)

    @property
    def done(self) -> bool:
        """The file is complete (or failed) and the thread has ended."""
        return not self._thread.is_alive()

    def _run(self) -> None:
        from dvsapp.core.errors import DvsAppError
        from dvsapp.core.io import open_writer

        try:
            with open_writer(self.path, self.sensor_size, force=self.force) as writer:
                while True:
                    events = self._queue.get()
                    if events is None:
                        break
                    writer.write(events)
                    with self._lock:
                        self._pending -= len(events)
                        self.n_events += len(events)
        except DvsAppError as exc:
            with self._lock:
                self.failed = True
            self._drain()
            if self.on_error is not None:
                self.on_error(exc)
            return
        if self.on_saved is not None:
            self.on_saved(self.path)

    def _drain(self) -> None:
        """After a failure: empty the queue (what arrives later is counted as dropped by :meth:`write`)."""
        import queue

        while True:
            try:
                events = self._queue.get_nowait()
            except queue.Empty:
                return
            if events is not None:
                with self._lock:
                    self._pending -= len(events)
                    self.dropped_events += len(events)
