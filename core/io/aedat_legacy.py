"""jAER / cAER AEDAT 2.0 and 3.1 readers, vectorised with numpy (no other library reads these right).

AEDAT 2.0 (jAER: DVS128 and DAVIS recordings)
    ``#`` header lines (``\r\n``), then big-endian ``(int32 address, int32
    timestamp_us)`` pairs.  The address layout follows the chip class of the
    ``# AEChip:`` header line (no such line: DVS128).

    DVS128 (``DVS128``, ``Tmpdiff128``)::

        bit 15      external (sync) input event -> a trigger (channel 0, pulse)
        bits 14-8   raw y      bits 7-1   raw x      bit 0   raw polarity

    jAER stores the *raw* USB address.  We convert it exactly as libcaer does
    when it writes AEDAT 3.1 (``dvs128EventTranslator``): ``x = 127 - raw_x``
    (the camera is mounted flipped), ``y = 127 - raw_y`` and ``p = (raw_polarity
    == 0)`` (the hardware polarity bit is inverted: 0 means ON).  A DVS128 scene
    thus decodes to the same coordinates from a 2.0 file and from a 3.1 file,
    and the 3.1 coordinates equal tonic's ``read_dvs_ibm`` (DVS Gesture) output.

    DAVIS (``DAVIS240A/B/C``, ``DAVIS346*``, ``DAVIS128``, ``DAVIS208``,
    ``DAVIS640``...; the layout of jAER's ``DavisChip``)::

        bit 31 = 0, bits 11-10 = 01: external input event -> a trigger on channel 0
                    (bits 2-0: 2 falling, 3 rising, 4 pulse; 0 from older jAER: pulse)
        bit 31 = 0, otherwise: DVS event, y = bits 30-22, x = bits 21-12, polarity = bit 11 (1 = ON)
        bit 31 = 1, bits 11-10 = 11: IMU word: bits 30-28 the value index (0-2 accel x/y/z,
                    3 temperature, 4-6 gyro x/y/z), bits 27-12 the value (int16)
        bit 31 = 1, otherwise: APS (frame) ADC sample, counted and skipped

    x is kept as stored.  jAER's y axis points up (its origin is the bottom-left
    pixel); we turn it round to the top-left origin of AEDAT 3.1 / 4, libcaer and
    every other reader here: ``y = height - 1 - raw_y``.  IMU words come seven
    in a row, one sample (the first word's timestamp): ``read_imu()`` gives them
    (IMU_DTYPE) scaled as jAER / AedatTools do, accel / 8192 g, gyro / 65.5
    deg/s, temperature / 340 + 35 degC; an incomplete sample is counted as lost.
    After a full pass ``metadata`` holds ``n_imu_samples``, ``n_imu_lost_words``
    and ``n_aps_samples``.

    The 32-bit timestamps wrap around after 2**32 us; a backward jump of more
    than 2**31 us is taken as a wrap and unwrapped into int64.

AEDAT 3.1 (cAER / DV, e.g. DVS128 Gesture)
    ``#`` header lines ending with ``#!END-HEADER\\r\\n``, then packets, each a
    28-byte little-endian header ``(int16 eventType, int16 eventSource, int32
    eventSize, int32 eventTSOffset, int32 eventTSOverflow, int32 eventCapacity,
    int32 eventNumber, int32 eventValid)`` followed by ``eventCapacity *
    eventSize`` bytes.  Polarity packets (eventType 1) hold 8-byte events
    ``(uint32 data, int32 timestamp)``: ``valid = data & 1``, ``p = (data >>
    1) & 1``, ``y = (data >> 2) & 0x1FFF``, ``x = (data >> 17) & 0x1FFF``;
    the full timestamp is ``(eventTSOverflow << 31) | timestamp`` us.  Only the
    first ``eventNumber`` events are used and invalid ones are dropped.  Other
    packet types (special, frame, IMU...) are skipped without decoding.
    Packets from a second event source are skipped too (the first polarity
    source is read).  Special packets (eventType 0) of that source give the
    triggers: external input 0/1/2 rising / falling edges and pulses (channels
    0/1/2), the external generator's edges, APS frame / exposure start and end
    and timestamp resets (named channels of ``TRIGGER_DTYPE``); IMU6 packets
    (eventType 3) are counted (``metadata["n_imu_samples"]``), not decoded.

Both readers memory-map the file; every count the file claims is checked
against the file size before anything is allocated.
"""

