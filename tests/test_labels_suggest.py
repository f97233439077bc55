"""Label suggestions: gestures found by activity, classes from a model, ``dvsapp label suggest``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from conftest import RECORDINGS
from typer.testing import CliRunner

from dvsapp.core.events import SensorSize, concat, random_events
from dvsapp.core.labels import (
    CSV_HEADER,
    Segment,
    classify_segments,
    labels_path_for,
    load_recording,
    read_labels_csv,
    suggest_segments,
)
from dvsapp.core.recipe import InputRecipe

BUNDLED = RECORDINGS / "gestures.aedat4"
BUNDLED_LABELS = RECORDINGS / "gestures_labels.csv"
SIZE = SensorSize(32, 32)


@pytest.fixture(scope="module")
def bundled():
    if not BUNDLED.is_file():
        pytest.skip("the bundled recording is missing")
    return load_recording(BUNDLED), read_labels_csv(BUNDLED_LABELS)


def _scene(spans_us, *, rate_hz=20_000, quiet_hz=300, end_us=None, seed=0) -> np.ndarray:
    """Uniform background plus bursts of ``rate_hz`` events/s over ``spans_us``."""
    rng = np.random.default_rng(seed)
    end_us = end_us or spans_us[-1][1] + 1_000_000
    parts = [random_events(int(quiet_hz * end_us / 1e6), SIZE, duration_us=end_us, seed=rng)]
    for a, b in spans_us:
        parts.append(random_events(int(rate_hz * (b - a) / 1e6), SIZE, duration_us=b - a, t0_us=a, seed=rng))
    ev = concat(parts)
    return ev[np.argsort(ev["t"], kind="stable")]


def _cli(*args):
    from dvsapp.app.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


# --------------------------------------------------------------------------- activity


def test_every_gesture_of_the_bundled_recording_is_found(bundled):
    rec, truth = bundled
    found = suggest_segments(rec.events)
    assert len(found) == len(truth) == 11
    errors_ms = [abs(f.start_us - t.start_us) / 1e3 for f, t in zip(found, truth)]
    errors_ms += [abs(f.end_us - t.end_us) / 1e3 for f, t in zip(found, truth)]
    assert max(errors_ms) <= 100, errors_ms  # every start and end within 100 ms of its label
    assert all(s.class_id == 10 for s in found)  # no model: "other gestures", to set by hand


def test_short_pauses_inside_a_gesture_do_not_split_it_and_gaps_do():
    # gesture 1 pauses 150 ms in its middle; the gaps between gestures last 400 ms
    spans = [(1_000_000, 1_700_000), (1_850_000, 2_500_000), (2_900_000, 4_000_000), (4_400_000, 5_200_000)]
    found = suggest_segments(_scene(spans))
    truth = [(1_000_000, 2_500_000), (2_900_000, 4_000_000), (4_400_000, 5_200_000)]
    assert len(found) == 3
    for seg, (a, b) in zip(found, truth):
        assert abs(seg.start_us - a) <= 60_000 and abs(seg.end_us - b) <= 60_000
    # a longer minimum gap joins gestures; a shorter one splits at the inner pause
    assert len(suggest_segments(_scene(spans), min_gap_us=450_000)) == 1
    assert len(suggest_segments(_scene(spans), min_gap_us=100_000, min_duration_us=300_000)) == 4


def test_activity_needs_contrast():
    assert suggest_segments(random_events(1, SIZE)) == []
    flat = random_events(200_000, SIZE, duration_us=4_000_000, seed=1)  # one rate throughout
    assert len(suggest_segments(flat)) <= 1
    short = _scene([(1_000_000, 1_300_000)])
    assert suggest_segments(short) == []  # shorter than min_duration_us
    assert len(suggest_segments(short, min_duration_us=200_000)) == 1


# --------------------------------------------------------------------------- classes from a model


@dataclass
class _Pred:
    class_id: int
    confidence: float
    probs: np.ndarray


class TimeClassifier:
    """Fake model: the window's second decides the probable class (second 2 -> class 2)."""

    recipe = InputRecipe(SensorSize(16, 16), step_us=10_000, timesteps=5)

    def __init__(self) -> None:
        self.resets = 0
        self.windows = 0

    def reset(self) -> None:
        self.resets += 1

    def step(self, window):
        self.windows += 1
        probs = np.full(4, 0.1)
        probs[int(window.t_start_us // 1_000_000) % 4] = 0.7
        return _Pred(int(np.argmax(probs)), float(probs.max()), probs)


def test_segments_take_the_class_of_their_windows():
    ev = random_events(40_000, SIZE, duration_us=4_000_000, seed=2)
    segs = [
        Segment(10, 100_000, 900_000),
        Segment(10, 2_000_000, 2_900_000),
        Segment(10, 3_100_000, 3_900_000),
    ]
    clf = TimeClassifier()
    out = classify_segments(segs, ev, SIZE, clf)
    assert [s.class_id for s in out] == [0, 2, 3]
    assert [(s.start_us, s.end_us) for s in out] == [(s.start_us, s.end_us) for s in segs]  # edges kept
    assert clf.resets == 1 and clf.windows in (79, 80)  # one pass over the 4 s, state kept
    # a segment straddling two seconds takes the class most of its windows say
    straddle = classify_segments([Segment(10, 1_700_000, 3_000_000)], ev, SIZE, TimeClassifier())
    assert straddle[0].class_id == 2
    # a segment no window lies in keeps its class
    assert classify_segments([Segment(7, 4_100_000, 4_200_000)], ev, SIZE, TimeClassifier())[0].class_id == 7


# --------------------------------------------------------------------------- the command


def test_cli_suggest_prints_a_label_csv_that_validates(tmp_path):
    if not BUNDLED.is_file():
        pytest.skip("the bundled recording is missing")
    res = _cli("label", "suggest", BUNDLED, "--no-model")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == CSV_HEADER and len(lines) == 12  # the header and 11 gestures
    assert "11 segment(s), class 11" in res.stderr
    # the printed CSV, saved as a recording's labels, passes `label validate`
    rec = tmp_path / "gestures.aedat4"
    rec.symlink_to(BUNDLED)
    labels_path_for(rec).write_text(res.stdout)
    check = _cli("label", "validate", rec)
    assert check.exit_code == 0, check.output
    assert f"{rec}: ok" in check.stdout
    assert len(read_labels_csv(labels_path_for(rec))) == 11


def test_cli_suggest_names_classes_with_the_given_model(tmp_path, monkeypatch):
    import dvsapp.core.classify as classify

    spans = [(1_000_000, 1_800_000), (2_300_000, 3_000_000)]
    rec = tmp_path / "two.npz"
    from dvsapp.core.io import write_events

    write_events(rec, _scene(spans), SIZE)
    loaded = []

    def fake_load(checkpoint=None, **_kwargs):
        loaded.append(checkpoint)
        clf = TimeClassifier()
        clf.metadata = {"path": str(checkpoint)}
        return clf

    monkeypatch.setattr(classify, "load_classifier", fake_load)
    res = _cli("label", "suggest", rec, "--model", tmp_path / "m.safetensors", "--threads", "1", "--write")
    assert res.exit_code == 0, res.output
    assert loaded == [tmp_path / "m.safetensors"]
    assert res.stdout.splitlines()[1:] == [
        f"{c + 1},{s.start_us},{s.end_us}"
        for c, s in zip([1, 2], read_labels_csv(labels_path_for(rec)))  # seconds 1 and 2
    ]
    assert "classes from" in res.stderr and "m.safetensors" in res.stderr
    # --write refuses to overwrite before any model is loaded
    again = _cli("label", "suggest", rec, "--model", tmp_path / "m.safetensors", "--write")
    assert again.exit_code == 2 and "exists" in again.stderr and len(loaded) == 1
    assert _cli("label", "suggest", rec, "--model", tmp_path / "m.safetensors", "--no-model").exit_code == 2


def test_cli_suggest_with_a_missing_model_or_recording_is_one_line(tmp_path):
    rec = tmp_path / "r.npz"
    from dvsapp.core.io import write_events

    write_events(rec, _scene([(1_000_000, 2_000_000)]), SIZE)
    res = _cli("label", "suggest", rec, "--model", tmp_path / "none.safetensors")
    assert res.exit_code == 2
    assert [ln for ln in res.stderr.splitlines() if ln.strip()] == [res.stderr.strip()]
    assert "none.safetensors" in res.stderr
    res = _cli("label", "suggest", tmp_path / "missing.aedat4")
    assert res.exit_code == 2 and "missing.aedat4" in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_suggest_with_the_bundled_model_names_the_gestures():
    from dvsapp.core.model import bundled_checkpoint

    if not BUNDLED.is_file() or not bundled_checkpoint().is_file():
        pytest.skip("the bundled recording or model is missing")
    res = _cli("label", "suggest", BUNDLED, "--threads", "1")
    assert res.exit_code == 0, res.output
    rows = [tuple(int(v) for v in ln.split(",")) for ln in res.stdout.splitlines()[1:]]
    truth = read_labels_csv(BUNDLED_LABELS)
    assert len(rows) == 11
    right = sum(r[0] - 1 == t.class_id for r, t in zip(rows, truth))
    assert right >= 6, (rows, truth)  # the bundled model names most of them (10 of 11 when written)
    assert len({r[0] for r in rows}) >= 5  # not one class for all


# --------------------------------------------------------------------------- label files, not event files


def test_malformed_label_csv_gets_label_messages(tmp_path):
    headless = tmp_path / "mine.csv"  # no header, three fields: a label file, not events
    headless.write_text("1,0,100\n2,200,300\n")
    res = _cli("label", "validate", headless)
    assert res.exit_code == 1  # checked: problems found
    assert f"{headless}: line 1: expected the header {CSV_HEADER!r}" in res.stderr
    assert "event" not in res.stderr and "t x y p" not in res.stderr
    res = _cli("label", "show", headless)
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        f"dvsapp: error: {headless}: line 1: expected the header {CSV_HEADER!r}, got '1,0,100'"
    ]
    typo = tmp_path / "r_labels.csv"  # named as labels, header misspelt, one line with 4 fields
    typo.write_text("class,start,end\n1,0,100,7\n")
    res = _cli("label", "validate", typo)
    assert res.exit_code == 1 and f"{typo}: line 1:" in res.stderr and "event" not in res.stderr


def test_validate_exit_status_tells_problems_from_bad_input(tmp_path):
    good = tmp_path / "g_labels.csv"
    good.write_text(f"{CSV_HEADER}\n1,0,100\n")
    assert _cli("label", "validate", good).exit_code == 0
    overlap = tmp_path / "o_labels.csv"
    overlap.write_text(f"{CSV_HEADER}\n1,0,100\n2,50,150\n")
    res = _cli("label", "validate", good, overlap)
    assert res.exit_code == 1 and "1 of 2 file(s) have problems" in res.stderr
    for bad in (tmp_path / "absent_labels.csv", tmp_path / "bin_labels.csv"):
        if bad.name.startswith("bin"):
            bad.write_bytes(b"\xff\xfe\x00garbage")  # not text
        res = _cli("label", "validate", good, bad)
        assert res.exit_code == 2, res.output
        assert len(res.stderr.strip().splitlines()) == 1 and str(bad) in res.stderr
    help_text = " ".join(_cli("label", "validate", "--help").stdout.split())
    assert "exit 1 when problems are found, 2 on unreadable input" in help_text
    assert "Exit status: 0 when every file is fine; 1 when the labels were checked" in help_text
