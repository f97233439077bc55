"""Live time jumps: the guard on generated packets, the pipeline's restart, and a real dv stream served twice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvsapp.core.errors import ConfigError
from dvsapp.core.events import Packet, SensorSize, concat, random_events
from dvsapp.core.sources.base import Source
from dvsapp.core.sources.timejump import RestartPacket, TimeJump, TimeJumpGuard

REPO = Path(__file__).resolve().parents[1]
SIZE = SensorSize(32, 32)


def recording(n: int = 2_000, seed: int = 0, t0_us: int = 5_000_000) -> np.ndarray:
    return random_events(n, SIZE, duration_us=400_000, t0_us=t0_us, seed=seed)


def guarded(guard: TimeJumpGuard, batches) -> tuple[np.ndarray, list[TimeJump], list[int]]:
    """Every batch through the guard: the delivered events, the jumps, and where each jump's run starts."""
    out, jumps, starts, n = [], [], [], 0
    for batch in batches:
        for run, jump in guard.split(batch):
            if jump is not None:
                jumps.append(jump)
                starts.append(n)
            out.append(run)
            n += len(run)
    return concat(out), jumps, starts


def split_at(events: np.ndarray, cuts) -> list[np.ndarray]:
    edges = [0, *sorted(set(cuts)), len(events)]
    return [events[a:b] for a, b in zip(edges[:-1], edges[1:], strict=False)]


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(cuts=st.lists(st.integers(0, 4_000), max_size=12), passes=st.integers(2, 4))
def test_a_recording_served_again_is_one_jump_per_pass_and_loses_nothing(cuts, passes):
    rec = recording()
    served = concat([rec] * passes)  # each pass with its original timestamps
    got, jumps, starts = guarded(TimeJumpGuard(), split_at(served, [c % len(served) for c in cuts]))
    assert len(got) == len(served)
    assert (np.diff(got["t"]) >= 0).all()  # the delivered stream keeps the source contract
    for name in ("x", "y", "p"):
        np.testing.assert_array_equal(got[name], served[name])
    assert [j.kind for j in jumps] == ["back"] * (passes - 1)
    assert starts == [k * len(rec) for k in range(1, passes)]  # at each new pass, whatever the batches
    span = int(rec["t"][-1] - rec["t"][0])
    for k, (jump, start) in enumerate(zip(jumps, starts, strict=True), 1):
        assert (jump.from_us, jump.to_us) == (int(rec["t"][-1]), int(rec["t"][0]))
        assert jump.stream_us == int(got["t"][start]) == int(got["t"][start - 1]) + 1
        # within a pass, time differences are the original ones
        np.testing.assert_array_equal(np.diff(got["t"][start : start + len(rec)]), np.diff(rec["t"]))
        assert int(got["t"][start + len(rec) - 1]) == int(rec["t"][-1]) + k * (span + 1)


def test_forward_jump_beyond_the_gap_keeps_its_timestamps():
    a = recording(500, seed=1, t0_us=0)
    b = recording(500, seed=2, t0_us=int(a["t"][-1]) + 30_000_000)  # 30 s later
    guard = TimeJumpGuard(max_gap_us=10_000_000)
    got, jumps, starts = guarded(guard, [a[:200], concat([a[200:], b[:10]]), b[10:]])
    np.testing.assert_array_equal(got, concat([a, b]))
    assert [j.kind for j in jumps] == ["forward"] and starts == [len(a)]
    assert jumps[0].stream_us == jumps[0].to_us == int(b["t"][0])
    assert guard.n_jumps == 1 and guard.jumps == jumps
    assert "went forward 30." in jumps[0].describe()
    # a quiet spell shorter than the gap is no jump; no gap at all never jumps forward
    _, none, _ = guarded(TimeJumpGuard(max_gap_us=40_000_000), [a, b])
    _, never, _ = guarded(TimeJumpGuard(max_gap_us=None), [a, b])
    assert none == never == []


def test_a_step_back_within_the_jitter_is_no_jump():
    ev = recording(300, seed=3)
    shaken = ev.copy()
    shaken["t"][100] = int(ev["t"][101]) + 400  # event 101 comes 400 us "late"
    got, jumps, _ = guarded(TimeJumpGuard(jitter_us=1_000), [shaken[:101], shaken[101:]])
    assert jumps == [] and len(got) == len(ev)
    _, strict, _ = guarded(TimeJumpGuard(jitter_us=0), [shaken])
    assert [j.kind for j in strict] == ["back"]


def test_restart_packet_is_a_packet_and_bad_settings_raise():
    jump = TimeJump("back", 10, 3, 11)
    p = RestartPacket(random_events(3, SIZE), 99, jump=jump)
    assert isinstance(p, Packet) and p.jump is jump and len(p) == 3
    assert jump.describe() == "time went back 0.000 s (0.000 s -> 0.000 s)"
    for kwargs in ({"max_gap_us": 0}, {"jitter_us": -1}):
        with pytest.raises(ConfigError):
            TimeJumpGuard(**kwargs)
    assert TimeJumpGuard().split(random_events(0, SIZE)) == []


# ------------------------------------------------------------------ the pipeline restarts at a jump
class Recorder:
    """A classifier stand-in that keeps every window and logs its resets in stream order."""

    class_names = ("rest", "move")

    def __init__(self, size=SIZE, step_us=5_000, steps=4) -> None:
        self.input_size, self.step_us, self.steps_per_window = size, step_us, steps
        self.log: list = []

    def reset(self) -> None:
        self.log.append("reset")

    def step(self, window):
        from dvsapp.core.classify import Prediction

        self.log.append(window)
        probs = np.array([0.5, 0.5], np.float32)
        return Prediction(
            window.t_end_us, probs, "rest", 0, 0.5, None, 0, window.index,
            window.t_start_us, window.n_events, 0.0,
        )  # fmt: skip


