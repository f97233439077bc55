"""Suggested labels: segments where a recording is active (start / stop of motion)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvsapp.core.errors import OutputExistsError
from dvsapp.core.gestures import GESTURE_CLASSES
from dvsapp.core.labels.files import labels_path_for, write_labels_csv
from dvsapp.core.labels.recording import Recording, event_rate, load_recording
from dvsapp.core.labels.segments import PathLike, Segment


def suggest_segments(
    events: np.ndarray,
    *,
    bin_us: int = 50_000,
    threshold: float = 0.25,
    min_duration_us: int = 500_000,
    merge_gap_us: int = 300_000,
    class_id: int = len(GESTURE_CLASSES) - 1,
) -> list[Segment]:
    """Propose segments where the event rate is high (start / stop of motion).

    The rate is computed in ``bin_us`` bins and smoothed over 5 bins; bins above
    ``quiet + threshold * (peak - quiet)`` (quiet = 10th percentile) are active.
    Active runs closer than ``merge_gap_us`` merge; runs shorter than
    ``min_duration_us`` are dropped.  Each suggestion gets ``class_id``.
    """
    if len(events) < 2:
        return []
    edges, rate = event_rate(events, bin_us)
    if len(rate) >= 5:
        rate = np.convolve(rate, np.ones(5) / 5, mode="same")
    quiet, peak = float(np.percentile(rate, 10)), float(rate.max())
    if peak <= quiet:
        return []
    active = rate > quiet + threshold * (peak - quiet)
    change = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(change == 1), np.flatnonzero(change == -1)
    runs = [[int(edges[a]), int(edges[b])] for a, b in zip(starts, ends)]
    merged: list[list[int]] = []
    for run in runs:
        if merged and run[0] - merged[-1][1] < merge_gap_us:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    return [Segment(class_id, a, b) for a, b in merged if b - a >= min_duration_us]


@dataclass(frozen=True)
class Suggestions:
    """Segments proposed by :func:`suggest_for_recording` and where they were written (if anywhere)."""

    segments: tuple[Segment, ...]
    written: Path | None


def suggest_for_recording(
    recording: PathLike,
    *,
    bin_us: int = 50_000,
    threshold: float = 0.25,
    min_duration_us: int = 500_000,
    write: bool = False,
    force: bool = False,
    loader: Callable[[Path], Recording] | None = None,
) -> Suggestions:
    """Read a recording, run :func:`suggest_segments`, optionally write ``<stem>_labels.csv``."""
    recording = Path(recording)
    target = labels_path_for(recording)
    if write and target.exists() and not force:
        raise OutputExistsError("exists; pass --force to overwrite", path=target)
    rec = (loader or load_recording)(recording)
    segs = tuple(
        suggest_segments(rec.events, bin_us=bin_us, threshold=threshold, min_duration_us=min_duration_us)
    )
    written = write_labels_csv(target, segs) if write else None
    return Suggestions(segs, written)
