"""The end-to-end runners: ``dvsapp classify`` (:func:`classify_source`) and ``dvsapp record`` (:func:`record_source`)."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvsapp.core.errors import ConfigError, OutputExistsError
from dvsapp.core.events import SensorSize
from dvsapp.core.pipeline.engine import MetricsSnapshot, Pipeline, run_pipeline
from dvsapp.core.pipeline.sinks import CsvSink, Sink, StatsSink, segments_truth
from dvsapp.core.sources.base import Source

__all__ = ["ClassifyReport", "RecordResult", "classify_source", "record_source"]


# -------------------------------------------------------------------- recording
@dataclass(frozen=True)
class RecordResult:
    """What :func:`record_source` wrote."""

    path: Path
    n_events: int
    duration_us: int
    sensor_size: SensorSize


def record_source(
    source: str | Source,
    path: str | os.PathLike,
    *,
    seconds: float | None = None,
    force: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    handle_signals: bool = True,
) -> RecordResult:
    """Write every event of ``source`` to ``path`` (format from the extension: .aedat4, .h5, ...).

    Stops at the end of the stream, after ``seconds`` of wall time, or on
    SIGINT/SIGTERM; the file is always closed properly.

    Parameters
    ----------
    on_progress : callable, optional
        ``on_progress(n_events, stream_us)`` after every packet.

    Raises
    ------
    OutputExistsError, EventFileError, SourceError
    """
    from dvsapp.core.io import open_writer

    out = Path(path)
    if seconds is not None and (not math.isfinite(seconds) or seconds <= 0):
        raise ConfigError(f"--seconds {seconds} must be positive")
    if out.exists() and not force:
        raise OutputExistsError("exists; pass --force to overwrite", path=out)
    if not isinstance(source, Source):
        from dvsapp.core.sources import open_source

        source = open_source(source)
    stop = threading.Event()
    counts = {"n": 0, "first": None, "last": None}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        installed = []
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, stop.set)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            with open_writer(out, source.sensor_size, force=force) as writer:
                it = source.__aiter__()
                try:
                    while not stop.is_set():
                        timeout = None if deadline is None else deadline - time.monotonic()
                        if timeout is not None and timeout <= 0:
                            break
                        try:
                            packet = await asyncio.wait_for(it.__anext__(), timeout=timeout)
                        except StopAsyncIteration:
                            break
                        except TimeoutError:
                            break
                        if len(packet.events):
                            await asyncio.to_thread(writer.write, packet.events)
                            counts["n"] += len(packet.events)
                            if counts["first"] is None:
                                counts["first"] = int(packet.events["t"][0])
                            counts["last"] = int(packet.events["t"][-1])
                        if on_progress is not None:
                            on_progress(counts["n"], int(packet.until_us))
                finally:
                    await it.aclose()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            source.close()

    asyncio.run(main())
    span = 0 if counts["first"] is None else counts["last"] - counts["first"]
    return RecordResult(out, counts["n"], span, SensorSize(*source.sensor_size))


# ------------------------------------------------------------- classification
@dataclass(frozen=True)
class ClassifyReport:
    """The end-of-run summary of :func:`classify_source`.

    ``summary`` holds the :meth:`StatsSink.summary` fields (predictions, per-class
    counts, accuracy when ground truth exists, latency p50/p99) plus the source,
    model, event and drop counts.
    """

    summary: dict[str, Any]
    metrics: MetricsSnapshot

    def as_dict(self) -> dict[str, Any]:
        return dict(self.summary)


def _ground_truth(source: Source) -> tuple[Callable[[int], int | None] | None, str | None]:
    """Ground truth for a source: labels beside a file, or the synthetic scene's own."""
    path = getattr(source, "path", None)
    if path is not None:
        from dvsapp.core.labels import find_labels, labels_path_for

        segments = find_labels(path)
        if segments:
            csv_path = labels_path_for(path)
            return segments_truth(segments), str(csv_path) if csv_path.is_file() else f"{path}:/labels"
        return None, None
    class_at = getattr(source, "class_at", None)
    if callable(class_at):
        return class_at, "synthetic scene"
    return None, None


