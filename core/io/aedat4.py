"""AEDAT 4.0 (iniVation DV) reading and writing.

Reading never hands the file's bytes to ``dv_processing`` (a fuzz run found its
``MonoCameraRecording`` hanging forever in native code on a mutated header).
Instead:

1. the IOHeader flatbuffer is parsed and bounds-checked here, field by field
   (the ``aedat`` package parses it *unchecked*), and its description XML is
   read with the standard library for stream types, sensor size and camera name;
2. the packet chain is walked once (8-byte headers only): every packet's
   claimed length must fit in the file before anything is allocated for it;
3. only then ``aedat.Decoder`` decodes the packets, streaming; the first event
   stream gives the events and the first trigger stream the triggers
   (``read_triggers()``); IMU and frame streams are skipped undecoded.

Trigger types (dv-processing's ``TriggerType``) map onto TRIGGER_DTYPE as
``EXTERNAL_SIGNAL_RISING_EDGE / FALLING_EDGE / PULSE`` -> channel 0, value
1 / 0 / 2; ``EXTERNAL_GENERATOR_*`` -> ``TRIGGER_GENERATOR``; ``APS_FRAME_START /
END`` -> ``TRIGGER_APS_FRAME`` rising / falling; ``APS_EXPOSURE_*`` ->
``TRIGGER_APS_EXPOSURE``; ``TIMESTAMP_RESET`` -> ``TRIGGER_TIMESTAMP_RESET``
(pulse).  Unknown types are dropped and counted (``n_unknown_triggers``).

Writing uses ``dv_processing.io.MonoCameraWriter`` (LZ4 compression) with an
event stream, plus a trigger stream when asked for (``with_triggers``), so files
open in DV, dv-processing and ``aedat`` alike.  The mapping above is inverted;
AEDAT 4 has one external-signal input, so every input channel is written as it.
Timestamps stay in microseconds as recorded (AEDAT 4 clocks are Unix time).
"""

from __future__ import annotations

import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dvsapp.core.errors import EventFileError, exception_text
from dvsapp.core.events import (
    EVENT_DTYPE,
    TRIGGER_APS_EXPOSURE,
    TRIGGER_APS_FRAME,
    TRIGGER_FALLING,
    TRIGGER_GENERATOR,
    TRIGGER_PULSE,
    TRIGGER_RISING,
    TRIGGER_TIMESTAMP_RESET,
    SensorSize,
    concat,
    concat_triggers,
    empty_events,
    make_triggers,
    trigger_lookup,
)
from dvsapp.core.io import _kernels
from dvsapp.core.io.base import EventChecker, EventReader

MAGIC = b"#!AER-DAT4.0\r\n"
MAX_HEADER_BYTES = 16 << 20
"""Largest IOHeader accepted (real ones hold a few KB of XML)."""

_COMPRESSIONS = ("none", "lz4", "lz4_high", "zstd", "zstd_high")
_STREAM_TYPES = {"EVTS": "events", "FRME": "frame", "IMUS": "imus", "TRIG": "triggers"}


@dataclass
class Aedat4Header:
    """What the IOHeader of an AEDAT 4 file states (all of it bounds-checked)."""

    compression: str
    data_table_position: int
    description: str
    data_start: int
    streams: dict[int, dict] = field(default_factory=dict)


