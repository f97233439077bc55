"""Decode throughput of every reader, side by side with aedat, dv-processing, expelliarmus and tonic.

Usage::

    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_readers.py            # 2 M events per file
    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_readers.py --n 4000000 --repeat 5 --json out.json

Generated files (uniform random events, in a temporary folder) are written once
per format; then every library that reads the format decodes the *same* file
to an event array, ``--repeat`` times, and the best time counts.  The files in
``../shared/data`` are timed too when present (they are small, so they are
decoded ``--repeat * 10`` times).  Before timing, each library's output is
compared with ours (x, y, t, p); a mismatch is printed (the ratio is then
meaningless).

One core: OpenMP/BLAS/numba threads are pinned to 1 before anything loads, and
times are process CPU time (all threads summed), so the other processes on a
shared machine distort them little; ``--clock wall`` times wall-clock instead.
``dvsapp`` times include its checks (sorted timestamps, coordinates inside the
sensor) and the conversion to the tonic layout; the other libraries return
their own layout unchecked.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dvsapp.core.events import SensorSize, random_events  # noqa: E402
from dvsapp.core.io import open_events, write_events  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


# -- writing the files -------------------------------------------------------------------------------


def write_aedat31(path: Path, ev: np.ndarray, per_packet: int = 8192) -> None:
    """AEDAT 3.1 polarity packets (28-byte headers, 8-byte events), vectorised."""
    with open(path, "wb") as fh:
        fh.write(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DAVIS346\r\n#!END-HEADER\r\n")
        for i0 in range(0, len(ev), per_packet):
            c = ev[i0 : i0 + per_packet]
            overflow = int(c["t"][0]) >> 31
            assert int(c["t"][-1]) >> 31 == overflow
            body = np.empty((len(c), 2), dtype="<u4")
            body[:, 0] = (c["x"].astype(np.uint32) << 17) | (c["y"].astype(np.uint32) << 2)
            body[:, 0] |= (c["p"].astype(np.uint32) << 1) | 1
            body[:, 1] = (c["t"] & 0x7FFFFFFF).astype(np.uint32)
            fh.write(struct.pack("<hhiiiiii", 1, 1, 8, 4, overflow, len(c), len(c), len(c)))
            fh.write(body.tobytes())


def write_aedat2(path: Path, ev: np.ndarray) -> None:
    """AEDAT 2.0 DVS128: big-endian (address, timestamp) with jAER's raw address layout."""
    raw = np.empty((len(ev), 2), dtype=">u4")
    raw[:, 0] = ((127 - ev["y"].astype(np.uint32)) << 8) | ((127 - ev["x"].astype(np.uint32)) << 1)
    raw[:, 0] |= (~ev["p"]).astype(np.uint32)
    raw[:, 1] = ev["t"].astype(np.uint32)
    with open(path, "wb") as fh:
        fh.write(
            b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n#AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n"
        )
        fh.write(raw.tobytes())


def write_nmnist(path: Path, ev: np.ndarray) -> None:
    """N-MNIST 40-bit records: x, y, p<<7 | t[22:16], t[15:8], t[7:0]."""
    t = ev["t"].astype(np.uint32)
    rec = np.empty((len(ev), 5), dtype=np.uint8)
    rec[:, 0] = ev["x"]
    rec[:, 1] = ev["y"]
    rec[:, 2] = (ev["p"].astype(np.uint8) << 7) | ((t >> 16) & 0x7F).astype(np.uint8)
    rec[:, 3] = (t >> 8) & 0xFF
    rec[:, 4] = t & 0xFF
    path.write_bytes(rec.tobytes())


