"""CSV / TXT event files: one event per line.

Reading
    Fields separated by commas, semicolons or whitespace; lines starting with
    ``#`` are comments.  An optional first line names the columns (``t`` or
    ``timestamp``, ``x``, ``y``, ``p`` or ``polarity``, any order); without
    it the order is ``t x y p`` (the rpg / ESIM ``events.txt`` layout).
    Timestamps written with a decimal point or exponent are seconds (rpg
    style) and become integer microseconds (rounded); integers are already
    microseconds.  Polarity: ``1`` is ON, ``0`` or ``-1`` is OFF.  Sensor size:
    a ``# sensor WxH`` comment when present, else the largest coordinates + 1.

Writing (:class:`CsvWriter`)
    ``# sensor WxH`` comment, a ``t,x,y,p`` header, then integer microseconds,
    so a round trip is exact.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dvsapp.core.errors import EventFileError, exception_text
from dvsapp.core.events import EVENT_DTYPE, SensorSize
from dvsapp.core.io import _kernels
from dvsapp.core.io.base import EventReader

_ALIASES = {
    "t": "t",
    "ts": "t",
    "timestamp": "t",
    "time": "t",
    "x": "x",
    "y": "y",
    "p": "p",
    "pol": "p",
    "polarity": "p",
}
_SPLIT = re.compile(r"[,;\s]+")
MAX_LINE_BYTES = 1 << 20
"""A longer line means the file is not an event list."""
_TO_SPACE = bytes.maketrans(b",;\t\r", b"    ")
COORD_MAX = int(np.iinfo(np.int16).max)
"""The largest x or y an event holds (``EVENT_DTYPE`` stores them as int16)."""


class CsvReader(EventReader):
    """Text reader (module docstring)."""

    format_name = "csv"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        self._order = ("t", "x", "y", "p")
        self._skip = 0
        with open(self.path, "rb") as fh:
            for raw in fh:
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    self._skip += 1
                    continue
                if line.startswith("#"):
                    m = re.search(r"sensor\s+(\d+)\s*x\s*(\d+)", line)
                    if m:
                        self._sensor_size = SensorSize(int(m.group(1)), int(m.group(2)))
                    self._skip += 1
                    continue
                fields = [f for f in _SPLIT.split(line) if f]
                if fields and not _is_number(fields[0]):
                    names = [_ALIASES.get(f.lower()) for f in fields]
                    if sorted(n for n in names if n) != ["p", "t", "x", "y"] or len(names) != 4:
                        raise EventFileError(
                            f"CSV header {line[:80]!r} does not name columns t, x, y, p", path=self.path
                        )
                    self._order = tuple(names)  # type: ignore[assignment]
                    self._skip += 1
                    self._seconds = None
                else:
                    t_text = fields[self._order.index("t")] if len(fields) == 4 else ""
                    self._seconds = "." in t_text or "e" in t_text.lower()
                break
        self.metadata.update(columns=" ".join(self._order))

    def _parse(self, lines: list[bytes], first_line: int) -> np.ndarray:
        table = self._parse_fast(lines)
        if table is None:  # comments or blank lines may sit between the rows: line numbers are near
            return self._to_events(self._parse_loadtxt(lines, first_line), first_line, exact_lines=False)
        return self._to_events(table, first_line)

    def _parse_fast(self, lines: list[bytes], n_lines: int | None = None) -> np.ndarray | None:
        """``[N, 4]`` numbers of plain lines in one C pass; None when anything is unusual.

        Each line must hold exactly 4 tokens (counted with numpy on the bytes) and
        ``np.fromstring`` must parse every token; else the caller's ``np.loadtxt``
        path parses the lines again and names the bad one.
        """
        blob = b"".join(lines)
        if b"#" in blob or not blob.isascii():
            return None
        text = blob.translate(_TO_SPACE)
        if not text.endswith(b"\n"):
            text += b"\n"
        chars = np.frombuffer(text, dtype=np.uint8)
        if _kernels.HAVE_NUMBA and not self._seconds:  # one compiled pass parses and validates
            out = np.empty((text.count(b"\n"), 4), dtype=np.int64)
            rows = _kernels.parse_csv_ints(chars, out)
            return None if rows < 0 else out[:rows]
        space = chars <= 32
        starts = ~space
        starts[1:] &= space[:-1]
        ends = np.flatnonzero(chars == 10)
        if len(ends) != (len(lines) if n_lines is None else n_lines):
            return None
        per_line = np.add.reduceat(starts.astype(np.int32), np.concatenate(([0], ends[:-1] + 1)))
        if not (per_line == 4).all():
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns (not raises) when it stops early
            try:
                values = np.fromstring(text, dtype=np.float64 if self._seconds else np.int64, sep=" ")
            except (ValueError, DeprecationWarning):
                return None
        if values.size != 4 * len(ends):
            return None
        if (
            not self._seconds
            and len(values)
            and (int(values.max()) >= 10**18 or int(values.min()) <= -(10**18))
        ):
            return None  # numpy saturates what does not fit; let loadtxt decide
        return values.reshape(-1, 4)

    def _parse_loadtxt(self, lines: list[bytes], first_line: int) -> np.ndarray:
        try:
            table = np.loadtxt(
                [ln.decode("utf-8", "replace").replace(",", " ").replace(";", " ") for ln in lines],
                dtype=np.float64 if self._seconds else np.int64,
                ndmin=2,
                comments="#",
            )
        except ValueError as exc:
            raise EventFileError(
                f"bad CSV line near line {first_line}: {exception_text(exc, 120)}", path=self.path
            ) from None
        return table

    def _to_events(self, table: np.ndarray, first_line: int, *, exact_lines: bool = True) -> np.ndarray:
        if table.size == 0:
            return np.empty(0, dtype=EVENT_DTYPE)
        if table.shape[1] != 4:
            raise EventFileError(
                f"line {first_line}: expected 4 columns t x y p, got {table.shape[1]}", path=self.path
            )
        ev = np.empty(len(table), dtype=EVENT_DTYPE)
        cols = {name: table[:, i] for i, name in enumerate(self._order)}
        for name in ("x", "y"):  # checked before the int16 cast, which would wrap 99999 to -31073
            bad = np.flatnonzero((cols[name] < 0) | (cols[name] > COORD_MAX))
            if len(bad):
                row = int(bad[0])
                value = cols[name][row]
                text = f"{int(value)}" if float(value).is_integer() else f"{value:g}"
                where = f"line {first_line + row}" if exact_lines else f"near line {first_line + row}"
                raise EventFileError(
                    f"{where}: {name}={text} is outside the event coordinate range 0..{COORD_MAX}",
                    path=self.path,
                )
        ev["t"] = np.rint(cols["t"] * 1e6) if self._seconds else cols["t"]
        ev["x"] = cols["x"]
        ev["y"] = cols["y"]
        ev["p"] = cols["p"] > 0
        return ev

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        if getattr(self, "_seconds", None) is None:
            self._seconds = self._detect_seconds()
        with open(self.path, "rb") as fh:
            for _ in range(self._skip):
                fh.readline()
            line_no = self._skip + 1
            block_bytes = max(1 << 12, min(chunk_events, 1 << 22) * 24)  # about chunk_events lines
            rest = b""
            while data := fh.read(block_bytes):
                data = rest + data
                cut = data.rfind(b"\n")
                if cut < 0:
                    if len(data) > MAX_LINE_BYTES:
                        raise EventFileError(
                            f"line {line_no} is longer than {MAX_LINE_BYTES} bytes (not an event list)",
                            path=self.path,
                        )
                    rest = data
                    continue
                block, rest = data[: cut + 1], data[cut + 1 :]
                yield from self._parse_block(block, line_no)
                line_no += block.count(b"\n")
            if rest.strip():
                yield from self._parse_block(rest + b"\n", line_no)

    def _parse_block(self, block: bytes, first_line: int) -> Iterator[np.ndarray]:
        """Events of whole lines ``block``: one fast pass, or line by line when unusual."""
        table = self._parse_fast([block], n_lines=block.count(b"\n"))
        if table is not None:
            if len(table):
                yield self._to_events(table, first_line)
            return
        lines = [ln for ln in block.splitlines(keepends=True) if ln.strip()]
        if lines:
            yield self._parse(lines, first_line)

    def _detect_seconds(self) -> bool:
        with open(self.path, "rb") as fh:
            for _ in range(self._skip):
                fh.readline()
            for raw in fh:
                fields = [f for f in _SPLIT.split(raw.decode("utf-8", "replace").strip()) if f]
                if len(fields) == 4 and not fields[0].startswith("#"):
                    t_text = fields[self._order.index("t")]
                    return "." in t_text or "e" in t_text.lower()
        return False


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class CsvWriter:
    """Streaming CSV writer: ``# sensor WxH``, ``t,x,y,p``, integer microseconds."""

    def __init__(self, path: Path, sensor_size: SensorSize, metadata: dict | None = None) -> None:
        self._fh = open(path, "w", encoding="ascii", newline="\n")
        self._fh.write(f"# sensor {int(sensor_size[0])}x{int(sensor_size[1])}\n")
        if metadata and metadata.get("camera"):
            self._fh.write(f"# camera {metadata['camera']}\n")
        self._fh.write("t,x,y,p\n")

    def write(self, events: np.ndarray) -> None:
        if not len(events):
            return
        table = np.column_stack(
            [
                events["t"],
                events["x"].astype(np.int64),
                events["y"].astype(np.int64),
                events["p"].astype(np.int64),
            ]
        )
        np.savetxt(self._fh, table, fmt="%d", delimiter=",")

    def close(self) -> None:
        self._fh.close()

    def abort(self) -> None:
        self._fh.close()
