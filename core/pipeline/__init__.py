"""The asyncio streaming pipeline: source -> filters -> StreamBinner -> StreamingClassifier -> sinks.

* :mod:`~dvsapp.core.pipeline.engine` -- :class:`Pipeline` (stages, bounded queues,
  backpressure, controls, the model thread) and its metrics;
* :mod:`~dvsapp.core.pipeline.sinks` -- where predictions go (JSON lines, CSV,
  statistics, a list, a callback) and the event recorder;
* :mod:`~dvsapp.core.pipeline.runners` -- ``dvsapp classify`` and ``dvsapp record``
  end to end.
"""

from dvsapp.core.pipeline.engine import MetricsSnapshot, Pipeline, PipelineMetrics, run_pipeline
from dvsapp.core.pipeline.runners import ClassifyReport, RecordResult, classify_source, record_source
from dvsapp.core.pipeline.sinks import (
    CallbackSink,
    CsvSink,
    EventRecorder,
    JsonLinesSink,
    ListSink,
    Sink,
    StatsSink,
    segments_truth,
)

__all__ = [
    "CallbackSink",
    "ClassifyReport",
    "CsvSink",
    "EventRecorder",
    "JsonLinesSink",
    "ListSink",
    "MetricsSnapshot",
    "Pipeline",
    "PipelineMetrics",
    "RecordResult",
    "Sink",
    "StatsSink",
    "classify_source",
    "record_source",
    "run_pipeline",
    "segments_truth",
]