from __future__ import annotations

import mmap
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dvsapp.core.errors import EventFileError, UnsupportedFormat
from dvsapp.core.events import (
    EVENT_DTYPE,
    IMU_DTYPE,
    TRIGGER_APS_EXPOSURE,
    TRIGGER_APS_FRAME,
    TRIGGER_FALLING,
    TRIGGER_GENERATOR,
    TRIGGER_PULSE,
    TRIGGER_RISING,
    TRIGGER_TIMESTAMP_RESET,
    SensorSize,
    concat_triggers,
    empty_events,
    empty_triggers,
    make_triggers,
    trigger_lookup,
)
from dvsapp.core.io import _kernels
from dvsapp.core.io.base import DEFAULT_CHUNK_EVENTS, EventChecker, EventReader

MAX_HEADER_BYTES = 16 << 20
"""Header lines beyond this many bytes mean a corrupt file (jAER prefs dumps stay far below)."""

SPECIAL_EVENT, POLARITY_EVENT, IMU6_EVENT = 0, 1, 3
PACKET_HEADER = struct.Struct("<hhiiiiii")
PACKET_HEADER_BYTES = PACKET_HEADER.size  # 28

#: sensor geometry of the device names found in ``#Source`` / ``AEChip`` header lines
DEVICE_SIZES: dict[str, SensorSize] = {
    "dvs128": SensorSize(128, 128),
    "tmpdiff128": SensorSize(128, 128),
    "davis128": SensorSize(128, 128),
    "davis208": SensorSize(208, 192),
    "davis240": SensorSize(240, 180),
    "davis346": SensorSize(346, 260),
    "davis640": SensorSize(640, 480),
    "davisrgbw640": SensorSize(640, 480),
    "dvxplorer lite": SensorSize(320, 240),
    "dvxplorer": SensorSize(640, 480),
    "dvs132s": SensorSize(132, 104),
}


def device_size(name: str) -> SensorSize | None:
    """Sensor size for a device name (longest matching key wins), or None."""
    low = name.lower()
    for key in sorted(DEVICE_SIZES, key=len, reverse=True):
        if key in low:
            return DEVICE_SIZES[key]
    return None


def read_header_lines(mm: mmap.mmap | bytes, path: Path) -> tuple[list[str], int]:
    """Parse ``#`` header lines; return (lines without ``#`` and line ends, data start offset)."""
    pos = 0
    lines: list[str] = []
    size = len(mm)
    while pos < size and mm[pos : pos + 1] == b"#":
        end = mm.find(b"\n", pos, min(size, pos + MAX_HEADER_BYTES))
        if end < 0:
            raise EventFileError(f"header line at byte {pos} never ends (corrupt header)", path=path)
        lines.append(bytes(mm[pos + 1 : end]).rstrip(b"\r").decode("latin-1"))
        pos = end + 1
        if pos > MAX_HEADER_BYTES:
            raise EventFileError(f"header longer than {MAX_HEADER_BYTES} bytes (corrupt header)", path=path)
        if lines[-1].startswith("!END-HEADER"):
            break
    return lines, pos


class _MappedReader(EventReader):
    """Shared plumbing: a read-only memory map of the whole file."""

    def __init__(self, path) -> None:
        super().__init__(path)
        with open(self.path, "rb") as fh:
            self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self._size = len(self._mm)
        self._buf = np.frombuffer(self._mm, dtype=np.uint8)

    def close(self) -> None:
        del self._buf
        self._mm.close()


# --------------------------------------------------------------------------------------------------
# AEDAT 2.0
# --------------------------------------------------------------------------------------------------

_U32_WRAP = np.int64(1) << 32