def classify_source(
    source: str | Source | None,
    *,
    checkpoint: str | os.PathLike | None = None,
    sinks: Sequence[Sink] = (),
    out_csv: str | os.PathLike | None = None,
    force: bool = False,
    window_ms: float | None = None,
    speed: float | None = None,
    seconds: float | None = None,
    device: str = "cpu",
    smoothing: float = 0.0,
    on_status: Callable[[str], None] | None = None,
    handle_signals: bool = True,
    torch_threads: int | None = 1,
) -> ClassifyReport:
    """Classify a stream end to end: what ``dvsapp classify`` runs.

    Parameters
    ----------
    source : str, Source or None
        A source URI or bare path, an open :class:`Source`, or ``None`` for the
        first live source that works (USB camera, webcam, synthetic scene).
    checkpoint : path-like, optional
        Model checkpoint; ``None`` = the bundled model.  Its input recipe makes the
        model input from whatever sensor the source has.
    sinks : sequence of Sink
        Where predictions go besides the statistics (printing, GUI...).
    out_csv : path-like, optional
        Predictions CSV, written and flushed line by line.
    window_ms : float, optional
        Window length; rounded to whole model timesteps (``step_us`` stays the model's).
    speed : float, optional
        Replay speed for file sources (overrides the URI's ``speed``).
    seconds : float, optional
        Stop after this much wall time.
    torch_threads : int or None
        Torch threads of a model on the CPU (:class:`Pipeline`'s ``torch_threads``; the
        summary's ``torch_threads`` is what was in force on the model thread).

    Returns
    -------
    ClassifyReport

    Raises
    ------
    CheckpointError, SourceError, EventFileError, OutputExistsError, ConfigError
        A source error mid-stream is raised after the predictions made before it
        reached every sink (and the CSV).
    """
    from dvsapp.core.classify import load_classifier
    from dvsapp.core.sources import open_live_source, open_source

    if out_csv is not None and Path(out_csv).exists() and not force:
        raise OutputExistsError("exists; pass --force to overwrite", path=out_csv)
    classifier = load_classifier(checkpoint, device=device, smoothing=smoothing)
    steps = None
    if window_ms is not None:
        if not math.isfinite(window_ms) or window_ms <= 0:
            raise ConfigError(f"window {window_ms} ms must be positive")
        steps = max(1, round(window_ms * 1000 / classifier.step_us))
    if source is None:
        src, tried = open_live_source()
        if on_status is not None:
            for line in tried:
                on_status(f"skipped {line}")
            on_status(f"live source: {src.description}")
    elif isinstance(source, Source):
        src = source
    else:
        from dvsapp.core.sources import parse_uri

        extra = {"speed": speed} if speed is not None and parse_uri(source).scheme == "file" else {}
        src = open_source(source, **extra)
    try:
        truth, truth_name = _ground_truth(src)
        stats = StatsSink(classifier.class_names, truth)
        all_sinks: list[Sink] = [stats]
        if out_csv is not None:
            all_sinks.append(CsvSink(out_csv, force=force))
        all_sinks.extend(sinks)
        pipeline = Pipeline(
            src,
            classifier,
            sinks=all_sinks,
            steps_per_window=steps,
            on_status=on_status,
            torch_threads=torch_threads,
        )
    except BaseException:
        src.close()
        raise
    metrics = run_pipeline(pipeline, handle_signals=handle_signals, seconds=seconds)
    summary: dict[str, Any] = {
        "source": src.uri or src.description,
        "sensor_size": str(src.sensor_size),
        "model": str(classifier.metadata.get("path", "")),
        "window_ms": pipeline.step_us * pipeline.steps_per_window / 1000,
        "ground_truth": truth_name,
        "events_in": metrics.events_in,
        "events_binned": metrics.events_binned,
        "windows": metrics.windows_done,
        "dropped_windows": metrics.dropped_windows,
        "reconnects": int(getattr(src, "reconnects", 0)),
        "time_jumps": metrics.time_jumps,
        "elapsed_s": round(metrics.elapsed_s, 3),
        "realtime_factor": None if metrics.realtime_factor is None else round(metrics.realtime_factor, 3),
        "torch_threads": pipeline.model_threads,
    }
    summary.update(stats.summary())
    return ClassifyReport(summary, metrics)
