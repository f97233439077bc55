"""The GUI worker: the model state is only touched by the model thread; heavy work stays off the loop."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("PySide6")

from dvsapp.app.gui import worker as worker_mod  # noqa: E402
from dvsapp.core.events import SensorSize, random_events  # noqa: E402

pytestmark = pytest.mark.gui


class _Controls:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def reset_model(self) -> None:
        self.calls.append("reset_model")


class _Classifier:
    def reset(self) -> None:  # pragma: no cover - must never be called from the GUI thread
        raise AssertionError("the GUI thread reset the classifier directly")


def test_reset_state_goes_through_the_pipelines_command_queue(qtbot):
    w = worker_mod.PlaybackWorker()
    session = worker_mod._Session(w, "x.aedat4", None, use_model=True)
    session.classifier = _Classifier()
    session.controls = _Controls()
    w._session = session
    w.reset_state()
    assert session.controls.calls == ["reset_model"]
    w._session = None
    w.reset_state()  # no session: nothing to do, no error


def test_energy_estimate_runs_off_the_pipeline_loop(qtbot, monkeypatch):
    ran_on = []

    def slow_energy(model, window):
        ran_on.append(threading.current_thread().name)
        time.sleep(0.4)
        return 12.5

    monkeypatch.setattr(worker_mod, "_energy_uj", slow_energy)
    w = worker_mod.PlaybackWorker()
    session = worker_mod._Session(w, "x.aedat4", None, use_model=True)
    session.energy_model = object()
    results = []
    w.sigResult.connect(results.append)
    start = time.monotonic()
    session._on_result(object(), object(), None)
    session._on_result(object(), object(), None)  # the estimate is busy: not started twice
    assert time.monotonic() - start < 0.3, "the loop waited for the energy estimate"
    assert len(results) == 2 and results[0].metrics.energy_uj is None
    qtbot.waitUntil(lambda: session.energy_uj == 12.5, timeout=5000)
    assert len(ran_on) == 1 and ran_on[0].startswith("dvsapp-energy")
    session._energy_pool.shutdown(wait=True)


def test_recording_writes_on_the_recorder_thread(qtbot, tmp_path):
    from dvsapp.core.io import open_events

    size = SensorSize(40, 30)
    ev = random_events(4000, size, duration_us=400_000)
    w = worker_mod.PlaybackWorker()
    messages = []
    w.sigMessage.connect(messages.append)
    session = worker_mod._Session(w, "synthetic", None, use_model=False)
    session.sensor = size
    w.start_recording(tmp_path / "rec.aedat4")
    for part in np.array_split(ev, 5):
        session._record(part)
    recorder = session.recorder
    assert recorder is not None and recorder._thread.name == "dvsapp-recorder"
    w.stop_recording()
    session._record(ev[:0])  # the next packet notices the request and finishes the file off the loop
    recorder.close()
    assert session.recorder is None
    np.testing.assert_array_equal(open_events(tmp_path / "rec.aedat4").read_all(), ev)
    qtbot.waitUntil(lambda: any("saved" in m for m in messages), timeout=5000)
