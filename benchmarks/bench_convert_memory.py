"""Peak memory of ``dvsapp convert`` on a 50-million-event file (goal: under 1 GB).

Usage::

    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_convert_memory.py
    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_convert_memory.py --n 50000000 --pairs h5:npz,npz:h5,h5:aedat4

The input is generated streaming (uniform random events, 1 M at a time, never
the whole file in memory) into a temporary folder: first as HDF5, then each
further input format needed by ``--pairs`` is made from it with ``dvsapp
convert`` too.  Every conversion runs ``python -m dvsapp.app convert IN OUT --quiet``
in a fresh child process; its peak resident set size is the kernel's
``ru_maxrss`` of that one child (``os.wait4``).  The output's event count is
checked against the input's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dvsapp.core.events import SensorSize, random_events  # noqa: E402
from dvsapp.core.io import open_events, open_writer  # noqa: E402

GOAL_BYTES = 1 << 30


def generate(path: Path, n: int, size: SensorSize, chunk: int = 1_000_000) -> None:
    """``n`` sorted random events at 10 M ev/s, written chunk by chunk."""
    with open_writer(path, size, metadata={"camera": "bench"}) as w:
        for k, i0 in enumerate(range(0, n, chunk)):
            m = min(chunk, n - i0)
            w.write(random_events(m, size, duration_us=m // 10, t0_us=i0 // 10, seed=k))


def convert_child(src: Path, dst: Path) -> tuple[float, int, int]:
    """Run ``dvsapp convert`` in a child; (seconds, that child's peak RSS in bytes, exit status)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dvsapp.app", "convert", str(src), str(dst), "--quiet", "--force"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)  # the rusage of this one child
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            err.seek(0)
            print(err.read().strip())
    return seconds, usage.ru_maxrss * 1024, proc.returncode  # ru_maxrss is in KiB on Linux


def count_events(path: Path) -> int:
    reader = open_events(path)
    known = reader.metadata.get("n_events")
    return int(known) if known is not None else sum(len(c) for c in reader.iter_chunks())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000_000)
    ap.add_argument("--pairs", default="h5:npz,npz:h5", help="IN:OUT extensions, comma separated")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    size = SensorSize(640, 480)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} logical cores; python {platform.python_version()}"
    )
    results = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        generate(d / "in.h5", args.n, size)
        print(
            f"generated {args.n:,} events -> in.h5 ({(d / 'in.h5').stat().st_size >> 20} MiB) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        made = {"h5": d / "in.h5"}
        for pair in args.pairs.split(","):
            src_ext, dst_ext = pair.split(":")
            if src_ext not in made:
                src = d / f"in.{src_ext}"
                seconds, _, rc = convert_child(made["h5"], src)
                print(f"made in.{src_ext} in {seconds:.1f} s (rc {rc})")
                made[src_ext] = src
            src, dst = made[src_ext], d / f"out_{src_ext}.{dst_ext}"
            seconds, peak, rc = convert_child(src, dst)
            ok = rc == 0 and count_events(dst) == args.n
            print(
                f"convert {src.name} ({src.stat().st_size >> 20} MiB) -> {dst.name} "
                f"({dst.stat().st_size >> 20 if dst.exists() else 0} MiB): {seconds:.1f} s, "
                f"{args.n / seconds / 1e6:.2f} M ev/s, peak RSS {peak / 2**20:.0f} MiB "
                f"({'under' if peak < GOAL_BYTES else 'OVER'} the 1 GiB goal){'' if ok else '  FAILED'}"
            )
            results.append(
                {"pair": pair, "events": args.n, "seconds": seconds, "peak_rss_bytes": peak, "ok": ok}
            )
            dst.unlink(missing_ok=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
