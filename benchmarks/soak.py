"""Soak: a looping replay through the whole pipeline for a long time, RSS and queues sampled.

The bundled recording (``recordings/gestures.aedat4``) is replayed in a loop with the
bundled model.  Two phases: ``--calm-s`` seconds at 1x real time, then the rest at
``--speed`` (10x), which is more than the model keeps up with on 2 CPU cores.

* ``--gui`` (default): the real main window, offscreen (``QT_QPA_PLATFORM=offscreen``),
  drawing at its normal rate: file source -> pipeline -> model (with attention taps)
  -> GUI views.
* ``--headless``: the same pipeline with no GUI (a statistics sink only).

``--policy live`` (default) runs the pipeline with the live-source policy (drop whole
windows oldest-first when the model lags), as a sensor would, so the overload phase
shows bounded drops; ``--policy block`` keeps the replay policy (nothing dropped, the
replay slows down to what the model does).

Every ``--every-s`` (10 s) one row goes to the CSV: RSS, queue depths, windows done
and dropped in the interval, latency percentiles, redraws.  At the end a PNG curve is
drawn (OpenCV; matplotlib is not a dependency) and the figures are printed as a
Markdown table.

Usage::

    nice -n 10 python benchmarks/soak.py --minutes 30 --csv /tmp/soak.csv --png docs/soak.png
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

COLUMNS = (
    "elapsed_s",
    "speed",
    "rss_mb",
    "queue_depth",
    "queue_max",
    "results_depth",
    "gui_pending_events",
    "windows_done",
    "dropped_windows",
    "windows_in_interval",
    "dropped_in_interval",
    "latency_p50_ms",
    "latency_p99_ms",
    "model_ms_mean",
    "stream_s",
    "redraws_per_s",
)


def rss_mb() -> float:
    """Resident set size of this process (MiB), from /proc."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def threads_alive() -> int:
    return threading.active_count()


class _Headless:
    """The pipeline in a thread of its own, with a statistics sink."""

    def __init__(self, path: str, speed: float, policy: str) -> None:
        from dvsapp.core.classify import load_classifier
        from dvsapp.core.pipeline import Pipeline, StatsSink, run_pipeline
        from dvsapp.core.sources.file import FileSource

        classifier = load_classifier(None)
        self.source = FileSource(path, speed=speed, loop=True)
        self.stats = StatsSink(classifier.class_names)
        self.pipeline = Pipeline(self.source, classifier, sinks=[self.stats], drop_oldest=(policy == "live"))
        self.error: BaseException | None = None

        def run() -> None:
            try:
                run_pipeline(self.pipeline, handle_signals=False)
            except BaseException as exc:  # noqa: BLE001 - reported at the end
                self.error = exc

        self.thread = threading.Thread(target=run, name="soak-pipeline", daemon=True)
        self.thread.start()

    def set_speed(self, speed: float) -> None:
        self.pipeline.set_speed(speed)

    def pump(self, seconds: float) -> None:
        time.sleep(seconds)

    def pending_events(self) -> int:
        return 0

    def redraws(self) -> int:
        return 0

    def close(self) -> None:
        self.pipeline.stop()
        self.thread.join(30)


class _Gui:
    """The main window offscreen, replaying the file in a loop."""

    def __init__(self, path: str, speed: float, policy: str) -> None:
        from dvsapp.app.gui.app import application
        from dvsapp.app.gui.main_window import MainWindow

        os.environ["DVSAPP_SETTINGS"] = str(Path(tempfile.mkdtemp(prefix="soak_")) / "settings.ini")
        self.app = application()
        self.win = MainWindow()
        self.win.resize(1500, 950)
        self.win.show()
        self.win.loop_check.setChecked(True)
        self.win.set_speed(speed)
        self.win.open_uri(path)
        self.policy = policy
        self.pipeline = None
        deadline = time.monotonic() + 120
        while self.pipeline is None and time.monotonic() < deadline:
            self.pump(0.05)
            session = self.win.worker._session
            controls = None if session is None else session.controls
            if controls is not None and hasattr(controls, "metrics"):
                self.pipeline = controls
        if self.pipeline is None:
            raise SystemExit(f"the GUI pipeline did not start: {self.win.last_error}")
        if policy == "live":
            # a file replay blocks by design; a sensor would not: switch this run to the live policy
            self.pipeline.drop_oldest = True

    @property
    def error(self):
        return self.win.last_error

    def set_speed(self, speed: float) -> None:
        self.win.set_speed(speed)

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.app.processEvents()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.004, left))

    def pending_events(self) -> int:
        return int(self.win.worker._mail_n)

    def redraws(self) -> int:
        return int(self.win.redraw_count)

    def close(self) -> None:
        self.win.close()
        self.app.processEvents()


