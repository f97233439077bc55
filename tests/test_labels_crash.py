"""Crash safety: SIGKILL right after an edit loses nothing, and the CSV is never half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

from dvsapp.core.labels import LabelDocument, Segment, labels_path_for, read_labels_csv, write_labels_csv

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

EDIT_THEN_SLEEP = """
import sys, time
from dvsapp.core.labels import LabelDocument
doc = LabelDocument.open(sys.argv[1])
i = doc.add(3, 5_000_000, 6_500_000)
doc.relabel(i, 4)
print("saved", flush=True)
time.sleep(60)
"""

SAVE_IN_A_LOOP = """
import sys
from dvsapp.core.labels import LabelDocument, Segment
doc = LabelDocument.open(sys.argv[1])
k = 0
while True:
    # each save rewrites a large CSV: 3000 segments, about 60 kB
    doc.replace_all([Segment(k % 11, j * 1000, j * 1000 + 500) for j in range(3000)])
    doc.save()
    if k == 0:
        print("saving", flush=True)
    k += 1
"""


def _spawn(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(REPO),
        env=env,
    )


def _kill_after_line(proc: subprocess.Popen, expect: str, delay_s: float = 0.0) -> None:
    try:
        line = proc.stdout.readline()
        assert line.strip() == expect, f"child said {line!r}; stderr: {proc.stderr.read()[-2000:]}"
        if delay_s:
            time.sleep(delay_s)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigkill_after_edit_offers_recovery(tmp_path):
    rec = tmp_path / "user02_natural.aedat"
    saved = [Segment(0, 1_000_000, 2_000_000)]
    write_labels_csv(labels_path_for(rec), saved)
    csv_before = labels_path_for(rec).read_bytes()

    _kill_after_line(_spawn(EDIT_THEN_SLEEP, str(rec)), "saved")

    # the CSV is the last explicit save, intact
    assert labels_path_for(rec).read_bytes() == csv_before
    doc = LabelDocument.open(rec)
    assert doc.segments == tuple(saved)
    assert doc.recovery is not None
    doc.recover()
    assert doc.segments == (Segment(0, 1_000_000, 2_000_000), Segment(4, 5_000_000, 6_500_000))
    doc.save()
    assert read_labels_csv(labels_path_for(rec)) == list(doc.segments)
    assert LabelDocument.open(rec).recovery is None


@pytest.mark.parametrize("delay_s", [0.05, 0.3])
def test_sigkill_during_saves_never_leaves_a_partial_csv(tmp_path, delay_s):
    rec = tmp_path / "big.aedat4"
    _kill_after_line(_spawn(SAVE_IN_A_LOOP, str(rec)), "saving", delay_s)
    segs = read_labels_csv(labels_path_for(rec))  # parses completely
    assert len(segs) == 3000
    assert len({s.class_id for s in segs}) == 1  # one whole version, not a mix of two
    assert segs[-1] == Segment(segs[0].class_id, 2_999_000, 2_999_500)
    # the project sidecar is whole too, and reopening works
    doc = LabelDocument.open(rec)
    assert not doc.warnings
    assert len(doc.segments) == 3000


def test_stale_temp_files_are_cleaned_on_open(tmp_path):
    from dvsapp.core.labels import remove_stale_temps, sidecar_path_for

    rec = tmp_path / "r.aedat4"
    old = tmp_path / f".{labels_path_for(rec).name}.abc123.tmp"
    fresh = tmp_path / f".{sidecar_path_for(rec).name}.def456.tmp"
    other = tmp_path / ".unrelated.csv.xyz.tmp"
    for p in (old, fresh, other):
        p.write_text("partial")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    os.utime(other, (time.time() - 3600, time.time() - 3600))
    LabelDocument.open(rec)
    assert not old.exists()  # left by a killed save long ago
    assert fresh.exists()  # may be a save in progress
    assert other.exists()  # not ours
    assert remove_stale_temps(sidecar_path_for(rec), min_age_s=0) == 1 and not fresh.exists()