class _Flat:
    """Bounds-checked reads in a flatbuffer; any violation raises EventFileError."""

    def __init__(self, buf: bytes, path: Path) -> None:
        self.buf = buf
        self.path = path

    def fail(self, what: str) -> None:
        raise EventFileError(f"corrupt AEDAT 4 header: {what}", path=self.path)

    def unpack(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.buf):
            self.fail(f"offset {pos} outside the {len(self.buf)}-byte header")
        return struct.unpack_from(fmt, self.buf, pos)[0]

    def table_fields(self, table: int) -> tuple[list[int], int]:
        """Field offsets (0 = absent) of the table at ``table`` and its inline size."""
        vtable = table - self.unpack("<i", table)
        vt_size = self.unpack("<H", vtable)
        table_size = self.unpack("<H", vtable + 2)
        if vt_size < 4 or vt_size % 2 or vtable + vt_size > len(self.buf):
            self.fail("bad vtable")
        if table_size < 4 or table + table_size > len(self.buf):
            self.fail("bad table size")
        offsets = [self.unpack("<H", vtable + 4 + 2 * i) for i in range((vt_size - 4) // 2)]
        return offsets, table_size

    def field(self, table: int, offsets: list[int], table_size: int, index: int, fmt: str):
        """The scalar ``index`` of a table (None when absent), inside the table's inline bytes."""
        if index >= len(offsets) or offsets[index] == 0:
            return None
        off = offsets[index]
        if off < 4 or off + struct.calcsize(fmt) > table_size:
            self.fail(f"field {index} outside its table")
        return self.unpack(fmt, table + off)

    def string(self, table: int, offsets: list[int], table_size: int, index: int) -> str | None:
        rel = self.field(table, offsets, table_size, index, "<I")
        if rel is None:
            return None
        start = table + offsets[index] + rel
        length = self.unpack("<I", start)
        end = start + 4 + length
        if end >= len(self.buf) or self.buf[end] != 0:  # flatbuffer strings are NUL-terminated
            self.fail(f"description string of {length} bytes runs past the header")
        try:
            return self.buf[start + 4 : end].decode("utf-8")
        except UnicodeDecodeError:
            self.fail("description is not UTF-8")
        return None  # pragma: no cover - fail() raised


def read_header(path: Path, file_size: int) -> Aedat4Header:
    """Parse and check the magic, IOHeader flatbuffer and description XML of ``path``.

    Raises
    ------
    EventFileError
        Anything out of bounds, inconsistent or missing (one line naming the file).
    """
    with open(path, "rb") as fh:
        head = fh.read(len(MAGIC) + 4)
        if len(head) < len(MAGIC) + 4 or not head.startswith(MAGIC):
            raise EventFileError("not an AEDAT 4 file (bad magic line or truncated)", path=path)
        (length,) = struct.unpack("<I", head[len(MAGIC) :])
        room = file_size - len(head)
        if length > room or length > MAX_HEADER_BYTES:
            raise EventFileError(
                f"AEDAT 4 header claims {length} bytes but the file has {room} left", path=path
            )
        buf = fh.read(length)
    flat = _Flat(buf, path)
    if length < 8:
        flat.fail(f"{length}-byte IOHeader")
    root = flat.unpack("<I", 0)
    offsets, table_size = flat.table_fields(root)
    compression = flat.field(root, offsets, table_size, 0, "<i")
    compression = 0 if compression is None else compression
    if not 0 <= compression < len(_COMPRESSIONS):
        flat.fail(f"unknown compression {compression}")
    position = flat.field(root, offsets, table_size, 1, "<q")
    position = -1 if position is None else position
    description = flat.string(root, offsets, table_size, 2)
    if not description:
        flat.fail("no description")
    header = Aedat4Header(_COMPRESSIONS[compression], position, description, len(MAGIC) + 4 + length)
    header.streams = _parse_description(description, path)
    return header


def _parse_description(text: str, path: Path) -> dict[int, dict]:
    """Stream id -> {type, width, height, camera} from the header's XML (no DTD, no entities)."""
    if "<!" in text:  # DOCTYPE / ENTITY / CDATA: never found in DV headers, refuse entity expansion
        raise EventFileError("corrupt AEDAT 4 header: XML declarations are not allowed", path=path)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise EventFileError(f"corrupt AEDAT 4 header XML: {exc}", path=path) from None
    out_info = None
    if root.tag == "dv":
        out_info = next((n for n in root if n.tag == "node" and n.get("name") == "outInfo"), None)
    if out_info is None:
        raise EventFileError("corrupt AEDAT 4 header: no outInfo node", path=path)
    streams: dict[int, dict] = {}
    for node in out_info:
        if node.tag != "node":
            continue
        name = node.get("name", "")
        if not name.isdigit() or len(name) > 9 or int(name) in streams:
            raise EventFileError(f"corrupt AEDAT 4 header: bad stream id {name[:20]!r}", path=path)
        attrs = {a.get("key"): (a.text or "").strip() for a in node if a.tag == "attr"}
        kind = _STREAM_TYPES.get(attrs.get("typeIdentifier", ""))
        info = next((n for n in node if n.tag == "node" and n.get("name") == "info"), None)
        info_attrs = (
            {} if info is None else {a.get("key"): (a.text or "").strip() for a in info if a.tag == "attr"}
        )
        entry: dict = {"type": kind or "unknown", "camera": info_attrs.get("source") or None}
        if kind in ("events", "frame"):
            try:
                entry["width"], entry["height"] = int(info_attrs["sizeX"]), int(info_attrs["sizeY"])
            except (KeyError, ValueError):
                raise EventFileError(
                    f"corrupt AEDAT 4 header: stream {name} has no valid sizeX/sizeY", path=path
                ) from None
            if not (0 < entry["width"] <= 65535 and 0 < entry["height"] <= 65535):
                raise EventFileError(
                    f"corrupt AEDAT 4 header: stream {name} size {entry['width']}x{entry['height']}",
                    path=path,
                )
        streams[int(name)] = entry
    if not streams:
        raise EventFileError("corrupt AEDAT 4 header: no stream described", path=path)
    return streams


def check_packets(path: Path, header: Aedat4Header, file_size: int) -> tuple[int, EventFileError | None]:
    """Walk the packet chain (headers only) as ``aedat`` will.

    Returns ``(n_good, damage)``: the number of packets at the start of the file
    whose claimed length fits in the file and whose stream the header describes,
    and the error describing the first packet that does not (``None`` for a
    sound file).  Readers decode only the ``n_good`` packets, so ``aedat`` never
    allocates for a claimed length the file does not hold, and a truncated
    recording still gives every event before the cut before it raises ``damage``.
    """
    pos = header.data_start
    stop = header.data_table_position
    n = 0

    def damaged(message: str) -> tuple[int, EventFileError]:
        return n, EventFileError(message, path=path)

    with open(path, "rb") as fh:
        while True:
            if stop > -1 and pos == stop:
                end = _data_table_end(fh, pos, header.compression, file_size)
                if end != file_size:
                    where = (
                        "its framing is broken"
                        if end < 0
                        else f"it ends at byte {end}, the file at {file_size}"
                    )
                    return damaged(f"truncated or corrupt AEDAT 4 data table at byte {pos} ({where})")
                return n, None
            left = file_size - pos
            if left < 4 and stop == -1:
                if left:
                    return damaged(f"truncated AEDAT 4 data: {left} stray bytes at the end")
                return n, None
            if left < 8:
                return damaged(f"truncated AEDAT 4 data: packet header at byte {pos} is cut")
            fh.seek(pos)
            stream_id, length = struct.unpack("<II", fh.read(8))
            if length > left - 8:
                return damaged(
                    f"truncated AEDAT 4 data: packet at byte {pos} claims {length} bytes, {left - 8} left"
                )
            if stream_id not in header.streams:
                return damaged(f"corrupt AEDAT 4 data: packet at byte {pos} of unknown stream {stream_id}")
            pos += 8 + length
            n += 1


def _data_table_end(fh, pos: int, compression: str, file_size: int) -> int:
    """Byte offset where the file's data table (at ``pos``) ends, from its framing alone.

    The table is a size-prefixed flatbuffer, compressed like the packets; this
    walks the LZ4 / Zstandard frame's block headers without decompressing, so a
    file cut inside the table is noticed.  Returns ``-1`` when the framing is broken.
    """

    def read(at: int, n: int) -> bytes:
        if at < 0 or at + n > file_size:
            raise IndexError
        fh.seek(at)
        return fh.read(n)

    try:
        if compression == "none":
            return pos + 4 + struct.unpack("<I", read(pos, 4))[0]
        if compression.startswith("lz4"):
            if read(pos, 4) != b"\x04\x22\x4d\x18":
                return -1
            flg = read(pos + 4, 1)[0]
            at = pos + 4 + 2 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0) + 1
            while True:
                (block,) = struct.unpack("<I", read(at, 4))
                at += 4
                if block == 0:
                    return at + (4 if flg & 0x04 else 0)
                at += (block & 0x7FFFFFFF) + (4 if flg & 0x10 else 0)
        if read(pos, 4) != b"\x28\xb5\x2f\xfd":
            return -1
        fhd = read(pos + 4, 1)[0]
        single = bool(fhd & 0x20)
        fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
        at = pos + 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 0x03] + fcs
        while True:
            raw = read(at, 3)
            value = raw[0] | raw[1] << 8 | raw[2] << 16
            kind, size = (value >> 1) & 0x3, value >> 3
            if kind == 3:
                return -1
            at += 3 + (1 if kind == 1 else size)
            if value & 1:
                return at + (4 if fhd & 0x04 else 0)
    except IndexError:
        return -1


_PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)
"""Exceptions never turned into EventFileError (everything else the decoder raises is)."""


#: dv-processing TriggerType value -> (channel, value) of TRIGGER_DTYPE
DV_TRIGGER_TYPES: dict[int, tuple[int, int]] = {
    0: (TRIGGER_TIMESTAMP_RESET, TRIGGER_PULSE),
    1: (0, TRIGGER_RISING),
    2: (0, TRIGGER_FALLING),
    3: (0, TRIGGER_PULSE),
    4: (TRIGGER_GENERATOR, TRIGGER_RISING),
    5: (TRIGGER_GENERATOR, TRIGGER_FALLING),
    6: (TRIGGER_APS_FRAME, TRIGGER_RISING),
    7: (TRIGGER_APS_FRAME, TRIGGER_FALLING),
    8: (TRIGGER_APS_EXPOSURE, TRIGGER_RISING),
    9: (TRIGGER_APS_EXPOSURE, TRIGGER_FALLING),
}
_DV_CHANNEL, _DV_VALUE = trigger_lookup(DV_TRIGGER_TYPES, 256)
MARKER_CHANNELS = (TRIGGER_GENERATOR, TRIGGER_APS_FRAME, TRIGGER_APS_EXPOSURE, TRIGGER_TIMESTAMP_RESET)