def write_expelliarmus(path: Path, ev: np.ndarray, encoding: str) -> None:
    from expelliarmus import Wizard

    arr = np.zeros(len(ev), dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    for f in "txyp":
        arr[f] = ev[f]
    Wizard(encoding=encoding).save(str(path), arr)


# -- the libraries' readers ----------------------------------------------------------------------------


def ours(path: Path) -> Callable[[], np.ndarray]:
    return lambda: open_events(path).read_all()


def aedat_lib(path: Path) -> np.ndarray:
    import aedat

    decoder = aedat.Decoder(str(path))
    sid = min(i for i, s in decoder.id_to_stream().items() if s["type"] == "events")
    return np.concatenate([p["events"] for p in decoder if p["stream_id"] == sid and "events" in p])


def dv_lib(path: Path) -> np.ndarray:
    import dv_processing as dv

    rec = dv.io.MonoCameraRecording(str(path))
    parts = []
    while (batch := rec.getNextEventBatch()) is not None:
        parts.append(batch.numpy())
    return np.concatenate(parts)


def tonic_aedat4(path: Path) -> np.ndarray:
    from tonic.io import read_aedat4

    return read_aedat4(str(path))


def _tonic_aer(path: Path) -> np.ndarray:
    # tonic 1.7's read_dvs_ibm / read_dvs_128 unpack 2 of the 3 values read_aedat_header_from_file
    # returns (they raise); this is their body with that call fixed
    from tonic.io import get_aer_events_from_file, read_aedat_header_from_file

    version, start, _ = read_aedat_header_from_file(str(path))
    return get_aer_events_from_file(str(path), version, start)


def tonic_ibm(path: Path) -> np.ndarray:
    from tonic.io import make_structured_array

    raw = _tonic_aer(path)
    a = raw["address"]
    return make_structured_array((a >> 17) & 0x1FFF, (a >> 2) & 0x1FFF, raw["timeStamp"], (a >> 1) & 1)


def tonic_dvs128(path: Path) -> np.ndarray:
    from tonic.io import make_structured_array

    raw = _tonic_aer(path)
    a = raw["address"]
    return make_structured_array((a >> 8) & 0x7F, (a >> 1) & 0x7F, raw["timeStamp"], a & 1)


def tonic_nmnist(path: Path) -> np.ndarray:
    from tonic.io import read_mnist_file

    return read_mnist_file(str(path), dtype=np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]))


def expelliarmus_lib(encoding: str) -> Callable[[Path], np.ndarray]:
    def read(path: Path) -> np.ndarray:
        from expelliarmus import Wizard

        return Wizard(encoding=encoding, fpath=str(path)).read()

    return read


def h5py_lib(path: Path) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        return {c: f["events"][c][...] for c in "xytp"}


def numpy_npy(path: Path) -> np.ndarray:
    return np.load(path)


def numpy_npz(path: Path) -> np.ndarray:
    with np.load(path) as z:
        return z["events"]


