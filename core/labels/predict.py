"""A classifier run over a whole recording becomes a strip of predicted segments."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dvsapp.core.events import SensorSize, time_slice
from dvsapp.core.labels.segments import Segment


def predict_segments(
    events: np.ndarray,
    sensor_size: SensorSize,
    classifier,
    *,
    time_range_us: tuple[int, int] | None = None,
    min_confidence: float = 0.0,
    should_stop: Callable[[], bool] | None = None,
) -> list[Segment]:
    """Run a streaming classifier over a whole recording; merge equal consecutive windows into segments.

    Parameters
    ----------
    events : the recording's events (sorted).
    sensor_size : their geometry (adapted to the classifier's ``input_size``).
    classifier : a :class:`dvsapp.core.classify.StreamingClassifier` (``input_size``, ``step_us``,
        ``steps_per_window``, ``step(window)``); it is reset first.
    time_range_us : ``(t0, t1)``; default the events' range.  Windows are
        ``[t0 + k * window_us, t0 + (k + 1) * window_us)``; only complete windows run.
    min_confidence : windows whose top probability is lower get no segment.
    should_stop : polled between windows; returning True ends early (what was found so far is returned).

    Returns
    -------
    Segments of the predicted class (0-based), one per run of windows with the same class.
    """
    from dvsapp.core.events import Window
    from dvsapp.core.train.preprocess import Preprocess

    if time_range_us is None:
        if len(events) == 0:
            return []
        time_range_us = int(events["t"][0]), int(events["t"][-1]) + 1
    t0, t1 = time_range_us
    pre = Preprocess(
        SensorSize(*sensor_size), classifier.input_size, classifier.step_us, classifier.steps_per_window
    )
    window_us = pre.window_us
    n_windows = (t1 - t0) // window_us
    classifier.reset()
    runs: list[list[int]] = []  # [class_id, start_us, end_us]
    block = 64  # windows binned at a time (bounded memory)
    for b0 in range(0, n_windows, block):
        nb = min(block, n_windows - b0)
        w0 = t0 + b0 * window_us
        frames = pre.frames(time_slice(events, w0, w0 + nb * window_us), t0_us=w0, n_bins=nb * pre.n_steps)
        for k in range(nb):
            if should_stop is not None and should_stop():
                return [Segment(*r) for r in runs]
            ws = w0 + k * window_us
            chunk = frames[k * pre.n_steps : (k + 1) * pre.n_steps].astype(np.float32)
            pred = classifier.step(Window(chunk, ws, ws + window_us, int(chunk.sum()), b0 + k))
            if pred.confidence < min_confidence:
                continue
            if runs and runs[-1][0] == pred.class_id and runs[-1][2] == ws:
                runs[-1][2] = ws + window_us
            else:
                runs.append([pred.class_id, ws, ws + window_us])
    return [Segment(*r) for r in runs]
