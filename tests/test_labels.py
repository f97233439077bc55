"""dvsapp.core.labels: segments, the DVS Gesture CSV, HDF5 labels, validation, paths."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from dvsapp.core.errors import LabelError, OutputError
from dvsapp.core.events import make_events, random_events
from dvsapp.core.gestures import GESTURE_CLASSES
from dvsapp.core.labels import (
    CSV_HEADER,
    Segment,
    append_run,
    atomic_write_bytes,
    check_labels_file,
    check_segments,
    event_rate,
    find_labels,
    first_overlap,
    format_labels_csv,
    labels_path_for,
    merge_runs,
    read_labels_csv,
    read_labels_h5,
    resolve_inside,
    segment_at,
    segments_from_array,
    segments_to_array,
    suggest_segments,
    write_labels_csv,
    write_labels_h5,
)

# a real-looking DVS Gesture label file (user01_fluorescent style)
GESTURE_CSV = (
    "class,startTime_usec,endTime_usec\n"
    "1,80048239,85092709\n"
    "2,89431170,95736350\n"
    "3,95868100,101449310\n"
    "4,101878390,107521000\n"
    "5,107712480,113344640\n"
    "6,113468260,119170350\n"
    "7,119321310,124910330\n"
    "8,125142200,130741340\n"
    "9,131001310,136686100\n"
    "10,137034380,142754190\n"
    "11,142966570,148667320\n"
)


# ----------------------------------------------------------------- Segment


def test_segment_validates_and_converts_numpy_ints():
    seg = Segment(np.int64(2), np.int32(10), np.int64(20))
    assert seg == Segment(2, 10, 20)
    assert type(seg.start_us) is int
    assert seg.duration_us == 10
    assert seg.contains(10) and seg.contains(19) and not seg.contains(20)
    with pytest.raises(LabelError, match="not before"):
        Segment(0, 5, 5)
    with pytest.raises(LabelError, match=">= 0"):
        Segment(-1, 0, 5)
    with pytest.raises(LabelError, match="integer"):
        Segment(0, 1.5, 5)
    with pytest.raises(LabelError, match="integer"):
        Segment(True, 1, 5)


def test_overlap_is_half_open():
    a = Segment(0, 0, 10)
    assert not a.overlaps(Segment(1, 10, 20))
    assert a.overlaps(Segment(1, 9, 20))
    assert Segment(1, 2, 3).overlaps(a)
    assert first_overlap([Segment(0, 0, 10), Segment(0, 10, 20)]) is None
    assert first_overlap([Segment(0, 30, 40), Segment(0, 0, 100)]) == (Segment(0, 0, 100), Segment(0, 30, 40))


def test_prediction_runs_merge_when_they_touch_and_agree():
    windows = [(2, 0, 10), (2, 10, 20), (3, 20, 30), (3, 30, 40), (2, 40, 50), (2, 60, 70), (2, 70, 80)]
    assert merge_runs(windows) == [
        Segment(2, 0, 20),
        Segment(3, 20, 40),
        Segment(2, 40, 50),  # a gap (a window left out) keeps runs apart
        Segment(2, 60, 80),
    ]
    assert merge_runs([]) == []
    # one window at a time, as a live view does, with a tolerance for rounding
    runs: list = []
    for w in [(1, 0, 10), (1, 11, 20), (1, 25, 30)]:
        append_run(runs, *w, tolerance_us=1)
    assert runs == [(1, 0, 20), (1, 25, 30)]


def test_segment_at_and_arrays():
    segs = [Segment(0, 0, 10), Segment(3, 20, 30)]
    assert segment_at(segs, 5) == segs[0]
    assert segment_at(segs, 10) is None
    assert segment_at(segs, 29) == segs[1]
    arr = segments_to_array(segs)
    assert arr.dtype == np.int64 and arr.shape == (2, 3)
    assert segments_from_array(arr) == segs
    assert segments_from_array(np.zeros((0, 3), np.int64)) == []
    with pytest.raises(LabelError, match=r"\(N, 3\)"):
        segments_from_array(np.zeros((2, 2), np.int64))
    with pytest.raises(LabelError, match="row 1"):
        segments_from_array(np.array([[0, 0, 1], [0, 5, 5]]))


# ----------------------------------------------------------------- CSV


def test_read_gesture_csv_is_zero_based(tmp_path):
    path = tmp_path / "user01_fluorescent_labels.csv"
    path.write_text(GESTURE_CSV)
    segs = read_labels_csv(path)
    assert len(segs) == 11
    assert segs[0] == Segment(0, 80048239, 85092709)
    assert [s.class_id for s in segs] == list(range(11))
    assert GESTURE_CLASSES[segs[-1].class_id] == "other_gestures"


def test_csv_round_trip_is_byte_exact(tmp_path):
    src = tmp_path / "a_labels.csv"
    src.write_bytes(GESTURE_CSV.encode())
    out = tmp_path / "b_labels.csv"
    write_labels_csv(out, read_labels_csv(src))
    assert out.read_bytes() == src.read_bytes()
    assert format_labels_csv([]) == (CSV_HEADER + "\n").encode()


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("", 1, "header"),
        ("cls,start,end\n1,0,5\n", 1, "header"),
        (CSV_HEADER + "\n1,0,5\n2,abc,9\n", 3, "integers"),
        (CSV_HEADER + "\n1,0,5\n\n2,7\n", 4, "3 fields"),
        (CSV_HEADER + "\n1,0,5\n2,9,9\n", 3, "not before"),
        (CSV_HEADER + "\n12,0,5\n", 2, "unknown"),
        (CSV_HEADER + "\n0,0,5\n", 2, "start at 1"),
        (CSV_HEADER + "\n1,0,5,7\n", 2, "3 fields"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "bad_labels.csv"
    path.write_text(text)
    with pytest.raises(LabelError) as info:
        read_labels_csv(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert f"line {line}:" in msg
    assert what in msg


def test_read_csv_tolerates_crlf_bom_spaces_and_blank_tail(tmp_path):
    path = tmp_path / "x_labels.csv"
    path.write_bytes(b"\xef\xbb\xbfclass,startTime_usec,endTime_usec\r\n 3 , 10 ,20\r\n\r\n")
    assert read_labels_csv(path) == [Segment(2, 10, 20)]


def test_read_csv_errors_for_missing_binary_or_folder(tmp_path):
    with pytest.raises(LabelError, match="does not exist"):
        read_labels_csv(tmp_path / "none.csv")
    with pytest.raises(LabelError, match="folder"):
        read_labels_csv(tmp_path)
    bad = tmp_path / "bin.csv"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(LabelError, match="UTF-8"):
        read_labels_csv(bad)


def test_class_names_limit_and_none(tmp_path):
    path = tmp_path / "x_labels.csv"
    path.write_text(CSV_HEADER + "\n3,0,10\n")
    with pytest.raises(LabelError, match="classes are 1..2"):
        read_labels_csv(path, class_names=["a", "b"])
    path.write_text(CSV_HEADER + "\n40,0,10\n")
    assert read_labels_csv(path, class_names=None) == [Segment(39, 0, 10)]


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["f.csv"]
    with pytest.raises(OutputError, match=r"nope/f.csv: cannot write: the folder .*nope does not exist"):
        atomic_write_bytes(tmp_path / "nope" / "f.csv", b"x")


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f_labels.csv"
    write_labels_csv(path, [Segment(0, 1, 2)])
    before = path.read_bytes()

    def boom(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OutputError, match="f_labels.csv: cannot write: No space left"):
        write_labels_csv(path, [Segment(1, 1, 2)])
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["f_labels.csv"]


# ----------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("rec", "csv"),
    [
        ("user01_fluorescent.aedat", "user01_fluorescent_labels.csv"),
        ("dir/gestures.aedat4", "dir/gestures_labels.csv"),
        ("g.h5", "g_labels.csv"),
    ],
)
def test_labels_path_for(rec, csv, tmp_path):
    assert labels_path_for(tmp_path / rec) == tmp_path / csv


def test_resolve_inside_refuses_escapes(tmp_path):
    (tmp_path / "sub").mkdir()
    assert resolve_inside(tmp_path, "sub/a.csv") == (tmp_path / "sub" / "a.csv").resolve()
    assert resolve_inside(tmp_path, "sub/../a.csv") == (tmp_path / "a.csv").resolve()
    for bad in ("../a.csv", "sub/../../a.csv", "/etc/passwd"):
        with pytest.raises(LabelError):
            resolve_inside(tmp_path, bad)
    os.symlink(tmp_path.parent, tmp_path / "up")
    with pytest.raises(LabelError, match="escapes"):
        resolve_inside(tmp_path, "up/x")


# ----------------------------------------------------------------- find_labels / HDF5


def test_find_labels_csv_then_h5(tmp_path):
    rec = tmp_path / "rec.aedat4"
    rec.write_bytes(b"")
    assert find_labels(rec) is None
    write_labels_csv(labels_path_for(rec), [Segment(4, 100, 200)])
    assert find_labels(rec) == [Segment(4, 100, 200)]

    h5 = tmp_path / "rec2.h5"
    with h5py.File(h5, "w") as fh:
        fh.create_dataset("events", data=np.zeros(3))
    assert find_labels(h5) is None
    write_labels_h5(h5, [Segment(1, 5, 9), Segment(0, 10, 12)], ["a", "b"])
    assert find_labels(h5) == [Segment(1, 5, 9), Segment(0, 10, 12)]
    segs, names = read_labels_h5(h5)
    assert names == ["a", "b"]
    with h5py.File(h5, "r") as fh:
        assert fh["labels"].dtype == np.int64 and fh["labels"].shape == (2, 3)
        assert "events" in fh  # the recording itself is untouched
    # a CSV of the same stem that the labeler did not save for this file does not replace them
    write_labels_csv(labels_path_for(h5), [Segment(2, 1, 3)])
    assert find_labels(h5) == [Segment(1, 5, 9), Segment(0, 10, 12)]


def test_h5_class_names_as_string_array(tmp_path):
    h5 = tmp_path / "r.h5"
    with h5py.File(h5, "w") as fh:
        ds = fh.create_dataset("labels", data=np.array([[0, 1, 2]], np.int64))
        ds.attrs["class_names"] = np.array([b"x", b"y"])
    assert read_labels_h5(h5) == ([Segment(0, 1, 2)], ["x", "y"])
    with h5py.File(h5, "a") as fh:
        fh["labels"].attrs["class_names"] = "not json ["
    with pytest.raises(LabelError, match="JSON"):
        read_labels_h5(h5)


# ----------------------------------------------------------------- validation


def test_check_segments_reports_each_problem():
    segs = [Segment(0, 0, 100), Segment(11, 200, 300), Segment(1, 50, 150), Segment(2, 900, 1200)]
    problems = check_segments(segs, time_range_us=(0, 1000))
    kinds = sorted(p.kind for p in problems)
    assert kinds == ["class", "overlap", "range"]
    assert check_segments(segs, allow_overlap=True, n_classes=None) == []
    # a segment nested inside a long one overlaps even when its neighbour does not
    nested = [Segment(0, 0, 1000), Segment(0, 100, 200), Segment(0, 300, 400)]
    assert len(check_segments(nested)) == 2


def test_check_labels_file_lists_all_problems_by_line(tmp_path):
    path = tmp_path / "r_labels.csv"
    path.write_text(CSV_HEADER + "\n1,0,100\n2,50,150\nfoo\n13,200,300\n1,5000,6000\n")
    problems = check_labels_file(path, time_range_us=(0, 1000))
    text = [str(p) for p in problems]
    assert [p.line for p in problems] == [3, 4, 5, 6]
    assert "overlaps" in text[0] and "segment on line 2" in text[0]
    assert "3 fields" in text[1]
    assert "unknown" in text[2]
    assert "outside the recording" in text[3]


# ----------------------------------------------------------------- rate and suggestions


def test_event_rate_counts_every_event(rng):
    ev = random_events(5000, duration_us=1_000_000, seed=rng)
    edges, rate = event_rate(ev, 100_000)
    assert edges[0] == ev["t"][0] and edges[-1] > ev["t"][-1]
    assert np.isclose(rate.sum() * 0.1, 5000)
    edges, rate = event_rate(ev[:0], 1000)
    assert len(rate) == 0
    with pytest.raises(LabelError):
        event_rate(ev, 0)


def test_suggest_segments_finds_bursts(rng):
    parts, truth = [], [(1_000_000, 2_500_000), (4_000_000, 6_000_000)]
    parts.append(random_events(300, duration_us=8_000_000, seed=rng))  # background
    for a, b in truth:
        parts.append(random_events(20000, duration_us=b - a, t0_us=a, seed=rng))
    ev = np.concatenate(parts)
    ev = ev[np.argsort(ev["t"], kind="stable")]
    found = suggest_segments(ev, class_id=3)
    assert len(found) == 2
    for seg, (a, b) in zip(found, truth):
        assert seg.class_id == 3
        assert abs(seg.start_us - a) <= 200_000 and abs(seg.end_us - b) <= 200_000
    assert suggest_segments(make_events([1], [1], [5], [1])) == []


def test_sidecar_json_is_documented_format(tmp_path):
    from dvsapp.core.labels import LabelDocument, sidecar_path_for

    rec = tmp_path / "r.npz"
    doc = LabelDocument(rec)
    doc.add(2, 10, 20)
    data = json.loads(sidecar_path_for(rec).read_text())
    assert data["format"] == "dvsapp-labels-project"
    assert data["segments"] == [[2, 10, 20]]
    assert data["unsaved"] is True
    assert data["recording"] == "r.npz"


def test_atomic_write_keeps_or_defaults_permissions(tmp_path):
    new = tmp_path / "n_labels.csv"
    write_labels_csv(new, [])
    assert new.stat().st_mode & 0o777 == 0o666 & ~_current_umask()
    os.chmod(new, 0o640)
    write_labels_csv(new, [Segment(0, 1, 2)])
    assert new.stat().st_mode & 0o777 == 0o640


def _current_umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_h5_recording_keeps_its_own_labels_beside_a_same_stem_csv(tmp_path):
    from dvsapp.core.labels import LabelDocument, saved_labels

    aedat = tmp_path / "g.aedat4"
    h5 = tmp_path / "g.h5"
    aedat.write_bytes(b"")
    write_labels_csv(labels_path_for(aedat), [Segment(0, 0, 100), Segment(1, 5000, 6000)])  # g_labels.csv
    with h5py.File(h5, "w") as fh:
        fh.create_dataset("events", data=np.zeros(1))
    write_labels_h5(h5, [Segment(0, 0, 100)])
    assert find_labels(aedat) == [Segment(0, 0, 100), Segment(1, 5000, 6000)]
    assert find_labels(h5) == [Segment(0, 0, 100)]  # not the aedat4's CSV
    assert saved_labels(h5).kind == "h5"
    # editing the h5's labels saves g_labels.csv *for the h5*: from then on that CSV wins for it
    doc = LabelDocument.open(h5)
    assert doc.segments == (Segment(0, 0, 100),)
    doc.add(2, 200, 300)
    doc.save()
    assert find_labels(h5) == [Segment(0, 0, 100), Segment(2, 200, 300)]
    assert saved_labels(h5).kind == "csv"
    assert LabelDocument.open(h5).segments == (Segment(0, 0, 100), Segment(2, 200, 300))
    # someone else rewrites the CSV: it is no longer the one saved for the h5
    write_labels_csv(labels_path_for(h5), [Segment(5, 0, 10)])
    assert find_labels(h5) == [Segment(0, 0, 100)]


# ----------------------------------------------------------------- properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

segment_st = st.builds(
    lambda c, a, d: Segment(c, a, a + d),
    st.integers(0, 10),
    st.integers(-(2**40), 2**40),
    st.integers(1, 2**40),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(segment_st, max_size=30), st.sampled_from(["\n", "\r\n"]))
def test_csv_write_read_write_is_identity(tmp_path_factory, segments, newline):
    path = tmp_path_factory.mktemp("rt") / "x_labels.csv"
    write_labels_csv(path, segments, newline=newline)
    back = read_labels_csv(path)
    assert back == segments
    assert format_labels_csv(back, newline=newline) == path.read_bytes()


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(lambda t: (CSV_HEADER + "\n" + t).encode()))
def test_any_bytes_give_segments_or_a_label_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fz") / "f_labels.csv"
    path.write_bytes(data)
    try:
        segs = read_labels_csv(path)
    except LabelError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        assert all(0 <= s.class_id < 11 and s.start_us < s.end_us for s in segs)
        segments_to_array(segs)  # always representable as int64


def test_strict_integers(tmp_path):
    path = tmp_path / "s_labels.csv"
    for bad in ("1,1_000,2000", "1,\u0661\u0662,99", "1,0x10,99", "1,1e3,5000", "1,0,99999999999999999999"):
        path.write_text(f"{CSV_HEADER}\n{bad}\n")
        with pytest.raises(LabelError, match="line 2"):
            read_labels_csv(path)
    with pytest.raises(LabelError, match="64 bits"):
        Segment(0, 0, 2**63)
