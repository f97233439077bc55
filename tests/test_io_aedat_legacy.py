"""AEDAT 2.0 and 3.1 files written byte by byte from the format description, read back exactly."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from dvsapp.core.errors import EventFileError, UnsupportedFormat
from dvsapp.core.events import EVENT_DTYPE, random_events
from dvsapp.core.io import open_events

HEADER_31 = (
    b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
    b"#Start-Time: 2017-01-01 00:00:00 (TZ+0000)\r\n#!END-HEADER\r\n"
)


def packet31(
    etype: int,
    events: bytes,
    *,
    size: int,
    n: int,
    overflow: int = 0,
    valid: int | None = None,
    capacity: int | None = None,
    source: int = 1,
) -> bytes:
    """One AEDAT 3.1 packet: the 28-byte header (spec field order) + event bytes."""
    capacity = n if capacity is None else capacity
    valid = n if valid is None else valid
    return struct.pack("<hhiiiiii", etype, source, size, 4, overflow, capacity, n, valid) + events


def polarity_bytes(x, y, t_low, p, valid=None) -> bytes:
    """8-byte polarity events: uint32 data (x<<17 | y<<2 | p<<1 | valid), int32 timestamp."""
    out = bytearray()
    for i in range(len(x)):
        v = 1 if valid is None else int(valid[i])
        data = (int(x[i]) << 17) | (int(y[i]) << 2) | (int(p[i]) << 1) | v
        out += struct.pack("<Ii", data, int(t_low[i]))
    return bytes(out)


def write31(path, events: np.ndarray, per_packet: int, *, special_every: int = 0) -> None:
    """A 3.1 file of polarity packets of ``per_packet`` events (plus optional special packets)."""
    with open(path, "wb") as fh:
        fh.write(HEADER_31)
        for k, i0 in enumerate(range(0, len(events), per_packet)):
            chunk = events[i0 : i0 + per_packet]
            overflow = int(chunk["t"][0]) >> 31
            assert (chunk["t"] >> 31 == overflow).all()
            body = polarity_bytes(chunk["x"], chunk["y"], chunk["t"] & 0x7FFFFFFF, chunk["p"])
            fh.write(packet31(1, body, size=8, n=len(chunk), overflow=overflow))
            if special_every and k % special_every == 0:
                fh.write(
                    packet31(0, struct.pack("<Ii", 0x7, 5), size=8, n=1)
                )  # special event packet: skipped


def dvs128_address(x: int, y: int, p: bool) -> int:
    """Raw jAER DVS128 address of a decoded (x, y, p): inverse of the documented decode."""
    return ((127 - y) << 8) | ((127 - x) << 1) | (0 if p else 1)


def write2(path, events: np.ndarray, t_raw: np.ndarray, extra: list[tuple[int, int, int]] = ()) -> None:
    """An AEDAT 2.0 file: header lines, then big-endian (address, timestamp) pairs."""
    with open(path, "wb") as fh:
        fh.write(b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n")
        fh.write(b"# Timestamps tick is 1 us\r\n# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n")
        rows = [
            (i, dvs128_address(int(e["x"]), int(e["y"]), bool(e["p"])), int(t_raw[i]))
            for i, e in enumerate(events)
        ]
        for pos, addr, ts in extra:
            rows.append((pos - 0.5, addr, ts))
        for _, addr, ts in sorted(rows):
            fh.write(struct.pack(">II", addr, ts))


def test_aedat31_multi_packet_round_trip(tmp_path):
    ev = random_events(5000, (128, 128), duration_us=3_000_000, seed=1)
    path = tmp_path / "user01_fluorescent.aedat"
    write31(path, ev, per_packet=333, special_every=4)
    r = open_events(path)
    assert r.metadata["format"] == "aedat31"
    assert r.metadata["camera"] == "DVS128"
    assert tuple(r.sensor_size) == (128, 128, 2)
    assert r.metadata["n_events"] == 5000
    out = r.read_all()
    assert out.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(out, ev)
    # streaming in small packets gives the same events
    got = np.concatenate([p.events for p in r.packets(max_events=700)])
    np.testing.assert_array_equal(got, ev)


def test_aedat31_timestamp_overflow_and_invalid_events(tmp_path):
    # events crossing the 31-bit boundary: packet header eventTSOverflow carries the high bits
    t = np.array([(1 << 31) - 3, (1 << 31) - 1, (1 << 31) + 0, (1 << 31) + 7, (3 << 31) + 5], dtype=np.int64)
    ev = np.zeros(5, dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = [0, 127, 5, 64, 3], [1, 2, 127, 0, 9], t, [1, 0, 1, 0, 1]
    path = tmp_path / "wrap.aedat"
    with open(path, "wb") as fh:
        fh.write(HEADER_31)
        # first packet: two valid events and one invalid one (valid bit 0), capacity larger than number
        body = polarity_bytes(
            [0, 99, 127],
            [1, 99, 2],
            [(1 << 31) - 3, (1 << 31) - 2, (1 << 31) - 1],
            [1, 1, 0],
            valid=[1, 0, 1],
        )
        body += b"\xff" * 16  # two unused slots (capacity 5, number 3)
        fh.write(packet31(1, body, size=8, n=3, valid=2, capacity=5, overflow=0))
        body = polarity_bytes([5, 64], [127, 0], [0, 7], [1, 0])
        fh.write(packet31(1, body, size=8, n=2, overflow=1))
        fh.write(packet31(1, polarity_bytes([3], [9], [5], [1]), size=8, n=1, overflow=3))
    out = open_events(path).read_all()
    np.testing.assert_array_equal(out, ev)


def test_aedat31_truncated_packet(tmp_path):
    ev = random_events(100, (128, 128), seed=2)
    path = tmp_path / "cut.aedat"
    write31(path, ev, per_packet=50)
    data = path.read_bytes()
    path.write_bytes(data[:-13])
    with pytest.raises(EventFileError, match="truncated"):
        open_events(path)


def test_aedat31_lying_capacity_does_not_allocate(tmp_path):
    path = tmp_path / "huge.aedat"
    path.write_bytes(HEADER_31 + packet31(1, b"", size=8, n=2**30, capacity=2**30))
    with pytest.raises(EventFileError, match="truncated"):
        open_events(path)


def test_aedat31_corrupt_header(tmp_path):
    path = tmp_path / "bad.aedat"
    path.write_bytes(HEADER_31 + struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, 2, 5, 5))  # number > capacity
    with pytest.raises(EventFileError, match="corrupt packet header"):
        open_events(path)
    path.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n" + b"\x00" * 40)  # no END-HEADER
    with pytest.raises(EventFileError, match="END-HEADER"):
        open_events(path)


def test_aedat2_dvs128_with_wraparound_and_special_events(tmp_path):
    ev = random_events(3000, (128, 128), duration_us=2_000_000, seed=3)
    # raw 32-bit timestamps start just below 2**32 and wrap around in the middle
    start = (1 << 32) - 1_000_000
    ev["t"] += start
    t_raw = ev["t"] & 0xFFFFFFFF
    path = tmp_path / "dvs128.aedat"
    write2(path, ev, t_raw, extra=[(10, 0x8000, int(t_raw[10])), (2000, 0x8001, int(t_raw[2000]))])
    r = open_events(path)
    assert r.metadata["format"] == "aedat2"
    assert tuple(r.sensor_size) == (128, 128, 2)
    out = r.read_all()
    np.testing.assert_array_equal(out, ev)
    # chunk boundaries do not lose the wrap state
    got = np.concatenate(list(r.iter_chunks(257)))
    np.testing.assert_array_equal(got, ev)


def test_aedat2_and_31_agree_on_the_same_scene(tmp_path):
    ev = random_events(500, (128, 128), seed=4)
    write2(tmp_path / "a.aedat", ev, ev["t"])
    write31(tmp_path / "b.aedat", ev, per_packet=100)
    np.testing.assert_array_equal(
        open_events(tmp_path / "a.aedat").read_all(), open_events(tmp_path / "b.aedat").read_all()
    )


def test_aedat2_documented_address_layout(tmp_path):
    # raw address 0x0000 = raw x 0, raw y 0, polarity bit 0 -> x=127, y=127, ON
    path = tmp_path / "one.aedat"
    path.write_bytes(
        b"#!AER-DAT2.0\r\n" + struct.pack(">II", 0x0000, 10) + struct.pack(">II", (5 << 8) | (3 << 1) | 1, 11)
    )
    out = open_events(path).read_all()
    assert out.tolist() == [(127, 127, 10, True), (124, 122, 11, False)]


def test_aedat2_truncated_and_other_chip(tmp_path):
    path = tmp_path / "t.aedat"
    path.write_bytes(b"#!AER-DAT2.0\r\n" + b"\x00" * 12)
    with pytest.raises(EventFileError, match="truncated"):
        open_events(path)
    path.write_bytes(b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.DAVIS240C\r\n" + b"\x00" * 16)
    with pytest.raises(UnsupportedFormat, match="DAVIS240C"):
        open_events(path)


def test_aedat31_misaligned_packets_and_numpy_fallback(tmp_path, monkeypatch):
    from dvsapp.core.io import _kernels

    ev = random_events(2000, (128, 128), seed=5)
    path = tmp_path / "mixed.aedat"
    with open(path, "wb") as fh:
        fh.write(HEADER_31)
        for k, i0 in enumerate(range(0, len(ev), 250)):
            c = ev[i0 : i0 + 250]
            fh.write(packet31(1, polarity_bytes(c["x"], c["y"], c["t"], c["p"]), size=8, n=len(c)))
            if k % 2 == 0:  # a packet of odd-sized events shifts the alignment of the next one
                fh.write(packet31(7, b"\x01\x02\x03", size=3, n=1))
    compiled = open_events(path).read_all()
    np.testing.assert_array_equal(compiled, ev)
    monkeypatch.setattr(_kernels, "HAVE_NUMBA", False)
    np.testing.assert_array_equal(open_events(path).read_all(), ev)
    np.testing.assert_array_equal(np.concatenate(list(open_events(path).iter_chunks(300))), ev)
    two = tmp_path / "two.aedat"
    write2(two, ev, ev["t"])
    np.testing.assert_array_equal(open_events(two).read_all(), ev)


def test_aedat31_bad_events_are_reported_by_index(tmp_path, monkeypatch):
    from dvsapp.core.io import _kernels

    ev = random_events(3000, (128, 128), duration_us=1_000_000, seed=5)
    unsorted = ev.copy()
    unsorted["t"][2100] = unsorted["t"][2099] - 1
    outside = ev.copy()
    outside["x"][1500] = 200  # DVS128 header: a 128x128 sensor
    cases = [
        (unsorted, f"event 2100 has t={int(unsorted['t'][2100])} us after t={int(unsorted['t'][2099])} us"),
        (outside, "event 1500 has x=200 outside the 128x128 sensor"),
    ]
    for numba_on in (True, False):
        monkeypatch.setattr(_kernels, "HAVE_NUMBA", numba_on and _kernels.check_events is not None)
        for k, (events, fragment) in enumerate(cases):
            path = tmp_path / f"bad{k}.aedat"
            write31(path, events, per_packet=700)
            with pytest.raises(EventFileError, match=fragment):
                open_events(path).read_all()
            with pytest.raises(EventFileError, match=fragment):
                list(open_events(path).packets(max_events=500))
