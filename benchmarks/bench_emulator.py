"""Throughput of the DVS emulator and of the synthetic gesture renderer.

1. ``DvsEmulator.step`` frames/s at 128x128 and 640x480 on a moving textured
   scene (a bright disc and a bar crossing a static texture, 1 kHz frames, shot
   noise on), and on a static frame (the per-pixel cost alone), frames prepared
   in advance so only the emulator is timed.  Reports frames/s, events/frame and
   the cost per megapixel.
2. ``render_gesture``: seconds of CPU per 1.5 s clip at 128x128 (render +
   emulate + rate control), the number the training data generation lives on.
3. ``GestureStream``: scene seconds rendered per wall second (> 1 means the
   ``synthetic`` live source keeps up with real time).

Single thread (``OMP_NUM_THREADS=1`` is set before numpy loads), timed in the
thread's CPU time (``time.thread_time``) so other processes sharing the cores do
not distort the figures (the ``GestureStream`` real-time factor is also given in
wall time)::

    python benchmarks/bench_emulator.py            # all three, prints a Markdown table
    python benchmarks/bench_emulator.py --quick    # fewer repetitions
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from dvsapp.core.emulator import DvsEmulator  # noqa: E402
from dvsapp.core.synth import GestureStream, render_gesture  # noqa: E402


def moving_scene(width: int, height: int, n_frames: int, seed: int = 0) -> list[np.ndarray]:
    """uint8 frames: a static texture with a disc and a bar moving across it."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 200, (12, 16)).astype(np.float32)
    bg = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    frames = []
    s = width / 128
    for i in range(n_frames):
        img = bg.copy()
        ph = 2 * np.pi * i / n_frames
        cx = width / 2 + 0.3 * width * np.cos(ph)
        cy = height / 2 + 0.3 * height * np.sin(ph)
        cv2.circle(img, (int(cx * 16), int(cy * 16)), int(10 * s * 16), 235, -1, cv2.LINE_AA, 4)
        x = (i * 0.25 * s) % width
        cv2.line(
            img, (int(x * 16), 0), (int(x * 16), (height - 1) * 16), 20, max(1, int(4 * s)), cv2.LINE_AA, 4
        )
        frames.append(img)
    return frames


def bench_emulator(width: int, height: int, n_frames: int, repeats: int, *, static: bool = False) -> dict:
    frames = moving_scene(width, height, n_frames)
    if static:  # the per-pixel cost alone: the same frame again and again (only shot noise)
        frames = [frames[0]] * n_frames
    best = float("inf")
    n_events = 0
    for _ in range(repeats):
        emu = DvsEmulator(width, height, shot_noise_rate_hz=0.1, seed=0)
        emu.step(frames[0], 0)
        t0 = time.thread_time()
        n = 0
        for i, frame in enumerate(frames[1:], start=1):
            n += len(emu.step(frame, i * 1_000))
        best = min(best, time.thread_time() - t0)
        n_events = n
    fps = (n_frames - 1) / best
    return {
        "size": f"{width}x{height}" + (" static" if static else " moving"),
        "frames_per_s": fps,
        "events_per_frame": n_events / (n_frames - 1),
        "ms_per_megapixel": 1e3 / fps / (width * height / 1e6),
    }


def bench_render(n_clips: int) -> dict:
    times, counts = [], []
    for k in range(n_clips):
        t0 = time.thread_time()
        ev = render_gesture(k % 11, 10_000 + k)
        times.append(time.thread_time() - t0)
        counts.append(len(ev))
    return {
        "s_per_clip_median": float(np.median(times)),
        "s_per_clip_max": max(times),
        "events_median": int(np.median(counts)),
    }


def bench_stream(scene_s: float) -> tuple[float, float]:
    """Scene seconds per second of wall time and per second of this thread's CPU time."""
    stream = GestureStream(1, chunk_us=10_000)
    t0, c0 = time.perf_counter(), time.thread_time()
    for _, until_us, _ in stream:
        if until_us >= scene_s * 1e6:
            break
    return scene_s / (time.perf_counter() - t0), scene_s / (time.thread_time() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description="DVS emulator / synthetic gesture benchmark")
    ap.add_argument("--quick", action="store_true", help="fewer frames and clips")
    args = ap.parse_args()
    q = args.quick
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(
        f"machine: {cpu}, {os.cpu_count()} cores, numpy {np.__version__}, 1 thread, thread CPU time, best of runs"
    )
    print()
    print("| emulator input | frames/s | events/frame | ms per megapixel |")
    print("|---|---:|---:|---:|")
    for w, h, n, static in (
        (128, 128, 600 if q else 2000, False),
        (640, 480, 100 if q else 400, False),
        (128, 128, 600 if q else 2000, True),
        (640, 480, 100 if q else 400, True),
    ):
        r = bench_emulator(w, h, n, repeats=2 if q else 3, static=static)
        print(
            f"| {r['size']} | {r['frames_per_s']:.0f} | {r['events_per_frame']:.0f} | {r['ms_per_megapixel']:.2f} |"
        )
    print()
    r = bench_render(11 if q else 33)
    print(
        f"render_gesture 1.5 s clip at 128x128: median {r['s_per_clip_median']:.3f} s, "
        f"max {r['s_per_clip_max']:.3f} s CPU, median {r['events_median']} events"
    )
    wall, cpu_x = bench_stream(3.0 if q else 10.0)
    print(
        f"GestureStream: {wall:.1f}x real time (scene s per wall s), {cpu_x:.1f}x per CPU second of one core"
    )


if __name__ == "__main__":
    main()
