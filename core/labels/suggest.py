"""Suggested labels: one segment per burst of activity, optionally labelled by a classifier.

Activity segmentation (:func:`suggest_segments`)
------------------------------------------------
1. The event rate in ``bin_us`` bins, smoothed over ``smooth_bins`` bins, on a log
   scale (``log(rate + one event per bin)``, so empty bins are finite).
2. The bins split into a quiet and an active class where the split best separates
   them (Otsu's threshold: the largest between-class variance); ``quiet`` and
   ``busy`` are the medians of the two classes.  This needs no assumption about how
   much of the recording is active.
3. A bin is active above ``quiet + threshold * (busy - quiet)`` (log scale).
4. Active runs closer than ``min_gap_us`` merge (a gesture's own short pauses are
   not gaps; the pause between two gestures is longer); runs shorter than
   ``min_duration_us`` are dropped.

The defaults find every gesture of the bundled recording, each boundary within
28 ms of its label (``tests/test_labels_suggest.py`` allows 100 ms; docs/labeler.md).

Classes (:func:`classify_segments`)
-----------------------------------
Without a classifier every suggestion gets one class (``class_id``, by default the
last, DVS Gesture's "other gestures"), to be set by hand.  With one, the recording
is classified window by window with the model state kept
(:func:`dvsapp.core.labels.predict.classify_windows`), and each segment takes the
class with the highest mean probability over the windows whose middle lies inside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvsapp.core.atomic import check_writable
from dvsapp.core.errors import OutputExistsError
from dvsapp.core.events import SensorSize
from dvsapp.core.gestures import GESTURE_CLASSES
from dvsapp.core.labels.files import labels_path_for, write_labels_csv
from dvsapp.core.labels.predict import classify_windows
from dvsapp.core.labels.recording import Recording, event_rate, load_recording
from dvsapp.core.labels.segments import PathLike, Segment


def _otsu_split(sorted_values: np.ndarray) -> int:
    """How many of the (sorted) values fall in the low class of Otsu's two-class split."""
    xs = sorted_values
    n = len(xs)
    k = np.arange(1, n)
    csum = np.cumsum(xs)
    w0 = k / n
    m0 = csum[:-1] / k
    m1 = (csum[-1] - csum[:-1]) / (n - k)
    between = w0 * (1.0 - w0) * (m0 - m1) ** 2
    between[xs[1:] == xs[:-1]] = -1.0  # split only between distinct values
    return int(np.argmax(between)) + 1


def suggest_segments(
    events: np.ndarray,
    *,
    bin_us: int = 20_000,
    smooth_bins: int = 3,
    threshold: float = 0.3,
    min_gap_us: int = 250_000,
    min_duration_us: int = 500_000,
    class_id: int = len(GESTURE_CLASSES) - 1,
) -> list[Segment]:
    """Segments where the recording is active (see the module docstring), each of ``class_id``.

    Parameters
    ----------
    events : sorted events.
    bin_us : event-rate bin (µs).
    smooth_bins : moving-average length, in bins (1 = none).
    threshold : where a bin counts as active, between the quiet level (0) and the
        busy level (1), on a log scale.
    min_gap_us : shorter quiet spells inside activity do not split it.
    min_duration_us : shorter active runs are dropped.
    class_id : the class of every suggestion.
    """
    if len(events) < 2:
        return []
    edges, rate = event_rate(events, bin_us)
    if smooth_bins > 1 and len(rate) >= smooth_bins:
        rate = np.convolve(rate, np.ones(smooth_bins) / smooth_bins, mode="same")
    log_rate = np.log(rate + 1e6 / bin_us)
    ordered = np.sort(log_rate)
    if len(ordered) < 2 or ordered[-1] - ordered[0] < 1e-9:
        return []  # no contrast: nothing stands out
    k = _otsu_split(ordered)
    quiet, busy = float(np.median(ordered[:k])), float(np.median(ordered[k:]))
    active = log_rate > quiet + threshold * (busy - quiet)
    change = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(change == 1), np.flatnonzero(change == -1)
    runs: list[list[int]] = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        if runs and int(edges[a]) - int(edges[runs[-1][1]]) < min_gap_us:
            runs[-1][1] = b
        else:
            runs.append([a, b])
    return [
        Segment(class_id, int(edges[a]), int(edges[b]))
        for a, b in runs
        if int(edges[b]) - int(edges[a]) >= min_duration_us
    ]


def classify_segments(
    segments: Sequence[Segment],
    events: np.ndarray,
    sensor_size: SensorSize,
    classifier,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> list[Segment]:
    """``segments`` with the classifier's class each (see the module docstring).

    A segment that no window's middle falls in keeps its class.
    """
    segments = list(segments)
    if not segments or len(events) == 0:
        return segments
    mids, probs = [], []
    for window, pred in classify_windows(events, sensor_size, classifier, should_stop=should_stop):
        mids.append((window.t_start_us + window.t_end_us) // 2)
        probs.append(np.asarray(pred.probs, dtype=np.float64))
    if not mids:
        return segments
    mids_arr, probs_arr = np.asarray(mids, dtype=np.int64), np.stack(probs)
    out = []
    for seg in segments:
        inside = (mids_arr >= seg.start_us) & (mids_arr < seg.end_us)
        if inside.any():
            seg = Segment(int(np.argmax(probs_arr[inside].mean(axis=0))), seg.start_us, seg.end_us)
        out.append(seg)
    return out


@dataclass(frozen=True)
class Suggestions:
    """Segments proposed by :func:`suggest_for_recording` and where they were written (if anywhere)."""

    segments: tuple[Segment, ...]
    written: Path | None
    classified: bool = False
    """True when a classifier chose the classes."""


def suggest_for_recording(
    recording: PathLike,
    *,
    bin_us: int = 20_000,
    threshold: float = 0.3,
    min_gap_us: int = 250_000,
    min_duration_us: int = 500_000,
    classifier=None,
    write: bool = False,
    force: bool = False,
    loader: Callable[[Path], Recording] | None = None,
) -> Suggestions:
    """Read a recording, suggest segments (:func:`suggest_segments`), classify them when given a classifier.

    With ``write`` the suggestions go to ``<stem>_labels.csv`` beside the recording
    (refused when it exists, unless ``force``, or cannot be written); that is checked
    before any work.
    """
    recording = Path(recording)
    target = labels_path_for(recording)
    if write:
        if target.exists() and not force:
            raise OutputExistsError("exists; pass --force to overwrite", path=target)
        check_writable(target)
    rec = (loader or load_recording)(recording)
    segs = suggest_segments(
        rec.events, bin_us=bin_us, threshold=threshold, min_gap_us=min_gap_us, min_duration_us=min_duration_us
    )
    if classifier is not None:
        segs = classify_segments(segs, rec.events, rec.sensor_size, classifier)
    written = write_labels_csv(target, segs) if write else None
    return Suggestions(tuple(segs), written, classifier is not None)
