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

import contextlib
import json
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dvsapp.core.errors import EventFileError, UnsupportedFormat, exception_text
from dvsapp.core.events import EVENT_DTYPE, SensorSize, as_events
from dvsapp.core.io.base import EventReader

_FIELDS = ("x", "y", "t", "p")


def _check_dtype(dtype: np.dtype, path: Path, what: str) -> None:
    if dtype.names is None or any(f not in dtype.names for f in _FIELDS):
        raise UnsupportedFormat(
            f"{what} is not a structured array with fields x, y, t, p (dtype {dtype})", path=path
        )
    for f in _FIELDS:
        if not _plain_number(dtype.fields[f][0]):
            raise UnsupportedFormat(f"{what} field {f} is not a plain number (dtype {dtype})", path=path)


def _plain_number(dtype: np.dtype) -> bool:
    return dtype.kind in "biuf" and dtype.shape == () and dtype.itemsize > 0


def _read_header(fh, path: Path, what: str) -> tuple[tuple, bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of an npy stream; any malformed header -> EventFileError."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(fh)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(fh)
        raise ValueError(f"npy format version {version[0]}.{version[1]} is not supported")
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, TokenError, ...
        raise EventFileError(f"corrupt npy header in {what}: {exception_text(exc, 200)}", path=path) from None


class _NpyStream:
    """Chunked reading of one ``.npy`` byte stream (a file or a zip member).

    ``structured`` asks for a 1-D array with numeric fields x, y, t, p; otherwise
    a plain numeric array of at most one dimension (npz columns, sensor size).
    The count the header claims is checked against ``size_limit`` (the bytes
    stored) before anything is allocated.
    """

    def __init__(self, fh, path: Path, what: str, size_limit: int, *, structured: bool = True) -> None:
        shape, fortran, dtype = _read_header(fh, path, what)
        if structured:
            _check_dtype(dtype, path, what)
        elif dtype.names is not None or not _plain_number(dtype):
            raise UnsupportedFormat(f"{what} is not a plain numeric array (dtype {dtype})", path=path)
        if len(shape) != 1 and (structured or len(shape) > 1):
            raise UnsupportedFormat(f"{what} has shape {shape}, expected one dimension", path=path)
        self.n = int(shape[0]) if shape else 1
        if self.n * dtype.itemsize > size_limit:
            raise EventFileError(
                f"truncated: {what} claims {self.n} items ({self.n * dtype.itemsize} bytes), "
                f"more than the {size_limit} bytes stored",
                path=path,
            )
        self.fh, self.dtype, self.path, self.what = fh, dtype, path, what

    def raw_chunks(self, chunk_items: int) -> Iterator[np.ndarray]:
        left = self.n
        while left:
            k = min(left, chunk_items)
            arr = np.empty(k, dtype=self.dtype)
            view = arr.view(np.uint8)  # read straight into the array: no intermediate bytes
            got = 0
            while got < view.size:
                n = self.fh.readinto(view[got:])
                if not n:
                    raise EventFileError(
                        f"truncated: {self.what} ends {left - got // self.dtype.itemsize} items early",
                        path=self.path,
                    )
                got += n
            yield arr
            left -= k

    def chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        for raw in self.raw_chunks(chunk_events):
            yield as_events(raw)  # a fresh array either way (read into, or converted)

    def read_all(self) -> np.ndarray:
        parts = list(self.raw_chunks(1 << 20))
        return np.concatenate(parts) if parts else np.empty(0, dtype=self.dtype)


class NpyReader(EventReader):
    """``.npy`` structured event array; sensor size inferred from the coordinates."""

    format_name = "npy"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        with open(self.path, "rb") as fh:
            stream = _NpyStream(fh, self.path, "npy array", self.path.stat().st_size)
        self.metadata.update(n_events=stream.n)

    def _all_chunk_events(self) -> int:
        return int(self.metadata["n_events"])

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        with open(self.path, "rb") as fh:
            yield from _NpyStream(fh, self.path, "npy array", self.path.stat().st_size).chunks(chunk_events)


_ZIP_METHODS = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: 1100}
"""Accepted zip member compressions -> the most a member can expand (deflate peaks near 1032x)."""


