"""Label segments: the DVS Gesture CSV format, HDF5 labels, the editing model, dataset export.

Segments
--------
A :class:`Segment` is ``(class_id, start_us, end_us)``: a 0-based class index and a
half-open time interval ``start_us <= t < end_us`` in the recording's own
microsecond timestamps.  Two segments overlap when ``a.start_us < b.end_us`` and
``b.start_us < a.end_us`` (touching ends do not overlap).

DVS Gesture CSV (``<stem>_labels.csv`` beside the recording)
-------------------------------------------------------------
::

    class,startTime_usec,endTime_usec
    1,80048239,85092709
    2,89431170,95736350

Classes in the file are numbered from 1 (``GESTURE_CLASSES[i]`` is class ``i + 1``);
in memory they are 0-based.  Lines end with ``\\n`` (a file read with ``\\r\\n`` keeps
its line ending when a :class:`LabelDocument` saves it again).  Writes are atomic:
a temporary file in the same folder, ``fsync``, then ``os.replace``.

Labels inside an HDF5 recording
-------------------------------
Dataset ``/labels``: ``(N, 3)`` int64 rows ``[class_id (0-based), start_us, end_us]``
with the attribute ``class_names`` (a JSON list of strings, or an array of strings).
They are the file's labels unless the labeling tool saved ``<stem>_labels.csv`` for
this very file (its sidecar records that CSV's SHA-256): a CSV of the same stem that
belongs to another recording (``x.aedat4`` beside ``x.h5``) never replaces them.

Editing project (autosave sidecar ``<recording name>.labels.json``)
------------------------------------------------------------------
JSON ``{"format": "dvsapp-labels-project", "version": 1, "recording": name,
"class_names": [...], "allow_overlap": bool, "segments": [[class_id, start_us, end_us], ...],
"unsaved": bool, "csv_sha256": str | null}``.  It is rewritten atomically after every
edit (``unsaved: true``) and after every save (``unsaved: false``, with the hash of
the CSV written); it also keeps the edited class list.
On reopen, an ``unsaved`` sidecar whose segments differ from the CSV is offered
for recovery (:attr:`LabelDocument.recovery`).

Exported dataset (``dvsapp label export ... --out dataset.h5``), read by ``dvsapp train --dataset h5``
-------------------------------------------------------------------------------------------------
File attributes:

- ``format`` = ``"dvsapp-label-dataset"``, ``version`` = ``1``
- ``class_names``: JSON list of strings (index = class_id)
- ``sensor_size``: int64 ``[W, H, P]`` (of the first recording; every group has its own too)
- ``mode``: ``"segments"`` (one group per labelled segment) or ``"recordings"``
  (one group per recording with all its segments)

Group ``/recordings/<i>`` for ``i = 0 .. n-1`` (names ``"000000"``, ``"000001"``, ... in order):

- datasets ``x`` int16, ``y`` int16, ``t`` int64 (µs, sorted), ``p`` uint8 (0/1), same length
- dataset ``labels`` ``(N, 3)`` int64 ``[class_id (0-based), start_us, end_us]`` in the same
  time base as ``t`` (``N == 1`` in segment mode; may be ``0`` in recording mode)
- attributes ``source`` (str: the recording path as given), ``offset_us`` (int64:
  original time = stored time + offset_us; the segment start in segment mode, 0 in
  recording mode), ``sensor_size`` int64 ``[W, H, P]``, ``split`` (``"train"`` or
  ``"test"``), ``segment_index`` (int64, index of the segment in its recording's label
  list, ``-1`` in recording mode)

:func:`read_dataset` reads it back (used by the tests and the training loader).
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvsapp.core.atomic import atomic_path, target_mode
from dvsapp.core.errors import DvsAppError, LabelError, OutputExistsError
from dvsapp.core.events import SensorSize, as_events, empty_events, time_slice
from dvsapp.core.gestures import GESTURE_CLASSES

CSV_HEADER = "class,startTime_usec,endTime_usec"
PROJECT_FORMAT = "dvsapp-labels-project"
DATASET_FORMAT = "dvsapp-label-dataset"
SIDECAR_SUFFIX = ".labels.json"

PathLike = str | os.PathLike

_INT_RE = re.compile(r"[+-]?[0-9]{1,19}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# --------------------------------------------------------------------------- segments


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
            if not _INT64_MIN <= int(value) <= _INT64_MAX:
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


# --------------------------------------------------------------------------- CSV


def _parse_csv_text(text: str, path: PathLike | None) -> tuple[list[Segment], list[int], list[LabelProblem]]:
    """Parse DVS Gesture CSV text into segments (1-based classes -> 0-based).

    Returns the segments, the 1-based line of each, and the syntax problems
    (lines that could not be parsed are skipped).
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines()
    problems: list[LabelProblem] = []
    segments: list[Segment] = []
    seg_lines: list[int] = []
    if not lines or lines[0].strip().replace(" ", "") != CSV_HEADER:
        got = lines[0][:60] if lines else "an empty file"
        problems.append(LabelProblem("syntax", f"expected the header {CSV_HEADER!r}, got {got!r}", 1))
        return segments, seg_lines, problems
    for lineno, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 3:
            problems.append(
                LabelProblem(
                    "syntax", f"expected 3 fields class,start,end, got {len(fields)}: {line[:60]!r}", lineno
                )
            )
            continue
        if not all(_INT_RE.fullmatch(f) for f in fields):
            problems.append(LabelProblem("syntax", f"expected three integers, got {line[:60]!r}", lineno))
            continue
        cls, start, end = (int(f) for f in fields)
        if not all(_INT64_MIN <= v <= _INT64_MAX for v in (cls, start, end)):
            problems.append(LabelProblem("syntax", f"a value does not fit in 64 bits: {line[:60]!r}", lineno))
            continue
        if cls < 1:
            problems.append(
                LabelProblem("class", f"class {cls} is not a DVS Gesture class id (they start at 1)", lineno)
            )
            continue
        if start >= end:
            problems.append(LabelProblem("syntax", f"start {start} us is not before end {end} us", lineno))
            continue
        segments.append(Segment(cls - 1, start, end))
        seg_lines.append(lineno)
    return segments, seg_lines, problems


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LabelError("label file does not exist", path=path) from None
    except IsADirectoryError:
        raise LabelError("is a folder, not a label file", path=path) from None
    except OSError as exc:
        raise LabelError(f"cannot read label file: {exc.strerror or exc}", path=path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LabelError(f"not a text file (bad UTF-8 at byte {exc.start})", path=path) from None


def read_labels_csv(path: PathLike, *, class_names: Sequence[str] | None = GESTURE_CLASSES) -> list[Segment]:
    """Read a DVS Gesture ``*_labels.csv`` into 0-based segments, in file order.

    Raises
    ------
    LabelError
        One line naming the file and the first bad line: a missing header, a line
        without three integers, ``start >= end``, or a class outside
        ``1..len(class_names)`` (``class_names=None`` accepts any class >= 1).
    """
    path = Path(path)
    segments, seg_lines, problems = _parse_csv_text(_read_text(path), path)
    if class_names is not None:
        problems += check_segments(segments, n_classes=len(class_names), allow_overlap=True, lines=seg_lines)
    if problems:
        first = min(problems, key=lambda p: p.line or 0)
        raise LabelError(str(first), path=path)
    return segments


def format_labels_csv(segments: Sequence[Segment], *, newline: str = "\n") -> bytes:
    """The DVS Gesture CSV bytes for ``segments`` (in the given order, 1-based classes)."""
    rows = [CSV_HEADER] + [f"{s.class_id + 1},{s.start_us},{s.end_us}" for s in segments]
    return (newline.join(rows) + newline).encode("ascii")


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`dvsapp.core.atomic.atomic_path`), keeping its mode.

    A reader (or a crash at any instant) sees either the old file or the new one,
    never a partial file.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise LabelError("folder does not exist", path=folder)
    try:
        with atomic_path(path, mode=target_mode(path)) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise LabelError(f"cannot write: {exc.strerror or exc}", path=path) from None
    return path


