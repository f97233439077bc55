"""Pipeline throughput and latency (the figures of issue 5).

1. ``replay``: real-time factor of a file replay at ``speed=0`` (as fast as possible)
   of ``recordings/gestures.aedat4`` through the whole pipeline (AEDAT 4 decode ->
   crop -> StreamBinner -> the shipped tiny model -> statistics sink).  Real-time
   factor = recording time processed / wall time (model loading excluded).  Goal >= 5x.
2. ``live``: a live source (``ArraySource(live=True)``, real-time pacing) of random
   events at ``--rate`` (1 M events/s) on a 128x128 sensor through the same pipeline
   with the live policy; latency = arrival of a window's last event -> its
   prediction.  Goal p99 <= 50 ms.
3. ``overload``: a live source producing ``--overload-x`` times what the model
   handles (a stand-in model that sleeps), for ``--overload-s`` seconds: dropped
   windows, the queue bound, latency and RSS at the start and the end.

Usage::

    flock /tmp/bench.lock python benchmarks/bench_pipeline.py [--threads N] [--live-s 10] [--overload-s 30]
    python benchmarks/bench_pipeline.py --skip live,overload --steps 4 2 1 --batch 1 8   # window / batching sweep

Prints one block per measurement; the README's figures come from here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_replay(
    path: Path, repeats: int, steps: int | None = None, batch: int = 8, twin: bool = True
) -> list[dict]:
    """``repeats`` file replays; ``steps`` timesteps per window (default the model's), at most
    ``batch`` queued windows per model call; ``twin``: the classifier runs the model's
    inference twin (the default) or the model's own modules."""
    from dvsapp.core.classify import load_classifier
    from dvsapp.core.pipeline import Pipeline, StatsSink, run_pipeline
    from dvsapp.core.sources import open_source

    rows = []
    for _ in range(repeats):
        clf = load_classifier(None)
        clf.inference_twin = twin
        stats = StatsSink(clf.class_names)
        src = open_source(f"file:{path}?speed=0")
        t0 = time.perf_counter()
        pipe = Pipeline(src, clf, sinks=[stats], steps_per_window=steps, max_batch_windows=batch)
        m = run_pipeline(pipe, handle_signals=False)
        wall = time.perf_counter() - t0
        span_s = (m.stream_us - src_first(path)) / 1e6
        rows.append(
            {
                "wall_s": wall,
                "span_s": span_s,
                "rtf": span_s / wall,
                "windows": m.windows_done,
                "events": m.events_in,
                "model_ms": m.model_ms_mean,
                "dropped": m.dropped_windows,
            }
        )
    return rows


def src_first(path: Path) -> int:
    from dvsapp.core.io import open_events

    reader = open_events(path)
    for chunk in reader.iter_chunks():
        if len(chunk):
            return int(chunk["t"][0])
    return 0


def bench_live(rate: float, seconds: float) -> dict:
    from dvsapp.core.classify import load_classifier
    from dvsapp.core.events import SensorSize, random_events
    from dvsapp.core.pipeline import Pipeline, StatsSink, run_pipeline
    from dvsapp.core.sources import ArraySource

    clf = load_classifier(None)
    size = SensorSize(128, 128)
    duration_us = int(seconds * 1e6)
    ev = random_events(int(rate * seconds), size, duration_us=duration_us, seed=0)
    src = ArraySource(ev, size, speed=1.0, live=True, packet_us=1_000)
    stats = StatsSink(clf.class_names)
    pipe = Pipeline(src, clf, sinks=[stats])
    m = run_pipeline(pipe, handle_signals=False)
    lat = np.asarray(stats.latencies_ms[3:])  # the first windows include torch's warm-up
    return {
        "rate": m.events_in / max(m.elapsed_s, 1e-9),
        "windows": m.windows_done,
        "dropped": m.dropped_windows,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "max": float(lat.max()),
        "model_ms": m.model_ms_mean,
    }


def bench_overload(factor: float, seconds: float) -> dict:
    """A live source at ``factor`` x what a stand-in model (sleeping per window) handles."""
    from dvsapp.core.classify import Prediction
    from dvsapp.core.events import SensorSize, random_events
    from dvsapp.core.pipeline import CallbackSink, Pipeline, run_pipeline
    from dvsapp.core.sources import ArraySource

    size = SensorSize(64, 64)
    step_us, steps = 10_000, 8
    window_s = step_us * steps / 1e6
    delay_s = window_s * factor

    class Slow:
        class_names = ("a", "b")
        input_size = size
        step_us_ = step_us

        def __init__(self) -> None:
            self.step_us = step_us
            self.steps_per_window = steps

        def reset(self) -> None:
            pass

        def step(self, window):
            time.sleep(delay_s)
            lat = int((time.monotonic() - window.arrival_s) * 1e6)
            probs = np.array([0.5, 0.5], np.float32)
            return Prediction(window.t_end_us, probs, "a", 0, 0.5, None, lat, window.index,
                              window.t_start_us, window.n_events, delay_s * 1e3)  # fmt: skip

    ev = random_events(int(200_000 * seconds), size, duration_us=int(seconds * 1e6), seed=1)
    src = ArraySource(ev, size, speed=1.0, live=True, packet_us=5_000)
    samples = []
    sink = CallbackSink(lambda w, p, m: samples.append((m.elapsed_s, rss_mb(), m.queue_depth)))
    m = run_pipeline(Pipeline(src, Slow(), sinks=[sink]), handle_signals=False)
    rss = [s[1] for s in samples]
    return {
        "windows_binned": m.windows_binned,
        "windows_done": m.windows_done,
        "dropped": m.dropped_windows,
        "queue_max": m.queue_max,
        "queue_bound": m.queue_bound,
        "lat_p99": m.latency_p99_ms,
        "lat_max": m.latency_max_ms,
        "rss_first": rss[0] if rss else float("nan"),
        "rss_last": rss[-1] if rss else float("nan"),
        "rss_max": max(rss) if rss else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=str(ROOT / "recordings" / "gestures.aedat4"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1e6)
    parser.add_argument("--live-s", type=float, default=10.0)
    parser.add_argument("--overload-x", type=float, default=10.0)
    parser.add_argument("--overload-s", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--skip", default="", help="comma list of replay,live,overload to skip")
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[0], help="replay: timesteps per window (0: the model's)"
    )
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[8], help="replay: most queued windows per model call"
    )
    parser.add_argument(
        "--runner",
        nargs="+",
        choices=["twin", "model"],
        default=["twin"],
        help="replay: the model's inference twin (what classify runs) and/or its own modules",
    )
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    print(
        f"cpu cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, "
        f"load average {tuple(round(x, 2) for x in os.getloadavg())}"
    )
    if "replay" not in skip:
        # one replay per setting in turn, repeated, so every setting sees the same load
        settings = [(st, b, r) for st in args.steps for b in args.batch for r in args.runner]
        results: dict[tuple[int, int, str], list[dict]] = {k: [] for k in settings}
        for _ in range(args.repeats):
            for st, b, r in settings:
                results[(st, b, r)] += bench_replay(Path(args.file), 1, st or None, b, twin=r == "twin")
        for (st, b, r), rows in results.items():
            best = max(rows, key=lambda r: r["rtf"])
            print(
                f"\nreplay speed=0 of {Path(args.file).name} ({best['span_s']:.1f} s, {best['events']} events), "
                f"steps per window {st or 'as trained'}, at most {b} windows per model call, "
                f"runner: {'inference twin' if r == 'twin' else 'model'}:"
            )
            for r in rows:
                print(
                    f"  wall {r['wall_s']:6.2f} s  real-time factor {r['rtf']:5.2f}x  windows {r['windows']}  "
                    f"model {r['model_ms']:.1f} ms/window  dropped {r['dropped']}"
                )
            rtfs = [r["rtf"] for r in rows]
            print(f"  median {np.median(rtfs):.2f}x, best {max(rtfs):.2f}x (goal >= 5x)")
    if "live" not in skip:
        r = bench_live(args.rate, args.live_s)
        print(f"\nlive input {args.rate:,.0f} events/s for {args.live_s:g} s (128x128, live policy):")
        print(
            f"  measured input {r['rate']:,.0f} events/s  windows {r['windows']}  dropped {r['dropped']}  "
            f"model {r['model_ms']:.1f} ms/window"
        )
        print(
            f"  latency p50 {r['p50']:.1f} ms  p99 {r['p99']:.1f} ms  max {r['max']:.1f} ms (goal p99 <= 50 ms)"
        )
    if "overload" not in skip:
        r = bench_overload(args.overload_x, args.overload_s)
        print(f"\noverload {args.overload_x:g}x for {args.overload_s:g} s (stand-in model, live policy):")
        print(
            f"  windows binned {r['windows_binned']}  classified {r['windows_done']}  dropped {r['dropped']}  "
            f"queue max {r['queue_max']}/{r['queue_bound']}"
        )
        print(
            f"  latency p99 {r['lat_p99']:.0f} ms  max {r['lat_max']:.0f} ms  "
            f"RSS first {r['rss_first']:.1f} MiB, last {r['rss_last']:.1f} MiB, max {r['rss_max']:.1f} MiB"
        )


if __name__ == "__main__":
    main()
