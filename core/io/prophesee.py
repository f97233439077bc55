"""Prophesee RAW (EVT 2.0 / EVT 3.0) and DAT files.

Every encoding is decoded here (numba kernels, numpy fallbacks); a word of
unknown type is reported instead of silently ending the stream.  EVT 3.0, a
stateful 16-bit encoding, has its own module (:mod:`dvsapp.core.io.evt3`).

EVT 2.0: little-endian 32-bit words, type in bits 31-28.  ``0x0`` CD OFF /
``0x1`` CD ON: timestamp low bits 27-22, x bits 21-11, y bits 10-0;
``0x8`` TIME HIGH: bits 27-0 are ``t >> 6``; ``0xA`` external trigger: timestamp
low bits 27-22, trigger id bits 12-8, value (1 rising, 0 falling) bit 0, decoded
into the reader's trigger array (``read_triggers()``); ``0xD`` IMU, ``0xE``
others and ``0xF`` continued are skipped.  ``t = time_high << 6 | t_low`` us;
CD events and triggers before the first TIME HIGH word have no time base and are
dropped (as Prophesee's decoder does).

DAT: after the header, one byte event type and one byte event size (8), then
``(uint32 t_us, uint32 data)`` with x bits 13-0, y bits 27-14, polarity bits 31-28.

Both start with ``%`` header lines.  The sensor size is taken from the header
when it states one (``% geometry WxH``, ``% format EVT3;height=H;width=W``,
``% Width W`` / ``% Height H``), else from the camera plugin name for the
known sensor generations, else inferred from the largest coordinates (one
streaming pass; DAT files of N-CARS / the 1 Mpx dataset often state none).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import numpy as np

from dvsapp.core.errors import EventFileError
from dvsapp.core.events import (
    EVENT_DTYPE,
    TRIGGER_DTYPE,
    SensorSize,
    concat_triggers,
    empty_events,
    empty_triggers,
    make_triggers,
)
from dvsapp.core.io import _kernels
from dvsapp.core.io.base import EventReader
from dvsapp.core.io.sniff import prophesee_header

#: sensor size by substring of the RAW header's ``plugin_name`` / ``sensor_generation``
PLUGIN_SIZES: dict[str, SensorSize] = {
    "gen3": SensorSize(640, 480),
    "gen31": SensorSize(640, 480),
    "gen4": SensorSize(1280, 720),
    "gen41": SensorSize(1280, 720),
    "imx636": SensorSize(1280, 720),
    "imx646": SensorSize(1280, 720),
    "genx320": SensorSize(320, 320),
}


def header_geometry(lines: list[str]) -> SensorSize | None:
    """Sensor size stated by Prophesee header lines, or None."""
    text = "\n".join(lines)
    m = re.search(r"geometry\s+(\d+)\s*x\s*(\d+)", text, re.I)
    if m:
        return SensorSize(int(m.group(1)), int(m.group(2)))
    w = re.search(r"width\s*[=\s]\s*(\d+)", text, re.I)
    h = re.search(r"height\s*[=\s]\s*(\d+)", text, re.I)
    if w and h:
        return SensorSize(int(w.group(1)), int(h.group(1)))
    m = re.search(r"(plugin_name|sensor_generation)\s+(\S+)", text, re.I)
    if m:
        name = m.group(2).lower()
        for key in sorted(PLUGIN_SIZES, key=len, reverse=True):
            if key in name:
                return PLUGIN_SIZES[key]
    return None


def _header_value(lines: list[str], key: str) -> str | None:
    """The text after ``key`` on the first header line that starts with it (None when absent or empty)."""
    for ln in lines:
        if ln.lower().startswith(key):
            parts = ln.split(None, 1)
            return parts[1].strip() if len(parts) > 1 else None
    return None


class PropheseeReader(EventReader):
    """The ``%`` header shared by RAW and DAT files: sensor size, camera, data offset."""

    encoding = "evt2"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        with open(self.path, "rb") as fh:
            head = fh.read(1 << 16)
        lines, self._data_start = prophesee_header(head)
        size = self.path.stat().st_size
        if self._data_start >= size:
            raise EventFileError("no event data after the header (truncated)", path=self.path)
        if self._data_start >= len(head):
            raise EventFileError(f"header longer than {len(head)} bytes (corrupt header)", path=self.path)
        # a "%" right after the header is a header line without its newline, unless the
        # header was closed by "% end" (EVT 3.0): then it is data (a TIME_HIGH word's low byte)
        closed = bool(lines) and lines[-1] == "end"
        if not closed and head[self._data_start : self._data_start + 1] == b"%":
            raise EventFileError(
                f"header line at byte {self._data_start} never ends (corrupt header)", path=self.path
            )
        self._sensor_size = header_geometry(lines)
        camera = _header_value(lines, "serial_number")
        integrator = _header_value(lines, "integrator_name")
        self.metadata.update(
            camera=" ".join(v for v in (integrator, camera) if v) or None,
            header=lines,
        )


EVT2_CD_OFF, EVT2_CD_ON, EVT2_TIME_HIGH, EVT2_TRIGGER = 0x0, 0x1, 0x8, 0xA
EVT2_SKIPPED = (0xD, 0xE, 0xF)


def decode_evt2(
    words: np.ndarray, time_high: int | None, first_word: int = 0
) -> tuple[np.ndarray, np.ndarray, int | None, int]:
    """Decode EVT 2.0 words (the numpy path).

    Parameters
    ----------
    words : np.ndarray
        ``[N]`` uint32.
    time_high : int or None
        The last TIME HIGH value of the previous chunk (None before the first).
    first_word : int
        Index of ``words[0]`` in the stream (for error messages).

    Returns
    -------
    (events, triggers, time_high, bad_index)
        ``bad_index`` is -1, or the stream index of the first word of unknown type.
    """
    n = len(words)
    typ = words >> 28
    is_th = typ == EVT2_TIME_HIGH
    is_cd = typ <= EVT2_CD_ON
    is_tr = typ == EVT2_TRIGGER
    known = is_th | is_cd | is_tr
    for k in EVT2_SKIPPED:
        known |= typ == k
    if not known.all():
        return empty_events(), empty_triggers(), time_high, first_word + int(np.flatnonzero(~known)[0])
    idx = np.where(is_th, np.arange(n), -1)
    np.maximum.accumulate(idx, out=idx)
    th_all = (words[np.maximum(idx, 0)] & 0x0FFFFFFF).astype(np.int64)
    if time_high is None:
        is_cd &= idx >= 0
        is_tr &= idx >= 0
    else:
        th_all[idx < 0] = time_high
    cd = words[is_cd]
    ev = np.empty(len(cd), dtype=EVENT_DTYPE)
    ev["t"] = (th_all[is_cd] << 6) | ((cd >> 22) & 0x3F)
    ev["x"] = (cd >> 11) & 0x7FF
    ev["y"] = cd & 0x7FF
    ev["p"] = typ[is_cd] == EVT2_CD_ON
    tw = words[is_tr]
    tr = make_triggers((th_all[is_tr] << 6) | ((tw >> 22) & 0x3F), (tw >> 8) & 0x1F, tw & 1)
    if is_th.any():
        time_high = int(th_all[np.flatnonzero(is_th)[-1]])
    return ev, tr, time_high, -1


class _WordReader(PropheseeReader):
    """Shared memory-mapped access to the fixed-size records after the header."""

    record_bytes = 4
    record_dtype = np.dtype("<u4")
    body_offset = 0  # bytes between the end of the header and the first record

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        import mmap

        with open(self.path, "rb") as fh:
            self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self._first = self._data_start + self.body_offset
        body = len(self._mm) - self._first
        if body < 0 or body % self.record_bytes:
            raise EventFileError(
                f"truncated: {max(body, 0)} data bytes is not a whole number of {self.record_bytes}-byte records",
                path=self.path,
            )
        self._n_records = body // self.record_bytes

    def _records(self, i0: int, n: int) -> np.ndarray:
        return np.frombuffer(
            self._mm, dtype=self.record_dtype, count=n, offset=self._first + self.record_bytes * i0
        )

    def read_all(self) -> np.ndarray:
        return EventReader.read_all(self)

    def _all_chunk_events(self) -> int:
        return self._n_records


class Evt2Reader(_WordReader):
    """Prophesee RAW, EVT 2.0 (numba / numpy decoder, see the module docstring)."""

    format_name = "evt2"
    encoding = "evt2"
    may_have_triggers = True
    _decode_triggers = EventReader._triggers_from_a_pass

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        time_high = None
        triggers: list[np.ndarray] = []
        for i0 in range(0, self._n_records, chunk_events):
            words = self._records(i0, min(chunk_events, self._n_records - i0))
            if _kernels.HAVE_NUMBA:
                ev = np.empty(len(words), dtype=EVENT_DTYPE)
                cols = (ev["x"], ev["y"], ev["t"], ev["p"])
                th = -1 if time_high is None else time_high
                i = k = 0
                bad = -1
                while i < len(words) and bad < 0:
                    tr = np.empty(min(len(words) - i, 1 << 16), dtype=TRIGGER_DTYPE)
                    i, kk, m, th, bad = _kernels.decode_evt2(
                        words, i, th, *(c[k:] for c in cols), tr["t"], tr["channel"], tr["value"]
                    )
                    k += int(kk)
                    if m:
                        triggers.append(tr[:m])
                time_high = None if th < 0 else int(th)
                bad = -1 if bad < 0 else i0 + int(bad)
                ev = ev[:k]
            else:
                ev, tr, time_high, bad = decode_evt2(words, time_high, i0)
                triggers.append(tr)
            if bad >= 0:
                word = int(self._records(bad, 1)[0])
                raise EventFileError(
                    f"EVT 2.0 word {bad} (byte {self._first + 4 * bad}) has unknown type 0x{word >> 28:X}",
                    path=self.path,
                )
            yield ev
        self._triggers = concat_triggers(triggers)


class DatReader(_WordReader):
    """Prophesee DAT (N-CARS, ATIS datasets): header, 2 bytes (type, size), 8-byte events."""

    format_name = "dat"
    encoding = "dat"
    record_bytes = 8
    record_dtype = np.dtype([("t", "<u4"), ("data", "<u4")])
    body_offset = 2

    def __init__(self, path: str | os.PathLike) -> None:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
        _, start = prophesee_header(head)
        if len(head) < start + 2:
            raise EventFileError("truncated: no event type/size bytes after the header", path=path)
        ev_type, ev_size = head[start], head[start + 1]
        if ev_size != 8:
            raise EventFileError(f"DAT event size is {ev_size} bytes, expected 8 (corrupt header)", path=path)
        super().__init__(path)
        self.metadata.update(n_events=self._n_records, event_type=int(ev_type))

    def read_all(self) -> np.ndarray:
        """One fused decode + check pass when compiled kernels are available."""
        if _kernels.HAVE_NUMBA and self._n_records:
            ev = np.empty(self._n_records, dtype=EVENT_DTYPE)
            words = np.frombuffer(self._mm, dtype="<u4", count=2 * self._n_records, offset=self._first)
            w, h = int(self.sensor_size.width), int(self.sensor_size.height)
            ok = _kernels.decode_dat_checked(
                words.reshape(-1, 2), w, h, np.iinfo(np.int64).min, ev["x"], ev["y"], ev["t"], ev["p"]
            )
            if ok:
                return ev
        return EventReader.read_all(self)

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        for i0 in range(0, self._n_records, chunk_events):
            rec = self._records(i0, min(chunk_events, self._n_records - i0))
            ev = np.empty(len(rec), dtype=EVENT_DTYPE)
            if _kernels.HAVE_NUMBA:
                words = np.frombuffer(self._mm, dtype="<u4", count=2 * len(rec), offset=self._first + 8 * i0)
                _kernels.decode_dat(words.reshape(-1, 2), ev["x"], ev["y"], ev["t"], ev["p"])
                yield ev
                continue
            d = rec["data"]
            ev["t"] = rec["t"]
            ev["x"] = d & 0x3FFF
            ev["y"] = (d >> 14) & 0x3FFF
            ev["p"] = (d >> 28) != 0
            yield ev