def remove_stale_temps(path: PathLike, *, min_age_s: float = 60.0) -> int:
    """Delete temp files that :func:`atomic_write_bytes` left for ``path`` when a process was killed.

    Only ``.<name>.*.tmp`` files older than ``min_age_s`` go (a younger one may belong
    to a save in progress).  Returns how many were removed.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    now = time.time()
    removed = 0
    try:
        candidates = list(folder.glob(f".{glob.escape(path.name)}.*.tmp"))
    except OSError:
        return 0
    for tmp in candidates:
        try:
            if now - tmp.stat().st_mtime >= min_age_s:
                tmp.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def write_labels_csv(path: PathLike, segments: Sequence[Segment], *, newline: str = "\n") -> Path:
    """Write ``segments`` as a DVS Gesture CSV, atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, format_labels_csv(segments, newline=newline))


def detect_newline(path: PathLike) -> str:
    """``"\\r\\n"`` if the file's first line ends so, else ``"\\n"``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return "\n"
    i = head.find(b"\n")
    return "\r\n" if i > 0 and head[i - 1 : i] == b"\r" else "\n"


# --------------------------------------------------------------------------- file locations


def labels_path_for(recording: PathLike) -> Path:
    """``<stem>_labels.csv`` beside the recording (``user01.aedat`` -> ``user01_labels.csv``)."""
    p = Path(recording)
    return p.with_name(f"{p.stem}_labels.csv")


def sidecar_path_for(recording: PathLike) -> Path:
    """The autosave / project file ``<recording name>.labels.json`` beside the recording."""
    p = Path(recording)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def resolve_inside(root: PathLike, relpath: PathLike) -> Path:
    """``root / relpath`` resolved, refusing anything that escapes ``root`` (``..``, absolute, links)."""
    base = Path(root).resolve()
    rel = Path(relpath)
    if rel.is_absolute():
        raise LabelError("absolute path is not allowed here; give a path inside the folder", path=relpath)
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise LabelError(f"path escapes the folder {base}", path=relpath)
    return target


H5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def _decode_class_names(raw, path: PathLike) -> list[str]:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    if isinstance(raw, str):
        try:
            names = json.loads(raw)
        except json.JSONDecodeError:
            raise LabelError("attribute class_names is not a JSON list", path=path) from None
    else:
        names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in np.asarray(raw).ravel()]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise LabelError("attribute class_names must be a list of strings", path=path)
    return names


def read_labels_h5(path: PathLike) -> tuple[list[Segment], list[str] | None] | None:
    """Labels stored in an HDF5 recording (``/labels`` + ``class_names``), or ``None`` if it has none."""
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            if "labels" not in fh or not isinstance(fh["labels"], h5py.Dataset):
                return None
            ds = fh["labels"]
            arr = ds[()]
            names = _decode_class_names(ds.attrs["class_names"], path) if "class_names" in ds.attrs else None
            if names is None and "class_names" in fh.attrs:
                names = _decode_class_names(fh.attrs["class_names"], path)
    except OSError as exc:
        raise LabelError(f"cannot read labels from HDF5: {exc}", path=path) from None
    return segments_from_array(arr, path=path), names


def write_labels_h5(
    path: PathLike, segments: Sequence[Segment], class_names: Sequence[str] = GESTURE_CLASSES
) -> None:
    """Store ``segments`` as ``/labels`` inside an existing (or new) HDF5 file, replacing old labels."""
    import h5py

    try:
        with h5py.File(path, "a") as fh:
            if "labels" in fh:
                del fh["labels"]
            ds = fh.create_dataset("labels", data=segments_to_array(segments))
            ds.attrs["class_names"] = json.dumps(list(class_names))
    except OSError as exc:
        raise LabelError(f"cannot write labels into HDF5: {exc}", path=path) from None


@dataclass(frozen=True)
class SavedLabels:
    """Where a recording's saved labels live and what they are (see :func:`saved_labels`)."""

    source: Path
    kind: str  # "csv" or "h5"
    segments: tuple[Segment, ...]
    class_names: tuple[str, ...] | None  # names stored with them (HDF5), or None
    newline: str = "\n"


