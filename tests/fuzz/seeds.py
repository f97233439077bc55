"""Seed corpora for the fuzz targets: small valid files of every format.

Readers are seeded from files the project writes (AEDAT4, HDF5, npz, CSV, with
and without triggers), AEDAT 2.0 (DVS128 and DAVIS) / 3.1 and EVT 2.0 / 3.0 files
built byte by byte here with every word kind (triggers, IMU, APS, vectors,
time wraps), and, when ``../shared/data`` is beside the repository, the real
sensor recordings (cut to their first bytes where large, which also seeds the
truncation paths).
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np

from tests.fuzz.harness import READER_EXTENSIONS

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
MAX_SEED_BYTES = 64 * 1024


def _prefixed(ext: str, payload: bytes) -> bytes:
    return bytes([READER_EXTENSIONS.index(ext)]) + payload


def aedat31_bytes(events: np.ndarray, *, overflow: int = 0, per_packet: int = 8) -> bytes:
    """An AEDAT 3.1 file of polarity packets holding ``events`` (x, y, t, p)."""
    out = [b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"]
    for i0 in range(0, len(events), per_packet):
        chunk = events[i0 : i0 + per_packet]
        n = len(chunk)
        out.append(struct.pack("<hhiiiiii", 1, 1, 8, 4, overflow, n, n, n))
        data = (chunk["x"].astype(np.uint32) << 17) | (chunk["y"].astype(np.uint32) << 2)
        data |= chunk["p"].astype(np.uint32) << 1 | 1
        rec = np.empty(n, dtype=[("d", "<u4"), ("t", "<i4")])
        rec["d"] = data
        rec["t"] = chunk["t"] & 0x7FFFFFFF
        out.append(rec.tobytes())
    return b"".join(out)


def aedat2_bytes(n: int = 32) -> bytes:
    """A DVS128 AEDAT 2.0 file of ``n`` big-endian (address, timestamp) events."""
    rng = np.random.default_rng(2)
    addr = (rng.integers(0, 128, n) << 8) | (rng.integers(0, 128, n) << 1) | rng.integers(0, 2, n)
    rec = np.empty(n, dtype=[("a", ">u4"), ("t", ">i4")])
    rec["a"] = addr
    rec["t"] = np.sort(rng.integers(0, 100_000, n))
    return b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n" + rec.tobytes()


def aedat31_special_bytes() -> bytes:
    """An AEDAT 3.1 file: one polarity packet, one special packet of trigger kinds, one IMU6 packet."""
    out = [b"#!AER-DAT3.1\r\n#Source 1: DAVIS346B\r\n#!END-HEADER\r\n"]
    out.append(
        struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, 2, 2, 2) + struct.pack("<IiIi", 0x20023, 10, 0x40045, 20)
    )
    specials = b"".join(
        struct.pack("<Ii", (code << 1) | 1, 30 + code) for code in (0, 1, 2, 3, 7, 12, 14, 17)
    )
    out.append(struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, 8, 8, 8) + specials)
    out.append(struct.pack("<hhiiiiii", 3, 1, 36, 4, 0, 1, 1, 1) + b"\x00" * 36)
    return b"".join(out)


def davis_aedat2_bytes() -> bytes:
    """A DAVIS240C AEDAT 2.0 file: DVS events, an IMU sample, APS words and external input events."""
    rows = []
    for i in range(24):
        rows.append(((i * 7 % 180) << 22 | (i * 11 % 240) << 12 | (i % 2) << 11, 100 + i))
    rows += [((1 << 31) | (c << 28) | ((c * 1000) << 12) | (3 << 10), 130) for c in range(7)]
    rows += [((1 << 31) | (3 << 22) | (4 << 12), 131), ((1 << 10) | 3, 132), ((1 << 10) | 2, 133)]
    rows += [((1 << 31) | (c << 28) | (3 << 10), 134) for c in range(3)]  # a cut IMU sample
    rec = np.array(rows, dtype=[("a", ">u4"), ("t", ">u4")])
    return b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.DAVIS240C\r\n" + rec.tobytes()


def evt2_trigger_bytes() -> bytes:
    """EVT 2.0 with TIME HIGH, CD, external trigger, IMU and continued words."""
    words = [0xA << 28 | 1 << 8 | 1, 0x8 << 28 | 7]
    for i in range(16):
        words.append((i % 2) << 28 | (i * 3 % 64) << 22 | (i * 5 % 640) << 11 | (i * 7 % 480))
        if i % 4 == 0:
            words.append(0xA << 28 | (i * 3 % 64) << 22 | (i % 8) << 8 | (i // 4 % 2))
    words += [0xD << 28 | 5, 0xF << 28 | 1, 0xE << 28, 0x8 << 28 | 8, 1 << 28 | 3 << 22 | 5 << 11 | 9]
    return b"% evt 2.0\n% format EVT2;height=480;width=640\n% end\n" + np.asarray(words, "<u4").tobytes()


def evt3_bytes() -> bytes:
    """EVT 3.0 with every word type: time high/low (keep-alive, 24-bit wrap), rows, vectors, triggers."""

    def w(kind: int, payload: int) -> int:
        return kind << 12 | payload

    words = [w(0x0, 5), w(0x2, 9), w(0xA, 0x101)]  # before any time: dropped
    words += [w(0x8, 4094), w(0x6, 100), w(0x0, 17), w(0x2, 1 << 11 | 33), w(0x8, 4094), w(0x2, 34)]
    words += [w(0x3, 1 << 11 | 200), w(0x4, 0xF0F), w(0x5, 0x81), w(0xA, 6 << 8 | 1)]
    words += [w(0xE, 0x14), w(0xF, 0x123), w(0xF, 0x4), w(0x7, 2), w(0xD, 9)]
    words += [w(0x8, 4095), w(0x6, 3), w(0x2, 40), w(0x8, 0), w(0x6, 1), w(0x2, 41), w(0xA, 6 << 8)]
    words += [w(0x6, 3000), w(0x6, 20), w(0x1, 3), w(0x2, 7), w(0x0, 18), w(0x2, 42)]
    return b"% evt 3.0\n% format EVT3;height=480;width=640\n% end\n" + np.asarray(words, "<u2").tobytes()


def reader_seeds() -> dict[str, bytes]:
    from dvsapp.core.events import SensorSize, make_triggers, random_events
    from dvsapp.core.io import write_events

    seeds: dict[str, bytes] = {}
    sensor = SensorSize(32, 24)
    ev = random_events(64, sensor, duration_us=50_000, seed=7)
    with tempfile.TemporaryDirectory() as tmp:
        for ext in (".aedat4", ".h5", ".npz", ".csv"):
            path = Path(tmp) / f"seed{ext}"
            write_events(path, ev, sensor)
            seeds[f"written{ext.replace('.', '_')}"] = _prefixed(ext, path.read_bytes())
        np.save(Path(tmp) / "seed.npy", ev)
        seeds["written_npy"] = _prefixed(".npy", (Path(tmp) / "seed.npy").read_bytes())
        tr = make_triggers([100, 2_000, 9_000, 30_000], [0, 6, 33, 35], [1, 0, 1, 2])
        for ext in (".aedat4", ".h5"):
            path = Path(tmp) / f"trig{ext}"
            write_events(path, ev, sensor, triggers=tr)
            seeds[f"triggers{ext.replace('.', '_')}"] = _prefixed(ext, path.read_bytes())
    seeds["aedat31"] = _prefixed(".aedat", aedat31_bytes(ev))
    seeds["aedat31_specials"] = _prefixed(".aedat", aedat31_special_bytes())
    seeds["aedat2"] = _prefixed(".aedat", aedat2_bytes())
    seeds["aedat2_davis"] = _prefixed(".aedat", davis_aedat2_bytes())
    seeds["evt2_triggers"] = _prefixed(".raw", evt2_trigger_bytes())
    seeds["evt3"] = _prefixed(".raw", evt3_bytes())
    if SHARED.is_dir():
        for name, ext in (
            ("nmnist_sample.bin", ".bin"),
            ("ncars_sample.dat", ".dat"),
            ("prophesee_evt2_640x480.raw", ".raw"),
            ("prophesee_evt3_640x480_triggers.raw", ".raw"),
            ("dvxplorer_320x240.aedat4", ".aedat4"),
            ("davis346_aestream.aedat4", ".aedat4"),
        ):
            path = SHARED / name
            if path.is_file():
                seeds[f"shared_{path.stem}"] = _prefixed(ext, path.read_bytes()[:MAX_SEED_BYTES])
        davis = SHARED / "davis240c_aedat2_rotdisk.aedat"
        if davis.is_file():  # its 175 KB header (jAER preferences) cut to its chip line, then data
            raw = davis.read_bytes()
            head = b"".join(ln + b"\n" for ln in raw[:2000].split(b"\n")[:7])
            body = raw[175_039 : 175_039 + MAX_SEED_BYTES - len(head) - 8]
            seeds["shared_davis240c_aedat2"] = _prefixed(".aedat", head + body[: len(body) // 8 * 8])
    return seeds


def labels_seeds() -> dict[str, bytes]:
    return {
        "valid": b"class,startTime_usec,endTime_usec\n1,100,200\n11,300,900\n",
        "crlf": b"class,startTime_usec,endTime_usec\r\n3,0,5\r\n",
        "empty_body": b"class,startTime_usec,endTime_usec\n",
    }


def checkpoint_seeds() -> dict[str, bytes]:
    """A small but complete checkpoint (the fuzzer's inputs are capped at 64 KiB)."""
    from dvsapp.core.model import build_model, preset, save_checkpoint

    cfg = preset("tiny", embed_dim=16, heads=2, input_hw=(16, 16), patch_size=4, mlp_ratio=1.0)
    model = build_model(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        save_checkpoint(path, model, metadata={"note": "fuzz seed"})
        return {"micro": path.read_bytes()}


SEEDS = {"readers": reader_seeds, "labels": labels_seeds, "checkpoint": checkpoint_seeds}


def write_corpus(target: str, folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    seeds = SEEDS[target]()
    for name, data in seeds.items():
        (folder / f"seed-{name}").write_bytes(data)
    return len(seeds)
