"""Binning and filters, side by side with tonic on the same events, in one run.

Usage::

    python benchmarks/bench_binning.py                  # 10 M random events, 128x128
    python benchmarks/bench_binning.py --n 2000000 --repeat 5 --json benchmarks/out/binning.json
    python benchmarks/bench_binning.py --device cuda    # also time to_frames_torch on the GPU

Every comparison first checks that both sides give identical output; a
mismatch is printed as such (the ratio is then meaningless).  Runs on one
core: BLAS/OpenMP threads are pinned to 1 before numpy and torch load.
Times are the best of ``--repeat`` runs (tonic: best of ``--tonic-repeat``), in
CPU time of the (single) thread by default, so other processes sharing the cores
do not distort the ratio; ``--clock wall`` times wall-clock instead.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dvsapp.core.binning import StreamBinner, to_frames, to_frames_torch  # noqa: E402
from dvsapp.core.events import Packet, SensorSize, make_events, random_events  # noqa: E402
from dvsapp.core.filters import Denoise, HotPixel, Refractory, SpatialAdapter  # noqa: E402

#: the clock of :func:`best_time`: ``time.thread_time`` (CPU time of this one thread,
#: robust to other processes sharing the cores) or ``time.perf_counter`` (wall); set by ``--clock``
CLOCK = time.thread_time


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        t0 = CLOCK()
        out = fn()
        best = min(best, CLOCK() - t0)
    return best, out


def tonic_to_frame(events, size, kwargs):
    import tonic.transforms as tt

    names = {"time_window_us": "time_window", "start_time_us": "start_time", "end_time_us": "end_time"}
    transform = tt.ToFrame(sensor_size=tuple(size), **{names.get(k, k): v for k, v in kwargs.items()})
    return lambda: transform(events)  # P=2: tonic does not write into its input


def row(name, n, ours_s, tonic_s, same) -> dict:
    r = {
        "case": name,
        "n_events": n,
        "ours_ms": ours_s * 1e3,
        "ours_Mev_per_s": n / ours_s / 1e6,
        "tonic_ms": None if tonic_s is None else tonic_s * 1e3,
        "tonic_Mev_per_s": None if tonic_s is None else n / tonic_s / 1e6,
        "speedup": None if tonic_s is None else tonic_s / ours_s,
        "identical": same,
    }
    tonic_txt = (
        "" if tonic_s is None else f"{tonic_s * 1e3:10.1f} {n / tonic_s / 1e6:8.1f} {tonic_s / ours_s:7.1f}x"
    )
    same_txt = "" if same is None else ("identical" if same else "MISMATCH")
    print(f"{name:<34} {n:>10,d} {ours_s * 1e3:9.1f} {n / ours_s / 1e6:8.1f} {tonic_txt:>28}  {same_txt}")
    return r


def read_real(path: Path) -> np.ndarray | None:
    try:
        import expelliarmus
    except ImportError:
        return None
    ev = expelliarmus.Wizard(encoding="evt2").read(str(path))
    ev = make_events(ev["x"], ev["y"], ev["t"], ev["p"])
    return ev[np.argsort(ev["t"], kind="stable")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="random events for the binning comparison")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tonic-repeat", type=int, default=2)
    ap.add_argument("--filter-n", type=int, default=200_000, help="events for the filter comparison")
    ap.add_argument("--device", default=None, help="torch device for to_frames_torch (e.g. cuda)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time the thread's CPU time (default; fair on a shared machine) or wall time",
    )
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter

    import tonic
    import torch

    torch.set_num_threads(1)
    size = SensorSize(args.width, args.height, 2)
    ev = random_events(args.n, size, duration_us=1_000_000, seed=0)
    header = (
        f"{'case':<34} {'events':>10} {'ours ms':>9} {'Mev/s':>8} {'tonic ms':>10} {'Mev/s':>8} {'ratio':>8}"
    )
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, tonic {tonic.__version__}, "
        f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cpus visible, 1 thread, "
        f"{args.clock} time, best of {args.repeat} (tonic {args.tonic_repeat})"
    )
    print(header)
    print("-" * len(header))
    results = []

    # --- to_frames vs tonic ToFrame, every slicing mode, same events in one run
    cases = {
        "n_time_bins=10": {"n_time_bins": 10},
        "time_window=10ms (100 frames)": {"time_window_us": 10_000},
        "time_window=10ms overlap=5ms": {"time_window_us": 10_000, "overlap": 5_000},
        "event_count=N/20": {"event_count": args.n // 20},
        "n_event_bins=10": {"n_event_bins": 10},
    }
    for name, kwargs in cases.items():
        ours_s, ours = best_time(lambda kwargs=kwargs: to_frames(ev, size, **kwargs), args.repeat)
        tonic_s, theirs = best_time(tonic_to_frame(ev, size, kwargs), args.tonic_repeat)
        same = ours.shape == theirs.shape and bool(np.array_equal(ours, theirs))
        results.append(row(f"to_frames {name}", len(ev), ours_s, tonic_s, same))

    real = REPO.parent / "shared" / "data" / "prophesee_evt2_640x480.raw"
    if real.is_file():
        rev = read_real(real)
        if rev is not None:
            rsize = SensorSize(640, 480, 2)
            for name, kwargs in {
                "n_time_bins=10": {"n_time_bins": 10},
                "time_window=1ms": {"time_window_us": 1_000},
            }.items():
                ours_s, ours = best_time(lambda kwargs=kwargs: to_frames(rev, rsize, **kwargs), args.repeat)
                tonic_s, theirs = best_time(tonic_to_frame(rev, rsize, kwargs), args.tonic_repeat)
                same = ours.shape == theirs.shape and bool(np.array_equal(ours, theirs))
                results.append(row(f"real evt2 640x480 {name}", len(rev), ours_s, tonic_s, same))

    # --- torch path
    devices = ["cpu"] + ([args.device] if args.device and args.device != "cpu" else [])
    ref = to_frames(ev, size, n_time_bins=10)
    for dev in devices:

        def run_torch(dev=dev):
            out = to_frames_torch(ev, size, device=dev, n_time_bins=10)
            if out.is_cuda:
                torch.cuda.synchronize()
            return out

        run_torch()  # warm-up (CUDA context, kernels)
        torch_s, out = best_time(run_torch, args.repeat)
        same = bool(np.array_equal(out.cpu().numpy(), ref))
        results.append(row(f"to_frames_torch n_time_bins=10 {dev}", len(ev), torch_s, None, same))

    # --- streaming binner: packets of 10k events, 1 ms steps, 10 steps per window
    def stream():
        b = StreamBinner(size, 1_000, 10)
        n_win = 0
        for i in range(0, len(ev), 10_000):
            part = ev[i : i + 10_000]
            n_win += len(b.push(Packet(part, int(part["t"][-1]) + 1)))
        return n_win + len(b.flush())

    s, n_win = best_time(stream, max(1, args.repeat // 2))
    results.append(row(f"StreamBinner 10k-event packets ({n_win} win)", len(ev), s, None, None))

    # --- filters vs tonic (tonic's are per-event Python loops: fewer events)
    fev = random_events(args.filter_n, (320, 240, 2), duration_us=2_000_000, t0_us=100_000, seed=1)
    import tonic.transforms as tt

    for name, ours_f, theirs_f in (
        ("Denoise(5 ms)", Denoise(5_000), tt.Denoise(filter_time=5_000)),
        ("Refractory(1 ms)", Refractory(1_000), tt.RefractoryPeriod(delta=1_000)),
        ("HotPixel", HotPixel(), None),
        ("SpatialAdapter 320x240->64x64 crop", SpatialAdapter((320, 240), (64, 64), mode="crop"), None),
    ):
        ours_s, ours = best_time(lambda f=ours_f: f(fev), args.repeat)
        if theirs_f is None:
            results.append(row(name, len(fev), ours_s, None, None))
            continue
        tonic_s, theirs = best_time(lambda f=theirs_f: f(fev.copy()), 1)
        results.append(row(name, len(fev), ours_s, tonic_s, bool(np.array_equal(ours, theirs))))

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "tonic": tonic.__version__,
            "torch": torch.__version__,
            "machine": platform.machine(),
            "cpus_visible": os.cpu_count(),
            "threads": 1,
            "clock": args.clock,
        }
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
