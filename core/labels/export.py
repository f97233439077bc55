"""Labelled recordings exported to one HDF5 dataset (``dvsapp label export``).

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
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvsapp.core.atomic import atomic_path, check_writable
from dvsapp.core.errors import LabelError, OutputExistsError
from dvsapp.core.events import SensorSize, empty_events, time_slice
from dvsapp.core.gestures import GESTURE_CLASSES
from dvsapp.core.labels.files import (
    decode_class_names,
    find_labels,
    labels_path_for,
    read_sidecar,
    sidecar_path_for,
)
from dvsapp.core.labels.recording import Recording, load_recording
from dvsapp.core.labels.segments import (
    PathLike,
    Segment,
    check_class_names,
    segments_from_array,
    segments_to_array,
)

DATASET_FORMAT = "dvsapp-label-dataset"


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

    Raises
    ------
    OutputExistsError, OutputError
        ``out`` exists (without ``force``), or cannot be written: checked before any
        recording is read.
    LabelError
        A recording is missing or has no labels.
    """
    import h5py

    if mode not in EXPORT_MODES:
        raise LabelError(f"export mode {mode!r} is not one of {', '.join(EXPORT_MODES)}")
    out = Path(out)
    if not recordings:
        raise LabelError("no recordings to export")
    if out.exists() and not force:
        raise OutputExistsError("exists; pass --force to overwrite", path=out)
    check_writable(out)  # a missing, read-only or full folder fails now, not after the reading
    paths = [Path(r) for r in recordings]
    for p in paths:
        if p.resolve() == out.resolve():
            raise LabelError("the output is also an input", path=out)
    labels: list[list[Segment]] = []
    names: tuple[str, ...] | None = None if class_names is None else check_class_names(class_names)
    for p in paths:
        if not p.exists():
            raise LabelError("recording does not exist", path=p)
        project = read_sidecar(sidecar_path_for(p))
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

    from dvsapp.core.io.hdf5 import check_structure

    path = Path(path)
    check_structure(path, error=LabelError)
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

    from dvsapp.core.io.hdf5 import check_structure

    check_structure(Path(path), error=LabelError)
    with h5py.File(path, "r") as fh:
        return decode_class_names(fh.attrs["class_names"], path)