def _csv_claimed_by(recording: Path, csv_path: Path) -> bool:
    """True when the labeling project of ``recording`` saved ``csv_path`` as it is now."""
    project = _read_sidecar(sidecar_path_for(recording))
    if not isinstance(project, dict) or project.get("csv_sha256") is None:
        return False
    try:
        return hashlib.sha256(csv_path.read_bytes()).hexdigest() == project["csv_sha256"]
    except OSError:
        return False


def saved_labels(
    recording: PathLike, *, class_names: Sequence[str] | None = GESTURE_CLASSES
) -> SavedLabels | None:
    """The saved labels of a recording, or ``None``.

    Order: for an HDF5 recording holding ``/labels``, those, unless the labeling tool
    saved ``<stem>_labels.csv`` for this very file since (its project sidecar records the
    CSV's hash), so that ``x.h5`` never takes the labels of an ``x.aedat4`` beside it.
    Otherwise ``<stem>_labels.csv`` beside the recording.
    """
    recording = Path(recording)
    csv_path = labels_path_for(recording)
    if recording.suffix.lower() in H5_SUFFIXES and recording.is_file():
        found = read_labels_h5(recording)
        if found is not None and not (csv_path.is_file() and _csv_claimed_by(recording, csv_path)):
            segs, names = found
            return SavedLabels(recording, "h5", tuple(segs), None if names is None else tuple(names))
    if csv_path.is_file():
        segs = read_labels_csv(csv_path, class_names=class_names)
        return SavedLabels(csv_path, "csv", tuple(segs), None, detect_newline(csv_path))
    return None


def find_labels(
    recording: PathLike, *, class_names: Sequence[str] | None = GESTURE_CLASSES
) -> list[Segment] | None:
    """The labels of a recording: ``<stem>_labels.csv`` beside it, or ``/labels`` inside an HDF5 file.

    Returns ``None`` when there are none.  See :func:`saved_labels` for which wins.
    """
    found = saved_labels(recording, class_names=class_names)
    return None if found is None else list(found.segments)


# --------------------------------------------------------------------------- reading recordings


@dataclass(frozen=True)
class Recording:
    """A recording loaded for labeling: all events plus geometry."""

    path: Path
    events: np.ndarray
    sensor_size: SensorSize

    @property
    def time_range_us(self) -> tuple[int, int] | None:
        """``(first t, last t + 1)``, or ``None`` when there are no events."""
        if len(self.events) == 0:
            return None
        return int(self.events["t"][0]), int(self.events["t"][-1]) + 1


def load_recording(path: PathLike) -> Recording:
    """Read a whole recording with ``dvsapp.core.io.open_events`` (any format it knows)."""
    from dvsapp.core.io import open_events

    reader = open_events(path)
    events = as_events(reader.read_all())
    return Recording(Path(path), events, SensorSize(*reader.sensor_size))


def scan_time_range(path: PathLike) -> tuple[int, int] | None:
    """``(first t, last t + 1)`` of a recording read packet by packet (bounded memory)."""
    from dvsapp.core.io import open_events

    reader = open_events(path)
    first = last = None
    for packet in reader.packets(max_events=1_000_000):
        ev = packet.events
        if len(ev):
            if first is None:
                first = int(ev["t"][0])
            last = int(ev["t"][-1])
    if first is None or last is None:
        return None
    return first, last + 1


