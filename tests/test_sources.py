"""Sources: URI parsing, the registry, replay pacing / seek / loop, files, synthetic, absent hardware."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from dvsapp.core.errors import DvsAppError, SourceError
from dvsapp.core.events import SensorSize, concat, random_events
from dvsapp.core.sources import (
    SOURCES,
    ArraySource,
    iter_packets,
    open_live_source,
    open_source,
    parse_uri,
)

SIZE = SensorSize(64, 48)


def collect(source, limit: int | None = None):
    """All packets of a source (or the first ``limit``)."""

    async def main():
        out = []
        async for packet in source:
            out.append(packet)
            if limit is not None and len(out) >= limit:
                break
        return out

    return asyncio.run(main())


def check_stream(packets) -> None:
    """The stream contract: sorted events, t < until_us, until_us non-decreasing."""
    last = None
    for p in packets:
        t = p.events["t"]
        if len(t):
            assert (np.diff(t) >= 0).all()
            assert t[-1] < p.until_us
            if last is not None:
                assert t[0] >= last
        if last is not None:
            assert p.until_us >= last
        last = p.until_us


# ---------------------------------------------------------------------- URIs
@pytest.mark.parametrize(
    "text, scheme, target, params",
    [
        ("rec.aedat4", "file", "rec.aedat4", {}),
        ("file:rec.h5?speed=0&loop=1", "file", "rec.h5", {"speed": "0", "loop": "1"}),
        ("file:///abs/rec.h5", "file", "/abs/rec.h5", {}),
        ("dir/odd?name.h5", "file", "dir/odd?name.h5", {}),
        ("dv://127.0.0.1:7777", "dv", "127.0.0.1:7777", {}),
        ("dv://localhost:4040?retries=3", "dv", "localhost:4040", {"retries": "3"}),
        ("inivation", "inivation", "", {}),
        ("inivation:DXA00093", "inivation", "DXA00093", {}),
        ("webcam:1", "webcam", "1", {}),
        ("synthetic:7?speed=0", "synthetic", "7", {"speed": "0"}),
        ("SYNTHETIC", "synthetic", "", {}),
    ],
)
def test_parse_uri(text, scheme, target, params):
    uri = parse_uri(text)
    assert (uri.scheme, uri.target, uri.params) == (scheme, target, params)
    assert uri.scheme in SOURCES


@pytest.mark.parametrize(
    "text", ["", "  ", "dv://nohost", "dv://host:0", "dv://host:99999", "dv://:80", "file:"]
)
def test_parse_uri_rejects(text):
    with pytest.raises(SourceError):
        parse_uri(text)


def test_uri_numbers_are_checked(tmp_path):
    with pytest.raises(SourceError, match="speed"):
        parse_uri("file:x.h5?speed=fast").number("speed", 1)
    with pytest.raises(SourceError, match="speed"):
        ArraySource(random_events(10, SIZE), SIZE, speed=-1)


def test_missing_file_raises_one_error(tmp_path):
    with pytest.raises(DvsAppError) as info:
        open_source(str(tmp_path / "absent.aedat4"))
    assert "absent.aedat4" in str(info.value)
    assert "\n" not in str(info.value)


def test_absent_hardware_gives_source_error():
    with pytest.raises(SourceError, match="webcam"):
        open_source("webcam:57")
    with pytest.raises(SourceError):
        open_source("webcam:abc")
    try:
        import dv_processing as dv

        if list(dv.io.camera.discover()):
            pytest.skip("an iniVation camera is attached")
    except ImportError:  # pragma: no cover
        pass
    with pytest.raises(SourceError, match="iniVation|camera"):
        open_source("inivation")


def test_live_autoselect_falls_back_to_synthetic():
    source, tried = open_live_source(("inivation", "webcam:57", "synthetic"))
    try:
        assert source.live
        assert "synthetic" in source.description
        assert len(tried) == 2 and all(isinstance(t, str) for t in tried)
    finally:
        source.close()


# ----------------------------------------------------------------- packetizer
def test_iter_packets_tiles_time_and_keeps_every_event():
    ev = random_events(5000, SIZE, duration_us=300_000, t0_us=12_345)
    packets = list(iter_packets(ev, packet_us=10_000, max_events=100))
    check_stream(packets)
    assert np.array_equal(concat([p.events for p in packets]), ev)
    assert all(len(p) <= 100 or len(np.unique(p.events["t"])) == 1 for p in packets)
    assert packets[0].until_us >= 12_345


def test_iter_packets_never_splits_a_timestamp():
    ev = random_events(300, SIZE)
    ev["t"] = np.repeat(np.arange(3) * 1000, 100)
    packets = list(iter_packets(ev, packet_us=100_000, max_events=30))
    check_stream(packets)
    for p in packets:
        if len(p):
            assert len(np.unique(p.events["t"])) == 1 and len(p) == 100


def test_iter_packets_empty_input():
    assert list(iter_packets(random_events(0, SIZE))) == []


def test_one_packetizer_for_memory_and_files_whatever_the_chunking():
    """iter_packets (memory) and a file's chunked stream cut the same events into the same packets."""
    from dvsapp.core.io.base import packetize

    rng = np.random.default_rng(8)
    ev = random_events(8000, SIZE, duration_us=900_000, t0_us=3_210)
    for start_us in (None, 0, 401_234, 2_000_000):
        whole = list(iter_packets(ev, packet_us=7_000, max_events=64, start_us=start_us))
        cuts = np.sort(rng.integers(0, len(ev), 9))
        chunked = list(packetize(iter(np.split(ev, cuts)), max_events=64, dt_us=7_000, start_us=start_us))
        kept = ev if start_us is None else ev[ev["t"] >= start_us]
        if len(kept):
            check_stream(whole)
        assert np.array_equal(concat([p.events for p in whole]) if whole else kept[:0], kept)
        assert np.array_equal(concat([p.events for p in chunked]) if chunked else kept[:0], kept)
        # slices end on the 7 ms grid; a count-split packet ends at the next event's time
        slice_ends = [p.until_us for p in whole if p.until_us % 7_000 == 0]
        assert slice_ends == sorted({p.until_us for p in chunked if p.until_us % 7_000 == 0})
        if start_us is not None and whole:
            assert whole[0].until_us == (start_us // 7_000 + 1) * 7_000


# --------------------------------------------------------------------- replay
def test_array_source_replays_everything_fast():
    ev = random_events(20_000, SIZE, duration_us=2_000_000)
    src = ArraySource(ev, SIZE, speed=0)
    packets = collect(src)
    check_stream(packets)
    assert np.array_equal(concat([p.events for p in packets]), ev)
    assert not src.live and src.seekable


def test_replay_is_paced():
    ev = random_events(2000, SIZE, duration_us=400_000)
    src = ArraySource(ev, SIZE, speed=2.0)
    start = time.monotonic()
    packets = collect(src)
    # 0.4 s of events at 2x cannot be delivered in less than ~0.2 s (lower bound only)
    assert time.monotonic() - start >= 0.15
    assert sum(len(p) for p in packets) == len(ev)


def test_replay_loops_with_increasing_time():
    ev = random_events(1000, SIZE, duration_us=100_000, t0_us=5_000)
    src = ArraySource(ev, SIZE, speed=0, loop=True)
    packets = collect(src, limit=60)
    check_stream(packets)
    allev = concat([p.events for p in packets])
    assert len(allev) > 2 * len(ev)
    second = allev[len(ev) : 2 * len(ev)]
    shift = int(second["t"][0] - ev["t"][0])
    assert shift >= 100_000 - 10_000
    assert np.array_equal(second["x"], ev["x"]) and np.array_equal(second["t"] - shift, ev["t"])


def test_replay_seek_jumps():
    ev = random_events(10_000, SIZE, duration_us=1_000_000)
    src = ArraySource(ev, SIZE, speed=0)

    async def main():
        got = []
        async for p in src:
            got.append(p)
            if len(got) == 3:
                src.seek(700_000)
        return got

    packets = asyncio.run(main())
    after = concat([p.events for p in packets[3:]])
    assert after["t"].min() >= 700_000
    assert np.array_equal(after, ev[ev["t"] >= 700_000])


def test_replay_pause_resume_and_speed_change():
    ev = random_events(500, SIZE, duration_us=50_000)
    src = ArraySource(ev, SIZE, speed=0)

    async def main():
        src.pause()
        it = src.__aiter__()
        task = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0.15)
        assert not task.done()  # paused: nothing comes
        src.resume()
        first = await asyncio.wait_for(task, 5)
        src.set_speed(50.0)
        rest = [p async for p in it]
        return [first, *rest]

    packets = asyncio.run(main())
    assert sum(len(p) for p in packets) == len(ev)
    with pytest.raises(SourceError):
        src.set_speed(float("nan"))