def draw_png(rows: list[dict], path: Path, calm_s: float) -> None:
    """RSS, queue depths and windows done/dropped against time, 900x520, with OpenCV."""
    import cv2

    w, h = 900, 520
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top = 70, 30, 40
    gap = 22
    panel_h = (h - top - 40 - 2 * gap) // 3
    t = np.array([r["elapsed_s"] for r in rows], float) / 60
    t_max = max(float(t.max()) if len(t) else 1.0, 1e-6)
    panels = [
        ("RSS (MiB)", [("rss", [r["rss_mb"] for r in rows], (200, 80, 20))], True),
        (
            "queue depths (windows waiting for the model / predictions waiting for the sinks)",
            [
                ("window queue", [r["queue_depth"] for r in rows], (20, 120, 20)),
                ("results", [r["results_depth"] for r in rows], (160, 40, 160)),
            ],
            False,
        ),
        (
            "windows per 10 s: classified (green), dropped (red)",
            [
                ("done", [r["windows_in_interval"] for r in rows], (20, 120, 20)),
                ("dropped", [r["dropped_in_interval"] for r in rows], (30, 30, 220)),
            ],
            False,
        ),
    ]
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(
        img, "soak: looping replay of gestures.aedat4", (left, 25), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA
    )

    def xs(tt):
        return (left + tt / t_max * (w - left - right)).astype(np.int32)

    for k, (title, series, _) in enumerate(panels):
        y0 = top + k * (panel_h + gap)
        cv2.rectangle(img, (left, y0), (w - right, y0 + panel_h), (180, 180, 180), 1)
        arrays = [np.asarray(v, float) for _, v, _ in series]
        y_max = max(max((float(a.max()) for a in arrays if len(a)), default=1.0), 1.0) * 1.15
        for a, (_, _, colour) in zip(arrays, series):
            if len(a) < 2:
                continue
            py = (y0 + panel_h - a / y_max * panel_h).astype(np.int32)
            pts = np.stack([xs(t), py], axis=1).reshape(-1, 1, 2)
            cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        cv2.putText(img, title, (left + 5, y0 + 16), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"{y_max:.0f}", (5, y0 + 12), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, "0", (5, y0 + panel_h), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        if 0 < calm_s / 60 < t_max:
            xc = int(xs(np.array([calm_s / 60]))[0])
            cv2.line(img, (xc, y0), (xc, y0 + panel_h), (150, 150, 150), 1)
    cv2.putText(
        img,
        f"minutes (1x until the grey line, then overload); {t_max:.1f} min",
        (left, h - 12),
        font,
        0.45,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def summarise(rows: list[dict], calm_s: float) -> dict:
    calm = [r for r in rows if r["speed"] == 1.0]
    hot = [r for r in rows if r["speed"] != 1.0]
    rss = np.array([r["rss_mb"] for r in rows], float)
    # growth: median of the last quarter minus median of the second quarter (after warm-up)
    q = max(1, len(rss) // 4)
    growth = float(np.median(rss[-q:]) - np.median(rss[q : 2 * q])) if len(rss) >= 4 else float("nan")

    def frac_dropped(part):
        done = sum(r["windows_in_interval"] for r in part)
        dropped = sum(r["dropped_in_interval"] for r in part)
        return done, dropped

    calm_done, calm_drop = frac_dropped(calm)
    hot_done, hot_drop = frac_dropped(hot)
    return {
        "duration_min": rows[-1]["elapsed_s"] / 60 if rows else 0.0,
        "samples": len(rows),
        "rss_min_mb": float(rss.min()) if len(rss) else float("nan"),
        "rss_max_mb": float(rss.max()) if len(rss) else float("nan"),
        "rss_growth_mb": growth,
        "queue_max": max((r["queue_max"] for r in rows), default=0),
        "results_depth_max": max((r["results_depth"] for r in rows), default=0),
        "gui_pending_max": max((r["gui_pending_events"] for r in rows), default=0),
        "calm_windows": calm_done,
        "calm_dropped": calm_drop,
        "hot_windows": hot_done,
        "hot_dropped": hot_drop,
        "hot_p99_ms": float(np.median([r["latency_p99_ms"] for r in hot if r["latency_p99_ms"] is not None]))
        if hot
        else float("nan"),
        "calm_p99_ms": float(
            np.median([r["latency_p99_ms"] for r in calm if r["latency_p99_ms"] is not None])
        )
        if calm
        else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=str(ROOT / "recordings" / "gestures.aedat4"))
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--calm-s", type=float, default=300.0, help="seconds at 1x before the overload phase")
    parser.add_argument("--speed", type=float, default=10.0, help="overload phase speed")
    parser.add_argument("--every-s", type=float, default=10.0)
    parser.add_argument("--policy", choices=("live", "block"), default="live")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--gui", dest="gui", action="store_true", default=True)
    mode.add_argument("--headless", dest="gui", action="store_false")
    parser.add_argument("--csv", default=str(Path(tempfile.gettempdir()) / "dvsapp_soak.csv"))
    parser.add_argument("--png", default=None, help="write the curve here (e.g. docs/soak.png)")
    args = parser.parse_args()

    import dvsapp.core.classify  # noqa: F401  (torch imported before the clock starts)
    import dvsapp.core.pipeline  # noqa: F401

    first_speed = 1.0 if args.calm_s > 0 else args.speed
    # replay a private copy: a recording rewritten in place mid-soak would (correctly) end the run
    import shutil

    private = Path(tempfile.mkdtemp(prefix="soak_rec_")) / Path(args.file).name
    shutil.copyfile(args.file, private)
    runner = (_Gui if args.gui else _Headless)(str(private), first_speed, args.policy)
    pipeline = runner.pipeline
    print(
        f"soak: {'GUI offscreen' if args.gui else 'headless'}, policy {args.policy}, "
        f"{args.minutes} min, 1x for {args.calm_s:.0f} s then {args.speed}x; cpus {os.cpu_count()}",
        flush=True,
    )
    rows: list[dict] = []
    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    speed = first_speed
    last_done = last_drop = 0
    last_redraws = runner.redraws()
    last_t = t0
    first_stream = None
    with open(args.csv, "w", newline="") as f:
        out = csv.DictWriter(f, COLUMNS)
        out.writeheader()
        while time.monotonic() < end:
            runner.pump(min(args.every_s, max(0.0, end - time.monotonic())))
            now = time.monotonic()
            if speed == 1.0 and now - t0 >= args.calm_s and args.speed != 1.0:
                speed = args.speed
                runner.set_speed(speed)
            m = pipeline.metrics()
            if first_stream is None and m.stream_us is not None:
                first_stream = m.stream_us
            redraws = runner.redraws()
            row = {
                "elapsed_s": round(now - t0, 1),
                "speed": speed if now - t0 > args.calm_s or args.calm_s <= 0 else 1.0,
                "rss_mb": round(rss_mb(), 1),
                "queue_depth": m.queue_depth,
                "queue_max": m.queue_max,
                "results_depth": m.results_depth,
                "gui_pending_events": runner.pending_events(),
                "windows_done": m.windows_done,
                "dropped_windows": m.dropped_windows,
                "windows_in_interval": m.windows_done - last_done,
                "dropped_in_interval": m.dropped_windows - last_drop,
                "latency_p50_ms": None if m.latency_p50_ms is None else round(m.latency_p50_ms, 1),
                "latency_p99_ms": None if m.latency_p99_ms is None else round(m.latency_p99_ms, 1),
                "model_ms_mean": round(m.model_ms_mean, 2),
                "stream_s": None
                if m.stream_us is None
                else round((m.stream_us - (first_stream or 0)) / 1e6, 1),
                "redraws_per_s": round((redraws - last_redraws) / max(now - last_t, 1e-6), 1),
            }
            last_done, last_drop, last_redraws, last_t = m.windows_done, m.dropped_windows, redraws, now
            rows.append(row)
            out.writerow(row)
            f.flush()
            print(
                f"{row['elapsed_s']:7.0f}s {speed:4g}x rss {row['rss_mb']:7.1f} MiB q {m.queue_depth}/{m.queue_max} "
                f"res {m.results_depth} win +{row['windows_in_interval']} drop +{row['dropped_in_interval']} "
                f"p99 {row['latency_p99_ms']} ms thr {threads_alive()}",
                flush=True,
            )
            if not getattr(pipeline, "_running", True) and m.windows_done:
                print(f"pipeline stopped early: {runner.error}", flush=True)
                break
    err = runner.error
    runner.close()
    s = summarise(rows, args.calm_s)
    if args.png:
        draw_png(rows, Path(args.png), args.calm_s)
    print(f"\nerror: {err}")
    print("\n| figure | value |\n|---|---|")
    for k, v in s.items():
        print(f"| {k} | {v:.2f} |" if isinstance(v, float) else f"| {k} | {v} |")


if __name__ == "__main__":
    main()
