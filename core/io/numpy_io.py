"""NumPy ``.npy`` / ``.npz`` event files (tonic-style structured arrays).

Reading accepts any structured array with fields ``x, y, t, p`` (other fields
are dropped, types converted by name): a ``.npy`` file, or in a ``.npz`` the
member ``events`` (else the first structured member), or four 1-D members
``x, y, t, p``.  ``.npy`` files and stored (uncompressed) npz members are read
chunk by chunk, never whole.

Our ``.npz`` layout (what :class:`NpzWriter` writes)::

    events.npy       [N] EVENT_DTYPE
    sensor_size.npy  [3] int64 (width, height, polarities)
    metadata.npy     0-d unicode: JSON object (camera, ...)

The writer streams: events go to a temporary raw file beside the output, and
the npy header (which needs the count) is written when the writer closes.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from core.errors import EventFileError, UnsupportedFormat
from core.events import EVENT_DTYPE, SensorSize, as_events
from core.io.base import EventReader

_FIELDS = ("x", "y", "t", "p")


def _check_dtype(dtype: np.dtype, path: Path, what: str) -> None:
    if dtype.names is None or any(f not in dtype.names for f in _FIELDS):
        raise UnsupportedFormat(f"{what} is not a structured array with fields x, y, t, p (dtype {dtype})", path=path)


class _NpyStream:
    """Chunked reading of one ``.npy`` byte stream (a file or a zip member)."""

    def __init__(self, fh, path: Path, what: str, size_limit: int) -> None:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        except ValueError as exc:
            raise EventFileError(f"corrupt npy header in {what}: {' '.join(str(exc).split())}", path=path) from None
        _check_dtype(dtype, path, what)
        if len(shape) != 1:
            raise UnsupportedFormat(f"{what} has shape {shape}, expected one dimension", path=path)
        self.n = int(shape[0])
        if self.n * dtype.itemsize > size_limit:
            raise EventFileError(
                f"truncated: {what} claims {self.n} events ({self.n * dtype.itemsize} bytes), "
                f"more than the {size_limit} bytes stored",
                path=path,
            )
        self.fh, self.dtype, self.path, self.what = fh, dtype, path, what

    def chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        left = self.n
        while left:
            k = min(left, chunk_events)
            buf = self.fh.read(k * self.dtype.itemsize)
            if len(buf) != k * self.dtype.itemsize:
                raise EventFileError(f"truncated: {self.what} ends {left} events early", path=self.path)
            yield as_events(np.frombuffer(buf, dtype=self.dtype)).copy()
            left -= k


class NpyReader(EventReader):
    """``.npy`` structured event array; sensor size inferred from the coordinates."""

    format_name = "npy"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        with open(self.path, "rb") as fh:
            stream = _NpyStream(fh, self.path, "npy array", self.path.stat().st_size)
        self.metadata.update(n_events=stream.n)

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        with open(self.path, "rb") as fh:
            yield from _NpyStream(fh, self.path, "npy array", self.path.stat().st_size).chunks(chunk_events)


class NpzReader(EventReader):
    """``.npz`` archive (ours or tonic-style); see the module docstring."""

    format_name = "npz"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        try:
            with zipfile.ZipFile(self.path) as zf:
                infos = {i.filename: i for i in zf.infolist()}
                self._columns = False
                if "events.npy" in infos:
                    self._member = "events.npy"
                else:
                    self._member = None
                    for name in infos:
                        if name.endswith(".npy") and self._is_structured(zf, name):
                            self._member = name
                            break
                    if self._member is None:
                        if all(f"{f}.npy" in infos for f in _FIELDS):
                            self._columns = True
                        else:
                            raise UnsupportedFormat(
                                "npz holds no structured x, y, t, p array and no x/y/t/p columns", path=self.path
                            )
                if not self._columns:
                    with zf.open(self._member) as fh:
                        stream = _NpyStream(fh, self.path, self._member, infos[self._member].file_size)
                        self.metadata.update(n_events=stream.n)
                meta = {}
                if "metadata.npy" in infos:
                    with zf.open("metadata.npy") as fh:
                        meta = json.loads(str(np.load(fh, allow_pickle=False)))
                if "sensor_size.npy" in infos:
                    with zf.open("sensor_size.npy") as fh:
                        s = np.load(fh, allow_pickle=False)
                    self._sensor_size = SensorSize(*(int(v) for v in s[:3]))
        except zipfile.BadZipFile as exc:
            raise EventFileError(f"corrupt npz (zip) archive: {exc}", path=self.path) from None
        except (ValueError, json.JSONDecodeError, OSError, EOFError) as exc:
            raise EventFileError(f"corrupt npz member: {' '.join(str(exc).split())}", path=self.path) from None
        self.metadata.update(camera=meta.get("camera"), stored_metadata=meta)

    @staticmethod
    def _is_structured(zf: zipfile.ZipFile, name: str) -> bool:
        with zf.open(name) as fh:
            try:
                version = np.lib.format.read_magic(fh)
                header = (
                    np.lib.format.read_array_header_1_0(fh)
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0(fh)
                )
            except ValueError:
                return False
        names = header[2].names
        return names is not None and all(f in names for f in _FIELDS)

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        try:
            with zipfile.ZipFile(self.path) as zf:
                if self._columns:
                    cols = {}
                    for f in _FIELDS:
                        with zf.open(f"{f}.npy") as fh:
                            cols[f] = np.load(fh, allow_pickle=False)
                    if len({len(c) for c in cols.values()}) != 1:
                        raise EventFileError("npz columns x, y, t, p differ in length", path=self.path)
                    ev = np.empty(len(cols["x"]), dtype=EVENT_DTYPE)
                    for f in _FIELDS:
                        ev[f] = cols[f]
                    for i0 in range(0, len(ev), chunk_events):
                        yield ev[i0 : i0 + chunk_events]
                    return
                info = zf.getinfo(self._member)
                with zf.open(self._member) as fh:
                    yield from _NpyStream(fh, self.path, self._member, info.file_size).chunks(chunk_events)
        except zipfile.BadZipFile as exc:
            raise EventFileError(f"corrupt npz (zip) archive: {exc}", path=self.path) from None
        except (ValueError, OSError, EOFError) as exc:
            raise EventFileError(f"corrupt npz member: {' '.join(str(exc).split())}", path=self.path) from None


class NpzWriter:
    """Streaming ``.npz`` writer (layout in the module docstring)."""

    def __init__(self, path: Path, sensor_size: SensorSize, metadata: dict | None = None) -> None:
        self.path = path
        self.sensor_size = SensorSize(*sensor_size)
        self.metadata = dict(metadata or {})
        self._raw_path = path.with_name(path.name + ".events")
        self._raw = open(self._raw_path, "wb")
        self._n = 0

    def write(self, events: np.ndarray) -> None:
        self._raw.write(np.ascontiguousarray(events, dtype=EVENT_DTYPE).tobytes())
        self._n += len(events)

    def close(self) -> None:
        self._raw.close()
        try:
            with zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                with zf.open("events.npy", "w", force_zip64=True) as out:
                    header = {"descr": np.lib.format.dtype_to_descr(EVENT_DTYPE), "fortran_order": False, "shape": (self._n,)}
                    np.lib.format.write_array_header_2_0(out, header)
                    with open(self._raw_path, "rb") as src:
                        while block := src.read(8 << 20):
                            out.write(block)
                zf.writestr("sensor_size.npy", _npy_bytes(np.asarray(self.sensor_size, dtype=np.int64)))
                zf.writestr("metadata.npy", _npy_bytes(np.asarray(json.dumps(self.metadata, default=str))))
        finally:
            self._raw_path.unlink(missing_ok=True)

    def abort(self) -> None:
        self._raw.close()
        self._raw_path.unlink(missing_ok=True)


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()