class LoopingLiveSource(Source):
    """A live source whose clock goes back at each pass of a recording (as DV looping a playback)."""

    live = True

    def __init__(self, rec: np.ndarray, passes: int, batch: int) -> None:
        super().__init__(SIZE, uri="loop:", description="loop")
        self.served = concat([rec] * passes)
        self.batch = batch

    async def _packets(self):
        guard = TimeJumpGuard()
        for i in range(0, len(self.served), self.batch):
            for run, jump in guard.split(self.served[i : i + self.batch]):
                until = int(run["t"][-1]) + 1
                yield Packet(run, until) if jump is None else RestartPacket(run, until, jump=jump)


def test_pipeline_bins_every_event_of_both_timelines_and_restarts_the_model_between():
    from dvsapp.core.pipeline import Pipeline, run_pipeline

    rec = recording(3_000, seed=5)
    clf = Recorder()
    messages: list[str] = []
    pipe = Pipeline(LoopingLiveSource(rec, 2, 700), clf, drop_oldest=False, on_status=messages.append)
    m = run_pipeline(pipe, handle_signals=False)
    windows = [w for w in clf.log if w != "reset"]
    assert sum(w.n_events for w in windows) == 2 * len(rec)  # every event of both passes binned
    assert sum(float(w.frames.sum()) for w in windows) == 2 * len(rec)
    assert m.time_jumps == 1 and m.late_events == 0 and m.dropped_windows == 0
    assert m.events_binned == 2 * len(rec)
    jump_lines = [msg for msg in messages if "time went back" in msg]
    assert len(jump_lines) == 1 and "binner and model restarted" in jump_lines[0]
    # the model reset sits between the last window of the first pass and the first of the second
    i = clf.log.index("reset")
    assert clf.log.count("reset") == 1 and 0 < i < len(clf.log) - 1
    before, after = clf.log[i - 1], clf.log[i + 1]
    second = int(rec["t"][-1]) + 1  # where the shifted second pass starts
    assert before.t_start_us < second and before.n_events > 0
    assert after.t_start_us == second // clf.step_us * clf.step_us  # a fresh binner's grid
    assert sum(w.n_events for w in clf.log[i + 1 :]) == len(rec)


# ------------------------------------------- acceptance: a real dv stream served twice, `dvsapp classify --live`
def test_cli_live_stream_served_twice_with_its_timestamps_bins_every_event(shared_data):
    """DV looping a playback: a real ``NetworkWriter`` serves one recording twice with its original
    timestamps; every event of both passes reaches the binner and the restart is reported."""
    import subprocess
    import sys

    from dvnet import dvsapp_command, free_port, stop

    from dvsapp.core.classify import load_classifier
    from dvsapp.core.io import open_events

    path = shared_data / "dvxplorer_320x240.aedat4"
    reader = open_events(path)
    events = reader.read_all()
    on_input = len(
        load_classifier().recipe.adapt(events, reader.sensor_size)
    )  # the model's crop of the sensor
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "dvnet_passes.py"), str(path), str(port), "--passes", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout.readline().strip() == "serving"
        cli = subprocess.Popen(
            [*dvsapp_command(), "classify", "--live", "--json", "--source",
             f"dv://127.0.0.1:{port}?retries=1&backoff_s=0.05"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        out, err = cli.communicate(timeout=120)
        served = server.stdout.readline().strip()
    finally:
        stop(server)
    assert cli.returncode == 0, err
    assert served == f"served {2 * len(events)}"
    summaries = [json.loads(ln)["summary"] for ln in err.splitlines() if ln.startswith('{"summary"')]
    assert len(summaries) == 1, err
    summary = summaries[0]
    assert summary["events_in"] == 2 * len(events), err  # every event received ...
    assert summary["events_binned"] == 2 * on_input, err  # ... and binned, both passes
    assert summary["time_jumps"] == 1, err
    predictions = [json.loads(ln) for ln in out.splitlines()]
    assert len(predictions) == summary["windows"] >= 4  # the model ran on both timelines
    if summary["dropped_windows"] == 0:  # a model that kept up (the live policy drops whole windows)
        assert sum(p["n_events"] for p in predictions) == 2 * on_input
    jump_lines = [ln for ln in err.splitlines() if "time went back" in ln]
    assert len(jump_lines) == 1 and "binner and model restarted" in jump_lines[0], err
    t_ends = [p["t_us"] for p in predictions]
    assert t_ends == sorted(t_ends)


def test_a_file_whose_time_goes_back_is_still_a_bad_input_error(tmp_path):
    """Files are not guarded: replaying one whose time goes back fails naming the event."""
    import asyncio

    from dvsapp.core.errors import EventFileError
    from dvsapp.core.sources import open_source

    path = tmp_path / "looped.csv"
    path.write_text("# sensor 8x8\nt,x,y,p\n100,1,1,1\n200,2,2,0\n50,3,3,1\n300,4,4,0\n")
    src = open_source(str(path))
    assert not src.live

    async def drain():
        return [p async for p in src]

    with pytest.raises(EventFileError, match="looped.csv: timestamps are not sorted: event 2 has t=50 us"):
        asyncio.run(drain())


def test_the_gui_status_bar_figures_carry_the_time_jumps():
    from dvsapp.app.gui.worker import _metrics
    from dvsapp.core.pipeline import MetricsSnapshot

    assert _metrics(MetricsSnapshot(time_jumps=2, windows_done=5), None).time_jumps == 2
