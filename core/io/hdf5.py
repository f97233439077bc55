"""The project's own HDF5 recording / dataset format (``.h5`` / ``.hdf5``).

Layout (``format_version`` 1)::

    /                      attrs: dvsapp_format="events", format_version=1,
                                  width, height, polarities, camera,
                                  metadata (JSON text of any other facts)
    /events/x  [N] int16   chunked, gzip level 1 + shuffle
    /events/y  [N] int16
    /events/t  [N] int64   microseconds, sorted
    /events/p  [N] uint8   1 = ON
    /labels    [K, 3] int64 (optional): class_id (0-based), start_us, end_us
               attrs: class_names (JSON list of str, as core.labels writes it)
    /triggers/t       [M] int64 (optional group): external triggers, microseconds, sorted
    /triggers/channel [M] int16   (TRIGGER_DTYPE of dvsapp.core.events)
    /triggers/value   [M] int8

Columns are stored separately so each compresses well and a time slice reads
only the rows it needs.  Events are written and read back losslessly.  Files
with the same ``events`` group but other column types are accepted (cast by
name); other HDF5 layouts raise :class:`UnsupportedFormat`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from dvsapp.core.errors import DvsAppError, EventFileError, UnsupportedFormat, exception_text
from dvsapp.core.events import EVENT_DTYPE, TRIGGER_DTYPE, SensorSize, empty_triggers
from dvsapp.core.io.base import EventReader

CHUNK_ROWS = 1 << 17
FORMAT_VERSION = 1
_COLS = (("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.uint8))
_TRIGGER_COLS = (("t", np.int64), ("channel", np.int16), ("value", np.int8))


def _h5py():
    import h5py

    return h5py


PROBE_TIMEOUT_S = 10.0
"""How long libhdf5 may take to walk a file's structure (:func:`check_structure`)."""


def _walk_structure(path: str) -> str | None:
    """Touch everything libhdf5 resolves lazily: every object, attribute and chunk index.

    Runs in the probe child; returns ``None`` or the error's one-line text.
    """
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            objects = [f]
            f.visititems(lambda _name, obj: objects.append(obj))
            for obj in objects:
                for key in list(obj.attrs):
                    _ = obj.attrs[key]  # a variable-length string reads from the global heap
                if isinstance(obj, h5py.Dataset):
                    _ = obj.shape, obj.dtype, obj.id.get_storage_size()
                    if obj.chunks is not None and obj.id.get_storage_size():
                        obj.id.chunk_iter(lambda _info: None)  # walks the chunk B-tree once
        return None
    except Exception as exc:  # reported as the file's damage by the parent
        return exception_text(exc, 300)


def _probe_child(conn, path: str) -> None:
    try:
        conn.send(_walk_structure(path))
    finally:
        conn.close()


def check_structure(
    path: Path, *, error: type[DvsAppError] = EventFileError, timeout_s: float | None = None
) -> None:
    """Walk an HDF5 file's structure in a child process under a time limit, or raise ``error``.

    On some corrupt files (a damaged global heap behind a variable-length string, a
    cyclic B-tree) libhdf5 loops in native code and never returns; nothing in Python
    can interrupt it.  So every object, attribute and chunk index is first read by a
    forked child: if it does not finish within ``timeout_s`` (default
    :data:`PROBE_TIMEOUT_S`) it is killed and the file is refused, and otherwise the
    caller's own reads touch nothing the child has not.  h5py's global lock is held
    across the fork, so no other thread can be inside libhdf5 when the child starts.
    """
    import multiprocessing as mp

    limit = PROBE_TIMEOUT_S if timeout_s is None else timeout_s
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_probe_child, args=(send, str(path)), daemon=True)
    try:
        from h5py._objects import phil as h5_lock  # h5py's one lock around every libhdf5 call
    except ImportError:  # pragma: no cover - a future h5py without it
        h5_lock = contextlib.nullcontext()
    with h5_lock:
        child.start()
    send.close()
    try:
        if recv.poll(limit):
            try:
                text = recv.recv()
            except EOFError:
                text = f"the HDF5 structure check died (exit status {child.join(5) or child.exitcode})"
        else:
            text = (
                f"libhdf5 did not finish reading its structure within {limit:g} s "
                "(it loops on damaged metadata)"
            )
    finally:
        recv.close()
        if child.is_alive():
            child.kill()
        child.join()
    if text is not None:
        raise error(f"corrupt HDF5 file: {text}", path=path)


MAX_EXPANSION = 1100
"""Most a stored HDF5 column may expand when read (gzip/deflate peaks near 1032x)."""


@contextlib.contextmanager
def _h5_errors(path: Path, what: str) -> Iterator[None]:
    """libhdf5 reports damage as OSError, RuntimeError, KeyError, ValueError, TypeError...: one line each."""
    try:
        yield
    except DvsAppError:
        raise
    except Exception as exc:
        raise EventFileError(f"corrupt HDF5 {what}: {exception_text(exc, 300)}", path=path) from None


