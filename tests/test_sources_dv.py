"""``dv://`` live source against a real dv-processing ``NetworkWriter`` on 127.0.0.1.

The writer runs in a subprocess (``python -m core.sources.dv FILE PORT``) so it can
be killed and restarted like a real server.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import SourceError
from core.events import concat

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(path: Path, port: int, *extra: str, wait_go: bool = False) -> subprocess.Popen:
    """Start a writer serving ``path``; returns once it listens (or is ready, with ``wait_go``)."""
    args = [sys.executable, "-m", "core.sources.dv", str(path), str(port), *extra]
    if wait_go:
        args.append("--go-on-stdin")
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline().strip()
    assert line in ("serving", "ready"), f"server did not start: {line!r}"
    return proc


def go(proc: subprocess.Popen) -> None:
    """Let a ``--go-on-stdin`` server bind its port."""
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "serving"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


@pytest.fixture
def recording(shared_data) -> Path:
    return shared_data / "dvxplorer_320x240.aedat4"


def test_connection_refused_is_a_source_error():
    from core.sources import open_source

    with pytest.raises(SourceError, match="cannot connect"):
        open_source(f"dv://127.0.0.1:{free_port()}")


def test_dv_source_receives_every_event(recording):
    from core.io import open_events
    from core.sources import open_source

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
    assert len(got) == len(expected) == 111_954
    assert np.array_equal(got, expected)
    for p in packets:
        assert len(p) == 0 or p.events["t"][-1] < p.until_us
    assert any("gave up" in m for m in messages)


def test_dv_source_reconnects_after_restart(recording):
    from core.sources import open_source

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
    assert sum(len(p) for p in packets) >= 30_000 + 111_954
