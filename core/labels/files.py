"""Label files: the DVS Gesture CSV, labels inside HDF5 recordings, the project sidecar, where they live.

DVS Gesture CSV (``<stem>_labels.csv`` beside the recording)
-------------------------------------------------------------
::

    class,startTime_usec,endTime_usec
    1,80048239,85092709
    2,89431170,95736350

Classes in the file are numbered from 1 (``GESTURE_CLASSES[i]`` is class ``i + 1``);
in memory they are 0-based.  Lines end with ``\\n`` (a file read with ``\\r\\n`` keeps
its line ending when a :class:`~dvsapp.core.labels.LabelDocument` saves it again).
Writes are atomic: a temporary file in the same folder, ``fsync``, then ``os.replace``.

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
"unsaved": bool, "csv_sha256": str | null}``.  The editor document rewrites it
atomically after every edit (``unsaved: true``) and after every save (``unsaved:
false``, with the hash of the CSV written); it also keeps the edited class list.
On reopen, an ``unsaved`` sidecar whose segments differ from the CSV is offered
for recovery (:attr:`~dvsapp.core.labels.LabelDocument.recovery`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvsapp.core.atomic import atomic_path, output_error, target_mode
from dvsapp.core.errors import DvsAppError, LabelError, OutputError
from dvsapp.core.gestures import GESTURE_CLASSES, labels_path_for
from dvsapp.core.labels.segments import (
    INT64_MAX,
    INT64_MIN,
    LabelProblem,
    PathLike,
    Segment,
    check_class_names,
    check_segments,
    segments_from_array,
    segments_to_array,
)

CSV_HEADER = "class,startTime_usec,endTime_usec"
PROJECT_FORMAT = "dvsapp-labels-project"
SIDECAR_SUFFIX = ".labels.json"
H5_SUFFIXES = (".h5", ".hdf5", ".hdf")

_INT_RE = re.compile(r"[+-]?[0-9]{1,19}")


# --------------------------------------------------------------------------- CSV


def parse_labels_text(
    text: str, path: PathLike | None
) -> tuple[list[Segment], list[int], list[LabelProblem]]:
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
        if not all(INT64_MIN <= v <= INT64_MAX for v in (cls, start, end)):
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


def read_text(path: Path) -> str:
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
    segments, seg_lines, problems = parse_labels_text(read_text(path), path)
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
    never a partial file.  A folder that is missing, read-only or full raises
    :class:`~dvsapp.core.errors.OutputError` naming ``path``, and the old file stays.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"cannot write: the folder {folder} does not exist", path=path)
    try:
        with atomic_path(path, mode=target_mode(path)) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise output_error(exc, path) from None
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


def is_labels_csv(path: PathLike) -> bool:
    """True when ``path`` is meant as a DVS Gesture label file, well formed or not.

    That is a file whose first line is the label header, or a ``.csv`` file named
    ``*_labels.csv`` or whose first non-blank line has three comma-separated fields
    (an event CSV has four: ``t,x,y,p``).  Such a file is read as labels, so what is
    wrong with it is told in label terms (file and line), never as a bad event file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    lines = [ln.strip() for ln in head.lstrip(b"\xef\xbb\xbf").splitlines()]
    if lines and lines[0].replace(b" ", b"") == CSV_HEADER.encode():
        return True
    if path.suffix.lower() != ".csv":
        return False
    if path.stem.endswith("_labels"):
        return True
    first = next((ln for ln in lines if ln), b"")
    return len(first.split(b",")) == 3


def read_name_list(path: PathLike) -> list[str]:
    """Non-empty stripped lines of a text file (e.g. DVS Gesture's ``trials_to_test.txt``)."""
    return [line.strip() for line in read_text(Path(path)).splitlines() if line.strip()]


# --------------------------------------------------------------------------- file locations


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


# --------------------------------------------------------------------------- HDF5


def decode_class_names(raw, path: PathLike) -> list[str]:
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

    from dvsapp.core.io.hdf5 import check_structure

    check_structure(Path(path), error=LabelError)
    try:
        with h5py.File(path, "r") as fh:
            if "labels" not in fh or not isinstance(fh["labels"], h5py.Dataset):
                return None
            ds = fh["labels"]
            arr = ds[()]
            names = decode_class_names(ds.attrs["class_names"], path) if "class_names" in ds.attrs else None
            if names is None and "class_names" in fh.attrs:
                names = decode_class_names(fh.attrs["class_names"], path)
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


# --------------------------------------------------------------------------- project sidecar


def read_sidecar(path: Path) -> dict | str | None:
    """The parsed project sidecar, ``None`` if absent, or a warning string if unreadable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != PROJECT_FORMAT:
            raise ValueError("not a labels project")
        names = check_class_names(data["class_names"])
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


def sidecar_bytes(
    recording: Path,
    *,
    class_names: Sequence[str],
    allow_overlap: bool,
    segments: Sequence[Segment],
    unsaved: bool,
    csv_sha256: str | None,
) -> bytes:
    """The project sidecar of ``recording`` (format: the module docstring), as bytes to write."""
    payload = {
        "format": PROJECT_FORMAT,
        "version": 1,
        "recording": Path(recording).name,
        "class_names": list(class_names),
        "allow_overlap": bool(allow_overlap),
        "segments": segments_to_array(segments).tolist(),
        "unsaved": bool(unsaved),
        "csv_sha256": csv_sha256,
    }
    return (json.dumps(payload, indent=1) + "\n").encode("utf-8")


def project_class_names(recording: PathLike) -> tuple[str, ...]:
    """The class list of a recording's labeling project (sidecar), else DVS Gesture's."""
    project = read_sidecar(sidecar_path_for(recording))
    return tuple(project["class_names"]) if isinstance(project, dict) else GESTURE_CLASSES


# --------------------------------------------------------------------------- saved labels


@dataclass(frozen=True)
class SavedLabels:
    """Where a recording's saved labels live and what they are (see :func:`saved_labels`)."""

    source: Path
    kind: str  # "csv" or "h5"
    segments: tuple[Segment, ...]
    class_names: tuple[str, ...] | None  # names stored with them (HDF5), or None
    newline: str = "\n"


def csv_claimed_by(recording: Path, csv_path: Path) -> bool:
    """True when the labeling project of ``recording`` saved ``csv_path`` as it is now."""
    project = read_sidecar(sidecar_path_for(recording))
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
        if found is not None and not (csv_path.is_file() and csv_claimed_by(recording, csv_path)):
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