class NpzReader(EventReader):
    """``.npz`` archive (ours or tonic-style); see the module docstring."""

    format_name = "npz"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        with self._archive() as zf:
            infos = {i.filename: i for i in zf.infolist()}
            self._columns = False
            self._member = "events.npy" if "events.npy" in infos else None
            if self._member is None:
                self._member = next(
                    (n for n in infos if n.endswith(".npy") and self._is_structured(zf, n)), None
                )
            if self._member is None:
                if not all(f"{f}.npy" in infos for f in _FIELDS):
                    raise UnsupportedFormat(
                        "npz holds no structured x, y, t, p array and no x/y/t/p columns", path=self.path
                    )
                self._columns = True
                lengths = {self._stream(zf, f"{f}.npy", structured=False).n for f in _FIELDS}
                if len(lengths) != 1:
                    raise EventFileError("npz columns x, y, t, p differ in length", path=self.path)
                self.metadata.update(n_events=lengths.pop())
            else:
                self.metadata.update(n_events=self._stream(zf, self._member).n)
            meta = {}
            if "metadata.npy" in infos:
                meta = self._read_metadata(zf)
            if "sensor_size.npy" in infos:
                s = self._stream(zf, "sensor_size.npy", structured=False, limit=64).read_all()
                if len(s) < 2 or not all(0 < v < 1 << 20 for v in s[:3].tolist()):
                    raise EventFileError(
                        f"npz sensor_size {s[:3].tolist()} is not a valid size", path=self.path
                    )
                self._sensor_size = SensorSize(*(int(v) for v in s[:3]))
        camera = meta.get("camera")
        self.metadata.update(camera=None if camera is None else str(camera), stored_metadata=meta)

    @contextlib.contextmanager
    def _archive(self) -> Iterator[zipfile.ZipFile]:
        """The open archive; zip and member read errors become EventFileError."""
        try:
            with zipfile.ZipFile(self.path) as zf:
                yield zf
        except zipfile.BadZipFile as exc:
            raise EventFileError(
                f"corrupt npz (zip) archive: {exception_text(exc, 200)}", path=self.path
            ) from None
        except (ValueError, OSError, EOFError, NotImplementedError, RuntimeError, zlib.error) as exc:
            raise EventFileError(f"corrupt npz member: {exception_text(exc, 200)}", path=self.path) from None

    def _stream(
        self, zf: zipfile.ZipFile, name: str, *, structured: bool = True, limit: int | None = None
    ) -> _NpyStream:
        """An npy stream over member ``name`` whose claimed sizes were checked against the archive."""
        info = zf.getinfo(name)
        if info.compress_type not in _ZIP_METHODS:
            raise UnsupportedFormat(
                f"npz member {name} uses zip compression {info.compress_type}", path=self.path
            )
        if info.file_size > info.compress_size * _ZIP_METHODS[info.compress_type] + 1024:
            raise EventFileError(
                f"npz member {name} claims {info.file_size} bytes from {info.compress_size} compressed",
                path=self.path,
            )
        if limit is not None and info.file_size > limit + 1024:
            raise EventFileError(f"npz member {name} is too large ({info.file_size} bytes)", path=self.path)
        return _NpyStream(zf.open(name), self.path, name, info.file_size, structured=structured)

    def _read_metadata(self, zf: zipfile.ZipFile) -> dict:
        info = zf.getinfo("metadata.npy")
        if info.file_size > (1 << 20) or info.compress_type not in _ZIP_METHODS:
            raise EventFileError("npz metadata.npy is too large or oddly compressed", path=self.path)
        with zf.open("metadata.npy") as fh:
            shape, _, dtype = _read_header(fh, self.path, "metadata.npy")
            if shape != () or dtype.kind != "U":
                raise EventFileError("npz metadata.npy is not a JSON string", path=self.path)
            text = fh.read(dtype.itemsize)
        try:
            meta = json.loads(
                np.frombuffer(text, dtype=dtype)[0].item() if len(text) == dtype.itemsize else ""
            )
        except (ValueError, RecursionError) as exc:
            raise EventFileError(
                f"npz metadata.npy is not JSON: {exception_text(exc, 200)}", path=self.path
            ) from None
        if not isinstance(meta, dict):
            raise EventFileError("npz metadata.npy is not a JSON object", path=self.path)
        return meta

    def _is_structured(self, zf: zipfile.ZipFile, name: str) -> bool:
        try:
            with zf.open(name) as fh:
                header = _read_header(fh, self.path, name)
            _check_dtype(header[2], self.path, name)
        except EventFileError:
            return False
        return True

    def _all_chunk_events(self) -> int:
        return int(self.metadata["n_events"])

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        with self._archive() as zf:
            if self._columns:
                cols = {f: self._stream(zf, f"{f}.npy", structured=False).read_all() for f in _FIELDS}
                if len({len(c) for c in cols.values()}) != 1:  # pragma: no cover - checked at open
                    raise EventFileError("npz columns x, y, t, p differ in length", path=self.path)
                ev = np.empty(len(cols["x"]), dtype=EVENT_DTYPE)
                for f in _FIELDS:
                    ev[f] = cols[f]
                for i0 in range(0, len(ev), chunk_events):
                    yield ev[i0 : i0 + chunk_events]
                return
            yield from self._stream(zf, self._member).chunks(chunk_events)


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
                    header = {
                        "descr": np.lib.format.dtype_to_descr(EVENT_DTYPE),
                        "fortran_order": False,
                        "shape": (self._n,),
                    }
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