def dv_trigger_type(channel: int, value: int) -> int:
    """TRIGGER_DTYPE (channel, value) -> dv-processing TriggerType value (inputs: the external signal)."""
    if channel == TRIGGER_TIMESTAMP_RESET:
        return 0
    if channel in (TRIGGER_GENERATOR, TRIGGER_APS_FRAME, TRIGGER_APS_EXPOSURE):
        base = {TRIGGER_GENERATOR: 4, TRIGGER_APS_FRAME: 6, TRIGGER_APS_EXPOSURE: 8}[channel]
        return base + (1 if value == TRIGGER_FALLING else 0)
    return {TRIGGER_RISING: 1, TRIGGER_FALLING: 2}.get(int(value), 3)


def _triggers_from_aedat(parts: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """``aedat`` trigger records (t u8, source u1) -> (TRIGGER_DTYPE, count of unknown types)."""
    if not parts:
        return concat_triggers([]), 0
    raw = np.concatenate(parts) if len(parts) > 1 else parts[0]
    code = raw["source"].astype(np.intp)
    known = _DV_CHANNEL[code] >= 0
    out = make_triggers(raw["t"][known].astype(np.int64), _DV_CHANNEL[code[known]], _DV_VALUE[code[known]])
    return out, int(len(raw) - known.sum())


def _from_aedat(arr: np.ndarray) -> np.ndarray:
    """``aedat`` event records (t u8, x u2, y u2, on bool) -> EVENT_DTYPE."""
    ev = np.empty(len(arr), dtype=EVENT_DTYPE)
    ev["x"] = arr["x"]
    ev["y"] = arr["y"]
    ev["t"] = arr["t"]
    ev["p"] = arr["on"]
    return ev


class Aedat4Reader(EventReader):
    """AEDAT 4.0 reader: events of the first event stream; other streams skipped.

    ``metadata`` adds ``streams`` (stream id -> type), ``compression`` and
    ``n_packets``; ``camera`` is the event stream's ``source`` attribute.
    ``duration_us`` stays None (known after a full read, see ``dvsapp.core.io.info``).
    """

    format_name = "aedat4"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        size = self.path.stat().st_size
        header = read_header(self.path, size)
        event_ids = sorted(i for i, s in header.streams.items() if s["type"] == "events")
        if not event_ids:
            raise EventFileError("AEDAT 4 file holds no event stream", path=self.path)
        n_packets, self._damage = check_packets(self.path, header, size)
        try:
            streams = self._decoder().id_to_stream()
        except _PASS_THROUGH:
            raise
        except BaseException as exc:  # also Rust panics (pyo3's PanicException is a BaseException)
            raise EventFileError(
                f"cannot read the AEDAT 4 header: {exception_text(exc)}", path=self.path
            ) from None
        self._stream_id = event_ids[0]
        trigger_ids = sorted(i for i, s in header.streams.items() if s["type"] == "triggers")
        self._trigger_id = trigger_ids[0] if trigger_ids else None
        self.may_have_triggers = self._trigger_id is not None
        info = header.streams[self._stream_id]
        if streams.get(self._stream_id, {}).get("type") != "events":  # pragma: no cover - parsers disagree
            raise EventFileError("AEDAT 4 header streams are inconsistent", path=self.path)
        self._sensor_size = SensorSize(info["width"], info["height"])
        self.metadata.update(
            camera=info["camera"],
            streams={k: v["type"] for k, v in header.streams.items()},
            compression=header.compression,
            n_packets=n_packets,
        )
        if self._damage is not None:
            self.metadata["damage"] = str(self._damage)

    def _good_packets(self):
        """The decoder's packets, stopping before the first damaged one (see :func:`check_packets`)."""
        decoder = self._decoder()
        for _ in range(self.metadata["n_packets"]):
            try:
                yield next(decoder)
            except StopIteration:
                return

    def _decoder(self):
        import aedat

        return aedat.Decoder(str(self.path))

    def _keep_triggers(self, parts: list[np.ndarray]) -> None:
        self._triggers, unknown = _triggers_from_aedat(parts)
        self.metadata["n_unknown_triggers"] = unknown

    def _decoded(self) -> Iterator[dict]:
        """:meth:`_good_packets`, anything the decoder raises (Rust panics too) as one ``EventFileError``."""
        try:
            yield from self._good_packets()
        except (EventFileError, *_PASS_THROUGH):
            raise
        except BaseException as exc:
            raise EventFileError(f"corrupt AEDAT 4 data: {exception_text(exc)}", path=self.path) from None

    def _decode_triggers(self) -> np.ndarray:
        """The first trigger stream's triggers (only its packets are converted)."""
        parts: list[np.ndarray] = []
        if self._trigger_id is not None:
            for packet in self._decoded():
                if packet.get("stream_id") == self._trigger_id and "triggers" in packet:
                    parts.append(packet["triggers"])
            if self._damage is not None:
                raise self._damage
        self._keep_triggers(parts)
        return self._triggers

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        parts: list[np.ndarray] = []
        triggers: list[np.ndarray] = []
        n = 0
        for packet in self._decoded():
            if packet.get("stream_id") == self._trigger_id and "triggers" in packet:
                triggers.append(packet["triggers"])
                continue
            if packet.get("stream_id") != self._stream_id or "events" not in packet:
                continue
            ev = packet["events"]
            parts.append(ev)
            n += len(ev)
            if n >= chunk_events:
                yield _from_aedat(np.concatenate(parts) if len(parts) > 1 else parts[0])
                parts, n = [], 0
        if parts:
            yield _from_aedat(np.concatenate(parts) if len(parts) > 1 else parts[0])
        if self._damage is not None:  # every event before the damage has been delivered
            raise self._damage
        self._keep_triggers(triggers)

    def read_all(self) -> np.ndarray:
        """All events: packets concatenated once, then one fused convert + check pass."""
        parts: list[np.ndarray] = []
        triggers: list[np.ndarray] = []
        for packet in self._decoded():
            if packet.get("stream_id") == self._stream_id and "events" in packet:
                parts.append(packet["events"])
            elif packet.get("stream_id") == self._trigger_id and "triggers" in packet:
                triggers.append(packet["triggers"])
        if self._damage is not None:
            raise self._damage
        self._keep_triggers(triggers)
        if not parts:
            return empty_events()
        raw = np.concatenate(parts) if len(parts) > 1 else parts[0]
        w, h = self.sensor_size.width, self.sensor_size.height
        ev = _kernels.to_events_checked(raw["t"], raw["x"], raw["y"], raw["on"], w, h)
        if ev is not None:
            return ev
        return EventChecker(self.path, self.sensor_size)(_from_aedat(raw))


class Aedat4Writer:
    """Streaming AEDAT 4 writer (``dv_processing.io.MonoCameraWriter``, LZ4).

    Parameters
    ----------
    path : Path
        Destination (the caller handles temp files and renaming).
    sensor_size : SensorSize
        Written as the event stream's resolution.
    camera : str
        Camera name stored in the file's info node.
    with_triggers : bool
        Add a trigger stream (then :meth:`write_triggers` may be called).
    """

    def __init__(
        self, path: Path, sensor_size: SensorSize, camera: str = "dvsapp", *, with_triggers: bool = False
    ) -> None:
        import dv_processing as dv

        self._dv = dv
        resolution = (int(sensor_size[0]), int(sensor_size[1]))
        if with_triggers:
            config = dv.io.MonoCameraWriter.Config(camera)
            config.addEventStream(resolution)
            config.addTriggerStream()
        else:
            config = dv.io.MonoCameraWriter.EventOnlyConfig(camera, resolution)
        self.holds_triggers = with_triggers
        self._writer = dv.io.MonoCameraWriter(str(path), config)

    def write(self, events: np.ndarray) -> None:
        if not len(events):
            return
        store = self._dv.EventStore()
        push = store.push_back
        for t, x, y, p in zip(
            events["t"].tolist(),
            events["x"].tolist(),
            events["y"].tolist(),
            events["p"].tolist(),
            strict=True,
        ):
            push(t, x, y, p)
        self._writer.writeEvents(store)

    def write_triggers(self, triggers: np.ndarray) -> None:
        """Append TRIGGER_DTYPE triggers (sorted) to the trigger stream, mapped as the module says."""
        if not len(triggers):
            return
        dv = self._dv
        vec = dv.TriggerPacket.TriggersVector()
        for t, ch, val in zip(
            triggers["t"].tolist(), triggers["channel"].tolist(), triggers["value"].tolist(), strict=True
        ):
            vec.append(dv.Trigger(t, dv.TriggerType(dv_trigger_type(ch, val))))
        self._writer.writeTriggerPacket(dv.TriggerPacket(vec))

    def close(self) -> None:
        # the writer flushes and finalises the file (data table) when destroyed
        del self._writer


def read_with_dv_processing(path: str | os.PathLike) -> np.ndarray:
    """All events via ``dv_processing`` (cross-checks files *we* wrote, and benchmarks).

    Never call it on untrusted files: ``MonoCameraRecording`` can hang on a corrupt header.
    """
    import dv_processing as dv

    rec = dv.io.MonoCameraRecording(str(path))
    parts = []
    while True:
        batch = rec.getNextEventBatch()
        if batch is None:
            break
        arr = batch.numpy()
        ev = np.empty(len(arr), dtype=EVENT_DTYPE)
        ev["x"], ev["y"], ev["t"], ev["p"] = arr["x"], arr["y"], arr["timestamp"], arr["polarity"]
        parts.append(ev)
    return concat(parts) if parts else empty_events()
