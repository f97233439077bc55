"""The bundled recordings are exactly what ``recordings/make_recordings.py`` makes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from dvsapp.core.io import open_events
from dvsapp.core.labels import read_labels_csv

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "recordings"


def test_bundled_recordings_regenerate_identically(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BUNDLED / "make_recordings.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "gestures_labels.csv").read_bytes() == (BUNDLED / "gestures_labels.csv").read_bytes()
    for name in ("gestures.aedat4", "gestures.h5"):
        made, shipped = open_events(tmp_path / name), open_events(BUNDLED / name)
        assert made.sensor_size == shipped.sensor_size
        np.testing.assert_array_equal(made.read_all(), shipped.read_all(), err_msg=name)
    segments = read_labels_csv(BUNDLED / "gestures_labels.csv")
    assert sorted(s.class_id for s in segments) == list(range(11))  # every class once
