"""Label segments: the :class:`Segment` type, validation, and the merge of prediction runs.

A :class:`Segment` is ``(class_id, start_us, end_us)``: a 0-based class index and a
half-open time interval ``start_us <= t < end_us`` in the recording's own
microsecond timestamps.  Two segments overlap when ``a.start_us < b.end_us`` and
``b.start_us < a.end_us`` (touching ends do not overlap).

A stream of per-window predictions becomes segments in one place,
:func:`append_run` (one window at a time, for live views) and :func:`merge_runs`
(a whole sequence): consecutive windows of one class that touch make one run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from dvsapp.core.errors import LabelError
from dvsapp.core.gestures import GESTURE_CLASSES

PathLike = str | os.PathLike

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Segment:
    """One labelled interval ``start_us <= t < end_us`` of class ``class_id`` (0-based).

    Use :func:`sort_segments` to sort a list by time.
    """

    class_id: int
    start_us: int
    end_us: int

    def __post_init__(self) -> None:
        for name in ("class_id", "start_us", "end_us"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise LabelError(f"segment {name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
            if not INT64_MIN <= int(value) <= INT64_MAX:
                raise LabelError(f"segment {name} {value} does not fit in 64 bits")
        if self.class_id < 0:
            raise LabelError(f"segment class_id must be >= 0, got {self.class_id}")
        if self.start_us >= self.end_us:
            raise LabelError(f"segment start {self.start_us} us is not before its end {self.end_us} us")

    @property
    def duration_us(self) -> int:
        return self.end_us - self.start_us

    def contains(self, t_us: int) -> bool:
        """``start_us <= t_us < end_us``."""
        return self.start_us <= t_us < self.end_us

    def overlaps(self, other: Segment) -> bool:
        """True when the half-open intervals share any time (touching ends do not)."""
        return self.start_us < other.end_us and other.start_us < self.end_us

    def shifted(self, delta_us: int) -> Segment:
        return Segment(self.class_id, self.start_us + int(delta_us), self.end_us + int(delta_us))


def _time_key(seg: Segment) -> tuple[int, int, int]:
    return (seg.start_us, seg.end_us, seg.class_id)


def sort_segments(segments: Iterable[Segment]) -> list[Segment]:
    """Segments sorted by ``(start_us, end_us, class_id)``."""
    return sorted(segments, key=_time_key)


def segment_at(segments: Sequence[Segment], t_us: int) -> Segment | None:
    """The first segment (in list order) containing ``t_us``, or ``None``."""
    for seg in segments:
        if seg.contains(t_us):
            return seg
    return None


def segments_to_array(segments: Sequence[Segment]) -> np.ndarray:
    """``(N, 3)`` int64 ``[class_id, start_us, end_us]``."""
    arr = np.zeros((len(segments), 3), dtype=np.int64)
    for i, seg in enumerate(segments):
        arr[i] = (seg.class_id, seg.start_us, seg.end_us)
    return arr


def segments_from_array(arr: np.ndarray, *, path: PathLike | None = None) -> list[Segment]:
    """Inverse of :func:`segments_to_array`; raises :class:`LabelError` on a bad shape or row."""
    arr = np.asarray(arr)
    if arr.size == 0:
        return []
    if arr.ndim != 2 or arr.shape[1] != 3 or not np.issubdtype(arr.dtype, np.integer):
        raise LabelError(f"labels must be an (N, 3) integer array, got {arr.shape} {arr.dtype}", path=path)
    out = []
    for i, row in enumerate(arr.tolist()):
        try:
            out.append(Segment(*row))
        except LabelError as exc:
            raise LabelError(f"label row {i}: {exc.reason}", path=path) from None
    return out


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class LabelProblem:
    """One problem found by :func:`check_segments` / :func:`check_labels_file`.

    ``line`` is the 1-based CSV line (``None`` when not from a file), ``kind`` one of
    ``"syntax"``, ``"class"``, ``"range"``, ``"overlap"``, ``"order"``.
    """

    kind: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.message}"


def check_segments(
    segments: Sequence[Segment],
    *,
    n_classes: int | None = len(GESTURE_CLASSES),
    time_range_us: tuple[int, int] | None = None,
    allow_overlap: bool = False,
    lines: Sequence[int] | None = None,
) -> list[LabelProblem]:
    """All problems of a segment list, in list order.

    Parameters
    ----------
    segments : segments in file order.
    n_classes : class ids must be ``< n_classes`` (``None``: no upper limit).
    time_range_us : ``(t_first_us, t_end_us)``; segments must satisfy
        ``t_first_us <= start_us`` and ``end_us <= t_end_us``.
    allow_overlap : when False, overlapping segments are problems.
    lines : the CSV line of each segment, for messages.
    """
    problems: list[LabelProblem] = []

    def line_of(i: int) -> int | None:
        return None if lines is None else lines[i]

    def name(i: int) -> str:
        return f"segment {i + 1}" if lines is None else f"segment on line {lines[i]}"

    for i, seg in enumerate(segments):
        if n_classes is not None and seg.class_id >= n_classes:
            problems.append(
                LabelProblem(
                    "class",
                    f"class {seg.class_id + 1} is unknown (classes are 1..{n_classes})",
                    line_of(i),
                )
            )
        if time_range_us is not None:
            lo, hi = time_range_us
            if seg.start_us < lo or seg.end_us > hi:
                problems.append(
                    LabelProblem(
                        "range",
                        f"segment {seg.start_us}..{seg.end_us} us lies outside the recording ({lo}..{hi} us)",
                        line_of(i),
                    )
                )
    if not allow_overlap:
        # in time order, a segment overlaps an earlier one iff it starts before the
        # furthest end seen so far
        order = sorted(range(len(segments)), key=lambda k: _time_key(segments[k]))
        furthest = None  # index with the largest end so far
        for k in order:
            if furthest is not None and segments[furthest].end_us > segments[k].start_us:
                problems.append(
                    LabelProblem(
                        "overlap",
                        f"{name(k)} ({segments[k].start_us}..{segments[k].end_us} us) overlaps "
                        f"{name(furthest)} ({segments[furthest].start_us}..{segments[furthest].end_us} us)",
                        line_of(k),
                    )
                )
            if furthest is None or segments[k].end_us > segments[furthest].end_us:
                furthest = k
    return problems


def first_overlap(segments: Sequence[Segment]) -> tuple[Segment, Segment] | None:
    """The first overlapping pair in time order, or ``None``."""
    ordered = sort_segments(segments)
    furthest: Segment | None = None
    for seg in ordered:
        if furthest is not None and furthest.end_us > seg.start_us:
            return furthest, seg
        if furthest is None or seg.end_us > furthest.end_us:
            furthest = seg
    return None


def check_class_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` stripped, as a tuple; raises :class:`LabelError` when empty, blank or repeated."""
    names = tuple(str(n).strip() for n in names)
    if not names:
        raise LabelError("the class list is empty")
    if any(not n for n in names):
        raise LabelError("class names must not be empty")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise LabelError(f"class name {dup!r} appears twice")
    return names


