"""The labels of one recording being edited: :class:`LabelDocument` (undo/redo, autosave, recovery).

The document knows no Qt; the labeling window calls its commands and subscribes to
its changes.  Its autosave sidecar's format is described in
:mod:`dvsapp.core.labels.files`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dvsapp.core.errors import LabelError
from dvsapp.core.gestures import GESTURE_CLASSES
from dvsapp.core.labels.files import (
    atomic_write_bytes,
    detect_newline,
    format_labels_csv,
    labels_path_for,
    read_labels_csv,
    read_sidecar,
    remove_stale_temps,
    saved_labels,
    sidecar_bytes,
    sidecar_path_for,
)
from dvsapp.core.labels.segments import (
    LabelProblem,
    PathLike,
    Segment,
    check_class_names,
    check_segments,
    first_overlap,
    sort_segments,
)


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
        self._state = DocState(tuple(sort_segments(segments)), check_class_names(class_names))
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
        project = read_sidecar(sidecar_path_for(recording))
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
        names = check_class_names(names)
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
        data = sidecar_bytes(
            self.recording,
            class_names=self.class_names,
            allow_overlap=self.allow_overlap,
            segments=self.segments,
            unsaved=unsaved,
            csv_sha256=self._csv_sha256,
        )
        return atomic_write_bytes(sidecar_path_for(self.recording), data)