def _check_column(dset, name: str, path: Path, rows: int | None = None) -> int:
    """Rows of a stored numeric column, checked against the bytes actually stored."""
    if dset.dtype.kind not in "biuf" or dset.dtype.shape != ():
        raise EventFileError(f"HDF5 /{name} is not numeric (dtype {dset.dtype})", path=path)
    shape = dset.shape
    if shape is None or len(shape) != (1 if rows is None else 2):
        raise EventFileError(f"HDF5 /{name} has shape {shape}", path=path)
    n = int(np.prod(shape, dtype=np.int64))
    stored = int(dset.id.get_storage_size())
    if n * dset.dtype.itemsize > stored * MAX_EXPANSION + (1 << 16):
        raise EventFileError(f"HDF5 /{name} claims {shape} values but stores {stored} bytes", path=path)
    return int(shape[0])


class Hdf5Reader(EventReader):
    """Reader of the layout above; also exposes stored label segments."""

    format_name = "hdf5"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        h5py = _h5py()
        check_structure(self.path)
        with _h5_errors(self.path, "file"), h5py.File(self.path, "r") as f:
            grp = f.get("events")
            if not isinstance(grp, h5py.Group) or any(
                not isinstance(grp.get(c), h5py.Dataset) for c, _ in _COLS
            ):
                raise UnsupportedFormat(
                    "HDF5 file has no /events group with x, y, t, p datasets", path=self.path
                )
            lengths = {_check_column(grp[c], f"events/{c}", self.path) for c, _ in _COLS}
            if len(lengths) != 1:
                raise EventFileError(f"/events columns differ in length: {sorted(lengths)}", path=self.path)
            self._n = lengths.pop()
            attrs = {
                k: f.attrs[k] for k in ("width", "height", "polarities", "camera", "metadata") if k in f.attrs
            }
            if "width" in attrs and "height" in attrs:
                size = [int(attrs["width"]), int(attrs["height"]), int(attrs.get("polarities", 2))]
                if not all(0 < v < 1 << 20 for v in size):
                    raise EventFileError(f"HDF5 sensor size {size} is not valid", path=self.path)
                self._sensor_size = SensorSize(*size)
            extra = json.loads(_text(attrs.get("metadata", "{}")))
            if not isinstance(extra, dict):
                raise EventFileError("HDF5 metadata attribute is not a JSON object", path=self.path)
            t0 = int(grp["t"][0]) if self._n else None
            t1 = int(grp["t"][-1]) if self._n else None
            self._labels = None
            self._class_names = None
            if "labels" in f:
                dset = f["labels"]
                if not isinstance(dset, h5py.Dataset):
                    raise EventFileError("HDF5 /labels is not a dataset", path=self.path)
                _check_column(dset, "labels", self.path, rows=3)
                if dset.shape[1] != 3:
                    raise EventFileError(
                        f"HDF5 /labels has shape {dset.shape}, expected [K, 3]", path=self.path
                    )
                self._labels = np.asarray(dset[...], dtype=np.int64)
                self._class_names = _class_names(dset.attrs.get("class_names"))
            camera = _text(attrs.get("camera", "")) or None
            self._n_triggers = self._check_triggers(f)
            self.may_have_triggers = self._n_triggers > 0
        self.metadata.update(
            camera=camera,
            n_events=self._n,
            duration_us=(t1 - t0) if self._n else 0,
            stored_metadata=extra,
            has_labels=self._labels is not None,
            n_triggers=self._n_triggers,
        )

    def _check_triggers(self, f) -> int:
        """Rows of the optional /triggers group (0 when absent), its columns checked."""
        h5py = _h5py()
        grp = f.get("triggers")
        if grp is None:
            return 0
        if not isinstance(grp, h5py.Group) or any(
            not isinstance(grp.get(c), h5py.Dataset) for c, _ in _TRIGGER_COLS
        ):
            raise EventFileError(
                "HDF5 /triggers is not a group of t, channel, value datasets", path=self.path
            )
        lengths = {_check_column(grp[c], f"triggers/{c}", self.path) for c, _ in _TRIGGER_COLS}
        if len(lengths) != 1:
            raise EventFileError(f"/triggers columns differ in length: {sorted(lengths)}", path=self.path)
        return lengths.pop()

    def _decode_triggers(self) -> np.ndarray:
        if not self._n_triggers:
            return empty_triggers()
        h5py = _h5py()
        out = np.empty(self._n_triggers, dtype=TRIGGER_DTYPE)
        with _h5_errors(self.path, "triggers"), h5py.File(self.path, "r") as f:
            for c, _ in _TRIGGER_COLS:
                out[c] = f["triggers"][c][...]
        return out

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        h5py = _h5py()
        with _h5_errors(self.path, "event data"), h5py.File(self.path, "r") as f:
            grp = f["events"]
            for i0 in range(0, self._n, chunk_events):
                i1 = min(self._n, i0 + chunk_events)
                ev = np.empty(i1 - i0, dtype=EVENT_DTYPE)
                for c, _ in _COLS:
                    ev[c] = grp[c][i0:i1]
                yield ev

    def read_all(self) -> np.ndarray:
        # whole columns straight into the structured array (no chunk concatenation)
        h5py = _h5py()
        with _h5_errors(self.path, "event data"), h5py.File(self.path, "r") as f:
            grp = f["events"]
            cols = {c: grp[c][...] for c, _ in _COLS}
        from dvsapp.core.io import _kernels
        from dvsapp.core.io.base import EventChecker

        if all(cols[c].dtype.kind in "iub" for c in "xytp"):
            w, h = self.sensor_size.width, self.sensor_size.height
            fused = _kernels.to_events_checked(cols["t"], cols["x"], cols["y"], cols["p"], w, h)
            if fused is not None:
                return fused
        ev = np.empty(self._n, dtype=EVENT_DTYPE)
        for c, _ in _COLS:
            ev[c] = cols[c]
        return EventChecker(self.path, self.sensor_size)(ev)

    def label_rows(self) -> tuple[np.ndarray, list[str] | None] | None:
        """Stored label segments as ``([K, 3] int64 (class_id, start_us, end_us), class_names)``, or None."""
        if self._labels is None:
            return None
        return self._labels, self._class_names


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _class_names(raw) -> list[str] | None:
    """``class_names`` attribute: a JSON list (as core.labels writes it) or an array of strings."""
    if raw is None:
        return None
    if isinstance(raw, (bytes, str)):
        try:
            names = json.loads(_text(raw))
        except json.JSONDecodeError:
            return [_text(raw)]
        return [str(n) for n in names] if isinstance(names, list) else None
    return [_text(n) for n in np.asarray(raw).ravel()]


