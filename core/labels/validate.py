"""Checking label files and finding them: ``dvsapp label show / validate`` and the folders ``label export`` takes."""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dvsapp.core.errors import LabelError
from dvsapp.core.gestures import GESTURE_CLASSES
from dvsapp.core.labels.files import (
    H5_SUFFIXES,
    SIDECAR_SUFFIX,
    csv_claimed_by,
    is_labels_csv,
    labels_path_for,
    parse_labels_text,
    project_class_names,
    read_labels_csv,
    read_text,
    saved_labels,
)
from dvsapp.core.labels.recording import scan_time_range
from dvsapp.core.labels.segments import LabelProblem, PathLike, Segment, check_segments


def check_labels_file(
    path: PathLike,
    *,
    class_names: Sequence[str] | None = GESTURE_CLASSES,
    time_range_us: tuple[int, int] | None = None,
    allow_overlap: bool = False,
) -> list[LabelProblem]:
    """Every problem of a DVS Gesture CSV (syntax, unknown classes, range, overlaps), by line."""
    path = Path(path)
    segments, seg_lines, problems = parse_labels_text(read_text(path), path)
    problems += check_segments(
        segments,
        n_classes=None if class_names is None else len(class_names),
        time_range_us=time_range_us,
        allow_overlap=allow_overlap,
        lines=seg_lines,
    )
    return sorted(problems, key=lambda p: p.line or 0)


@dataclass(frozen=True)
class LabelSet:
    """The labels found for a path (a label CSV, or a recording with labels beside / inside it)."""

    source: Path
    segments: tuple[Segment, ...]
    class_names: tuple[str, ...]
    recording: Path | None


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
    cands.sort(key=lambda c: (c.suffix.lower() in H5_SUFFIXES and not csv_claimed_by(c, csv_path), c.name))
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
