"""``dv://`` live source against a real dv-processing ``NetworkWriter`` on 127.0.0.1.

The writer runs in a subprocess (``python tests/dvnet_server.py FILE PORT``) so it can
be killed and restarted like a real server.  The CLI tests run ``dvsapp classify
--live --source dv://127.0.0.1:PORT --json`` as a user would.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from dvnet import dvsapp_command, free_port, go, start_server, stop

from dvsapp.core.errors import SourceError
from dvsapp.core.events import concat

REPO = Path(__file__).resolve().parents[1]
N_EVENTS = 111_954
"""Events in ``dvxplorer_320x240.aedat4``."""


@pytest.fixture
def recording(shared_data) -> Path:
    return shared_data / "dvxplorer_320x240.aedat4"


def test_wire_frames_round_trip_and_bad_frames_end_the_stream():
    import io

    from dvsapp.core.events import random_events
    from dvsapp.core.sources.dv_wire import EVENTS, HEADER, STOPPED, read_frame, write_frame

    ev = random_events(50, (8, 8), seed=0)
    buf = io.BytesIO()
    write_frame(buf, HEADER, b'{"width": 8, "height": 8, "camera": "x"}')
    write_frame(buf, EVENTS, ev.tobytes())
    write_frame(buf, STOPPED, b"the server closed the stream")
    buf.seek(0)
    assert read_frame(buf) == (HEADER, b'{"width": 8, "height": 8, "camera": "x"}')
    tag, payload = read_frame(buf)
    assert tag == EVENTS and np.array_equal(np.frombuffer(payload, ev.dtype), ev)
    assert read_frame(buf) == (STOPPED, b"the server closed the stream")
    assert read_frame(buf) is None  # the end of the pipe
    for bad in (b"Q\x01\x00\x00\x00x", b"E\x09\x00\x00\x00short", b"H\xff\xff\xff\x7f", b"E\x01"):
        assert read_frame(io.BytesIO(bad)) is None  # unknown tag, cut payload, absurd length, cut head


def test_the_reader_process_writes_nothing_to_stdout_or_stderr_when_refused():
    """The child reports through its pipe; its stdout and stderr stay empty (core prints nothing)."""
    import os
    import sys

    from dvsapp.core.sources.dv_wire import STOPPED, read_frame

    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvsapp.core.sources.dv_reader", "127.0.0.1", str(free_port()), str(w)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(w,),
    )
    os.close(w)
    with os.fdopen(r, "rb") as frames:
        frame = read_frame(frames)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert frame is not None and frame[0] == STOPPED and frame[1]  # why, in one line
    assert out == b"" and err == b""


def test_connection_refused_is_a_source_error():
    from dvsapp.core.sources import open_source

    with pytest.raises(SourceError, match="cannot connect"):
        open_source(f"dv://127.0.0.1:{free_port()}")


def test_dv_source_receives_every_event(recording):
    from dvsapp.core.io import open_events
    from dvsapp.core.sources import open_source

    expected = open_events(recording).read_all()
    port = free_port()
    server = start_server(recording, port, "--speed", "4")
    try:
        src = open_source(f"dv://127.0.0.1:{port}?retries=2&backoff_s=0.05")
        assert src.live and src.sensor_size[:2] == (320, 240)
        messages = []
        src.on_status = messages.append

        async def main():
            return [p async for p in src]

        packets = asyncio.run(main())
    finally:
        stop(server)
    got = concat([p.events for p in packets])
    assert len(got) == len(expected) == N_EVENTS
    assert np.array_equal(got, expected)
    for p in packets:
        assert len(p) == 0 or p.events["t"][-1] < p.until_us
    assert any("gave up" in m for m in messages)


def test_dv_source_reconnects_after_restart(recording):
    from dvsapp.core.sources import open_source

    port = free_port()
    first = start_server(recording, port, "--speed", "1", "--loop")
    second = start_server(recording, port, "--speed", "4", wait_go=True)
    try:
        src = open_source(f"dv://127.0.0.1:{port}?retries=8&backoff_s=0.05&backoff_max_s=0.2")
        messages = []
        src.on_status = messages.append

        async def main():
            packets = []
            async for p in src:
                packets.append(p)
                n = sum(len(q) for q in packets)
                if first.poll() is None and n > 30_000:
                    first.kill()  # the writer dies mid-stream ...
                    first.wait()
                    go(second)  # ... and a new one comes up on the same port
            return packets

        packets = asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        stop(first)
        stop(second)
    assert src.reconnects == 1
    assert any("reconnected" in m for m in messages)
    until = [p.until_us for p in packets]
    assert until == sorted(until)  # time kept moving forward across the restart
    # everything of the second session arrived after the first one's share
    assert sum(len(p) for p in packets) >= 30_000 + N_EVENTS


# ----------------------------------------------------- `dvsapp classify --live`
def _classify_live(port: int, *query: str) -> subprocess.Popen:
    uri = f"dv://127.0.0.1:{port}?" + "&".join(query)
    return subprocess.Popen(
        [*dvsapp_command(), "classify", "--live", "--source", uri, "--json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _whole_windows(recording) -> int:
    """Whole windows of the bundled model in the recording (0.59 s; 7 of 80 ms), at least 1."""
    from dvsapp.core.classify import load_classifier
    from dvsapp.core.io import open_events

    t = open_events(recording).read_all()["t"]
    return max(1, int(t[-1] - t[0]) // load_classifier().window_us)


def _summary(stderr: str) -> dict:
    rows = [json.loads(ln)["summary"] for ln in stderr.splitlines() if ln.startswith('{"summary"')]
    assert len(rows) == 1, stderr
    return rows[0]


def test_cli_live_receives_every_event(recording):
    """A NetworkWriter serves a real recording; ``dvsapp classify --live`` gets every event and predicts."""
    port = free_port()
    server = start_server(recording, port, "--speed", "1")
    try:
        cli = _classify_live(port, "retries=2", "backoff_s=0.05")
        out, err = cli.communicate(timeout=120)
    finally:
        stop(server)
    assert cli.returncode == 0, err
    summary = _summary(err)
    assert summary["events_in"] == N_EVENTS
    preds = [json.loads(ln) for ln in out.splitlines()]
    # every whole window was classified or, live, dropped and counted (the model lagging at start-up)
    assert len(preds) == summary["predictions"] == summary["windows"] >= 1
    assert summary["windows"] + summary["dropped_windows"] >= _whole_windows(recording)
    assert all({"label", "confidence", "latency_ms"} <= p.keys() for p in preds)
    assert sum(p["n_events"] for p in preds) <= N_EVENTS
    assert "gave up" in err  # the writer finished: the stream ended cleanly


def test_cli_live_reconnects_when_the_writer_is_killed_and_restarted(recording):
    port = free_port()
    first = start_server(recording, port, "--speed", "1", "--loop")
    second = start_server(recording, port, "--speed", "1", wait_go=True)
    lines: list[str] = []
    try:
        cli = _classify_live(port, "retries=6", "backoff_s=0.05", "backoff_max_s=0.3")
        reader = threading.Thread(target=lambda: lines.extend(cli.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while len(lines) < 10 and time.monotonic() < deadline:  # the first writer's predictions
            time.sleep(0.05)
        assert len(lines) >= 10, "no predictions from the first writer"
        first.kill()  # the writer dies mid-stream ...
        first.wait()
        n_before = len(lines)
        time.sleep(0.5)
        go(second)  # ... and a new one comes up on the same port, serving the recording once
        _, err = cli.communicate(timeout=90)
        reader.join(10)
    finally:
        stop(first)
        stop(second)
    assert cli.returncode == 0, err
    summary = _summary(err)
    assert summary["reconnects"] == 1
    assert "stream lost" in err and "reconnected" in err
    assert summary["events_in"] >= N_EVENTS  # all of the second session, plus the first one's share
    # predictions carried on after the restart: the second session's whole windows, less one
    # for the window open when the stream changed; the live policy may drop a window when the
    # new session's first packets arrive in a burst, and it counts every one it drops
    assert len(lines) - n_before + summary["dropped_windows"] >= max(1, _whole_windows(recording) - 1)
    t_ends = [json.loads(ln)["t_us"] for ln in lines]
    assert t_ends == sorted(t_ends)