def test_file_source_replays_a_real_recording(shared_data):
    path = shared_data / "dvxplorer_320x240.aedat4"
    src = open_source(f"file:{path}?speed=0")
    assert src.sensor_size[:2] == (320, 240)
    packets = collect(src)
    src.close()
    check_stream(packets)
    assert sum(len(p) for p in packets) == 111_954


def test_file_source_on_a_written_file(tmp_path):
    from dvsapp.core.io import write_events

    ev = random_events(3000, SIZE, duration_us=300_000)
    path = tmp_path / "rec.h5"
    write_events(path, ev, SIZE)
    src = open_source(str(path), speed=0)
    assert src.sensor_size[:2] == SIZE[:2] and src.path == str(path)
    packets = collect(src)
    assert np.array_equal(concat([p.events for p in packets]), ev)


# ------------------------------------------------------------------ synthetic
def test_synthetic_source_streams_gestures():
    src = open_source("synthetic:3?speed=0&width=64&height=64")
    assert not src.live and src.sensor_size[:2] == (64, 64)
    packets = collect(src, limit=30)
    src.close()
    check_stream(packets)
    ev = concat([p.events for p in packets])
    assert len(ev) > 0
    assert ev["x"].max() < 64 and ev["y"].max() < 64
    assert src.class_at(packets[-1].until_us) >= -1
    assert open_source("synthetic:3").live
