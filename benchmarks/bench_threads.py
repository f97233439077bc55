"""Wall time of ``dvsapp eval`` and a 1-epoch ``dvsapp train`` smoke run per torch thread count.

    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_threads.py            # default, then 1 / 2 / 4
    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_threads.py --threads 1 2 --repeat 2

Each run is a fresh ``dvsapp`` process (as a user runs it) with ``OMP_NUM_THREADS``
unset, so ``--threads`` alone decides; "default" passes no ``--threads`` (the
command's own choice, ``dvsapp.app.commands._common.default_threads``).  Prints one
line per run and the machine's load average; the figures go in docs/train.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDING = REPO / "recordings" / "gestures.aedat4"

JOBS = {
    "eval": ["eval", str(RECORDING), "--quiet"],
    "train-smoke": [
        "train",
        "--dataset",
        "synthetic",
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--clips-per-epoch",
        "64",
        "--batch",
        "8",
        "--train-seeds",
        "2",
        "--val-seeds",
        "1",
        "--no-test",
        "--quiet",
    ],
}


def run(job: str, threads: str, out: Path) -> float:
    args = [sys.executable, "-m", "dvsapp.app", *JOBS[job]]
    if job == "train-smoke":
        args += ["--out", str(out / f"run-{threads}-{time.monotonic_ns()}")]
    if threads != "default":
        args += ["--threads", threads]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=out)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{job} --threads {threads} failed:\n{proc.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", default=["default", "1", "2", "4"])
    parser.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    from dvsapp.app.commands._common import default_threads

    print(f"cores usable: {len(os.sched_getaffinity(0))}, default --threads: {default_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        for job in args.jobs:
            for _ in range(args.repeat):
                for threads in args.threads:
                    load = os.getloadavg()[0]
                    took = run(job, threads, Path(tmp))
                    print(
                        f"{job:12s} threads={threads:8s} {took:7.1f} s   (load {load:.1f} before)", flush=True
                    )


if __name__ == "__main__":
    main()
