"""GUI redraw rate under a 1 M events/s stream (offscreen Qt).

Two measurements:

* ``full``: the main window replays a generated recording of ``--rate`` events/s
  in real time through the whole pipeline (file source -> binner -> model ->
  views) and counts redraws per second of the window's timer.
* ``view``: the event view alone: ``add_events`` + ``refresh`` per frame with the
  events of one 1/60 s slice at ``--rate``, timed (ms per frame), for each sensor
  size; shows the cost does not depend on the rate.

Usage::

    python benchmarks/bench_gui.py [--rate 1e6] [--seconds 6] [--sensor 346x260] [--model CKPT]

Prints a small table; the figures for the README come from here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _app():
    from dvsapp.app.gui.app import application

    return application()


def bench_view(rates: list[float], sensors: list[str], frames: int = 120) -> list[tuple[str, float, float]]:
    """ms per redraw of the EventView (write the slice's events + decay + upload)."""
    from dvsapp.app.gui.event_view import EventView
    from dvsapp.core.events import SensorSize, random_events

    _app()
    rows = []
    for sensor_text in sensors:
        sensor = SensorSize.parse(sensor_text)
        view = EventView(sensor, max_fps=0)
        view.resize(800, 600)
        view.show()
        for rate in rates:
            per_frame = int(rate / 60)
            ev = random_events(per_frame * frames, sensor, duration_us=int(frames / 60 * 1e6), seed=1)
            t0 = time.perf_counter()
            for i in range(frames):
                chunk = ev[i * per_frame : (i + 1) * per_frame]
                view.add_events(chunk)
                view.set_time(int(chunk["t"][-1]) if len(chunk) else 0)
                view.refresh()
            ms = (time.perf_counter() - t0) / frames * 1e3
            rows.append((str(sensor), rate, ms))
        view.close()
    return rows


def bench_full(rate: float, seconds: float, sensor_text: str, model: str | None) -> dict:
    """Redraws per second of the main window while replaying ``rate`` events/s in real time."""
    from dvsapp.app.gui.main_window import MainWindow
    from dvsapp.core.events import SensorSize, random_events
    from dvsapp.core.io import write_events

    app = _app()
    sensor = SensorSize.parse(sensor_text)
    tmp = Path(tempfile.mkdtemp(prefix="bench_gui_"))
    duration_us = int((seconds + 2) * 1e6)
    n = int(rate * duration_us / 1e6)
    path = tmp / "stream.npz"
    write_events(path, random_events(n, sensor, duration_us=duration_us, seed=0), sensor)
    if model is None:
        from dvsapp.core.model import PRESETS, SpikingTransformer, bundled_checkpoint, save_checkpoint

        if Path(bundled_checkpoint()).is_file():
            model = str(bundled_checkpoint())
        else:
            model = str(tmp / "tiny.safetensors")
            save_checkpoint(model, SpikingTransformer(PRESETS["tiny"]), metadata={})
    os.environ["DVSAPP_SETTINGS"] = str(tmp / "settings.ini")
    import dvsapp.core.classify  # noqa: F401  (import torch before the clock starts)
    import dvsapp.core.pipeline  # noqa: F401

    win = MainWindow()
    win.resize(1500, 950)
    win.show()
    win.set_speed(1.0)
    win.open_uri(str(path), model)
    # wait for the stream to start, then measure
    t_end = time.monotonic() + 60
    while not win.predictions and time.monotonic() < t_end:
        app.processEvents()
        time.sleep(0.002)
    count0, t0 = win.redraw_count, time.monotonic()
    ev_rates, model_ms, dropped = [], [], 0
    while time.monotonic() - t0 < seconds:
        app.processEvents()
        time.sleep(0.001)
        if win.latest is not None:
            m = win.latest.metrics
            ev_rates.append(m.events_per_s)
            model_ms.append(m.model_ms)
            dropped = m.dropped_windows
    elapsed = time.monotonic() - t0
    fps = (win.redraw_count - count0) / elapsed
    win.close()
    return {
        "fps": fps,
        "events_per_s": float(np.median(ev_rates)) if ev_rates else 0.0,
        "model_ms": float(np.median(model_ms)) if model_ms else 0.0,
        "dropped_windows": dropped,
        "sensor": str(sensor),
        "error": win.last_error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1e6, help="events per second")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--sensor", default="346x260")
    parser.add_argument("--model", default=None)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()

    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()}")
    print("\nEventView redraw cost (add_events of a 1/60 s slice + decay + upload):")
    print(f"{'sensor':>10} {'events/s':>12} {'ms/frame':>9} {'max fps':>8}")
    for sensor, rate, ms in bench_view([1e5, 1e6, 1e7], ["128x128", "346x260", "640x480"]):
        print(f"{sensor:>10} {rate:>12,.0f} {ms:>9.2f} {1000 / ms:>8.0f}")
    if not args.skip_full:
        r = bench_full(args.rate, args.seconds, args.sensor, args.model)
        print(f"\nMain window, {args.sensor} file replayed in real time at {args.rate:,.0f} events/s:")
        print(
            f"redraws/s {r['fps']:.1f} | measured input {r['events_per_s']:,.0f} events/s | "
            f"model {r['model_ms']:.1f} ms/window | dropped windows {r['dropped_windows']} | error {r['error']}"
        )


if __name__ == "__main__":
    main()
