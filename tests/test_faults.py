"""Live faults: a dv stream cut, stalled, corrupted or closed mid-packet; files that vanish or shrink
while replaying; a camera unplugged.

The dv tests use a real dv-processing ``NetworkWriter`` (``tests/dvnet_server.py``)
on 127.0.0.1 and a fault proxy in its own process (``tests/dvnet.py``) between it and
the app.  Only those two listen; the app connects out.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from dvnet import ProxyProcess, free_port, start_server, stop

from dvsapp.core.errors import EventFileError, SourceError
from dvsapp.core.events import SensorSize, random_events
from dvsapp.core.pipeline import CallbackSink, CsvSink, ListSink, Pipeline, run_pipeline

REPO = Path(__file__).resolve().parents[1]
GESTURES = REPO / "recordings" / "gestures.aedat4"


@pytest.fixture
def served():
    """A writer looping the bundled recording in real time, behind a fault proxy."""
    port = free_port()
    server = start_server(GESTURES, port, "--speed", "1", "--loop")
    proxy = ProxyProcess(port)
    try:
        yield server, proxy
    finally:
        proxy.close()
        stop(server)


def dv_uri(proxy: ProxyProcess, **params) -> str:
    query = {"retries": 40, "backoff_s": 0.05, "backoff_max_s": 0.4, **params}
    return f"dv://127.0.0.1:{proxy.port}?" + "&".join(f"{k}={v}" for k, v in query.items())


def consume(src, fault, *, fault_after: int = 5_000, after_reconnect: int = 5_000, timeout_s: float = 45):
    """Read ``src``; call ``fault()`` once ``fault_after`` events arrived; stop once
    ``after_reconnect`` more arrived after a reconnect.  Returns (packets, messages)."""
    messages: list[str] = []
    src.on_status = messages.append

    async def main():
        packets, n, n_at_reconnect, fired = [], 0, None, False
        async for p in src:
            packets.append(p)
            n += len(p.events)
            if not fired and n >= fault_after:
                fired = True
                await asyncio.to_thread(fault)
            if n_at_reconnect is None and src.reconnects:
                n_at_reconnect = n
            if n_at_reconnect is not None and n - n_at_reconnect >= after_reconnect:
                break
        return packets

    try:
        packets = asyncio.run(asyncio.wait_for(main(), timeout_s))
    finally:
        src.close()
    return packets, messages


def check_stream(packets) -> None:
    until = [p.until_us for p in packets]
    assert until == sorted(until)  # time never goes back across the reconnect
    for p in packets:
        t = p.events["t"]
        assert len(t) == 0 or (np.all(np.diff(t) >= 0) and t[-1] < p.until_us)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("cut", r"stream lost \(.+\), reconnecting"),
        ("garbage", r"stream lost \(the reader crashed on bad data.*\), reconnecting"),
        ("close_mid_packet", r"stream lost \(.+\), reconnecting"),
        ("stall", r"no data for \d"),
    ],
)
def test_dv_fault_is_reported_and_the_source_reconnects(served, fault, reason):
    from dvsapp.core.sources import open_source

    _, proxy = served
    src = open_source(dv_uri(proxy, stall_s=1.0))
    action = {
        "cut": proxy.cut,
        "garbage": lambda: proxy.corrupt(300),
        "close_mid_packet": proxy.close_mid_packet,
        "stall": lambda: proxy.stall(2.5),
    }[fault]
    packets, messages = consume(src, action)
    assert src.reconnects >= 1
    assert any(re.search(reason, m) for m in messages), messages
    assert any("reconnected after" in m for m in messages)
    check_stream(packets)
    assert src.events_received >= 10_000
    accepted, _ = proxy.stats()
    assert accepted >= 2  # it really connected again, through the proxy
    assert src.closed and src._reader is None


def test_dv_reconnect_backs_off_while_the_server_refuses(served):
    from dvsapp.core.sources import open_source

    _, proxy = served
    src = open_source(dv_uri(proxy, backoff_s=0.1, backoff_max_s=0.8))

    def outage():
        proxy.refuse()
        proxy.cut()
        time.sleep(2.5)  # connections are refused meanwhile
        proxy.accept()

    t0 = time.monotonic()
    packets, messages = consume(src, lambda: threading.Thread(target=outage, daemon=True).start())
    failed = [m for m in messages if "reconnect attempt" in m]
    waits = [float(x) for x in re.findall(r"next in ([\d.]+) s", " ".join(failed))]
    assert waits and waits == sorted(waits) and max(waits) <= 0.8  # doubling, capped
    assert "refused" in failed[0].lower() or "cannot connect" in failed[0]
    assert src.reconnects == 1 and time.monotonic() - t0 >= 2.5
    check_stream(packets)


def test_dv_connect_to_a_silent_server_times_out():
    """A server that accepts and never speaks: a one-line error after the timeout, no hang."""
    from dvsapp.core.sources import open_source

    port = free_port()
    server = start_server(GESTURES, port, "--speed", "1", "--loop")
    proxy = ProxyProcess(port)
    try:
        proxy.stall(30)
        t0 = time.monotonic()
        with pytest.raises(SourceError, match=r"no answer within 1 s"):
            open_source(f"dv://127.0.0.1:{proxy.port}?connect_timeout_s=1")
        assert time.monotonic() - t0 < 10
    finally:
        proxy.close()
        stop(server)


def test_pipeline_on_a_stalled_stream_still_stops_at_once(served):
    """The stream stalls for good (no stall timeout): stop() still ends the run; no thread, no child left."""
    from dvsapp.core.classify import load_classifier
    from dvsapp.core.sources import open_source

    _, proxy = served
    src = open_source(dv_uri(proxy, stall_s=0))
    got = threading.Event()
    sink = ListSink()
    pipe = Pipeline(src, load_classifier(None), sinks=[sink, CallbackSink(lambda w, p, m: got.set())])
    box: dict = {}
    th = threading.Thread(target=lambda: box.setdefault("m", asyncio.run(pipe.run())), daemon=True)
    th.start()
    assert got.wait(40), "no prediction"
    proxy.stall(120)
    time.sleep(1.0)
    n = len(sink.predictions)
    time.sleep(1.0)
    assert len(sink.predictions) <= n + 1  # nothing flows (the model may finish one window)
    t0 = time.monotonic()
    pipe.stop()
    th.join(15)
    assert not th.is_alive() and time.monotonic() - t0 < 10
    assert box["m"].windows_done >= 1 and src.closed
    assert not [t for t in threading.enumerate() if t.name.startswith(("dvsapp-model", "dvsapp-dv-reader"))]


# ---------------------------------------------------------------- files
def _short_recording(tmp_path: Path, seconds: float = 4.0) -> Path:
    """The first ``seconds`` of the bundled recording, as an AEDAT 4 file in ``tmp_path``."""
    from dvsapp.core.io import open_events, open_writer

    reader = open_events(GESTURES)
    ev = reader.read_all()
    ev = ev[ev["t"] < ev["t"][0] + int(seconds * 1e6)]
    path = tmp_path / "rec.aedat4"
    with open_writer(path, reader.sensor_size) as writer:
        for part in np.array_split(ev, 40):  # 40 packets, as a camera writes them over time
            writer.write(part)
    return path


def test_file_truncated_while_replaying_keeps_predictions(tmp_path):
    from dvsapp.core.classify import load_classifier
    from dvsapp.core.sources import open_source

    path = _short_recording(tmp_path, 4.0)
    src = open_source(f"file:{path}?speed=0")  # opened (and checked) while whole ...
    os.truncate(path, path.stat().st_size // 2)  # ... then it shrinks under the replay
    lst = ListSink()
    csv_path = tmp_path / "preds.csv"
    clf = load_classifier(None)
    with pytest.raises(EventFileError) as err:
        run_pipeline(Pipeline(src, clf, sinks=[lst, CsvSink(csv_path)]), handle_signals=False)
    text = str(err.value)
    assert str(path) in text and "\n" not in text
    whole = 4_000_000 // clf.window_us  # the windows of the intact 4 s
    assert 5 <= len(lst.predictions) < 0.6 * whole  # about the first half of them, then the error
    rows = csv_path.read_text().splitlines()
    assert len(rows) - 1 == len(lst.predictions)  # every prediction made reached the CSV
    assert src.closed


def test_file_deleted_while_replaying_keeps_predictions(tmp_path):
    from dvsapp.core.classify import load_classifier
    from dvsapp.core.sources import open_source

    path = _short_recording(tmp_path, 1.0)
    src = open_source(f"file:{path}?speed=0&loop=1")

    def on_result(window, prediction, metrics):
        if path.exists():
            path.unlink()  # the file goes away during the first pass

    lst = ListSink()
    csv_path = tmp_path / "preds.csv"
    sinks = [lst, CsvSink(csv_path), CallbackSink(on_result)]
    with pytest.raises(EventFileError) as err:
        run_pipeline(Pipeline(src, load_classifier(None), sinks=sinks), handle_signals=False)
    text = str(err.value)
    assert str(path) in text and "\n" not in text
    window_us = load_classifier(None).recipe.window_us
    assert len(lst.predictions) >= 1_000_000 // window_us  # at least the first pass (1 s of windows)
    assert len(csv_path.read_text().splitlines()) - 1 == len(lst.predictions)


# --------------------------------------------------------------- camera
class _Store:
    """Stands in for a ``dv_processing.EventStore``."""

    def __init__(self, events) -> None:
        self.events = events

    def __len__(self) -> int:
        return len(self.events)

    def numpy(self):
        arr = np.zeros(
            len(self.events), dtype=[("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "i1")]
        )
        for name, src in (("timestamp", "t"), ("x", "x"), ("y", "y"), ("polarity", "p")):
            arr[name] = self.events[src]
        return arr


class _UnpluggedCamera:
    """A USB camera that delivers ``n_batches`` of events, then is pulled out (``how``)."""

    def __init__(self, n_batches: int, how: str) -> None:
        size = SensorSize(128, 128)
        self.events = random_events(n_batches * 2_000, size, duration_us=n_batches * 10_000, seed=4)
        self.n_batches = n_batches
        self.how = how
        self.calls = 0

    def getEventResolution(self):  # noqa: N802 (dv-processing's naming)
        return (128, 128)

    def getCameraName(self):  # noqa: N802
        return "DVXplorer_fake"

    def isRunning(self):  # noqa: N802
        return self.calls <= self.n_batches

    def getNextEventBatch(self):  # noqa: N802
        k = self.calls
        self.calls += 1
        if k < self.n_batches:
            time.sleep(0.002)
            return _Store(self.events[k * 2_000 : (k + 1) * 2_000])
        if self.how == "raises":
            raise RuntimeError("libcaer: device disconnected [usb.cpp:42]")
        return None


@pytest.mark.parametrize("how", ["stops", "raises"])
def test_camera_unplugged_gives_a_clear_message_and_keeps_predictions(tmp_path, how):
    from dvsapp.core.pipeline import classify_source
    from dvsapp.core.sources.camera import InivationSource

    src = InivationSource(camera=_UnpluggedCamera(60, how))
    assert src.live and src.description == "DVXplorer_fake"
    lst = ListSink()
    out = tmp_path / "preds.csv"
    with pytest.raises(SourceError) as err:
        classify_source(src, sinks=[lst], out_csv=out, handle_signals=False)
    text = str(err.value)
    assert text.startswith("inivation: the camera was disconnected") and "\n" not in text
    assert "[usb.cpp" not in text
    assert len(lst.predictions) >= 3  # 600 ms of events before the plug was pulled
    assert len(out.read_text().splitlines()) - 1 == len(lst.predictions)
    assert src.closed


def test_nothing_listens_while_classifying_a_dv_stream(served):
    """The app only connects out: no listening socket is opened by the source."""
    from dvsapp.core.sources import open_source

    _, proxy = served
    src = open_source(dv_uri(proxy))
    try:
        assert _listening_inodes_of(os.getpid()) == set()
        assert src._reader is not None
        assert _listening_inodes_of(src._reader.proc.pid) == set()
    finally:
        src.close()


def _listening_inodes() -> set[str]:
    """Socket inodes in LISTEN state on this machine (from /proc/net/tcp*)."""
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A":  # TCP_LISTEN
                inodes.add(cols[9])
    return inodes


def _listening_inodes_of(pid: int) -> set[str]:
    listening = _listening_inodes()
    mine = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    return mine & listening
