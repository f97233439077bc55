"""Seed corpora for the fuzz targets: small valid files of every format.

Readers are seeded from files the project writes (AEDAT4, HDF5, npz, CSV),
AEDAT 2.0 / 3.1 files built byte by byte here, and, when ``../shared/data`` is
beside the repository, the real sensor recordings (cut to their first bytes
where large, which also seeds the truncation paths).
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


def reader_seeds() -> dict[str, bytes]:
    from dvsapp.core.events import SensorSize, random_events
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
    seeds["aedat31"] = _prefixed(".aedat", aedat31_bytes(ev))
    seeds["aedat2"] = _prefixed(".aedat", aedat2_bytes())
    if SHARED.is_dir():
        for name, ext in (
            ("nmnist_sample.bin", ".bin"),
            ("ncars_sample.dat", ".dat"),
            ("prophesee_evt2_640x480.raw", ".raw"),
            ("dvxplorer_320x240.aedat4", ".aedat4"),
        ):
            path = SHARED / name
            if path.is_file():
                seeds[f"shared_{path.stem}"] = _prefixed(ext, path.read_bytes()[:MAX_SEED_BYTES])
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