def numpy_loadtxt(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", comments="#", skiprows=2, dtype=np.int64)


# -- timing -----------------------------------------------------------------------------------------------


def _fields(out) -> dict[str, np.ndarray]:
    if isinstance(out, dict):
        return out
    if isinstance(out, np.ndarray) and out.dtype.names:
        names = out.dtype.names
        pick = {"x": "x", "y": "y", "t": "t" if "t" in names else "timestamp", "p": "p"}
        if "on" in names:
            pick["p"] = "on"
        if "polarity" in names:
            pick["p"] = "polarity"
        return {k: out[v] for k, v in pick.items()}
    return {k: out[:, i] for i, k in enumerate(("t", "x", "y", "p"))}  # loadtxt columns


def same_events(out, ref: np.ndarray) -> bool:
    f = _fields(out)
    if len(f["t"]) != len(ref):
        return False
    return all(np.array_equal(np.asarray(f[k]).astype(np.int64), ref[k].astype(np.int64)) for k in "xytp")


def best_time(fn: Callable[[], object], repeat: int, clock: Callable[[], float]) -> float:
    fn()  # warm-up: imports, numba cache, page cache
    best = float("inf")
    for _ in range(repeat):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def run_format(name, path, n, libs, repeat, clock, results) -> None:
    ref = open_events(path).read_all()
    rows = []
    for lib, fn in libs.items():
        try:
            ok = lib == "dvsapp" or same_events(fn(), ref)
            seconds = best_time(fn, repeat, clock)
        except Exception as exc:  # a library that cannot read the file is reported, not fatal
            print(f"  {name:<28} {lib:<14} FAILED: {' '.join(str(exc).split())[:90]}")
            continue
        rows.append((lib, seconds, ok))
    fastest_other = min((s for lib, s, _ in rows if lib != "dvsapp"), default=None)
    ours_s = next((s for lib, s, _ in rows if lib == "dvsapp"), None)
    for lib, seconds, ok in rows:
        rate = n / seconds if seconds > 0 else float("inf")
        note = "" if ok else "  (OUTPUT DIFFERS)"
        print(f"  {name:<28} {lib:<14} {rate / 1e6:9.1f} M ev/s  {seconds * 1e3:9.2f} ms{note}")
        results.append(
            {"file": name, "library": lib, "events": n, "seconds": seconds, "mev_s": rate / 1e6, "same": ok}
        )
    if fastest_other and ours_s:
        print(
            f"  {name:<28} {'ratio':<14} dvsapp takes {ours_s / fastest_other:.2f}x the fastest other library"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_000_000, help="events per generated file")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--csv-n", type=int, default=500_000, help="events in the (slow) CSV file")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; "
        f"python {platform.python_version()}; clock={args.clock}; n={args.n:,}"
    )
    n = args.n
    size = SensorSize(346, 260)
    ev = random_events(n, size, duration_us=max(1, n // 2), t0_us=1_000, seed=1)  # 2 Mev/s, t < 2**31
    ev128 = random_events(n, SensorSize(128, 128), duration_us=max(1, n // 2), t0_us=1_000, seed=2)
    ev34 = random_events(n, SensorSize(34, 34), duration_us=min(n // 2, (1 << 23) - 2), t0_us=1, seed=3)
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        files = {
            "aedat4": write_events(d / "g.aedat4", ev, size),
            "aedat31": d / "g.aedat",
            "aedat2": d / "g2.aedat",
            "evt2": d / "g2.raw",
            "evt3": d / "g3.raw",
            "dat": d / "g.dat",
            "nmnist": d / "g.bin",
            "npy": d / "g.npy",
            "npz": write_events(d / "g.npz", ev, size),
            "hdf5": write_events(d / "g.h5", ev, size),
            "csv": write_events(d / "g.csv", ev[: args.csv_n], size),
        }
        write_aedat31(files["aedat31"], ev)
        write_aedat2(files["aedat2"], ev128)
        for enc in ("evt2", "evt3", "dat"):
            write_expelliarmus(files[enc], ev, enc)
        write_nmnist(files["nmnist"], ev34)
        np.save(files["npy"], ev)
        print(f"wrote the files in {time.perf_counter() - t0:.1f} s")
        formats = {
            "aedat4": {"aedat": aedat_lib, "dv-processing": dv_lib, "tonic": tonic_aedat4},
            "aedat31": {"tonic*": tonic_ibm},
            "aedat2": {"tonic*": tonic_dvs128},
            "evt2": {"expelliarmus": expelliarmus_lib("evt2")},
            "evt3": {"expelliarmus": expelliarmus_lib("evt3")},
            "dat": {"expelliarmus": expelliarmus_lib("dat")},
            "nmnist": {"tonic": tonic_nmnist},
            "npy": {"numpy": numpy_npy},
            "npz": {"numpy": numpy_npz},
            "hdf5": {"h5py": h5py_lib},
            "csv": {"numpy.loadtxt": numpy_loadtxt},
        }
        print("generated files (best of", args.repeat, "runs):")
        for key, libs in formats.items():
            path = files[key]
            count = args.csv_n if key == "csv" else n
            funcs = {"dvsapp": ours(path), **{lib: (lambda f=f, p=path: f(p)) for lib, f in libs.items()}}
            run_format(
                f"{key} ({path.stat().st_size >> 20} MiB)", path, count, funcs, args.repeat, clock, results
            )
    if SHARED.is_dir():
        print(f"real files in {SHARED} (best of {args.repeat * 10} runs):")
        real = {
            "dvxplorer_320x240.aedat4": {"aedat": aedat_lib, "dv-processing": dv_lib, "tonic": tonic_aedat4},
            "prophesee_evt2_640x480.raw": {"expelliarmus": expelliarmus_lib("evt2")},
            "nmnist_sample.bin": {"tonic": tonic_nmnist},
            "ncars_sample.dat": {"expelliarmus": expelliarmus_lib("dat")},
        }
        for name, libs in real.items():
            path = SHARED / name
            count = len(open_events(path).read_all())
            funcs = {"dvsapp": ours(path), **{lib: (lambda f=f, p=path: f(p)) for lib, f in libs.items()}}
            run_format(name, path, count, funcs, args.repeat * 10, clock, results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"n": n, "clock": args.clock, "results": results}, indent=1))


if __name__ == "__main__":
    main()
