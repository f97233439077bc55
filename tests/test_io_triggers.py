"""Triggers as data: decoded from EVT 2.0/3.0, AEDAT 4 and AEDAT 3.1, kept by the writers that hold them."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from dvsapp.core.errors import EventFileError, UnsupportedFormat
from dvsapp.core.events import (
    TRIGGER_APS_EXPOSURE,
    TRIGGER_APS_FRAME,
    TRIGGER_DTYPE,
    TRIGGER_GENERATOR,
    TRIGGER_TIMESTAMP_RESET,
    SensorSize,
    make_triggers,
    random_events,
)
from dvsapp.core.io import _kernels, open_events, open_writer, write_events
from dvsapp.core.io.convert import convert
from tests.test_io_aedat_legacy import HEADER_31, packet31, polarity_bytes


def _evt2_file(path, words: list[int]) -> None:
    path.write_bytes(b"% evt 2.0\n% geometry 640x480\n% end\n" + np.asarray(words, dtype="<u4").tobytes())


def _evt2_cd(on: bool, t_low: int, x: int, y: int) -> int:
    return (int(on) << 28) | (t_low << 22) | (x << 11) | y


def _evt2_trigger(t_low: int, channel: int, value: int) -> int:
    return (0xA << 28) | (t_low << 22) | (channel << 8) | value


@pytest.mark.parametrize("compiled", [True, False])
def test_evt2_trigger_words(tmp_path, monkeypatch, compiled):
    words = [
        _evt2_trigger(1, 3, 1),  # before the first TIME HIGH: no time base, dropped
        0x8 << 28 | 100,
        _evt2_cd(True, 5, 10, 20),
        _evt2_trigger(7, 3, 1),
        0xD << 28 | 12345,  # an IMU word and its continuation: skipped
        0xF << 28 | 1,
        0x8 << 28 | 101,
        _evt2_trigger(0, 17, 0),
        _evt2_cd(False, 63, 11, 21),
    ]
    path = tmp_path / "t.raw"
    _evt2_file(path, words)
    monkeypatch.setattr(_kernels, "HAVE_NUMBA", compiled)
    r = open_events(path)
    assert r.read_all().tolist() == [(10, 20, 100 * 64 + 5, True), (11, 21, 101 * 64 + 63, False)]
    assert r.read_triggers().tolist() == [(100 * 64 + 7, 3, 1), (101 * 64, 17, 0)]
    # a second reader, streaming in chunks of 2 words: the same triggers from that pass
    r2 = open_events(path)
    assert sum(len(c) for c in r2.iter_chunks(2)) == 2
    np.testing.assert_array_equal(r2.read_triggers(), r.read_triggers())


def test_many_evt2_triggers_across_kernel_calls(tmp_path):
    n = 70_000  # more than one kernel call's trigger slots
    words = [0x8 << 28 | 1] + [_evt2_trigger(5, i % 32, i % 2) for i in range(n)] + [_evt2_cd(True, 63, 1, 1)]
    path = tmp_path / "many.raw"
    _evt2_file(path, words)
    r = open_events(path)
    assert len(r.read_all()) == 1
    tr = r.read_triggers()
    assert len(tr) == n and tr["channel"].tolist()[:3] == [0, 1, 2]


def test_aedat4_trigger_stream_of_the_davis346_file(shared_data):
    import aedat

    path = shared_data / "davis346_aestream.aedat4"
    r = open_events(path)
    assert len(r.read_all()) == 117_667
    tr = r.read_triggers()
    ref = np.concatenate([p["triggers"] for p in aedat.Decoder(str(path)) if "triggers" in p])
    assert len(tr) == len(ref) == 15 == r.metadata["n_triggers"]
    np.testing.assert_array_equal(tr["t"], ref["t"].astype(np.int64))
    # dv TriggerType 6/7 = APS frame start/end, 8/9 = exposure start/end
    want = {
        6: (TRIGGER_APS_FRAME, 1),
        7: (TRIGGER_APS_FRAME, 0),
        8: (TRIGGER_APS_EXPOSURE, 1),
        9: (TRIGGER_APS_EXPOSURE, 0),
    }
    assert list(zip(tr["channel"].tolist(), tr["value"].tolist())) == [want[int(s)] for s in ref["source"]]
    # a fresh reader asked for triggers only decodes the same
    np.testing.assert_array_equal(open_events(path).read_triggers(), tr)
    # a file with a trigger stream that holds none, and formats without triggers
    assert len(open_events(shared_data / "dvxplorer_320x240.aedat4").read_triggers()) == 0
    assert open_events(shared_data / "ncars_sample.dat").read_triggers().dtype == TRIGGER_DTYPE


def test_aedat31_special_events_become_triggers(tmp_path):
    def special(code: int, ts: int, valid: int = 1) -> bytes:
        return struct.pack("<Ii", (code << 1) | valid, ts)

    body = b"".join(
        [
            special(0, 5),  # timestamp wrap: no trigger
            special(2, 10),  # input 0 rising
            special(3, 20, valid=0),  # invalid: dropped
            special(7, 30),  # input 1 falling
            special(11, 40),  # input 2 pulse
            special(12, 50),  # generator rising
            special(16, 60),  # exposure start
            special(1, 70),  # timestamp reset
        ]
    )
    ev = random_events(20, (128, 128), duration_us=100, seed=2)
    with open(tmp_path / "s.aedat", "wb") as fh:
        fh.write(HEADER_31)
        fh.write(packet31(1, polarity_bytes(ev["x"], ev["y"], ev["t"], ev["p"]), size=8, n=20))
        fh.write(packet31(0, body, size=8, n=8, overflow=1))
        fh.write(packet31(0, special(2, 99), size=8, n=1, source=2))  # another source: not ours
        fh.write(packet31(3, b"\x00" * 36 * 4, size=36, n=4, valid=3))  # IMU6: counted only
    r = open_events(tmp_path / "s.aedat")
    np.testing.assert_array_equal(r.read_all(), ev)
    base = 1 << 31
    assert r.read_triggers().tolist() == [
        (base + 10, 0, 1),
        (base + 30, 1, 0),
        (base + 40, 2, 2),
        (base + 50, TRIGGER_GENERATOR, 1),
        (base + 60, TRIGGER_APS_EXPOSURE, 1),
        (base + 70, TRIGGER_TIMESTAMP_RESET, 2),
    ]
    assert r.metadata["n_imu_samples"] == 3


def test_real_evt3_triggers_round_trip_through_hdf5_and_aedat4(shared_data, tmp_path):
    src = open_events(shared_data / "prophesee_evt3_640x480_triggers.raw")
    ev, tr = src.read_all(), src.read_triggers()
    h5 = tmp_path / "e.h5"
    report = convert(src.path, h5)
    assert (report.n_triggers_in, report.n_triggers_out, report.trigger_note) == (4_157, 4_157, None)
    back = open_events(h5)
    np.testing.assert_array_equal(back.read_all(), ev)
    np.testing.assert_array_equal(back.read_triggers(), tr)  # exactly: t, channel 6, value
    a4 = tmp_path / "e.aedat4"
    report = convert(h5, a4)
    assert report.n_triggers_out == 4_157 and "channel 6" in report.trigger_note
    again = open_events(a4).read_triggers()
    np.testing.assert_array_equal(again["t"], tr["t"])
    np.testing.assert_array_equal(again["value"], tr["value"])
    assert set(again["channel"].tolist()) == {0}  # AEDAT 4's one external-signal input
    # dv-processing reads the trigger stream we wrote, with the same types
    import dv_processing as dv

    rec = dv.io.MonoCameraRecording(str(a4))
    got = []
    while (batch := rec.getNextTriggerBatch()) is not None:
        got += [(t.timestamp, t.type) for t in batch]
    assert [t for t, _ in got] == tr["t"].tolist()
    rising = dv.TriggerType.EXTERNAL_SIGNAL_RISING_EDGE
    assert [k == rising for _, k in got] == (tr["value"] == 1).tolist()
    # npz holds no triggers: counted as dropped
    report = convert(h5, tmp_path / "e.npz")
    assert (report.n_triggers_in, report.n_triggers_out, report.n_triggers_dropped) == (4_157, 0, 4_157)


def test_every_trigger_kind_survives_aedat4_and_hdf5(tmp_path):
    size = SensorSize(64, 48)
    ev = random_events(500, size, duration_us=10_000, seed=5)
    channels = [0, 0, 0, TRIGGER_GENERATOR, TRIGGER_GENERATOR, TRIGGER_APS_FRAME, TRIGGER_APS_FRAME]
    channels += [TRIGGER_APS_EXPOSURE, TRIGGER_APS_EXPOSURE, TRIGGER_TIMESTAMP_RESET]
    values = [1, 0, 2, 1, 0, 1, 0, 1, 0, 2]
    tr = make_triggers(np.arange(10) * 1000 + 7, channels, values)
    for ext in ("aedat4", "h5"):
        path = write_events(tmp_path / f"k.{ext}", ev, size, triggers=tr)
        r = open_events(path)
        np.testing.assert_array_equal(r.read_all(), ev)
        np.testing.assert_array_equal(r.read_triggers(), tr)
        copy = tmp_path / f"copy.{ext}"
        assert convert(path, copy).n_triggers_out == 10
        np.testing.assert_array_equal(open_events(copy).read_triggers(), tr)
    with pytest.raises(UnsupportedFormat, match="holds no triggers"):
        write_events(tmp_path / "k.npz", ev, size, triggers=tr)
    assert not (tmp_path / "k.npz").exists()
    with open_writer(tmp_path / "plain.aedat4", size) as w:  # no trigger stream asked for
        assert not w.holds_triggers
        w.write(ev)
    with pytest.raises(Exception, match="not sorted"), open_writer(tmp_path / "u.h5", size) as w:
        w.write_triggers(tr[::-1].copy())
    assert not (tmp_path / "u.h5").exists()


def test_damaged_trigger_data_is_one_error(tmp_path):
    import h5py

    size = SensorSize(8, 8)
    ev = random_events(10, size, seed=1)
    path = write_events(tmp_path / "t.h5", ev, size, triggers=make_triggers([3, 5], [0, 0], [1, 0]))
    with h5py.File(path, "a") as f:
        f["triggers/t"][...] = [5, 3]
    with pytest.raises(EventFileError, match="trigger 1 has t=3 us after t=5 us"):
        open_events(path).read_triggers()
    with h5py.File(path, "a") as f:
        del f["triggers/value"]
    with pytest.raises(EventFileError, match="/triggers"):
        open_events(path)