def event_rate(
    events: np.ndarray, bin_us: int, *, t_range_us: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Event counts per time bin, for the timeline.

    Returns
    -------
    edges_us : int64 ``[K + 1]`` bin edges (µs), starting at the first event (or ``t_range_us[0]``).
    rate_hz : float64 ``[K]`` events per second in each bin.
    """
    if bin_us <= 0:
        raise LabelError(f"rate bin must be positive, got {bin_us} us")
    if t_range_us is None:
        if len(events) == 0:
            return np.zeros(1, dtype=np.int64), np.zeros(0)
        t_range_us = int(events["t"][0]), int(events["t"][-1]) + 1
    lo, hi = t_range_us
    n_bins = max(1, -(-(hi - lo) // bin_us))
    edges = lo + np.arange(n_bins + 1, dtype=np.int64) * bin_us
    idx = np.searchsorted(events["t"], edges, side="left")
    counts = np.diff(idx).astype(np.float64)
    return edges, counts * (1e6 / bin_us)


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


# --------------------------------------------------------------------------- editing model


@dataclass(frozen=True)
class DocState:
    """An immutable snapshot of what the undo stack restores."""

    segments: tuple[Segment, ...]
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class Edit:
    """One undoable edit: a name and the states before and after."""

    name: str
    before: DocState
    after: DocState


@dataclass(frozen=True)
class Recovery:
    """An autosaved state found on open that differs from the saved labels."""

    sidecar: Path
    segments: tuple[Segment, ...]
    class_names: tuple[str, ...]
    saved_segments: tuple[Segment, ...]

    def describe(self) -> str:
        return (
            f"unsaved edits found in {self.sidecar.name}: {len(self.segments)} segments "
            f"(saved labels have {len(self.saved_segments)})"
        )


def _check_class_names(names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(str(n).strip() for n in names)
    if not names:
        raise LabelError("the class list is empty")
    if any(not n for n in names):
        raise LabelError("class names must not be empty")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise LabelError(f"class name {dup!r} appears twice")
    return names


class LabelDocument:
    """The labels of one recording being edited: segments, classes, undo/redo, autosave.

    Knows no Qt; views call its commands and subscribe with :meth:`subscribe`.
    Segments are kept sorted by time; commands address them by index in
    :attr:`segments` and return the index of the edited segment afterwards.
    Every command validates first (class ids, time range, overlaps unless
    :attr:`allow_overlap`) and raises :class:`LabelError` without changing
    anything when the edit is not allowed.  After every edit the sidecar is
    rewritten atomically (when the document has a recording path and
    ``autosave`` is on).

    Parameters
    ----------
    recording : the recording the labels belong to (``None``: an unattached document).
    segments, class_names, allow_overlap : initial content.
    time_range_us : ``(t_first, t_end)``; when set, segments must lie inside.
    autosave : write the sidecar after every edit.
    """

    def __init__(
        self,
        recording: PathLike | None = None,
        *,
        segments: Iterable[Segment] = (),
        class_names: Sequence[str] = GESTURE_CLASSES,
        allow_overlap: bool = False,
        time_range_us: tuple[int, int] | None = None,
        autosave: bool = True,
    ) -> None:
        self.recording = None if recording is None else Path(recording)
        self.time_range_us = None if time_range_us is None else (int(time_range_us[0]), int(time_range_us[1]))
        self.autosave_enabled = autosave
        self.csv_newline = "\n"
        self.recovery: Recovery | None = None
        self.warnings: list[str] = []
        self._allow_overlap = bool(allow_overlap)
        self._state = DocState(tuple(sort_segments(segments)), _check_class_names(class_names))
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []
        self._saved_state = self._state
        self._listeners: list[Callable[[], None]] = []
        self._csv_sha256: str | None = None  # hash of the CSV this document last saved beside its recording

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        recording: PathLike,
        *,
        time_range_us: tuple[int, int] | None = None,
        autosave: bool = True,
    ) -> LabelDocument:
        """Open the labels of ``recording``: project sidecar, CSV beside it, or HDF5 ``/labels``.

        Class names and ``allow_overlap`` come from the sidecar when there is one.
        When the sidecar holds unsaved edits that differ from the saved labels,
        :attr:`recovery` is set; call :meth:`recover` or :meth:`discard_recovery`.
        """
        recording = Path(recording)
        remove_stale_temps(labels_path_for(recording))
        remove_stale_temps(sidecar_path_for(recording))
        project = _read_sidecar(sidecar_path_for(recording))
        warnings = []
        if isinstance(project, str):
            warnings.append(project)
            project = None
        class_names: Sequence[str] = GESTURE_CLASSES if project is None else project["class_names"]
        allow_overlap = False if project is None else project["allow_overlap"]
        newline = "\n"
        saved: tuple[Segment, ...] = ()
        found = saved_labels(recording, class_names=class_names)
        if found is not None:
            saved, newline = found.segments, found.newline
            if project is None and found.class_names:
                class_names = found.class_names
        doc = cls(
            recording,
            segments=saved,
            class_names=class_names,
            allow_overlap=allow_overlap,
            time_range_us=time_range_us,
            autosave=autosave,
        )
        doc.csv_newline = newline
        doc.warnings = warnings
        if project is not None:
            doc._csv_sha256 = project["csv_sha256"]
        if project is not None and project["unsaved"]:
            rec_segments = tuple(sort_segments(project["segments"]))
            if rec_segments != doc.segments or tuple(project["class_names"]) != doc.class_names:
                doc.recovery = Recovery(
                    sidecar_path_for(recording), rec_segments, tuple(project["class_names"]), doc.segments
                )
        return doc

    def recover(self) -> None:
        """Apply the autosaved state found on open (one undoable edit)."""
        if self.recovery is None:
            raise LabelError("there is nothing to recover")
        rec = self.recovery
        self.recovery = None
        names = rec.class_names if len(rec.class_names) >= len(self.class_names) else self.class_names
        self._apply("recover", DocState(rec.segments, names), check=False)

    def discard_recovery(self) -> None:
        """Forget the autosaved state and mark the sidecar as matching the saved labels."""
        self.recovery = None
        self._write_sidecar(unsaved=False)

    # ----------------------------------------------------------------- properties

    @property
    def segments(self) -> tuple[Segment, ...]:
        return self._state.segments

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._state.class_names

    @property
    def state(self) -> DocState:
        return self._state

    @property
    def allow_overlap(self) -> bool:
        return self._allow_overlap

    def set_allow_overlap(self, allow: bool) -> None:
        """Allow or forbid overlaps; forbidding fails while segments overlap."""
        allow = bool(allow)
        if not allow and first_overlap(self.segments) is not None:
            a, b = first_overlap(self.segments)
            raise LabelError(
                f"segments {a.start_us}..{a.end_us} us and {b.start_us}..{b.end_us} us overlap; "
                "fix them before forbidding overlaps"
            )
        self._allow_overlap = allow
        self._after_change()

    @property
    def dirty(self) -> bool:
        """True when the segments or classes differ from the last save (or open)."""
        return self._state != self._saved_state

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_name(self) -> str | None:
        return self._undo[-1].name if self._undo else None

    @property
    def redo_name(self) -> str | None:
        return self._redo[-1].name if self._redo else None

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every change (edit, undo, redo, save)."""
        self._listeners.append(callback)

    def segment(self, index: int) -> Segment:
        try:
            if index < 0:
                raise IndexError
            return self.segments[index]
        except IndexError:
            raise LabelError(f"there is no segment {index} (the document has {len(self.segments)})") from None

    def index_at(self, t_us: int) -> int | None:
        """Index of the last-starting segment that contains ``t_us``."""
        found = None
        for i, seg in enumerate(self.segments):
            if seg.start_us > t_us:
                break
            if seg.contains(t_us):
                found = i
        return found

    def free_range(self, index: int | None = None, t_us: int | None = None) -> tuple[int | None, int | None]:
        """The interval a segment may occupy without overlapping its neighbours.

        For an existing segment ``index``: ``(end of the previous segment, start of
        the next)``; for a new segment at ``t_us``: the gap around ``t_us``.  ``None``
        means unbounded (the time range, when set, still applies).
        """
        lo, hi = (None, None) if self.time_range_us is None else self.time_range_us
        if self.allow_overlap:
            return lo, hi
        if index is not None:
            me = self.segment(index)
            others = [s for i, s in enumerate(self.segments) if i != index]
            t_lo, t_hi = me.start_us, me.end_us
        else:
            if t_us is None:
                raise LabelError("free_range needs an index or a time")
            others = list(self.segments)
            t_lo = t_hi = int(t_us)
        for s in others:
            if s.end_us <= t_lo:
                lo = s.end_us if lo is None else max(lo, s.end_us)
            elif s.start_us >= t_hi:
                hi = s.start_us if hi is None else min(hi, s.start_us)
        return lo, hi

    # ----------------------------------------------------------------- commands

    def add(self, class_id: int, start_us: int, end_us: int) -> int:
        """Add a segment; returns its index."""
        seg = Segment(class_id, start_us, end_us)
        new = tuple(sort_segments([*self.segments, seg]))
        self._apply("add segment", DocState(new, self.class_names))
        return self._index_of(seg)

    def move(self, index: int, delta_us: int) -> int:
        """Shift segment ``index`` by ``delta_us`` (both edges); returns its new index."""
        old = self.segment(index)
        return self._replace(index, old.shifted(delta_us), "move segment")

    def resize(self, index: int, *, start_us: int | None = None, end_us: int | None = None) -> int:
        """Set one or both edges of segment ``index``; returns its new index."""
        old = self.segment(index)
        new = Segment(
            old.class_id,
            old.start_us if start_us is None else int(start_us),
            old.end_us if end_us is None else int(end_us),
        )
        return self._replace(index, new, "resize segment")

    def relabel(self, index: int, class_id: int) -> int:
        """Give segment ``index`` another class; returns its new index."""
        old = self.segment(index)
        return self._replace(index, Segment(class_id, old.start_us, old.end_us), "relabel segment")

    def delete(self, index: int) -> None:
        """Remove segment ``index``."""
        self.segment(index)
        new = self.segments[:index] + self.segments[index + 1 :]
        self._apply("delete segment", DocState(new, self.class_names))

    def replace_all(self, segments: Iterable[Segment], name: str = "replace segments") -> None:
        """Replace every segment (one undoable edit), e.g. accepting suggestions."""
        self._apply(name, DocState(tuple(sort_segments(segments)), self.class_names))

    def set_class_names(self, names: Sequence[str]) -> None:
        """Replace the class list (rename / add / remove unused trailing classes); undoable."""
        names = _check_class_names(names)
        self._apply("edit classes", DocState(self.segments, names))

    def import_csv(self, path: PathLike) -> None:
        """Replace the segments by those of a DVS Gesture CSV (one undoable edit)."""
        path = Path(path)
        segments = read_labels_csv(path, class_names=self.class_names)
        self.csv_newline = detect_newline(path)
        self._apply("import labels", DocState(tuple(sort_segments(segments)), self.class_names), check=False)

    def undo(self) -> None:
        if not self._undo:
            raise LabelError("nothing to undo")
        edit = self._undo.pop()
        self._redo.append(edit)
        self._state = edit.before
        self._after_change()

    def redo(self) -> None:
        if not self._redo:
            raise LabelError("nothing to redo")
        edit = self._redo.pop()
        self._undo.append(edit)
        self._state = edit.after
        self._after_change()

    # ----------------------------------------------------------------- saving

    def save(self, path: PathLike | None = None) -> Path:
        """Write the DVS Gesture CSV (default: :func:`labels_path_for` the recording) and the sidecar."""
        if path is None:
            if self.recording is None:
                raise LabelError("this document has no recording; give a path to save to")
            path = labels_path_for(self.recording)
        data = format_labels_csv(self.segments, newline=self.csv_newline)
        out = atomic_write_bytes(path, data)
        self._saved_state = self._state
        self.recovery = None
        if self.recording is not None and Path(path) == labels_path_for(self.recording):
            self._csv_sha256 = hashlib.sha256(data).hexdigest()
        self._write_sidecar(unsaved=False)
        self._notify()
        return out

    def autosave(self) -> Path | None:
        """Write the sidecar now (done automatically after every edit)."""
        return self._write_sidecar(unsaved=self.dirty)

    def problems(self) -> list[LabelProblem]:
        """Problems of the current segments (class ids, time range, overlaps)."""
        return check_segments(
            self.segments,
            n_classes=len(self.class_names),
            time_range_us=self.time_range_us,
            allow_overlap=self.allow_overlap,
        )

    # ----------------------------------------------------------------- internals

    def _index_of(self, seg: Segment) -> int:
        return self.segments.index(seg)

    def _replace(self, index: int, seg: Segment, name: str) -> int:
        rest = [s for i, s in enumerate(self.segments) if i != index]
        self._apply(name, DocState(tuple(sort_segments([*rest, seg])), self.class_names))
        return self._index_of(seg)

    def _validate(self, state: DocState) -> None:
        problems = check_segments(
            state.segments,
            n_classes=len(state.class_names),
            time_range_us=self.time_range_us,
            allow_overlap=self.allow_overlap,
        )
        if problems:
            raise LabelError(problems[0].message)

    def _apply(self, name: str, new: DocState, *, check: bool = True) -> None:
        if check:
            self._validate(new)
        else:  # imported / recovered labels may break the rules; class ids must still exist
            bad = [s for s in new.segments if s.class_id >= len(new.class_names)]
            if bad:
                raise LabelError(
                    f"class {bad[0].class_id + 1} is unknown (classes are 1..{len(new.class_names)})"
                )
        if new == self._state:
            return
        self._undo.append(Edit(name, self._state, new))
        self._redo.clear()
        self._state = new
        self._after_change()

    def _after_change(self) -> None:
        if self.autosave_enabled:
            self._write_sidecar(unsaved=self.dirty)
        self._notify()

    def _notify(self) -> None:
        for callback in list(self._listeners):
            callback()

    def _write_sidecar(self, *, unsaved: bool) -> Path | None:
        if self.recording is None:
            return None
        payload = {
            "format": PROJECT_FORMAT,
            "version": 1,
            "recording": self.recording.name,
            "class_names": list(self.class_names),
            "allow_overlap": self.allow_overlap,
            "segments": segments_to_array(self.segments).tolist(),
            "unsaved": bool(unsaved),
            "csv_sha256": self._csv_sha256,
        }
        data = (json.dumps(payload, indent=1) + "\n").encode("utf-8")
        return atomic_write_bytes(sidecar_path_for(self.recording), data)


def _read_sidecar(path: Path) -> dict | str | None:
    """The parsed project sidecar, ``None`` if absent, or a warning string if unreadable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != PROJECT_FORMAT:
            raise ValueError("not a labels project")
        names = _check_class_names(data["class_names"])
        segments = segments_from_array(np.asarray(data["segments"], dtype=np.int64).reshape(-1, 3))
        return {
            "class_names": names,
            "allow_overlap": bool(data.get("allow_overlap", False)),
            "segments": segments,
            "unsaved": bool(data.get("unsaved", False)),
            "csv_sha256": data.get("csv_sha256") if isinstance(data.get("csv_sha256"), str) else None,
        }
    except (OSError, ValueError, KeyError, TypeError, DvsAppError) as exc:
        return f"{path.name}: ignored an unreadable autosave file ({exc})"


# --------------------------------------------------------------------------- checking files


def check_labels_file(
    path: PathLike,
    *,
    class_names: Sequence[str] | None = GESTURE_CLASSES,
    time_range_us: tuple[int, int] | None = None,
    allow_overlap: bool = False,
) -> list[LabelProblem]:
    """Every problem of a DVS Gesture CSV (syntax, unknown classes, range, overlaps), by line."""
    path = Path(path)
    segments, seg_lines, problems = _parse_csv_text(_read_text(path), path)
    problems += check_segments(
        segments,
        n_classes=None if class_names is None else len(class_names),
        time_range_us=time_range_us,
        allow_overlap=allow_overlap,
        lines=seg_lines,
    )
    return sorted(problems, key=lambda p: p.line or 0)


def is_labels_csv(path: PathLike) -> bool:
    """True when ``path`` is a file whose first line is the DVS Gesture label header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(CSV_HEADER) + 8)
    except OSError:
        return False
    return head.lstrip(b"\xef\xbb\xbf").split(b"\n")[0].strip().replace(b" ", b"") == CSV_HEADER.encode()