def decode_dvs128_aedat2(
    raw: np.ndarray, wraps: int, last_ts: int | None
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Decode big-endian (address, timestamp) pairs of the DVS128 layout (the numpy path).

    Parameters
    ----------
    raw : np.ndarray
        ``[N, 2]`` big-endian uint32 (address, timestamp).
    wraps, last_ts : int
        Timestamp wrap count and last raw timestamp from the previous chunk.

    Returns
    -------
    (events, triggers, wraps, last_ts)
        EVENT_DTYPE array (external events removed), their TRIGGER_DTYPE triggers and
        the updated state.
    """
    n = len(raw)
    if n == 0:
        return empty_events(), empty_triggers(), wraps, -1 if last_ts is None else last_ts
    addr = raw[:, 0].astype(np.uint32)
    ts = raw[:, 1].astype(np.int64)
    prev = np.empty(n, dtype=np.int64)
    prev[0] = ts[0] if last_ts is None else last_ts
    prev[1:] = ts[:-1]
    wrap_steps = np.cumsum((ts - prev) < -(1 << 31))
    t = ts + (wraps + wrap_steps) * _U32_WRAP
    new_wraps = wraps + int(wrap_steps[-1])
    external = (addr & 0x8000) != 0
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["x"] = 127 - ((addr >> 1) & 0x7F)
    ev["y"] = 127 - ((addr >> 8) & 0x7F)
    ev["t"] = t
    ev["p"] = (addr & 1) == 0
    triggers = make_triggers(t[external], 0, TRIGGER_PULSE)
    if external.any():
        ev = ev[~external]
    return ev, triggers, new_wraps, int(ts[-1])


#: AEDAT 2.0 address layouts by chip-class key (longest match wins)
AEDAT2_LAYOUTS: dict[str, str] = {"dvs128": "dvs128", "tmpdiff128": "dvs128", "davis": "davis"}

IMU_ACCEL_LSB_PER_G = 8192.0
IMU_GYRO_LSB_PER_DPS = 65.5
IMU_TEMP_LSB_PER_C, IMU_TEMP_OFFSET_C = 340.0, 35.0


def aedat2_layout(chip: str | None, path: Path) -> tuple[str, SensorSize]:
    """(layout, sensor size) for an ``AEChip`` class name (None: DVS128)."""
    if chip is None:
        return "dvs128", SensorSize(128, 128)
    low = chip.lower()
    layout = next(
        (AEDAT2_LAYOUTS[k] for k in sorted(AEDAT2_LAYOUTS, key=len, reverse=True) if k in low), None
    )
    size = device_size(chip)
    if layout is None or size is None or (layout == "dvs128") != (size == SensorSize(128, 128)):
        raise UnsupportedFormat(
            f"AEDAT 2.0 chip class {chip!r} is not supported (DVS128 and DAVIS chips are)", path=path
        )
    return layout, size


def imu_from_raw(t: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """jAER IMU samples (``[N]`` us, ``[N, 7]`` int16 in word order) -> IMU_DTYPE, scaled."""
    out = np.empty(len(t), dtype=IMU_DTYPE)
    out["t"] = t
    r = raw.astype(np.float64)
    for j, name in enumerate(("accel_x", "accel_y", "accel_z")):
        out[name] = r[:, j] / IMU_ACCEL_LSB_PER_G
    out["temperature"] = r[:, 3] / IMU_TEMP_LSB_PER_C + IMU_TEMP_OFFSET_C
    for j, name in enumerate(("gyro_x", "gyro_y", "gyro_z")):
        out[name] = r[:, 4 + j] / IMU_GYRO_LSB_PER_DPS
    return out


class Aedat2Reader(_MappedReader):
    """AEDAT 2.0 (jAER) reader for the DVS128 and DAVIS address layouts; see the module docstring."""

    format_name = "aedat2"
    may_have_triggers = True

    def __init__(self, path) -> None:
        super().__init__(path)
        lines, self._start = read_header_lines(self._mm, self.path)
        if not lines or not lines[0].startswith("!AER-DAT2"):
            raise UnsupportedFormat("not an AEDAT 2.0 file (no #!AER-DAT2.0 line)", path=self.path)
        chip = next((ln.split(":", 1)[1].strip() for ln in lines if "AEChip:" in ln), None)
        self._layout, self._sensor_size = aedat2_layout(chip, self.path)
        body = self._size - self._start
        if body % 8:
            raise EventFileError(
                f"truncated: {body} data bytes after the header is not a whole number of 8-byte events",
                path=self.path,
            )
        self._n_raw = body // 8
        self._imu: np.ndarray | None = None
        self.metadata.update(
            camera=chip.rsplit(".", 1)[-1] if chip else "DVS128",
            header=lines[:20],
            address_layout=self._layout,
            n_imu_samples=0 if self._layout == "dvs128" else None,
        )

    def _all_chunk_events(self) -> int:
        return self._n_raw

    _decode_triggers = EventReader._triggers_from_a_pass

    def read_imu(self) -> np.ndarray:
        """The IMU samples of a DAVIS file (IMU_DTYPE, in file order; empty for DVS128)."""
        if self._layout == "dvs128":
            return np.empty(0, dtype=IMU_DTYPE)
        if self._imu is None:
            for _ in self._chunks(DEFAULT_CHUNK_EVENTS):
                pass
        return self._imu

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        if self._layout == "davis":
            yield from self._chunks_davis(chunk_events)
            return
        wraps, last_ts = 0, None
        triggers: list[np.ndarray] = []
        for i0 in range(0, self._n_raw, chunk_events):
            n = min(chunk_events, self._n_raw - i0)
            if _kernels.HAVE_NUMBA:
                ev = np.empty(n, dtype=EVENT_DTYPE)
                tr = empty_triggers(n)
                words = np.frombuffer(self._mm, dtype="<u4", count=2 * n, offset=self._start + 8 * i0)
                k, m, wraps, last = _kernels.decode_aedat2_dvs128(
                    words,
                    n,
                    wraps,
                    -1 if last_ts is None else last_ts,
                    ev["x"],
                    ev["y"],
                    ev["t"],
                    ev["p"],
                    tr["t"],
                    tr["value"],
                )
                last_ts = int(last)
                triggers.append(tr[:m])
                yield ev if k == n else ev[:k]
                continue
            raw = np.frombuffer(self._mm, dtype=">u4", count=2 * n, offset=self._start + 8 * i0).reshape(n, 2)
            ev, tr, wraps, last_ts = decode_dvs128_aedat2(raw, wraps, last_ts)
            triggers.append(tr)
            yield ev
        self._triggers = concat_triggers(triggers)

    def _chunks_davis(self, chunk_events: int) -> Iterator[np.ndarray]:
        kernel = _kernels.decode_aedat2_davis if _kernels.HAVE_NUMBA else _kernels._decode_aedat2_davis
        state = np.zeros(_kernels.DAVIS_STATE, dtype=np.int64)
        state[_kernels.DAVIS_LAST_TS] = -1
        height = int(self._sensor_size.height)
        triggers: list[np.ndarray] = []
        imu_t: list[np.ndarray] = []
        imu_raw: list[np.ndarray] = []
        for i0 in range(0, self._n_raw, chunk_events):
            n = min(chunk_events, self._n_raw - i0)
            ev = np.empty(n, dtype=EVENT_DTYPE)
            tr = empty_triggers(n)
            it = np.empty(n // 7 + 1, dtype=np.int64)
            ir = np.empty((n // 7 + 1, 7), dtype=np.int16)
            words = np.frombuffer(self._mm, dtype="<u4", count=2 * n, offset=self._start + 8 * i0)
            k, m, q = kernel(
                words, n, height, state, ev["x"], ev["y"], ev["t"], ev["p"], tr["t"], tr["value"], it, ir
            )
            triggers.append(tr[:m])
            imu_t.append(it[:q])
            imu_raw.append(ir[:q])
            yield ev if k == n else ev[:k]
        self._triggers = concat_triggers(triggers)
        self._imu = imu_from_raw(
            np.concatenate(imu_t) if imu_t else np.empty(0, np.int64),
            np.concatenate(imu_raw) if imu_raw else np.empty((0, 7), np.int16),
        )
        lost = int(state[_kernels.DAVIS_N_IMU_LOST] + state[_kernels.DAVIS_IMU_NEXT])
        self.metadata.update(
            n_imu_samples=len(self._imu),
            n_imu_lost_words=lost,
            n_aps_samples=int(state[_kernels.DAVIS_N_APS]),
        )


# --------------------------------------------------------------------------------------------------
# AEDAT 3.1
# --------------------------------------------------------------------------------------------------

_POLARITY_RAW = np.dtype([("data", "<u4"), ("ts", "<i4")])


def decode_polarity31(raw: np.ndarray, overflow: np.ndarray | int, all_valid: bool) -> np.ndarray:
    """Decode AEDAT 3.1 polarity events.

    Parameters
    ----------
    raw : np.ndarray
        ``[N]`` structured ``(data uint32, ts int32)`` records.
    overflow : int or np.ndarray
        ``eventTSOverflow`` of the packet, or one value per event ``[N]``.
    all_valid : bool
        Skip the per-event valid-bit filter (the packet header says all are valid).

    Returns
    -------
    np.ndarray
        EVENT_DTYPE ``[M]``, ``M <= N``; ``t`` in microseconds.
    """
    n = len(raw)
    ev = np.empty(n, dtype=EVENT_DTYPE)
    d = raw["data"]
    tmp = np.right_shift(d, 17)
    np.bitwise_and(tmp, 0x1FFF, out=tmp)
    ev["x"] = tmp
    np.right_shift(d, 2, out=tmp)
    np.bitwise_and(tmp, 0x1FFF, out=tmp)
    ev["y"] = tmp
    np.right_shift(d, 1, out=tmp)
    np.bitwise_and(tmp, 1, out=tmp)
    ev["p"] = tmp
    ev["t"] = raw["ts"]
    if np.any(overflow):
        ev["t"] |= np.left_shift(np.asarray(overflow, dtype=np.int64), 31)
    if not all_valid:
        ev = ev[(d & 1).astype(bool)]
    return ev


#: libcaer special event type -> (trigger channel, value); other types are no triggers
SPECIAL31_TRIGGERS: dict[int, tuple[int, int]] = {
    1: (TRIGGER_TIMESTAMP_RESET, TRIGGER_PULSE),
    2: (0, TRIGGER_RISING),
    3: (0, TRIGGER_FALLING),
    4: (0, TRIGGER_PULSE),
    6: (1, TRIGGER_RISING),
    7: (1, TRIGGER_FALLING),
    8: (1, TRIGGER_PULSE),
    9: (2, TRIGGER_RISING),
    10: (2, TRIGGER_FALLING),
    11: (2, TRIGGER_PULSE),
    12: (TRIGGER_GENERATOR, TRIGGER_RISING),
    13: (TRIGGER_GENERATOR, TRIGGER_FALLING),
    14: (TRIGGER_APS_FRAME, TRIGGER_RISING),
    15: (TRIGGER_APS_FRAME, TRIGGER_FALLING),
    16: (TRIGGER_APS_EXPOSURE, TRIGGER_RISING),
    17: (TRIGGER_APS_EXPOSURE, TRIGGER_FALLING),
}

_SPECIAL_CHANNEL, _SPECIAL_VALUE = trigger_lookup(SPECIAL31_TRIGGERS, 128)


def decode_special31(raw: np.ndarray, overflow: int) -> np.ndarray:
    """AEDAT 3.1 special events (``(data uint32, ts int32)`` records) -> TRIGGER_DTYPE.

    ``data``: bit 0 valid, bits 7-1 the type (libcaer's numbering, see ``SPECIAL31_TRIGGERS``).
    Invalid events and types that are no trigger (timestamp wraps, DVS row-only) are dropped.
    """
    d = raw["data"]
    code = (d >> 1) & 0x7F
    keep = ((d & 1) == 1) & (_SPECIAL_CHANNEL[code] >= 0)
    t = raw["ts"][keep].astype(np.int64) | (np.int64(overflow) << 31)
    return make_triggers(t, _SPECIAL_CHANNEL[code[keep]], _SPECIAL_VALUE[code[keep]])


class Aedat31Reader(_MappedReader):
    """AEDAT 3.1 (cAER / DV, DVS128 Gesture) reader; see the module docstring."""

    format_name = "aedat31"
    may_have_triggers = True

    def __init__(self, path) -> None:
        super().__init__(path)
        lines, self._start = read_header_lines(self._mm, self.path)
        if not lines or not lines[0].startswith("!AER-DAT3"):
            raise UnsupportedFormat("not an AEDAT 3.x file (no #!AER-DAT3.1 line)", path=self.path)
        if not lines[-1].startswith("!END-HEADER"):
            raise EventFileError(
                "header has no #!END-HEADER line (corrupt or truncated header)", path=self.path
            )
        sources = {}
        for ln in lines:
            m = re.match(r"-?Source (\d+):\s*(.*)", ln)
            if m and not ln.startswith("-"):
                sources[int(m.group(1))] = m.group(2).strip()
        self._specials: list[tuple[int, int, int, int]] = []  # (offset, n, source, tsOverflow)
        self._imu_counts: dict[int, int] = {}  # source -> valid IMU6 samples
        self._packets = self._scan_packets()
        source_id = self._packets[0][3] if self._packets else None
        camera = sources.get(source_id) if source_id is not None else None
        camera = camera or (next(iter(sources.values())) if sources else None)
        size = device_size(camera) if camera else None
        if size is not None:
            self._sensor_size = size
        exact = all(p[2] for p in self._packets)
        if source_id is None and self._specials:
            source_id = self._specials[0][2]
        self._specials = [sp for sp in self._specials if sp[2] == source_id]
        self.metadata.update(
            camera=camera,
            n_events=sum(p[1] for p in self._packets) if exact else None,
            n_packets=len(self._packets),
            n_imu_samples=self._imu_counts.get(source_id, 0),
            header=lines,
        )

    def _scan_packets(self) -> list[tuple[int, int, bool, int, int]]:
        """Polarity packets as (data offset, n events, all valid, source, tsOverflow); checks sizes."""
        mm, size, pos = self._mm, self._size, self._start
        out: list[tuple[int, int, bool, int, int]] = []
        first_source: int | None = None
        unpack = PACKET_HEADER.unpack_from
        while pos < size:
            if pos + PACKET_HEADER_BYTES > size:
                raise EventFileError(
                    f"truncated: packet header at byte {pos} needs 28 bytes, only {size - pos} remain",
                    path=self.path,
                )
            etype, source, esize, _tsoff, overflow, capacity, number, valid = unpack(mm, pos)
            if esize <= 0 or capacity < 0 or number < 0 or valid < 0 or number > capacity or valid > number:
                raise EventFileError(
                    f"corrupt packet header at byte {pos} (eventSize={esize}, capacity={capacity}, "
                    f"number={number}, valid={valid})",
                    path=self.path,
                )
            body = esize * capacity
            data = pos + PACKET_HEADER_BYTES
            if data + body > size:
                raise EventFileError(
                    f"truncated: packet at byte {pos} claims {body} bytes of events, only {size - data} remain",
                    path=self.path,
                )
            if etype == SPECIAL_EVENT and number:
                if esize != 8:
                    raise EventFileError(
                        f"special packet at byte {pos} has eventSize={esize}, expected 8", path=self.path
                    )
                if overflow < 0:
                    raise EventFileError(f"packet at byte {pos} has negative eventTSOverflow", path=self.path)
                self._specials.append((data, number, source, overflow))
            elif etype == IMU6_EVENT:
                self._imu_counts[source] = self._imu_counts.get(source, 0) + valid
            if etype == POLARITY_EVENT and number:
                if esize != 8:
                    raise EventFileError(
                        f"polarity packet at byte {pos} has eventSize={esize}, expected 8", path=self.path
                    )
                if overflow < 0:
                    raise EventFileError(f"packet at byte {pos} has negative eventTSOverflow", path=self.path)
                if first_source is None:
                    first_source = source
                if source == first_source:
                    out.append((data, number, valid == number, source, overflow))
            pos = data + body
        return out

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        batch: list[tuple[int, int, int, bool]] = []  # (offset, n, overflow, all_valid)
        n_batch = 0
        for offset, number, all_valid, _source, overflow in self._packets:
            i0 = 0
            while i0 < number:
                take = min(number - i0, chunk_events - n_batch)
                batch.append((offset + 8 * i0, take, overflow, all_valid))
                n_batch += take
                i0 += take
                if n_batch >= chunk_events:
                    yield self._decode_batch(batch)
                    batch, n_batch = [], 0
        if batch:
            yield self._decode_batch(batch)

    def _decode_batch(self, batch: list[tuple[int, int, int, bool]]) -> np.ndarray:
        if _kernels.HAVE_NUMBA:
            offsets = np.array([b[0] for b in batch], dtype=np.int64)
            counts = np.array([b[1] for b in batch], dtype=np.int64)
            overflows = np.array([b[2] for b in batch], dtype=np.int64)
            ev = np.empty(int(counts.sum()), dtype=EVENT_DTYPE)
            cols = (ev["x"], ev["y"], ev["t"], ev["p"])
            check_valid = not all(b[3] for b in batch)
            align = int(offsets[0]) % 4
            if len(offsets) and bool(np.all(offsets % 4 == align)):  # one uint32 view serves every packet
                words = np.frombuffer(self._mm, dtype="<u4", count=(self._size - align) // 4, offset=align)
                k = _kernels.decode_aedat31_words(
                    words, (offsets - align) // 4, counts, overflows, check_valid, *cols
                )
            else:
                k = _kernels.decode_aedat31(self._buf, offsets, counts, overflows, check_valid, *cols)
            return ev if k == len(ev) else ev[:k]
        views = [np.frombuffer(self._mm, dtype=_POLARITY_RAW, count=n, offset=off) for off, n, _, _ in batch]
        raw = views[0] if len(views) == 1 else np.concatenate(views)
        overflows = [ov for _, _, ov, _ in batch]
        if any(overflows):
            overflow: np.ndarray | int = np.repeat(
                np.asarray(overflows, dtype=np.int64), [n for _, n, _, _ in batch]
            )
        else:
            overflow = 0
        return decode_polarity31(raw, overflow, all(v for _, _, _, v in batch))

    def _decode_triggers(self) -> np.ndarray:
        """The special events of the event source that are triggers or timing markers."""
        parts = []
        for offset, number, _source, overflow in self._specials:
            raw = np.frombuffer(self._mm, dtype=_POLARITY_RAW, count=number, offset=offset)
            parts.append(decode_special31(raw, overflow))
        return concat_triggers(parts)

    def read_all(self) -> np.ndarray:
        """All polarity events, decoded in chunks straight into one preallocated array."""
        exact = self.metadata["n_events"]
        if exact is None:
            return super().read_all()
        if _kernels.HAVE_NUMBA:  # one fused decode + check pass straight into the result
            batch = [(off, n, ov, valid) for off, n, valid, _src, ov in self._packets]
            if not batch:
                return empty_events()
            offsets = np.array([b[0] for b in batch], dtype=np.int64)
            align = int(offsets[0]) % 4
            if bool(np.all(offsets % 4 == align)):
                counts = np.array([b[1] for b in batch], dtype=np.int64)
                overflows = np.array([b[2] for b in batch], dtype=np.int64)
                ev = np.empty(int(counts.sum()), dtype=EVENT_DTYPE)
                words = np.frombuffer(self._mm, dtype="<u4", count=(self._size - align) // 4, offset=align)
                w, h = int(self.sensor_size.width), int(self.sensor_size.height)
                k, ok = _kernels.decode_aedat31_words_checked(
                    words,
                    (offsets - align) // 4,
                    counts,
                    overflows,
                    not all(b[3] for b in batch),
                    w,
                    h,
                    np.iinfo(np.int64).min,
                    ev["x"],
                    ev["y"],
                    ev["t"],
                    ev["p"],
                )
                if ok:
                    return ev if k == len(ev) else ev[:k]
            ev = self._decode_batch(batch)  # misaligned packets, or a bad event to report
            return EventChecker(self.path, self.sensor_size)(ev)
        out = np.empty(exact, dtype=EVENT_DTYPE)
        i = 0
        for chunk in self.iter_chunks(DEFAULT_CHUNK_EVENTS * 4):
            out[i : i + len(chunk)] = chunk
            i += len(chunk)
        return out
