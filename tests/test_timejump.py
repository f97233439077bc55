"""Live time jumps: the guard on generated packets, the pipeline's restart, and a real dv stream served twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvsapp.core.errors import ConfigError
from dvsapp.core.events import Packet, SensorSize, concat, random_events
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