@dataclass(frozen=True)
class LabelSet:
    """The labels found for a path (a label CSV, or a recording with labels beside / inside it)."""

    source: Path
    segments: tuple[Segment, ...]
    class_names: tuple[str, ...]
    recording: Path | None


def project_class_names(recording: PathLike) -> tuple[str, ...]:
    """The class list of a recording's labeling project (sidecar), else DVS Gesture's."""
    project = _read_sidecar(sidecar_path_for(recording))
    return tuple(project["class_names"]) if isinstance(project, dict) else GESTURE_CLASSES


def _recording_for_csv(csv_path: Path) -> Path | None:
    if not csv_path.stem.endswith("_labels"):
        return None
    stem = csv_path.stem[: -len("_labels")]
    cands = [
        c
        for c in sorted(csv_path.parent.glob(f"{glob.escape(stem)}.*"))
        if c.is_file()
        and c != csv_path
        and not c.name.endswith(SIDECAR_SUFFIX)
        and not c.name.endswith(".tmp")
    ]
    # an HDF5 file may carry its own labels; the CSV then belongs to another recording of that stem
    cands.sort(key=lambda c: (c.suffix.lower() in H5_SUFFIXES and not _csv_claimed_by(c, csv_path), c.name))
    return cands[0] if cands else None


