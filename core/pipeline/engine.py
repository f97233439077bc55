"""The pipeline engine: source -> filters -> StreamBinner -> StreamingClassifier -> sinks.

This is the one loop that streams events into a model: ``dvsapp classify`` (file
and live), the GUI, label predictions and the video export all run it.

Stages and queues
-----------------
::

    source --packets--> [ingest: the classifier's InputRecipe: filters, spatial map,
        StreamBinner, encoding] --windows--> (bounded queue)
        --> [model thread: StreamingClassifier.step] --(window, prediction)--> (bounded queue)
        --> [sinks: consume(window, prediction)]

* The model input is made by the classifier's :class:`~dvsapp.core.recipe.InputRecipe`
  (:meth:`~dvsapp.core.recipe.InputRecipe.stream`) and nothing else, so a model runs on
  the input it was trained on.
* Ingest runs on the event loop (filtering and binning a packet costs well under
  a millisecond per 10k events); sources do their blocking reads in worker threads.
* The model runs on one dedicated thread (torch releases the GIL), so the loop
  stays responsive and the model state is only ever touched by that thread: a
  state change asked from elsewhere (:meth:`Pipeline.reset_model`,
  :meth:`Pipeline.call_on_model_thread`) waits in a command queue that the model
  thread drains before its next step.
* Sinks run on the loop, in order, after the model; one with heavy work hands it
  to a thread of its own.

Backpressure
------------
* Replayed sources (``source.live`` false): the window queue blocks the ingest,
  which stops pulling packets; nothing is dropped.
* Live sources: the sensor is never blocked.  When the window queue is full the
  oldest queued window is dropped (whole windows only) and counted in
  ``dropped_windows``.  Memory is bounded by ``window_queue`` windows plus the
  open window of the binner, whatever the input rate.

Controls (thread-safe; the GUI calls them from its own thread)
--------------------------------------------------------------
``pause()``, ``resume()``, ``set_speed(x)``, ``seek(t_us)``, ``stop()``,
``reset_model()``, ``call_on_model_thread(fn)``.  A seek
(and resuming a live source) starts a new *generation*: queued windows of the old
one are discarded, the binner and the filters restart and the model state is reset.

Time jumps
----------
A live source whose clock jumps (see :mod:`dvsapp.core.sources.timejump`) starts
the new timeline with a :class:`~dvsapp.core.sources.timejump.RestartPacket`.  The
ingest then flushes the open window of the old timeline, restarts the filters and
the binner, and the model resets its state before the first window of the new
timeline; every window of both timelines goes through the model (nothing is
discarded).  Each jump is counted in ``time_jumps`` and reported by one status line.

Shutdown
--------
End of stream, :meth:`Pipeline.stop` (Ctrl-C / SIGTERM through :func:`run_pipeline`)
or an error: the tasks are cancelled, the model thread finishes its step and is
joined, the source is closed and every sink is closed (flushed).  An error raised
by the source (e.g. a file corrupt half-way) is re-raised by :meth:`Pipeline.run`
only after every window binned before it went through the model and the sinks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import math
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dvsapp.core.binning import warm_up as warm_up_binning
from dvsapp.core.classify import Prediction, StreamingClassifier
from dvsapp.core.errors import ConfigError, DvsAppError
from dvsapp.core.events import Packet, SensorSize, Window
from dvsapp.core.pipeline.sinks import Sink
from dvsapp.core.recipe import InputRecipe
from dvsapp.core.sources.base import Source
from dvsapp.core.sources.timejump import RestartPacket

__all__ = ["MetricsSnapshot", "Pipeline", "PipelineMetrics", "run_pipeline"]


# ---------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class MetricsSnapshot:
    """The pipeline's live numbers at one instant (all rates over the last ~second).

    Attributes
    ----------
    elapsed_s : float
        Wall time since the run started.
    events_in : int
        Events received from the source (before filtering).
    events_per_s : float
        Input rate.
    windows_binned, windows_done : int
        Windows out of the binner / through the model.
    events_binned : int
        Events in the windows out of the binner (after the recipe's filters and spatial map).
    windows_per_s : float
        Model throughput.
    model_ms, model_ms_mean : float
        Last and mean model time per window (ms).
    queue_depth, queue_max, queue_bound : int
        Windows waiting for the model now, the most ever waiting, and the bound.
    results_depth : int
        Predictions waiting for the sinks.
    dropped_windows : int
        Windows dropped because the model lagged behind a live source.
    latency_p50_ms, latency_p99_ms, latency_max_ms : float or None
        Arrival of a window's last event -> its prediction, over the last 1000 windows.
    stream_us : int or None
        Stream time delivered so far (``until_us`` of the last packet).
    realtime_factor : float or None
        Stream time processed per wall second (``> 1`` = faster than real time).
    late_events, skipped_windows : int
        From the binner: events after their window closed; empty windows not emitted.
    time_jumps : int
        Restarts of a live source's clock (binner and model restarted at each).
    status : str
        The latest status message of the source or pipeline ("" if none).
    running, paused : bool
    """

    elapsed_s: float = 0.0
    events_in: int = 0
    events_per_s: float = 0.0
    windows_binned: int = 0
    windows_done: int = 0
    events_binned: int = 0
    windows_per_s: float = 0.0
    model_ms: float = 0.0
    model_ms_mean: float = 0.0
    queue_depth: int = 0
    queue_max: int = 0
    queue_bound: int = 0
    results_depth: int = 0
    dropped_windows: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    stream_us: int | None = None
    realtime_factor: float | None = None
    late_events: int = 0
    skipped_windows: int = 0
    time_jumps: int = 0
    status: str = ""
    running: bool = False
    paused: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = {}
        for k, v in self.__dict__.items():
            out[k] = round(v, 3) if isinstance(v, float) else v
        return out


class _Rate:
    """Rate of a growing counter over the last ``span_s`` seconds."""

    def __init__(self, span_s: float = 1.0) -> None:
        self.span_s = span_s
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, total: int) -> None:
        self.samples.append((now, total))
        while len(self.samples) > 2 and now - self.samples[1][0] > self.span_s:
            self.samples.popleft()

    def rate(self, now: float, total: int) -> float:
        if not self.samples:
            return 0.0
        t0, n0 = self.samples[0]
        dt = now - t0
        return (total - n0) / dt if dt > 1e-3 else 0.0


@dataclass
class PipelineMetrics:
    """Mutable counters owned by the pipeline's loop thread; read them through :meth:`snapshot`."""

    queue_bound: int = 0
    started_s: float | None = None
    events_in: int = 0
    windows_binned: int = 0
    windows_done: int = 0
    events_binned: int = 0
    dropped_windows: int = 0
    queue_max: int = 0
    model_ms_last: float = 0.0
    model_ms_total: float = 0.0
    first_us: int | None = None
    stream_us: int | None = None
    time_jumps: int = 0
    status: str = ""
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=1000))
    _events_rate: _Rate = field(default_factory=_Rate)
    _windows_rate: _Rate = field(default_factory=_Rate)

    def on_packet(self, packet: Packet, now: float) -> None:
        self.events_in += len(packet.events)
        if self.first_us is None:
            self.first_us = int(packet.events["t"][0]) if len(packet.events) else int(packet.until_us)
        self.stream_us = int(packet.until_us)
        self._events_rate.add(now, self.events_in)

    def on_prediction(self, prediction: Prediction, now: float) -> None:
        self.windows_done += 1
        self.model_ms_last = prediction.model_ms
        self.model_ms_total += prediction.model_ms
        self.latencies_ms.append(prediction.latency_us / 1000.0)
        self._windows_rate.add(now, self.windows_done)

    def snapshot(
        self,
        *,
        queue_depth: int = 0,
        results_depth: int = 0,
        late_events: int = 0,
        skipped_windows: int = 0,
        running: bool = False,
        paused: bool = False,
    ) -> MetricsSnapshot:
        now = time.monotonic()
        elapsed = 0.0 if self.started_s is None else now - self.started_s
        lat = np.asarray(self.latencies_ms, dtype=np.float64) if self.latencies_ms else None
        rtf = None
        if self.first_us is not None and self.stream_us is not None and elapsed > 0:
            rtf = (self.stream_us - self.first_us) / 1e6 / elapsed
        return MetricsSnapshot(
            elapsed_s=elapsed,
            events_in=self.events_in,
            events_per_s=self._events_rate.rate(now, self.events_in),
            windows_binned=self.windows_binned,
            windows_done=self.windows_done,
            events_binned=self.events_binned,
            windows_per_s=self._windows_rate.rate(now, self.windows_done),
            model_ms=self.model_ms_last,
            model_ms_mean=self.model_ms_total / self.windows_done if self.windows_done else 0.0,
            queue_depth=queue_depth,
            queue_max=self.queue_max,
            queue_bound=self.queue_bound,
            results_depth=results_depth,
            dropped_windows=self.dropped_windows,
            latency_p50_ms=None if lat is None else float(np.percentile(lat, 50)),
            latency_p99_ms=None if lat is None else float(np.percentile(lat, 99)),
            latency_max_ms=None if lat is None else float(lat.max()),
            stream_us=self.stream_us,
            realtime_factor=rtf,
            late_events=late_events,
            skipped_windows=skipped_windows,
            time_jumps=self.time_jumps,
            status=self.status,
            running=running,
            paused=paused,
        )


