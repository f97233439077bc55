"""The asyncio pipeline: end-to-end equality with offline binning, backpressure, errors, controls, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from dvsapp.core.classify import Prediction, StreamingClassifier
from dvsapp.core.errors import EventFileError, OutputExistsError, SourceError
from dvsapp.core.events import Packet, SensorSize, random_events
from dvsapp.core.pipeline import (
    CallbackSink,
    CsvSink,
    JsonLinesSink,
    ListSink,
    Pipeline,
    StatsSink,
    record_source,
    run_pipeline,
    segments_truth,
)
from dvsapp.core.sources import ArraySource, Source, open_source

OVERLOAD_S = float(os.environ.get("DVSAPP_OVERLOAD_S", "2"))
"""Seconds of simulated overload in the CI test (the benchmark runs 30 s)."""


def tiny_classifier(seed: int = 0) -> StreamingClassifier:
    from dvsapp.core.model import build_model, preset

    torch.manual_seed(seed)
    return StreamingClassifier(build_model(preset("tiny")).eval())


class SlowClassifier:
    """A classifier stand-in that takes ``delay_s`` per window (for backpressure tests)."""

    class_names = ("rest", "move")

    def __init__(self, delay_s: float, *, size=SensorSize(32, 32), step_us=5_000, steps=4, keep=True) -> None:
        self.delay_s = delay_s
        self.keep = keep
        self.input_size = size
        self.step_us = step_us
        self.steps_per_window = steps
        self.resets = 0
        self.windows = []

    def reset(self) -> None:
        self.resets += 1

    def step(self, window) -> Prediction:
        time.sleep(self.delay_s)
        if self.keep:
            self.windows.append(window)
        done = time.monotonic()
        lat = 0 if window.arrival_s is None else int((done - window.arrival_s) * 1e6)
        cls = int(window.n_events > 0)
        probs = np.array([0.2, 0.8] if cls else [0.8, 0.2], np.float32)
        return Prediction(
            window.t_end_us, probs, self.class_names[cls], cls, 0.8, None, lat, window.index,
            window.t_start_us, window.n_events, self.delay_s * 1e3,
        )  # fmt: skip


def offline_probs(classifier: StreamingClassifier, events, sensor_size, t0_us: int, t_end_us: int):
    """The reference: adapt + bin the whole recording offline, one model pass, probs at each window end."""
    from dvsapp.core.binning import to_frames
    from dvsapp.core.filters import SpatialAdapter

    size = classifier.input_size
    if tuple(sensor_size[:2]) != tuple(size[:2]):
        events = SpatialAdapter(SensorSize(*sensor_size), size)(events)
    frames = to_frames(
        events, size, time_window_us=classifier.step_us, start_time_us=t0_us, end_time_us=t_end_us
    )
    with torch.inference_mode():
        logits, _ = classifier.model(torch.from_numpy(frames).unsqueeze(1))
    t = classifier.steps_per_window
    return torch.softmax(logits[t - 1 :: t, 0], -1).numpy()


# ------------------------------------------------------------- end to end
def check_equal_to_offline(path, sensor_size):
    from dvsapp.core.io import open_events

    clf = tiny_classifier()
    sink = ListSink()
    src = open_source(f"file:{path}?speed=0")
    metrics = run_pipeline(Pipeline(src, clf, sinks=[sink]))
    preds = sink.predictions
    events = open_events(path).read_all()
    assert metrics.events_in == len(events)
    assert metrics.dropped_windows == 0 and len(preds) == metrics.windows_done
    assert [p.window_index for p in preds] == list(range(len(preds)))
    ref = offline_probs(clf, events, sensor_size, preds[0].t_start_us, preds[-1].t_us)
    assert ref.shape == (len(preds), 11)
    np.testing.assert_allclose(np.stack([p.probs for p in preds]), ref, atol=1e-5)
    assert sink.closed and src.closed


def test_replay_equals_offline_binning_generated(tmp_path):
    from dvsapp.core.io import write_events

    size = SensorSize(128, 96)
    rng = np.random.default_rng(11)
    ev = random_events(60_000, size, duration_us=900_000, t0_us=123_456, seed=rng)
    path = tmp_path / "rec.h5"
    write_events(path, ev, size)
    check_equal_to_offline(path, size)


def test_replay_equals_offline_binning_real(shared_data):
    check_equal_to_offline(shared_data / "dvxplorer_320x240.aedat4", SensorSize(320, 240))


# ------------------------------------------------------------- backpressure
def test_live_overload_drops_oldest_windows_with_bounded_queue():
    """A live source at 10x what the model handles: bounded queue, counted drops, bounded latency."""
    import gc

    from dvsapp.core.events import Window

    size = SensorSize(32, 32)
    slow = SlowClassifier(0.2, keep=False)  # 200 ms per 20 ms window: 10x overload
    duration_us = int(OVERLOAD_S * 1e6)
    ev = random_events(int(200_000 * OVERLOAD_S), size, duration_us=duration_us)
    src = ArraySource(ev, size, speed=1.0, live=True, packet_us=5_000)
    seen_depths, alive_windows = [], []

    def on_prediction(w, p, m):
        seen_depths.append(m.queue_depth)
        # memory: the windows alive at any time are the queued ones plus a few in flight
        alive_windows.append(sum(type(o) is Window for o in gc.get_objects()))

    pipe = Pipeline(src, slow, sinks=[CallbackSink(on_prediction)], window_queue=4)
    assert pipe.drop_oldest
    m = run_pipeline(pipe)
    n_windows = duration_us // 20_000
    assert m.windows_binned >= n_windows - 1
    assert m.queue_max <= 4 and max(seen_depths) <= 4
    assert len(alive_windows) >= 5 and max(alive_windows) <= 4 + 4  # never the ~100 windows binned
    assert m.dropped_windows > 0
    assert m.windows_done + m.dropped_windows == m.windows_binned
    assert m.windows_done < m.windows_binned / 3
    # kept windows are the newest ones: a window never waits behind more than the queue
    assert m.latency_max_ms < (4 + 1) * 200 + 1000
    assert m.events_in == len(ev)


def test_queued_windows_go_to_the_model_together_with_the_same_predictions(tmp_path):
    """A file replay outruns the model: the windows queued meanwhile share one model call, and
    every prediction equals the one-call-per-window run (and so the offline reference)."""
    from dvsapp.core.io import write_events

    size = SensorSize(64, 64)
    path = tmp_path / "rec.npz"
    write_events(path, random_events(100_000, size, duration_us=4_000_000, seed=4), size)

    class Counting(StreamingClassifier):
        calls: list[int]

        def step(self, window):
            self.calls.append(1)
            return super().step(window)

        def step_many(self, windows):
            self.calls.append(len(windows))
            return super().step_many(windows)

    runs = {}
    for batch in (1, 8):
        clf = Counting(tiny_classifier().model)
        clf.calls = []
        sink = ListSink()
        run_pipeline(
            Pipeline(open_source(f"file:{path}?speed=0"), clf, sinks=[sink], max_batch_windows=batch),
            handle_signals=False,
        )
        runs[batch] = (sink.predictions, clf.calls)
    (one, calls_one), (many, calls_many) = runs[1], runs[8]
    assert set(calls_one) == {1} and max(calls_many) > 1 and max(calls_many) <= 8
    assert sum(calls_many) == len(many) == len(one) > 20
    assert [p.window_index for p in many] == [p.window_index for p in one] == list(range(len(one)))
    np.testing.assert_allclose(np.stack([p.probs for p in many]), np.stack([p.probs for p in one]), atol=1e-5)


def test_replay_blocks_and_drops_nothing():
    size = SensorSize(32, 32)
    slow = SlowClassifier(0.01)
    ev = random_events(20_000, size, duration_us=600_000)
    pipe = Pipeline(ArraySource(ev, size, speed=0), slow, window_queue=2)
    m = run_pipeline(pipe)
    assert not pipe.drop_oldest
    assert m.dropped_windows == 0 and m.queue_max <= 2
    assert m.windows_done == m.windows_binned == 30
    assert [w.index for w in slow.windows] == list(range(30))
    assert sum(w.n_events for w in slow.windows) == len(ev)


# ------------------------------------------------------------------ errors
class BrokenSource(Source):
    """Yields ``n_ok`` packets of 10 ms, then fails like a file corrupt half-way."""

    def __init__(self, events, size, n_ok: int) -> None:
        super().__init__(size, uri="broken.h5")
        self.events = events
        self.n_ok = n_ok

    async def _packets(self):
        from dvsapp.core.sources import iter_packets

        for i, p in enumerate(iter_packets(self.events, packet_us=10_000)):
            if i == self.n_ok:
                raise EventFileError("corrupt chunk at byte 1234", path="broken.h5")
            yield p
            await asyncio.sleep(0)


def test_source_error_keeps_predictions_before_it(tmp_path):
    size = SensorSize(32, 32)
    ev = random_events(10_000, size, duration_us=1_000_000)
    slow = SlowClassifier(0.0)
    lst = ListSink()
    csv = CsvSink(tmp_path / "p.csv")
    src = BrokenSource(ev, size, n_ok=50)  # 500 ms fine, then corrupt
    with pytest.raises(EventFileError, match="corrupt chunk"):
        run_pipeline(Pipeline(src, slow, sinks=[lst, csv]))
    assert len(lst.predictions) >= 500_000 // 20_000 - 1
    assert all(p.t_start_us < 500_000 for p in lst.predictions)
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("window,t_start_us")
    assert len(lines) - 1 == len(lst.predictions)
    assert lst.closed and src.closed


def test_csv_sink_refuses_to_overwrite(tmp_path):
    (tmp_path / "p.csv").write_text("x")
    with pytest.raises(OutputExistsError):
        CsvSink(tmp_path / "p.csv")
    CsvSink(tmp_path / "p.csv", force=True).close()
    assert (tmp_path / "p.csv").read_text().startswith("window,")


# --------------------------------------------------------------- controls
def _run_in_thread(pipe: Pipeline):
    box = {}

    def target():
        try:
            box["metrics"] = asyncio.run(pipe.run())
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    th = threading.Thread(target=target)
    th.start()
    return th, box


def test_stop_from_another_thread_leaves_no_thread():
    got = threading.Event()
    slow = SlowClassifier(0.005, size=SensorSize(64, 64))
    src = open_source("synthetic:1?width=64&height=64")  # live, endless
    closed = []
    sink = CallbackSink(lambda w, p, m: got.set(), on_close=lambda: closed.append(True))
    pipe = Pipeline(src, slow, sinks=[sink])
    th, box = _run_in_thread(pipe)
    assert got.wait(30), "no prediction"
    pipe.stop()
    th.join(15)
    assert not th.is_alive()
    assert "error" not in box and box["metrics"].windows_done >= 1
    assert closed == [True] and src.closed
    assert not [t for t in threading.enumerate() if t.name.startswith("dvsapp-model")]


def test_pause_resume_seek_from_another_thread():
    size = SensorSize(32, 32)
    ev = random_events(40_000, size, duration_us=4_000_000)
    slow = SlowClassifier(0.0)
    seen = []
    first = threading.Event()
    sink = CallbackSink(lambda w, p, m: (seen.append((p.t_start_us, m.paused)), first.set()))
    src = ArraySource(ev, size, speed=1.0)
    pipe = Pipeline(src, slow, sinks=[sink])
    th, box = _run_in_thread(pipe)
    assert first.wait(20)
    pipe.pause()
    time.sleep(0.3)
    n_paused = len(seen)
    time.sleep(0.3)
    assert len(seen) <= n_paused + 5  # at most what was already queued
    pipe.seek(3_000_000)
    pipe.set_speed(0)
    pipe.resume()
    th.join(20)
    assert not th.is_alive() and "error" not in box
    after = [t for t, _ in seen[n_paused + 5 :]]
    assert after and min(after) >= 3_000_000 - 20_000
    assert slow.resets >= 1  # the model state restarted at the seek
    with pytest.raises(SourceError):
        Pipeline(open_source("synthetic:0"), slow).seek(0)


def test_sigint_stops_cleanly():
    slow = SlowClassifier(0.002, size=SensorSize(64, 64))
    pipe = Pipeline(open_source("synthetic:2?width=64&height=64"), slow, sinks=[ListSink()])
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        m = run_pipeline(pipe)
    finally:
        timer.cancel()
    assert not m.running and m.windows_done >= 1
    assert pipe.source.closed


def test_seconds_limit_and_metrics_fields():
    slow = SlowClassifier(0.0, size=SensorSize(64, 64))
    pipe = Pipeline(open_source("synthetic:4?width=64&height=64"), slow)
    m = run_pipeline(pipe, seconds=1.0)
    assert m.events_in > 0 and m.windows_done > 0 and m.realtime_factor is not None
    d = m.as_dict()
    for key in (
        "events_per_s",
        "windows_per_s",
        "model_ms",
        "queue_depth",
        "dropped_windows",
        "latency_p99_ms",
    ):
        assert key in d


# ------------------------------------------------------------------ sinks
def test_stats_and_truth():
    from dvsapp.core.labels import Segment

    truth = segments_truth([Segment(1, 100, 200), Segment(0, 300, 400)])
    assert [truth(t) for t in (50, 100, 199, 200, 350, 400)] == [None, 1, 1, None, 0, None]
    stats = StatsSink(("a", "b"), truth)
    probs = np.array([0.3, 0.7], np.float32)
    for t_end, cls in ((150, 1), (200, 0), (350, 1), (500, 1)):
        stats.add(Prediction(t_end, probs, "ab"[cls], cls, 0.7, latency_us=1000 * t_end))
    s = stats.summary()
    assert s["scored"] == 3 and s["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["per_class"] == {"a": 1, "b": 3} and s["predictions"] == 4
    assert s["latency_p50_ms"] == pytest.approx(275.0)


def test_json_lines_sink(tmp_path):
    import io
    import json

    buf = io.StringIO()
    sink = JsonLinesSink(buf)
    p = Prediction(5, np.array([0.1, 0.9], np.float32), "b", 1, 0.9, window_index=3)
    asyncio.run(sink.consume(None, p))
    row = json.loads(buf.getvalue())
    assert row["label"] == "b" and row["window"] == 3 and row["probs"] == [0.1, 0.9]


# -------------------------------------------------------------- recording
def test_record_source_roundtrip(tmp_path):
    from dvsapp.core.io import open_events

    size = SensorSize(40, 30)
    ev = random_events(5000, size, duration_us=500_000)
    out = tmp_path / "rec.h5"
    result = record_source(ArraySource(ev, size, speed=0), out)
    assert result.n_events == len(ev)
    back = open_events(out).read_all()
    assert np.array_equal(back, ev)
    with pytest.raises(OutputExistsError):
        record_source(ArraySource(ev, size, speed=0), out)


def test_record_live_for_seconds(tmp_path):
    from dvsapp.core.io import open_events

    out = tmp_path / "live.aedat4"
    result = record_source("synthetic:5?width=64&height=64", out, seconds=1.0)
    reader = open_events(out)
    assert reader.sensor_size[:2] == (64, 64)
    assert len(reader.read_all()) == result.n_events > 0


def test_packets_reach_pipeline_even_when_empty():
    """Quiet streams still close windows on time (Packet.until_us moves time)."""
    size = SensorSize(32, 32)

    class Quiet(Source):
        async def _packets(self):
            for k in range(1, 11):
                yield Packet(random_events(0, size), k * 10_000)

    slow = SlowClassifier(0.0)
    m = run_pipeline(Pipeline(Quiet(size), slow))
    windows = slow.windows
    assert m.windows_done == len(windows) >= 4 and all(w.n_events == 0 for w in windows)
    # windows tile the quiet stream time, one after the other, up to its end
    assert all(w.t_end_us - w.t_start_us == 20_000 for w in windows)
    assert all(a.t_end_us == b.t_start_us for a, b in zip(windows, windows[1:]))
    assert 100_000 - 20_000 <= windows[-1].t_end_us <= 100_000


# ------------------------------------------------- model thread, recorder
def test_model_state_changes_run_on_the_model_thread_in_order():
    """reset_model / call_on_model_thread from another thread are done by the model thread, before a step."""
    size = SensorSize(32, 32)
    ev = random_events(20_000, size, duration_us=2_000_000)

    class Recording(SlowClassifier):
        def __init__(self) -> None:
            super().__init__(0.002)
            self.log: list[tuple[str, str]] = []

        def reset(self) -> None:
            super().reset()
            self.log.append(("reset", threading.current_thread().name))

        def step(self, window):
            self.log.append(("step", threading.current_thread().name))
            return super().step(window)

    clf = Recording()
    first = threading.Event()
    pipe = Pipeline(ArraySource(ev, size, speed=2.0), clf, sinks=[CallbackSink(lambda w, p, m: first.set())])
    th, box = _run_in_thread(pipe)
    assert first.wait(20)
    pipe.reset_model()
    pipe.call_on_model_thread(lambda: clf.log.append(("mark", threading.current_thread().name)))
    pipe.set_speed(0)
    th.join(20)
    assert not th.is_alive() and "error" not in box
    kinds = [k for k, _ in clf.log]
    i = kinds.index("reset")
    assert kinds[i + 1] == "mark" and "step" in kinds[i + 2 :]  # in call order, then the stream goes on
    assert {name for _, name in clf.log} == {n for _, n in clf.log if n.startswith("dvsapp-model")}
    assert clf.resets == 1


def test_pipeline_makes_model_input_with_the_classifiers_recipe():
    """A 64x48 sensor into a 16x16 recipe with a clip of 1: cropped, counted, clipped, float32."""
    from dvsapp.core.recipe import InputRecipe

    size = SensorSize(64, 48)
    ev = random_events(30_000, size, duration_us=400_000)
    clf = SlowClassifier(0.0, size=SensorSize(16, 16), step_us=10_000, steps=4)
    clf.recipe = InputRecipe((16, 16, 2), 10_000, 4, clip=1)
    seen_packets = []
    pipe = Pipeline(
        ArraySource(ev, size, speed=0), clf, on_packet=lambda p: seen_packets.append(len(p.events))
    )
    run_pipeline(pipe, handle_signals=False)
    frames = np.concatenate([w.frames for w in clf.windows])
    assert frames.dtype == np.float32 and frames.shape[1:] == (2, 16, 16)
    assert set(np.unique(frames)) == {0.0, 1.0}
    want = clf.recipe.frames(ev, size, t0_us=clf.windows[0].t_start_us, n_steps=len(frames))
    np.testing.assert_array_equal(frames, want)
    assert sum(seen_packets) == len(ev)  # the tap saw every packet, before any filtering


def test_event_recorder_writes_from_its_own_thread(tmp_path):
    from dvsapp.core.io import open_events
    from dvsapp.core.pipeline import EventRecorder

    size = SensorSize(40, 30)
    ev = random_events(6000, size, duration_us=600_000)
    saved, errors = [], []
    rec = EventRecorder(tmp_path / "r.aedat4", size, on_saved=saved.append, on_error=errors.append)
    for part in np.array_split(ev, 7):
        rec.write(part)
    rec.close()
    assert rec.done and errors == [] and saved == [tmp_path / "r.aedat4"] and rec.n_events == len(ev)
    assert np.array_equal(open_events(tmp_path / "r.aedat4").read_all(), ev)
    rec.write(ev)  # after close: ignored
    # a path that cannot be written: one error, from the recorder's thread; writes are then dropped
    bad = EventRecorder(tmp_path / "no" / "such" / "dir" / "x.aedat4", size, on_error=errors.append)
    bad.close()
    bad.write(ev)
    assert len(errors) == 1 and "does not exist" in str(errors[0]) and bad.failed and not bad.n_events
    # a stalled disk never holds more than max_pending_events in memory
    capped = EventRecorder(tmp_path / "c.aedat4", size, max_pending_events=10)
    capped.write(ev[:8])
    capped.write(ev[8:20])
    capped.close()
    assert capped.n_events + capped.dropped_events == 20 and capped.dropped_events in (0, 12)


def test_csv_and_json_predictions_name_their_fields_alike(tmp_path):
    """The CSV sink's columns are the JSON lines' keys (one name for each field)."""
    import io
    import json

    from dvsapp.core.pipeline.sinks import CSV_COLUMNS, CsvSink, JsonLinesSink

    pred = Prediction(160_000, np.array([0.25, 0.75], np.float32), "b", 1, 0.75, window_index=2)
    buf = io.StringIO()
    csv_path = tmp_path / "p.csv"
    csv_sink, json_sink = CsvSink(csv_path), JsonLinesSink(buf)
    asyncio.run(csv_sink.consume(None, pred))
    asyncio.run(json_sink.consume(None, pred))
    csv_sink.close()
    header, row = (line.split(",") for line in csv_path.read_text().splitlines())
    keys = json.loads(buf.getvalue().splitlines()[0])
    assert header == list(CSV_COLUMNS) and set(header) <= set(keys)
    assert dict(zip(header, row))["t_us"] == str(keys["t_us"]) == "160000"


_FIRST_PACKET_PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
from test_pipeline import SlowClassifier
from dvsapp.core import binning
from dvsapp.core.events import SensorSize, random_events
from dvsapp.core.pipeline import ListSink, Pipeline, run_pipeline
from dvsapp.core.sources import ArraySource

class Probe(ArraySource):
    compiled_at_first_packet = None

    async def _packets(self):
        async for packet in super()._packets():
            if Probe.compiled_at_first_packet is None:
                Probe.compiled_at_first_packet = len(binning._count_kernel.signatures)
            yield packet

size = SensorSize(32, 32)
src = Probe(random_events(2_000, size, duration_us=200_000), size, speed=1.0, live=True, packet_us=5_000)
sink = ListSink()
m = run_pipeline(Pipeline(src, SlowClassifier(0.0, size=size), sinks=[sink]))
print(Probe.compiled_at_first_packet, len(sink.predictions), m.dropped_windows)
"""


def test_binning_kernel_is_ready_before_a_live_source_starts():
    """In a fresh process the counting kernel is loaded before the source's first packet, not inside it.

    Its first call costs 0.5-0.9 s; taken inside the first window of a live source it made the
    first windows late, and the live policy dropped them.
    """
    import subprocess
    import sys
    from pathlib import Path

    from dvsapp.core import binning

    if not binning.HAVE_NUMBA:  # pragma: no cover - numba is a dependency
        pytest.skip("no numba kernel on this platform")
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_PACKET_PROBE, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    compiled, n_predictions, dropped = (int(v) for v in out.stdout.split())
    assert compiled >= 1  # the float32 counting signature was already there
    assert n_predictions + dropped == 10  # 200 ms of 20 ms windows, every one accounted for