def load_label_set(path: PathLike) -> LabelSet:
    """Labels of ``path``: a DVS Gesture CSV itself, or a recording (CSV beside it, HDF5 ``/labels``).

    Raises :class:`LabelError` when a recording has no labels.
    """
    path = Path(path)
    if not path.exists():
        raise LabelError("does not exist", path=path)
    if is_labels_csv(path):
        rec = _recording_for_csv(path)
        names = project_class_names(rec) if rec is not None else GESTURE_CLASSES
        return LabelSet(path, tuple(read_labels_csv(path, class_names=names)), names, rec)
    names = project_class_names(path)
    found = saved_labels(path, class_names=names)
    if found is None:
        raise LabelError(
            f"has no labels ({labels_path_for(path).name} beside it or HDF5 /labels inside)", path=path
        )
    return LabelSet(found.source, found.segments, found.class_names or names, path)


def _saved_kind(recording: Path | None) -> str | None:
    if recording is None:
        return None
    try:
        found = saved_labels(recording, class_names=None)
    except LabelError:
        return "csv"  # a broken CSV: let check_labels_file report its lines
    return None if found is None else found.kind


def validate_path(
    path: PathLike, *, allow_overlap: bool = False, check_range: bool = True
) -> list[LabelProblem]:
    """Every problem of the labels of ``path`` (a CSV or a recording), with lines for CSVs.

    When the recording is known (given, or ``<stem>.*`` beside ``<stem>_labels.csv``) and
    ``check_range`` is on, segments must lie inside its events' time range.
    """
    path = Path(path)
    if not path.exists():
        raise LabelError("does not exist", path=path)
    if is_labels_csv(path):
        csv_path, rec = path, _recording_for_csv(path)
    else:
        csv_path, rec = labels_path_for(path), path
    names = project_class_names(rec) if rec is not None else GESTURE_CLASSES
    t_range = scan_time_range(rec) if (check_range and rec is not None) else None
    from_csv = csv_path.is_file() and (path == csv_path or _saved_kind(rec) != "h5")
    if from_csv:
        return check_labels_file(
            csv_path, class_names=names, time_range_us=t_range, allow_overlap=allow_overlap
        )
    label_set = load_label_set(path)
    return check_segments(
        label_set.segments,
        n_classes=len(label_set.class_names),
        time_range_us=t_range,
        allow_overlap=allow_overlap,
    )


