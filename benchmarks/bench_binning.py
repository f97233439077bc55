"""Binning and filters, side by side with tonic on the same events, in one run.

Usage::

    python benchmarks/bench_binning.py                  # 10 M random events at 128x128, 6 M at 1280x720
    python benchmarks/bench_binning.py --n 2000000 --repeat 5 --json benchmarks/out/binning.json
    python benchmarks/bench_binning.py --only-hd --hd-repeat 15   # the 1280x720 case alone
    python benchmarks/bench_binning.py --hd-file REC.raw          # a real HD recording instead
    python benchmarks/bench_binning.py --device cuda    # also time to_frames_torch on the GPU

Every comparison first checks that both sides give identical output; a
mismatch is printed as such (the ratio is then meaningless).  Runs on one
core: OpenMP/BLAS/numba threads are pinned to 1 before numpy, numba and torch
load (``OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1``; the counting kernel is serial
anyway).  Each case prints the minimum and the median of ``--repeat`` runs
(tonic: ``--tonic-repeat``), in CPU time of the (single) thread by default, so
other processes sharing the cores do not distort the ratio; ``--clock wall``
times wall-clock instead.  The ratio is tonic's minimum over ours.

The HD case (1280x720x2, 6 M events, every slicing mode, 10 frames) runs on
:func:`hd_scene` events unless ``--hd-file`` names a real recording: the
repository has no real 1280x720 recording.  The generator's locality (how many
cache lines a run of events touches) is printed beside the real 640x480
Prophesee recording's, so the two can be compared.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

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
from dvsapp.core.events import Packet, SensorSize, empty_events, make_events, random_events  # noqa: E402
from dvsapp.core.filters import Denoise, HotPixel, Refractory, SpatialAdapter  # noqa: E402

#: the clock of :func:`best_time`: ``time.thread_time`` (CPU time of this one thread,
#: robust to other processes sharing the cores) or ``time.perf_counter`` (wall); set by ``--clock``
CLOCK = time.thread_time


def best_time(fn, repeat: int) -> tuple[float, object]:
    """(minimum time, output) of ``repeat`` runs."""
    times, out = timings(fn, repeat)
    return times[0], out


def timings(fn, repeat: int) -> tuple[list[float], object]:
    """Sorted times of ``repeat`` runs of ``fn`` (by :data:`CLOCK`) and the last output."""
    times, out = [], None
    for _ in range(max(1, repeat)):
        t0 = CLOCK()
        out = fn()
        times.append(CLOCK() - t0)
    return sorted(times), out


def hd_scene(
    n: int,
    width: int = 1280,
    height: int = 720,
    *,
    duration_us: int = 1_000_000,
    n_objects: int = 16,
    noise: float = 0.05,
    events_per_pixel: float = 7.0,
    fire_us: int = 1_000,
    readout_us: int = 100,
    seed: int = 0,
) -> np.ndarray:
    """``n`` events spread like a real HD recording, sorted by ``t``.

    Moving object edges (``n_objects`` rings of 20-160 px radius drifting at up
    to 300 px/s) whose pixels fire ``events_per_pixel`` times on average within
    about ``fire_us``, ON on the leading and OFF on the trailing edge, plus a
    fraction ``noise`` of uniformly scattered events.  Read out as a Prophesee
    sensor does: within each ``readout_us`` rows in order, x ascending, the
    timestamp rising with the row.
    """
    rng = np.random.default_rng(seed)
    n_noise = int(n * noise)
    n_edge = n - n_noise
    fires = rng.geometric(1 / events_per_pixel, int(n_edge / events_per_pixel) + 16)
    fires = fires[: int(np.searchsorted(np.cumsum(fires), n_edge)) + 1]
    fires[-1] -= int(fires.sum()) - n_edge
    t_px = rng.integers(0, duration_us, len(fires))
    centre = rng.uniform((0, 0), (width, height), (n_objects, 2))
    velocity = rng.uniform((-300, -200), (300, 200), (n_objects, 2))
    radius = rng.uniform(20, 160, n_objects)
    weight = rng.uniform(0.3, 1.0, n_objects)
    obj = rng.choice(n_objects, len(fires), p=weight / weight.sum())
    angle = rng.uniform(0, 2 * np.pi, len(fires))
    pos = np.mod(centre[obj] + velocity[obj] * (t_px[:, None] / 1e6), (width, height))
    r = radius[obj] + rng.normal(0, 1.0, len(fires))
    px = pos[:, 0] + r * np.cos(angle)
    py = pos[:, 1] + r * np.sin(angle)
    on = np.cos(angle) * velocity[obj, 0] + np.sin(angle) * velocity[obj, 1] > 0
    pixel = np.repeat(np.arange(len(fires)), fires)
    nth = np.arange(len(pixel)) - np.repeat(np.cumsum(fires) - fires, fires)
    gap = rng.exponential(fire_us / events_per_pixel, len(pixel)).astype(np.int64)
    t = np.concatenate([t_px[pixel] + gap * nth, rng.integers(0, duration_us, n_noise)])
    x = np.concatenate([px[pixel], rng.uniform(0, width, n_noise)])
    y = np.concatenate([py[pixel], rng.uniform(0, height, n_noise)])
    p = np.concatenate([on[pixel], rng.random(n_noise) < 0.5])
    x = np.clip(x, 0, width - 1).astype(np.int64)
    y = np.clip(y, 0, height - 1).astype(np.int64)
    slot = np.clip(t, 0, duration_us - 1) // readout_us
    order = np.lexsort((x, y, slot))
    ev = empty_events(n)
    ev["x"], ev["y"], ev["p"] = x[order], y[order], p[order]
    ev["t"] = slot[order] * readout_us + y[order] * readout_us // height
    return ev


def locality(events: np.ndarray, size: SensorSize, run: int = 8_000) -> str:
    """Cache lines of float32 frames touched per event over runs of ``run`` events, and events per active pixel."""
    cell = (events["p"].astype(np.int64) * size.height + events["y"]) * size.width + events["x"]
    line = cell // 16
    runs = range(0, len(events) - run + 1, run)
    lines = np.mean([len(np.unique(line[i : i + run])) for i in runs]) / run
    per_pixel = run / np.mean([len(np.unique(cell[i : i + run])) for i in runs])
    return f"{lines:.2f} cache lines and {per_pixel:.1f} events per active pixel in runs of {run:,d} events"


def tonic_to_frame(events, size, kwargs):
    import tonic.transforms as tt

    names = {"time_window_us": "time_window", "start_time_us": "start_time", "end_time_us": "end_time"}
    transform = tt.ToFrame(sensor_size=tuple(size), **{names.get(k, k): v for k, v in kwargs.items()})
    return lambda: transform(events)  # P=2: tonic does not write into its input


def row(name, n, ours_s, tonic_s, same, ours_med=None, tonic_med=None) -> dict:
    r = {
        "case": name,
        "n_events": n,
        "ours_ms": ours_s * 1e3,
        "ours_median_ms": None if ours_med is None else ours_med * 1e3,
        "ours_Mev_per_s": n / ours_s / 1e6,
        "tonic_ms": None if tonic_s is None else tonic_s * 1e3,
        "tonic_median_ms": None if tonic_med is None else tonic_med * 1e3,
        "tonic_Mev_per_s": None if tonic_s is None else n / tonic_s / 1e6,
        "speedup": None if tonic_s is None else tonic_s / ours_s,
        "identical": same,
    }
    med = "" if ours_med is None else f" (med {ours_med * 1e3:.1f})"
    tonic_txt = (
        "" if tonic_s is None else f"{tonic_s * 1e3:10.1f} {n / tonic_s / 1e6:8.1f} {tonic_s / ours_s:7.1f}x"
    )
    if tonic_med is not None:
        tonic_txt += f" (tonic med {tonic_med * 1e3:.0f})"
    same_txt = "" if same is None else ("identical" if same else "MISMATCH")
    print(
        f"{name:<34} {n:>10,d} {ours_s * 1e3:9.1f}{med} {n / ours_s / 1e6:8.1f} {tonic_txt:>28}  {same_txt}"
    )
    return r


def compare(name, events, size, kwargs, repeat, tonic_repeat) -> dict:
    """to_frames against tonic's ToFrame on the same events: min and median of each, identity."""
    ours_t, ours = timings(lambda: to_frames(events, size, **kwargs), repeat)
    tonic_t, theirs = timings(tonic_to_frame(events, size, kwargs), tonic_repeat)
    same = ours.shape == theirs.shape and bool(np.array_equal(ours, theirs))
    return row(
        name, len(events), ours_t[0], tonic_t[0], same, ours_t[len(ours_t) // 2], tonic_t[len(tonic_t) // 2]
    )


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
    ap.add_argument("--hd-n", type=int, default=6_000_000, help="events for the 1280x720 case")
    ap.add_argument("--hd-repeat", type=int, default=11)
    ap.add_argument("--hd-file", type=Path, default=None, help="a real HD recording for the 1280x720 case")
    ap.add_argument("--only-hd", action="store_true", help="run the 1280x720 case alone")
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
    import numba

    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS")}
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
        f"tonic {tonic.__version__}, torch {torch.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} cpus visible, one thread ({' '.join(f'{k}={v}' for k, v in threads.items())}), "
        f"{args.clock} time, min (median) of {args.repeat} runs ({args.hd_repeat} for HD; tonic "
        f"{args.tonic_repeat}); "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(header)
    print("-" * len(header))
    results = []
    results += hd_cases(args)
    if args.only_hd:
        write_json(args, results, threads)
        return

    # --- to_frames vs tonic ToFrame, every slicing mode, same events in one run
    cases = {
        "n_time_bins=10": {"n_time_bins": 10},
        "time_window=10ms (100 frames)": {"time_window_us": 10_000},
        "time_window=10ms overlap=5ms": {"time_window_us": 10_000, "overlap": 5_000},
        "event_count=N/20": {"event_count": args.n // 20},
        "n_event_bins=10": {"n_event_bins": 10},
    }
    for name, kwargs in cases.items():
        results.append(compare(f"to_frames {name}", ev, size, kwargs, args.repeat, args.tonic_repeat))

    real = REPO.parent / "shared" / "data" / "prophesee_evt2_640x480.raw"
    if real.is_file():
        rev = read_real(real)
        if rev is not None:
            rsize = SensorSize(640, 480, 2)
            for name, kwargs in {
                "n_time_bins=10": {"n_time_bins": 10},
                "time_window=1ms": {"time_window_us": 1_000},
            }.items():
                name = f"real evt2 640x480 {name}"
                results.append(compare(name, rev, rsize, kwargs, args.repeat, args.tonic_repeat))

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

    write_json(args, results, threads)


def hd_cases(args) -> list[dict]:
    """The 1280x720 sensor: 6 M events, every slicing mode giving 10 frames (19 with overlap)."""
    size = SensorSize(1280, 720, 2)
    if args.hd_file is not None:
        from dvsapp.core.io import open_events

        reader = open_events(args.hd_file)
        ev = reader.read_all()[: args.hd_n]
        size = reader.sensor_size
        label = f"real {args.hd_file.name} {size.width}x{size.height}"
    else:
        ev = hd_scene(args.hd_n, size.width, size.height)
        label = f"generated {size.width}x{size.height}"
        print(f"(no real 1280x720 recording in the repository: {label} events from hd_scene)")
    print(f"{label}: {locality(ev, size)}")
    real = REPO.parent / "shared" / "data" / "prophesee_evt2_640x480.raw"
    rev = read_real(real) if real.is_file() else None
    if rev is not None:
        print(f"real Prophesee EVT2 640x480: {locality(rev, SensorSize(640, 480, 2))}")
    n = len(ev)
    span = int(ev["t"][-1] - ev["t"][0])
    cases = {
        "n_time_bins=10": {"n_time_bins": 10},
        "time_window=span/10": {"time_window_us": span / 10},
        "time_window=span/10 overlap=half": {"time_window_us": span / 10, "overlap": span / 20},
        "event_count=N/10": {"event_count": n // 10, "include_incomplete": True},
        "n_event_bins=10": {"n_event_bins": 10},
    }
    to_frames(ev[:1000], size, n_time_bins=10)  # compile (or load) the kernel outside the timing
    out = []
    for name, kwargs in cases.items():
        out.append(compare(f"HD {name}", ev, size, kwargs, args.hd_repeat, args.tonic_repeat))
    return out


def write_json(args, results, threads) -> None:
    if not args.json:
        return
    import numba
    import tonic
    import torch

    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "tonic": tonic.__version__,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus_visible": os.cpu_count(),
        "threads": threads,
        "clock": args.clock,
        "load_average_end": os.getloadavg()[0],
    }
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
