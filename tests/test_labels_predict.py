"""``predict_segments``: a classifier run over a recording becomes a prediction strip."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from dvsapp.core.events import SensorSize, random_events
from dvsapp.core.labels import Segment, predict_segments
from dvsapp.core.recipe import InputRecipe


@dataclass
class _Pred:
    class_id: int
    confidence: float


class FakeClassifier:
    """Predicts class = (window start // 1 s) % 3; confidence 0.3 in the third second."""

    recipe = InputRecipe(SensorSize(16, 16), step_us=10_000, timesteps=5)

    def __init__(self) -> None:
        self.calls = []
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def step(self, window):
        assert window.frames.shape == (5, 2, 16, 16) and window.frames.dtype == np.float32
        self.calls.append((window.t_start_us, window.t_end_us, float(window.frames.sum())))
        second = window.t_start_us // 1_000_000
        return _Pred(int(second % 3), 0.3 if second == 2 else 0.9)


def test_windows_are_merged_into_runs():
    ev = random_events(50_000, (32, 32, 2), duration_us=4_000_000, seed=0)
    clf = FakeClassifier()
    segs = predict_segments(ev, SensorSize(32, 32), clf, time_range_us=(0, 4_000_000))
    assert clf.resets == 1
    assert len(clf.calls) == 80  # 4 s of 50 ms windows
    assert sum(c[2] for c in clf.calls) == len(ev)  # every event binned once (downsampled 32 -> 16)
    assert segs == [
        Segment(0, 0, 1_000_000),
        Segment(1, 1_000_000, 2_000_000),
        Segment(2, 2_000_000, 3_000_000),
        Segment(0, 3_000_000, 4_000_000),
    ]
    low = predict_segments(
        ev, SensorSize(32, 32), FakeClassifier(), time_range_us=(0, 4_000_000), min_confidence=0.5
    )
    assert [s.class_id for s in low] == [0, 1, 0]
    stop_after = iter(range(1000))
    early = predict_segments(
        ev, SensorSize(32, 32), FakeClassifier(), should_stop=lambda: next(stop_after) >= 10
    )
    # windows on the live grid (from 0), the strip clipped to the recording (first event at 43 us)
    assert len(early) == 1 and early[0].start_us == ev["t"][0] and early[0].end_us == 500_000
    assert predict_segments(ev[:0], SensorSize(32, 32), FakeClassifier()) == []


def test_with_an_untrained_tiny_model():
    pytest.importorskip("norse")
    try:
        from dvsapp.core.classify import StreamingClassifier
        from dvsapp.core.model import PRESETS, SpikingTransformer
    except ImportError as exc:
        pytest.skip(f"model code not available: {exc}")
    clf = StreamingClassifier(SpikingTransformer(PRESETS["tiny"]))
    ev = random_events(20_000, (128, 128, 2), duration_us=400_000, seed=1)
    segs = predict_segments(ev, SensorSize(128, 128), clf)
    assert segs and segs[0].start_us == ev["t"][0]  # the live window grid, clipped to the recording
    assert all(a.end_us == b.start_us for a, b in zip(segs, segs[1:]))  # contiguous strip
    assert segs[-1].end_us <= ev["t"][-1] + 1
    assert all(0 <= s.class_id < 11 for s in segs)
    grid = ev["t"][0] // clf.step_us * clf.step_us  # every inner edge lies on the window grid
    assert all((s.end_us - grid) % clf.window_us == 0 for s in segs[:-1])
