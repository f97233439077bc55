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
    # the external (sync) input events are the triggers, on the unwrapped clock
    assert r.read_triggers().tolist() == [(int(ev["t"][10]), 0, 2), (int(ev["t"][2000]), 0, 2)]
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
    path.write_bytes(
        b"#!AER-DAT2.0\r\n# AEChip: ch.unizh.ini.jaer.chip.cochlea.CochleaAMS1c\r\n" + b"\x00" * 16
    )
    with pytest.raises(UnsupportedFormat, match="CochleaAMS1c.*DVS128 and DAVIS"):
        open_events(path)
    path.write_bytes(b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.DAVIS999\r\n" + b"\x00" * 16)
    with pytest.raises(UnsupportedFormat, match="DAVIS999"):  # a DAVIS of unknown size
        open_events(path)


DAVIS_HEADER = b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.Davis346B\r\n"


def davis_word_dvs(x: int, raw_y: int, on: bool) -> int:
    return (raw_y << 22) | (x << 12) | (int(on) << 11)


def davis_word_imu(code: int, value: int) -> int:
    return (1 << 31) | (code << 28) | ((value & 0xFFFF) << 12) | (3 << 10)


def test_aedat2_davis346_layout_imu_aps_and_external_events(tmp_path):
    """Byte-built DAVIS346 file: every word kind, chunk edges inside IMU samples."""
    rng = np.random.default_rng(8)
    rows, want_ev, want_tr, want_imu = [], [], [], []
    t = 1000
    for k in range(400):
        t += int(rng.integers(0, 50))
        kind = k % 10
        if kind < 6:
            x, raw_y, on = int(rng.integers(0, 346)), int(rng.integers(0, 260)), bool(rng.integers(0, 2))
            rows.append((davis_word_dvs(x, raw_y, on), t))
            want_ev.append((x, 259 - raw_y, t, on))
        elif kind == 6:  # one IMU sample: 7 words of one timestamp
            values = rng.integers(-32768, 32768, 7)
            rows += [(davis_word_imu(c, int(v)), t) for c, v in enumerate(values)]
            want_imu.append((t, *values.tolist()))
        elif kind == 7:  # APS ADC samples: skipped, counted
            rows += [((1 << 31) | (5 << 22) | (7 << 12) | (1 << 10), t)] * 3
        elif kind == 8:  # external input: falling, rising, pulse, and an older jAER's edge-less word
            code = [2, 3, 4, 0][k // 10 % 4]
            rows.append(((1 << 10) | code, t))
            want_tr.append((t, 0, {2: 0, 3: 1, 4: 2, 0: 2}[code]))
        else:  # an incomplete IMU sample (4 of 7 words) is counted as lost
            rows += [(davis_word_imu(c, 1), t) for c in range(4)]
    rec = np.array(rows, dtype=[("a", ">u4"), ("t", ">u4")])
    path = tmp_path / "davis346.aedat"
    path.write_bytes(DAVIS_HEADER + rec.tobytes())
    r = open_events(path)
    assert tuple(r.sensor_size) == (346, 260, 2) and r.metadata["camera"] == "Davis346B"
    ev = r.read_all()
    assert ev.tolist() == want_ev
    assert r.read_triggers().tolist() == want_tr
    imu = r.read_imu()
    assert len(imu) == len(want_imu) == r.metadata["n_imu_samples"] == 40
    assert r.metadata["n_aps_samples"] == 3 * 40 and r.metadata["n_imu_lost_words"] == 4 * 40
    raw = np.array([w[1:] for w in want_imu], dtype=np.float64)
    np.testing.assert_array_equal(imu["t"], [w[0] for w in want_imu])
    np.testing.assert_allclose(imu["accel_x"], raw[:, 0] / 8192, rtol=1e-6)
    np.testing.assert_allclose(imu["temperature"], raw[:, 3] / 340 + 35, rtol=1e-6)
    np.testing.assert_allclose(imu["gyro_z"], raw[:, 6] / 65.5, rtol=1e-6)
    for chunk in (1, 5, 7, 33):  # chunk edges fall inside IMU samples
        r2 = open_events(path)
        np.testing.assert_array_equal(np.concatenate(list(r2.iter_chunks(chunk))), ev)
        np.testing.assert_array_equal(r2.read_imu(), imu)
        np.testing.assert_array_equal(r2.read_triggers(), r.read_triggers())


def test_aedat2_davis_plain_python_kernel_agrees(tmp_path, monkeypatch):
    from dvsapp.core.io import _kernels

    rec = np.array(
        [(davis_word_dvs(i % 346, i % 260, i % 3 == 0), 10 * i) for i in range(300)]
        + [(davis_word_imu(c, c * 100 - 300), 3000) for c in range(7)],
        dtype=[("a", ">u4"), ("t", ">u4")],
    )
    path = tmp_path / "d.aedat"
    path.write_bytes(DAVIS_HEADER + rec.tobytes())
    compiled = open_events(path)
    ev, imu = compiled.read_all(), compiled.read_imu()
    monkeypatch.setattr(_kernels, "HAVE_NUMBA", False)
    plain = open_events(path)
    np.testing.assert_array_equal(plain.read_all(), ev)
    np.testing.assert_array_equal(plain.read_imu(), imu)
    assert len(ev) == 300 and len(imu) == 1


def test_davis240c_aedat2_equals_aedattools_decode(shared_data):
    """The real DAVIS240C file against iniLabs AedatTools' .mat (which omits the first DVS event)."""
    scipy_io = pytest.importorskip("scipy.io")
    r = open_events(shared_data / "davis240c_aedat2_rotdisk.aedat")
    assert r.metadata["camera"] == "DAVIS240C" and tuple(r.sensor_size) == (240, 180, 2)
    ev = r.read_all()
    assert len(ev) == 374_296 and int(ev["p"].sum()) == 163_098
    assert r.metadata["n_imu_samples"] == 7_384 and r.metadata["n_aps_samples"] == 0
    assert (int(ev["t"][0]), int(ev["t"][-1])) == (341_678, 3_508_437)
    mat = scipy_io.loadmat(
        shared_data / "davis240c_aedat2_rotdisk_aedattools.mat", squeeze_me=True, struct_as_record=False
    )["output"].data
    pol = mat.polarity
    assert pol.numEvents == len(ev) - 1
    np.testing.assert_array_equal(ev["x"][1:], pol.x)
    np.testing.assert_array_equal(179 - ev["y"][1:], pol.y)  # jAER's y points up; ours down
    np.testing.assert_array_equal(ev["p"][1:], pol.polarity.astype(bool))
    np.testing.assert_array_equal(ev["t"][1:], pol.timeStamp)
    imu, ref = r.read_imu(), mat.imu6
    assert len(imu) == ref.numEvents == 7_384
    np.testing.assert_array_equal(imu["t"], ref.timeStamp)
    for ours, theirs in (
        ("accel_x", "accelX"),
        ("accel_y", "accelY"),
        ("accel_z", "accelZ"),
        ("temperature", "temperature"),
        ("gyro_x", "gyroX"),
        ("gyro_y", "gyroY"),
        ("gyro_z", "gyroZ"),
    ):
        np.testing.assert_allclose(imu[ours], getattr(ref, theirs), rtol=1e-6, atol=1e-6)
    assert len(r.read_triggers()) == 0


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