# --------------------------------------------------------------------------- prediction runs

Run = tuple[int, int, int]
"""``(class_id, start_us, end_us)`` of a run of windows predicted as one class."""


def append_run(runs: list[Run], class_id: int, start_us: int, end_us: int, *, tolerance_us: int = 0) -> None:
    """Add one window's prediction to ``runs`` (in place).

    The window ``[start_us, end_us)`` of class ``class_id`` extends the last run when
    that run has the same class and ends where the window starts (within
    ``tolerance_us``); otherwise it starts a new run.  Windows must come in time
    order; a window left out (e.g. too unsure) leaves a gap, so the runs on either
    side stay apart.
    """
    class_id, start_us, end_us = int(class_id), int(start_us), int(end_us)
    if runs and runs[-1][0] == class_id and abs(runs[-1][2] - start_us) <= tolerance_us:
        runs[-1] = (class_id, runs[-1][1], end_us)
    else:
        runs.append((class_id, start_us, end_us))


def merge_runs(windows: Iterable[Run], *, tolerance_us: int = 0) -> list[Segment]:
    """Segments of consecutive touching windows of one class (see :func:`append_run`).

    ``windows`` holds ``(class_id, start_us, end_us)`` per window, in time order.
    """
    runs: list[Run] = []
    for class_id, start_us, end_us in windows:
        append_run(runs, class_id, start_us, end_us, tolerance_us=tolerance_us)
    return [Segment(*r) for r in runs]