# --------------------------------------------------------------------- pipeline
_END = object()


@dataclass(frozen=True)
class _Item:
    generation: int
    window: Window
    restart: bool = False  # the first window after a time jump: the model resets before it


def _recipe_of(classifier) -> InputRecipe:
    """The classifier's input recipe; a stand-in without one (tests, benchmarks) gets the plain
    recipe of its ``input_size``, ``step_us`` and ``steps_per_window`` (no filter, counts clipped at 255)."""
    recipe = getattr(classifier, "recipe", None)
    if recipe is not None:
        return recipe
    return InputRecipe(
        SensorSize(*classifier.input_size), int(classifier.step_us), int(classifier.steps_per_window)
    )


class Pipeline:
    """Source -> filters -> binner -> classifier -> sinks, with backpressure and metrics.

    Parameters
    ----------
    source : Source
        Any :class:`~dvsapp.core.sources.Source`; ``source.live`` picks the backpressure policy.
    classifier : StreamingClassifier
        Its ``recipe`` (:class:`~dvsapp.core.recipe.InputRecipe`) makes the model input
        from the source's sensor: filters, spatial mapping, binning, encoding.
    sinks : sequence of Sink
    steps_per_window : int, optional
        Timesteps per window instead of the recipe's ``T`` (a prediction every
        ``steps_per_window * step_us``; every timestep is still the recipe's).
    window_queue : int
        Windows that may wait for the model (the memory bound for live sources).
    result_queue : int
        Predictions that may wait for the sinks.
    drop_oldest : bool, optional
        Backpressure policy; default ``source.live``.
    max_empty_windows : int or None
        Longest run of empty windows emitted after a time jump.
    on_status : callable, optional
        Receives one-line status messages (source reconnects, seeks, ...).
    on_packet : callable, optional
        ``on_packet(packet)`` on the loop for every packet the source yields, before
        any filtering (the GUI's event view, the recorder, the export's frames); keep
        it quick.
    torch_threads : int or None
        Torch intra-op threads for a model on the CPU, set when the run starts
        (``None`` leaves torch's setting).  One is fastest: on 2 cores the model
        then shares the machine with decoding and binning instead of fighting them
        (measured 11 ms per window against 18 ms with 2 threads, see
        ``benchmarks/bench_pipeline.py``).
    max_batch_windows : int
        At most this many queued windows go to the model in one call (a classifier with
        ``step_many``; the same predictions as one call per window, with less work per
        window).  Windows queue up only while the model is busy: a file replay, or a live
        source catching up.  1 is one call per window.  The windows alive are then at most
        the queue plus one batch.
    """

    def __init__(
        self,
        source: Source,
        classifier: StreamingClassifier,
        *,
        sinks: Iterable[Sink] = (),
        steps_per_window: int | None = None,
        window_queue: int = 4,
        result_queue: int = 64,
        drop_oldest: bool | None = None,
        max_empty_windows: int | None = 1000,
        on_status: Callable[[str], None] | None = None,
        on_packet: Callable[[Packet], Any] | None = None,
        torch_threads: int | None = 1,
        max_batch_windows: int = 8,
    ) -> None:
        if window_queue < 1 or result_queue < 1:
            raise ConfigError("queue sizes must be at least 1")
        self.source = source
        self.classifier = classifier
        self.sinks = list(sinks)
        self.recipe = _recipe_of(classifier)
        self.sensor_size = SensorSize(*source.sensor_size)
        self.input_size = self.recipe.input_size
        self.step_us = self.recipe.step_us
        self.steps_per_window = int(steps_per_window or self.recipe.timesteps)
        if self.steps_per_window < 1:
            raise ConfigError(f"steps_per_window {self.steps_per_window} must be at least 1")
        self.window_queue_size = int(window_queue)
        self.result_queue_size = int(result_queue)
        self.drop_oldest = bool(source.live if drop_oldest is None else drop_oldest)
        self.max_empty_windows = max_empty_windows
        self.on_status = on_status
        self.on_packet = on_packet
        self.torch_threads = torch_threads
        # torch threads in force on the model thread (a model on the CPU), once it has started
        self.model_threads: int | None = None
        self.max_batch_windows = max(1, int(max_batch_windows))
        self._commands: queue.SimpleQueue[Callable[[], Any]] = queue.SimpleQueue()
        self._make_stream()  # fails now on a recipe the sensor cannot take
        self._metrics = PipelineMetrics(queue_bound=self.window_queue_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        self._stop_event: asyncio.Event | None = None
        self._stop_requested = False
        self._generation = 0
        self._model_generation = 0
        self._input = None
        self._window_q: asyncio.Queue | None = None
        self._result_q: asyncio.Queue | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._source_error: BaseException | None = None
        self._running = False
        self._paused = False
        self._finished = False
        self.source.on_status = self._status
        for sink in self.sinks:
            bind = getattr(sink, "bind", None)
            if callable(bind):
                bind(self)

    # ------------------------------------------------------------- metrics
    def metrics(self) -> MetricsSnapshot:
        """The live numbers (cheap; safe to call from any thread)."""
        binner = None if self._input is None else self._input.binner
        return self._metrics.snapshot(
            queue_depth=self._window_q.qsize() if self._window_q is not None else 0,
            results_depth=self._result_q.qsize() if self._result_q is not None else 0,
            late_events=getattr(binner, "n_late_events", 0),
            skipped_windows=getattr(binner, "n_skipped_windows", 0),
            running=self._running,
            paused=self._paused,
        )

    def _status(self, message: str) -> None:
        self._metrics.status = message
        if self.on_status is not None:
            self.on_status(message)

    # ------------------------------------------------------------ controls
    def _call(self, fn: Callable, *args) -> None:
        """Run ``fn`` on the pipeline's loop thread (directly when already there or not started)."""
        loop = self._loop
        if loop is None or loop.is_closed() or threading.get_ident() == self._thread_id:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        """Ask the run to end (thread-safe, idempotent); queued windows are abandoned, sinks closed."""
        self._stop_requested = True
        self._call(self._do_stop)

    def _do_stop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()

    def pause(self) -> None:
        """Pause: a replay holds its place; a live source's events are discarded until :meth:`resume`."""
        self._call(self._do_pause)

    def _do_pause(self) -> None:
        self._paused = True
        self.source.pause()

    def resume(self) -> None:
        self._call(self._do_resume)

    def _do_resume(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self.source.live:  # the stream jumped in time: start a new generation
            self._new_generation()
        self.source.resume()

    def set_speed(self, speed: float) -> None:
        """Replay speed (``0`` = as fast as possible); raises ``SourceError`` for live sources."""
        if self.source.live:
            self.source.set_speed(speed)  # raises
        self._call(self.source.set_speed, speed)

    def seek(self, t_us: int) -> None:
        """Jump a replayed source to recording time ``t_us``; model state and binner restart there."""
        if not self.source.seekable:
            self.source.seek(t_us)  # raises SourceError
        self._call(self._do_seek, int(t_us))

    def _do_seek(self, t_us: int) -> None:
        self.source.seek(t_us)
        self._new_generation()

    def reset_model(self) -> None:
        """Forget the model's state (thread-safe): done on the model thread before its next window."""
        self.call_on_model_thread(self.classifier.reset)

    def call_on_model_thread(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` on the model thread before its next step (thread-safe; in call order).

        The one way to change the classifier's state from another thread.  Before the
        run starts (or after it ends) commands wait for the next step.
        """
        self._commands.put(fn)

    def _drain_commands(self) -> None:
        while True:
            try:
                fn = self._commands.get_nowait()
            except queue.Empty:
                return
            fn()

    def _new_generation(self) -> None:
        self._generation += 1
        q = self._window_q
        while q is not None and not q.empty():
            q.get_nowait()

    # ---------------------------------------------------------------- stages
    def _make_stream(self):
        """The recipe on this source: filters, spatial map, binner, encoding (fresh state)."""
        return self.recipe.stream(
            self.sensor_size, steps_per_window=self.steps_per_window, max_empty_windows=self.max_empty_windows
        )

    async def _put_window(self, window: Window, generation: int, restart: bool = False) -> None:
        q = self._window_q
        assert q is not None
        item = _Item(generation, window, restart)
        if self.drop_oldest:
            while q.full():
                q.get_nowait()
                self._metrics.dropped_windows += 1
            q.put_nowait(item)
        else:
            await q.put(item)
        self._metrics.windows_binned += 1
        self._metrics.events_binned += window.n_events
        self._metrics.queue_max = max(self._metrics.queue_max, q.qsize())

    async def _ingest(self) -> None:
        generation = self._generation
        self._input = stream = self._make_stream()
        tap = self.on_packet
        restart = False  # a time jump whose first window is still to come
        try:
            async for packet in self.source:
                now = time.monotonic()
                self._metrics.on_packet(packet, now)
                if tap is not None:
                    tap(packet)
                if self._generation != generation:
                    generation = self._generation
                    self._input = stream = self._make_stream()
                if isinstance(packet, RestartPacket) and packet.jump is not None:
                    for window in stream.flush(arrival_s=now):  # the old timeline's open window
                        await self._put_window(window, generation, restart)
                        restart = False
                    self._input = stream = self._make_stream()
                    restart = True
                    self._metrics.time_jumps += 1
                    self._status(
                        f"{self.source.description}: {packet.jump.describe()}; binner and model restarted"
                        f" (time jump {self._metrics.time_jumps})"
                    )
                if self._paused and self.source.live:
                    continue
                windows = stream.push(packet, arrival_s=now)
                for window in windows:
                    if self._generation != generation:
                        break
                    await self._put_window(window, generation, restart)
                    restart = False
        except DvsAppError as exc:  # the source failed: finish what was binned, then re-raise from run()
            self._source_error = exc
        if self._generation == generation and not self._stop_requested:
            for window in stream.flush(arrival_s=time.monotonic()):
                await self._put_window(window, generation)
        await self._window_q.put(_END)

    def _init_model_thread(self) -> None:
        device = getattr(self.classifier, "device", None)
        if getattr(device, "type", None) == "cpu":
            import torch

            if self.torch_threads and torch.get_num_threads() != self.torch_threads:
                torch.set_num_threads(int(self.torch_threads))
            self.model_threads = torch.get_num_threads()

    def _before_step(self, item: _Item) -> None:
        """On the model thread, before ``item``'s window: queued commands, then a reset where the stream restarts."""
        self._drain_commands()
        if item.restart:
            self.classifier.reset()
        if item.generation != self._model_generation:
            self.classifier.reset()
            self._model_generation = item.generation

    def _model_steps(self, items: list[_Item]) -> list[Prediction]:
        """Predictions for consecutive windows of one generation (only the first may restart):
        one window is a ``step``; a batch (only formed for a classifier with ``step_many``)
        is one ``step_many`` call.  The model-thread commands run before either."""
        self._before_step(items[0])
        if len(items) == 1:
            return [self.classifier.step(items[0].window)]
        return self.classifier.step_many([item.window for item in items])

    async def _run_model(self) -> None:
        loop = asyncio.get_running_loop()
        q, out = self._window_q, self._result_q
        assert q is not None and out is not None
        held: _Item | None = None  # taken from the queue, but it starts a new batch
        ended = False
        # a classifier without step_many takes windows one by one: they stay in the queue,
        # where the live policy can still drop them
        limit = self.max_batch_windows if callable(getattr(self.classifier, "step_many", None)) else 1
        while not ended:
            item = held if held is not None else await q.get()
            held = None
            if item is _END:
                break
            if item.generation != self._generation:
                continue  # from before a seek
            # the windows that queued up while the model was busy go in with it, in one call
            batch = [item]
            while len(batch) < limit and not q.empty():
                nxt = q.get_nowait()
                if nxt is _END:
                    ended = True
                    break
                if nxt.generation != self._generation:
                    continue  # from before a seek (``item`` is of the current generation)
                if nxt.restart:
                    held = nxt
                    break
                batch.append(nxt)
            predictions = await loop.run_in_executor(self._executor, self._model_steps, batch)
            for queued, prediction in zip(batch, predictions):
                self._metrics.on_prediction(prediction, time.monotonic())
                await out.put((queued.window, prediction))
        await out.put(_END)

    async def _run_sinks(self) -> None:
        out = self._result_q
        assert out is not None
        while True:
            got = await out.get()
            if got is _END:
                break
            window, prediction = got
            for sink in self.sinks:
                await sink.consume(window, prediction)

    async def _close_all(self) -> None:
        errors: list[BaseException] = []
        try:
            self.source.close()
        except Exception as exc:  # noqa: BLE001 - closing must reach every sink
            errors.append(exc)
        for sink in self.sinks:
            try:
                result = sink.close()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True)
        if errors:
            raise errors[0]

    async def run(self) -> MetricsSnapshot:
        """Run until the stream ends, :meth:`stop` is called, or an error; return the final metrics.

        Raises
        ------
        DvsAppError
            A source error (after every window binned before it was classified and
            sunk), or an error raised by a sink or the model.
        """
        if self._finished or self._running:
            raise ConfigError("a Pipeline runs once; build a new one")
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._stop_event = asyncio.Event()
        if self._stop_requested:
            self._stop_event.set()
        self._window_q = asyncio.Queue(self.window_queue_size)
        self._result_q = asyncio.Queue(self.result_queue_size)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="dvsapp-model", initializer=self._init_model_thread
        )
        # the binning kernel's first call (0.5-0.9 s) happens before the source starts,
        # so a live source's first windows do not arrive late and get dropped
        await asyncio.to_thread(warm_up_binning)
        self._metrics.started_s = time.monotonic()
        self._running = True
        tasks = {
            asyncio.create_task(self._ingest(), name="dvsapp-ingest"),
            asyncio.create_task(self._run_model(), name="dvsapp-model"),
            asyncio.create_task(self._run_sinks(), name="dvsapp-sinks"),
        }
        stopper = asyncio.create_task(self._stop_event.wait(), name="dvsapp-stop")
        pending = set(tasks)
        failure: BaseException | None = None
        try:
            while pending:
                done, _ = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
                for task in done & pending:
                    pending.discard(task)
                    if task.exception() is not None:
                        failure = task.exception()
                        break
                if failure is not None or stopper in done:
                    break
        finally:
            for task in (*pending, stopper):
                task.cancel()
            await asyncio.gather(*pending, stopper, return_exceptions=True)
            self._running = False
            self._finished = True
            await self._close_all()
        if failure is not None:
            raise failure
        if self._source_error is not None:
            raise self._source_error
        return self.metrics()


def run_pipeline(
    pipeline: Pipeline, *, handle_signals: bool = True, seconds: float | None = None
) -> MetricsSnapshot:
    """Run ``pipeline`` to the end in a fresh event loop (blocking).

    With ``handle_signals`` (main thread only), SIGINT and SIGTERM stop the
    pipeline cleanly (sinks flushed, files closed, threads joined) instead of
    raising ``KeyboardInterrupt``.  ``seconds`` stops it after that much wall time.
    """
    if seconds is not None and (not math.isfinite(seconds) or seconds <= 0):
        raise ConfigError(f"seconds {seconds} must be positive")

    async def main() -> MetricsSnapshot:
        loop = asyncio.get_running_loop()
        if seconds is not None:
            loop.call_later(seconds, pipeline.stop)
        installed = []
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, pipeline.stop)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        try:
            return await pipeline.run()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    return asyncio.run(main())