def validate_paths(
    paths: Iterable[PathLike], *, allow_overlap: bool = False, check_range: bool = True
) -> list[tuple[Path, list[LabelProblem]]]:
    """:func:`validate_path` for each file (folders expand with :func:`expand_label_files`)."""
    return [
        (p, validate_path(p, allow_overlap=allow_overlap, check_range=check_range))
        for p in expand_label_files(paths)
    ]


RECORDING_SUFFIXES = (".aedat", ".aedat4", ".h5", ".hdf5", ".npz", ".npy", ".raw", ".dat", ".bin", ".csv")
"""File suffixes a folder given to ``label export`` / ``label validate`` is searched for."""


def _is_helper_file(p: Path) -> bool:
    return p.name.endswith((SIDECAR_SUFFIX, ".tmp")) or p.stem.endswith("_labels") or p.name.startswith(".")


def expand_label_files(paths: Iterable[PathLike]) -> list[Path]:
    """Files to validate: files as given; a folder gives its ``*_labels.csv`` and its HDF5 files with labels."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(p)
            continue
        found = sorted(p.glob("*_labels.csv"))
        found += [
            h
            for h in sorted(p.iterdir())
            if h.suffix.lower() in H5_SUFFIXES and not _is_helper_file(h) and _saved_kind(h) == "h5"
        ]
        if not found:
            raise LabelError("folder holds no *_labels.csv and no HDF5 file with labels", path=p)
        out += found
    return out


def expand_recordings(paths: Iterable[PathLike]) -> list[Path]:
    """Recordings to export: files as given; a folder gives every recording in it that has labels (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(p)
            continue
        found = [
            f
            for f in sorted(p.iterdir())
            if f.is_file()
            and f.suffix.lower() in RECORDING_SUFFIXES
            and not _is_helper_file(f)
            and not is_labels_csv(f)
            and _saved_kind(f) is not None
        ]
        if not found:
            raise LabelError("folder holds no recording with labels", path=p)
        out += found
    return out


def read_name_list(path: PathLike) -> list[str]:
    """Non-empty stripped lines of a text file (e.g. DVS Gesture's ``trials_to_test.txt``)."""
    return [line.strip() for line in _read_text(Path(path)).splitlines() if line.strip()]


# --------------------------------------------------------------------------- dataset export


@dataclass(frozen=True)
class DatasetItem:
    """One group of an exported dataset (see the module docstring for the format)."""

    index: int
    events: np.ndarray
    segments: tuple[Segment, ...]
    sensor_size: SensorSize
    source: str
    offset_us: int
    split: str
    segment_index: int


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_dataset` wrote."""

    path: Path
    n_groups: int
    n_train: int
    n_test: int
    n_events: int
    recordings: tuple[str, ...]
    test_recordings: tuple[str, ...]


EXPORT_MODES = ("segments", "recordings")


def assign_splits(
    recordings: Sequence[PathLike],
    *,
    test_fraction: float = 0.0,
    test_patterns: Sequence[str] = (),
    seed: int = 0,
) -> list[str]:
    """``"train"`` / ``"test"`` per recording (a split by recording, never inside one).

    A recording whose file name matches one of ``test_patterns`` (glob) is test;
    otherwise ``round(test_fraction * n)`` recordings (at least one when the fraction
    is positive and there are two or more) are drawn with ``seed``.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise LabelError(f"test fraction must be in [0, 1), got {test_fraction}")
    names = [Path(r).name for r in recordings]
    splits = ["test" if any(fnmatch.fnmatch(n, pat) for pat in test_patterns) else "train" for n in names]
    if test_fraction > 0 and not test_patterns:
        n = len(names)
        k = min(n - 1, max(1, round(test_fraction * n))) if n >= 2 else 0
        order = sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}:{names[i]}".encode()).hexdigest())
        for i in order[:k]:
            splits[i] = "test"
    return splits


def export_dataset(
    recordings: Sequence[PathLike],
    out: PathLike,
    *,
    mode: str = "segments",
    test_fraction: float = 0.0,
    test_patterns: Sequence[str] = (),
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    force: bool = False,
    loader: Callable[[Path], Recording] | None = None,
) -> ExportSummary:
    """Write recordings and their labels to one HDF5 dataset (format: module docstring).

    Parameters
    ----------
    recordings : recording files; each needs labels (:func:`find_labels` or its sidecar project).
    out : the ``.h5`` file to write (atomically: a temp file, then renamed).
    mode : ``"segments"`` (one group per segment, events cut to it) or ``"recordings"``.
    test_fraction, test_patterns, seed : the train/test split by recording (:func:`assign_splits`).
    class_names : the class list (default: the first recording's project classes, else DVS Gesture's).
    force : overwrite ``out``.
    loader : reads a recording (default :func:`load_recording`).
    """
    import h5py

    if mode not in EXPORT_MODES:
        raise LabelError(f"export mode {mode!r} is not one of {', '.join(EXPORT_MODES)}")
    out = Path(out)
    if not recordings:
        raise LabelError("no recordings to export")
    if out.exists() and not force:
        raise OutputExistsError("exists; pass --force to overwrite", path=out)
    if not out.parent.is_dir():
        raise LabelError("output folder does not exist", path=out.parent)
    paths = [Path(r) for r in recordings]
    for p in paths:
        if p.resolve() == out.resolve():
            raise LabelError("the output is also an input", path=out)
    labels: list[list[Segment]] = []
    names: tuple[str, ...] | None = None if class_names is None else _check_class_names(class_names)
    for p in paths:
        if not p.exists():
            raise LabelError("recording does not exist", path=p)
        project = _read_sidecar(sidecar_path_for(p))
        rec_names = project["class_names"] if isinstance(project, dict) else GESTURE_CLASSES
        if names is None:
            names = tuple(rec_names)
        segs = find_labels(p, class_names=names)
        if segs is None:
            raise LabelError(f"has no labels ({labels_path_for(p).name} or HDF5 /labels)", path=p)
        labels.append(segs)
    assert names is not None
    splits = assign_splits(paths, test_fraction=test_fraction, test_patterns=test_patterns, seed=seed)

    n_groups = n_train = n_test = n_events = 0
    first_size: SensorSize | None = None
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as fh:
            fh.attrs["format"] = DATASET_FORMAT
            fh.attrs["version"] = 1
            fh.attrs["class_names"] = json.dumps(list(names))
            fh.attrs["mode"] = mode
            root = fh.create_group("recordings")
            for p, segs, split in zip(paths, labels, splits):
                rec = (loader or load_recording)(p)
                first_size = first_size or rec.sensor_size
                if mode == "segments":
                    items = [
                        (
                            k,
                            time_slice(rec.events, s.start_us, s.end_us),
                            [Segment(s.class_id, 0, s.duration_us)],
                            s.start_us,
                        )
                        for k, s in enumerate(segs)
                    ]
                else:
                    items = [(-1, rec.events, segs, 0)]
                for seg_index, ev, rel_segs, offset_us in items:
                    g = root.create_group(f"{n_groups:06d}")
                    _write_group(g, ev, rel_segs, offset_us, rec.sensor_size, str(p), split, seg_index)
                    n_groups += 1
                    n_events += len(ev)
                    if split == "test":
                        n_test += 1
                    else:
                        n_train += 1
            fh.attrs["sensor_size"] = np.asarray(first_size or (0, 0, 2), dtype=np.int64)
            fh.flush()
    return ExportSummary(
        out,
        n_groups,
        n_train,
        n_test,
        n_events,
        tuple(str(p) for p in paths),
        tuple(str(p) for p, s in zip(paths, splits) if s == "test"),
    )


def _write_group(
    g, ev: np.ndarray, segs, offset_us: int, size: SensorSize, source: str, split: str, seg_index: int
) -> None:
    g.create_dataset("x", data=np.ascontiguousarray(ev["x"], dtype=np.int16))
    g.create_dataset("y", data=np.ascontiguousarray(ev["y"], dtype=np.int16))
    g.create_dataset("t", data=np.ascontiguousarray(ev["t"], dtype=np.int64) - np.int64(offset_us))
    g.create_dataset("p", data=np.ascontiguousarray(ev["p"], dtype=np.uint8))
    g.create_dataset("labels", data=segments_to_array(segs).reshape(-1, 3))
    g.attrs["source"] = source
    g.attrs["offset_us"] = np.int64(offset_us)
    g.attrs["sensor_size"] = np.asarray(tuple(size), dtype=np.int64)
    g.attrs["split"] = split
    g.attrs["segment_index"] = np.int64(seg_index)


def read_dataset(path: PathLike, *, split: str | None = None) -> Iterator[DatasetItem]:
    """Iterate the groups of an exported dataset (optionally only ``split``), in order."""
    import h5py

    path = Path(path)
    try:
        fh = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as exc:
        raise LabelError(f"cannot open dataset: {exc}", path=path) from None
    with fh:
        if fh.attrs.get("format") != DATASET_FORMAT or "recordings" not in fh:
            raise LabelError(f"not a {DATASET_FORMAT} file", path=path)
        for key in sorted(fh["recordings"].keys()):
            g = fh["recordings"][key]
            g_split = str(g.attrs["split"])
            if split is not None and g_split != split:
                continue
            n = len(g["t"])
            ev = empty_events(n)
            for name in ("x", "y", "t"):
                ev[name] = g[name][()]
            ev["p"] = g["p"][()].astype(bool)
            yield DatasetItem(
                index=int(key),
                events=ev,
                segments=tuple(segments_from_array(g["labels"][()], path=path)),
                sensor_size=SensorSize(*(int(v) for v in g.attrs["sensor_size"])),
                source=str(g.attrs["source"]),
                offset_us=int(g.attrs["offset_us"]),
                split=g_split,
                segment_index=int(g.attrs["segment_index"]),
            )


def dataset_class_names(path: PathLike) -> list[str]:
    """The class list stored in an exported dataset."""
    import h5py

    with h5py.File(path, "r") as fh:
        return _decode_class_names(fh.attrs["class_names"], path)


__all__ = [
    "CSV_HEADER",
    "DocState",
    "DatasetItem",
    "Edit",
    "ExportSummary",
    "LabelDocument",
    "LabelProblem",
    "LabelSet",
    "Recording",
    "Recovery",
    "SavedLabels",
    "Segment",
    "assign_splits",
    "atomic_write_bytes",
    "check_labels_file",
    "check_segments",
    "dataset_class_names",
    "event_rate",
    "expand_label_files",
    "expand_recordings",
    "export_dataset",
    "find_labels",
    "first_overlap",
    "format_labels_csv",
    "is_labels_csv",
    "labels_path_for",
    "load_label_set",
    "project_class_names",
    "validate_path",
    "validate_paths",
    "load_recording",
    "predict_segments",
    "read_dataset",
    "read_labels_csv",
    "read_labels_h5",
    "read_name_list",
    "remove_stale_temps",
    "resolve_inside",
    "scan_time_range",
    "saved_labels",
    "segment_at",
    "segments_from_array",
    "segments_to_array",
    "sidecar_path_for",
    "sort_segments",
    "Suggestions",
    "suggest_for_recording",
    "suggest_segments",
    "write_labels_csv",
    "write_labels_h5",
]
