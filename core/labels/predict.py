"""A classifier run over a whole recording: the one place label code runs a model.

:func:`classify_windows` streams a recording through the classifier's own input
recipe (``classifier.recipe.stream``: its filters, spatial map, window grid and
encoding, as the live pipeline builds them) and steps the classifier window after
window with its state kept.  Prediction strips (:func:`predict_segments`) and
model-labelled suggestions (:mod:`dvsapp.core.labels.suggest`) build on it; nothing
else in this package touches a model.  The classifier is handed in (loading one
is the caller's job), so this package imports no model code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from dvsapp.core.events import Packet, SensorSize, Window, time_slice
from dvsapp.core.labels.segments import Run, Segment, append_run
from dvsapp.core.recipe import InputRecipe

PACKET_WINDOWS = 64
"""Windows' worth of events pushed at a time (bounds the memory of one step)."""


def classify_windows(
    events: np.ndarray,
    sensor_size: SensorSize,
    classifier,
    *,
    time_range_us: tuple[int, int] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[Window, object]]:
    """``(window, prediction)`` for every complete window of a recording, in time order.

    Parameters
    ----------
    events : the recording's events (sorted).
    sensor_size : their geometry.
    classifier : a :class:`dvsapp.core.classify.StreamingClassifier` (``recipe``, ``reset()``,
        ``step(window)``); it is reset first.  One without a ``recipe`` gets the plain
        recipe of its ``input_size``, ``step_us`` and ``steps_per_window``.
    time_range_us : ``(t0, t1)``: only events with ``t0 <= t < t1`` go in, and only windows
        that end by ``t1`` come out; default the events' own range.  Windows lie on the
        recipe's grid (the first event's time floored to ``step_us``), as live.
    should_stop : polled before each window; returning True ends the run early.
    """
    if time_range_us is None:
        if len(events) == 0:
            return
        time_range_us = int(events["t"][0]), int(events["t"][-1]) + 1
    t0, t1 = int(time_range_us[0]), int(time_range_us[1])
    recipe = getattr(classifier, "recipe", None)
    if recipe is None:
        recipe = InputRecipe(classifier.input_size, classifier.step_us, classifier.steps_per_window)
    stream = recipe.stream(SensorSize(*sensor_size), max_empty_windows=None)
    classifier.reset()
    span = PACKET_WINDOWS * recipe.window_us
    for a in range(t0, t1, span):
        b = min(a + span, t1)
        for window in stream.push(Packet(time_slice(events, a, b), b)):
            if should_stop is not None and should_stop():
                return
            yield window, classifier.step(window)


def predict_segments(
    events: np.ndarray,
    sensor_size: SensorSize,
    classifier,
    *,
    time_range_us: tuple[int, int] | None = None,
    min_confidence: float = 0.0,
    should_stop: Callable[[], bool] | None = None,
) -> list[Segment]:
    """The prediction strip of a recording: runs of windows of one predicted class, as segments.

    Windows come from :func:`classify_windows` (same arguments); those whose top
    probability is below ``min_confidence`` get no segment (the strip has a gap
    there).  Consecutive touching windows of one class merge
    (:func:`dvsapp.core.labels.segments.append_run`).  When ``should_stop`` ends the
    run early, what was found so far is returned.  Windows lie on the live window grid
    (the first one may start before the first event); segments are clipped to
    ``time_range_us`` (default: the first to the last event) so they lie inside the recording.
    """
    if time_range_us is not None:
        lo, hi = int(time_range_us[0]), int(time_range_us[1])
    elif len(events):
        lo, hi = int(events["t"][0]), int(events["t"][-1]) + 1
    else:
        lo, hi = 0, 0
    runs: list[Run] = []
    for window, pred in classify_windows(
        events, sensor_size, classifier, time_range_us=time_range_us, should_stop=should_stop
    ):
        start, end = max(window.t_start_us, lo), min(window.t_end_us, hi)
        if pred.confidence >= min_confidence and end > start:
            append_run(runs, pred.class_id, start, end)
    return [Segment(*r) for r in runs]
