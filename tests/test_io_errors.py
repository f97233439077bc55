"""Bad input gives one-line EventFileError / UnsupportedFormat naming the file and the problem."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from core.errors import EventFileError, UnsupportedFormat
from core.events import SensorSize, random_events
from core.io import open_events, write_events


def _read(path):
    """Open and fully decode: errors may surface at open or while decoding."""
    r = open_events(path)
    r.read_all()
    for _ in r.packets(max_events=64):
        pass
    return r


def _bad_inputs(tmp_path, shared=None):
    """(name, path, error class, message fragment) for every kind of bad input."""
    size = SensorSize(64, 64)
    ev = random_events(500, size, seed=1)
    cases = []

    cases.append(("missing", tmp_path / "nope.aedat4", UnsupportedFormat, "no such file"))
    d = tmp_path / "folder.h5"
    d.mkdir()
    cases.append(("directory", d, UnsupportedFormat, "directory"))
    z = tmp_path / "zero.aedat4"
    z.write_bytes(b"")
    cases.append(("zero bytes", z, UnsupportedFormat, "empty"))
    m = tmp_path / "magic.aedat4"
    m.write_bytes(b"#!AER-DAT9.9\r\n" + b"\x00" * 64)
    cases.append(("wrong magic", m, UnsupportedFormat, "9.9"))
    g = tmp_path / "garbage.raw2"
    g.write_bytes(bytes(range(256)) * 4)
    cases.append(("unknown bytes", g, UnsupportedFormat, "unknown event file format"))

    h5 = write_events(tmp_path / "ok.h5", ev, size)
    data = h5.read_bytes()
    t = tmp_path / "truncated.h5"
    t.write_bytes(data[: len(data) // 2])
    cases.append(("truncated hdf5", t, EventFileError, "HDF5"))

    a4 = write_events(tmp_path / "ok.aedat4", ev, size)
    data = a4.read_bytes()
    t4 = tmp_path / "truncated.aedat4"
    t4.write_bytes(data[: len(data) - 100])
    cases.append(("truncated aedat4", t4, EventFileError, "AEDAT 4"))
    c4 = tmp_path / "corrupt_header.aedat4"
    c4.write_bytes(data[:20] + b"\xff" * 40 + data[60:])
    cases.append(("corrupt aedat4 header", c4, EventFileError, "AEDAT 4"))

    npz = write_events(tmp_path / "ok.npz", ev, size)
    data = npz.read_bytes()
    tz = tmp_path / "truncated.npz"
    tz.write_bytes(data[: len(data) // 2])
    cases.append(("truncated npz", tz, EventFileError, "npz"))

    nm = tmp_path / "cut.bin"
    nm.write_bytes(b"\x01\x02\x03\x04\x05\x06\x07")
    cases.append(("truncated bin", nm, EventFileError, "5-byte"))

    raw = tmp_path / "bad.raw"
    raw.write_bytes(b"% evt 2.0\n% end\n" + struct.pack("<II", 0x80000001, 0xD0000000))
    cases.append(("evt2 unknown word", raw, EventFileError, "unknown type 0xD"))
    raw2 = tmp_path / "cut.raw"
    raw2.write_bytes(b"% evt 2.0\n" + b"\x00" * 7)
    cases.append(("evt2 truncated", raw2, EventFileError, "truncated"))

    dat = tmp_path / "bad.dat"
    dat.write_bytes(b"% Data file containing CD events.\n% Version 2\n" + bytes([12, 9]) + b"\x00" * 9)
    cases.append(("dat corrupt header", dat, EventFileError, "event size"))

    out = ev.copy()
    out["x"][123] = 70
    csv = tmp_path / "outside.csv"
    csv.write_text("# sensor 64x64\nt,x,y,p\n" + "".join(f"{e['t']},{e['x']},{e['y']},{int(e['p'])}\n" for e in out))
    cases.append(("outside the sensor", csv, EventFileError, "event 123 has x=70 outside the 64x64 sensor"))

    unsorted = tmp_path / "unsorted.csv"
    unsorted.write_text("t,x,y,p\n10,1,1,1\n20,1,1,0\n15,2,2,1\n")
    cases.append(("unsorted", unsorted, EventFileError, "event 2 has t=15 us after t=20 us"))

    bad_csv = tmp_path / "words.csv"
    bad_csv.write_text("t,x,y,p\n10,1,1,1\n20,one,1,0\n")
    cases.append(("bad csv field", bad_csv, EventFileError, "line"))

    import h5py

    h = tmp_path / "other.h5"
    with h5py.File(h, "w") as f:
        f["something"] = np.arange(3)
    cases.append(("foreign hdf5", h, UnsupportedFormat, "/events"))

    np.save(tmp_path / "plain.npy", np.arange(12).reshape(3, 4))
    cases.append(("plain npy", tmp_path / "plain.npy", UnsupportedFormat, "structured"))
    return cases


def test_every_bad_input_gives_one_line_naming_the_file(tmp_path):
    cases = _bad_inputs(tmp_path)
    for name, path, cls, fragment in cases:
        with pytest.raises(cls) as info:
            _read(path)
        msg = str(info.value)
        assert "\n" not in msg, name
        assert msg.startswith(str(path)), (name, msg)
        assert fragment in msg, (name, msg)


def test_hostile_headers_do_not_allocate_or_hang(tmp_path):
    # an npy header that claims 2**40 events in a tiny file
    path = tmp_path / "liar.npy"
    header = {"descr": [("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "|b1")], "fortran_order": False, "shape": (2**40,)}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\x00" * 26)
    with pytest.raises(EventFileError, match="claims"):
        open_events(path)
    # a header line that never ends
    path = tmp_path / "endless.aedat"
    path.write_bytes(b"#!AER-DAT3.1" + b"x" * 100_000)
    with pytest.raises(EventFileError, match="never ends"):
        open_events(path)