class Hdf5Writer:
    """Streaming writer of the layout above (resizable chunked columns)."""

    def __init__(
        self,
        path: Path,
        sensor_size: SensorSize,
        metadata: dict | None = None,
        *,
        compression: str | None = "gzip",
        compression_opts: int | None = 1,
    ) -> None:
        h5py = _h5py()
        meta = dict(metadata or {})
        self._f = h5py.File(path, "w")
        self._f.attrs["dvsapp_format"] = "events"
        self._f.attrs["format_version"] = FORMAT_VERSION
        self._f.attrs["width"] = int(sensor_size[0])
        self._f.attrs["height"] = int(sensor_size[1])
        self._f.attrs["polarities"] = int(sensor_size[2]) if len(sensor_size) > 2 else 2
        self._f.attrs["camera"] = str(meta.pop("camera", None) or "")
        labels = meta.pop("labels", None)
        class_names = meta.pop("class_names", None)
        self._f.attrs["metadata"] = json.dumps(meta, default=str)
        grp = self._f.create_group("events")
        opts = {"compression": compression, "compression_opts": compression_opts} if compression else {}
        self._cols = {
            c: grp.create_dataset(
                c,
                shape=(0,),
                maxshape=(None,),
                dtype=dt,
                chunks=(CHUNK_ROWS,),
                shuffle=bool(compression),
                **opts,
            )
            for c, dt in _COLS
        }
        self._n = 0
        self._triggers = None
        self.holds_triggers = True
        if labels is not None:
            self.write_labels(labels, class_names)

    def write_triggers(self, triggers: np.ndarray) -> None:
        """Append TRIGGER_DTYPE triggers to /triggers (created on the first call)."""
        if self._triggers is None:
            grp = self._f.create_group("triggers")
            self._triggers = {
                c: grp.create_dataset(c, shape=(0,), maxshape=(None,), dtype=dt, chunks=(1024,))
                for c, dt in _TRIGGER_COLS
            }
        k = len(triggers)
        if not k:
            return
        for c, dset in self._triggers.items():
            n = dset.shape[0]
            dset.resize((n + k,))
            dset[n:] = triggers[c]

    def write(self, events: np.ndarray) -> None:
        k = len(events)
        if not k:
            return
        for c, dset in self._cols.items():
            dset.resize((self._n + k,))
            dset[self._n :] = events[c]
        self._n += k

    def write_labels(self, segments: Sequence, class_names: Sequence[str] | None = None) -> None:
        """Store label segments (objects with class_id/start_us/end_us, or rows of 3 ints)."""
        rows = np.asarray(
            [(s.class_id, s.start_us, s.end_us) if hasattr(s, "class_id") else tuple(s) for s in segments],
            dtype=np.int64,
        ).reshape(-1, 3)
        if "labels" in self._f:
            del self._f["labels"]
        dset = self._f.create_dataset("labels", data=rows)
        if class_names is not None:
            dset.attrs["class_names"] = json.dumps([str(n) for n in class_names])

    def close(self) -> None:
        self._f.close()

    def abort(self) -> None:
        self._f.close()


def read_hdf5_labels(path: str | os.PathLike) -> tuple[np.ndarray, list[str] | None] | None:
    """Label rows stored in an HDF5 recording (see :meth:`Hdf5Reader.label_rows`)."""
    return Hdf5Reader(path).label_rows()
