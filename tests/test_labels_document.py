"""dvsapp.core.labels.LabelDocument: commands, undo/redo, overlap rules, autosave and recovery."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dvsapp.core.errors import LabelError
from dvsapp.core.labels import (
    LabelDocument,
    Segment,
    first_overlap,
    labels_path_for,
    read_labels_csv,
    sidecar_path_for,
    write_labels_csv,
)


def test_commands_keep_segments_sorted_and_return_indices():
    doc = LabelDocument()
    i = doc.add(3, 500, 900)
    j = doc.add(1, 100, 200)
    assert (i, j) == (0, 0)
    assert doc.segments == (Segment(1, 100, 200), Segment(3, 500, 900))
    k = doc.move(0, 1000)  # jumps after the other one
    assert k == 1 and doc.segments[1] == Segment(1, 1100, 1200)
    k = doc.resize(1, start_us=950)
    assert doc.segments[k] == Segment(1, 950, 1200)
    k = doc.relabel(k, 7)
    assert doc.segments[k].class_id == 7
    doc.delete(0)
    assert doc.segments == (Segment(7, 950, 1200),)
    assert doc.dirty


def test_refused_edits_change_nothing():
    doc = LabelDocument(time_range_us=(0, 10_000))
    doc.add(0, 100, 200)
    doc.add(1, 300, 400)
    before = doc.state
    n_undo = len(doc._undo)
    for bad in (
        lambda: doc.add(2, 150, 350),  # overlap
        lambda: doc.move(0, 150),  # onto the next
        lambda: doc.resize(1, start_us=199),
        lambda: doc.resize(0, end_us=100),  # empty
        lambda: doc.relabel(0, 11),  # unknown class
        lambda: doc.add(0, 9_000, 10_001),  # outside the recording
        lambda: doc.move(0, -101),
        lambda: doc.delete(5),
        lambda: doc.segment(-1),
    ):
        with pytest.raises(LabelError):
            bad()
    assert doc.state == before and len(doc._undo) == n_undo
    # touching is fine
    doc.add(2, 200, 300)
    assert len(doc.segments) == 3


def test_allow_overlap_switch():
    doc = LabelDocument(allow_overlap=True)
    doc.add(0, 0, 100)
    doc.add(1, 50, 150)
    with pytest.raises(LabelError, match="overlap"):
        doc.set_allow_overlap(False)
    assert doc.allow_overlap
    doc.delete(1)
    doc.set_allow_overlap(False)
    with pytest.raises(LabelError, match="overlaps"):
        doc.add(1, 50, 150)


def test_undo_redo_walk_and_redo_cleared_by_new_edit():
    doc = LabelDocument()
    states = [doc.state]
    doc.add(0, 0, 10)
    states.append(doc.state)
    doc.move(0, 5)
    states.append(doc.state)
    doc.relabel(0, 4)
    states.append(doc.state)
    assert doc.undo_name == "relabel segment"
    for expect in reversed(states[:-1]):
        doc.undo()
        assert doc.state == expect
    assert not doc.can_undo and not doc.dirty
    with pytest.raises(LabelError, match="nothing to undo"):
        doc.undo()
    doc.redo()
    doc.redo()
    assert doc.state == states[2]
    doc.add(1, 100, 200)
    assert not doc.can_redo


def test_free_range_bounds_neighbours():
    doc = LabelDocument(time_range_us=(0, 1000))
    doc.add(0, 100, 200)
    doc.add(0, 400, 500)
    doc.add(0, 700, 800)
    assert doc.free_range(1) == (200, 700)
    assert doc.free_range(0) == (0, 400)
    assert doc.free_range(t_us=600) == (500, 700)
    assert doc.index_at(450) == 1 and doc.index_at(650) is None


def test_class_names_edit_is_undoable_and_guarded():
    doc = LabelDocument()
    doc.add(10, 0, 10)
    with pytest.raises(LabelError, match="unknown"):
        doc.set_class_names(["a", "b"])
    with pytest.raises(LabelError, match="twice"):
        doc.set_class_names(["a", "a"])
    names = [*doc.class_names, "thumbs_up"]
    names[0] = "clap"
    doc.set_class_names(names)
    doc.add(11, 20, 30)
    assert doc.class_names[11] == "thumbs_up"
    doc.undo()
    doc.undo()
    assert doc.class_names[0] == "hand_clapping" and len(doc.class_names) == 11


# ----------------------------------------------------------------- save / reopen / recovery


def test_save_reopen_and_class_names_persist(tmp_path):
    rec = tmp_path / "user07_led.aedat"
    doc = LabelDocument(rec)
    doc.set_class_names([*doc.class_names, "wave_both"])
    doc.add(11, 1000, 2000)
    doc.add(0, 3000, 4000)
    out = doc.save()
    assert out == labels_path_for(rec)
    assert out.read_text() == "class,startTime_usec,endTime_usec\n12,1000,2000\n1,3000,4000\n"
    assert not doc.dirty
    assert json.loads(sidecar_path_for(rec).read_text())["unsaved"] is False
    again = LabelDocument.open(rec)
    assert again.recovery is None
    assert again.segments == doc.segments
    assert again.class_names[-1] == "wave_both"


def test_unsaved_edit_offered_for_recovery(tmp_path):
    rec = tmp_path / "r.aedat4"
    write_labels_csv(labels_path_for(rec), [Segment(0, 0, 100)])
    doc = LabelDocument.open(rec)
    doc.add(1, 200, 300)  # autosaved, not saved
    del doc
    reopened = LabelDocument.open(rec)
    assert reopened.segments == (Segment(0, 0, 100),)  # the CSV as saved
    assert reopened.recovery is not None
    assert "2 segments" in reopened.recovery.describe()
    reopened.recover()
    assert reopened.segments == (Segment(0, 0, 100), Segment(1, 200, 300))
    assert reopened.dirty and reopened.can_undo
    reopened.save()
    assert read_labels_csv(labels_path_for(rec)) == [Segment(0, 0, 100), Segment(1, 200, 300)]
    assert LabelDocument.open(rec).recovery is None


def test_discard_recovery_and_no_recovery_when_edits_undone(tmp_path):
    rec = tmp_path / "r.npz"
    doc = LabelDocument.open(rec)
    doc.add(1, 200, 300)
    again = LabelDocument.open(rec)
    assert again.recovery is not None  # no CSV at all yet
    again.discard_recovery()
    assert LabelDocument.open(rec).recovery is None
    doc2 = LabelDocument.open(rec)
    doc2.add(1, 200, 300)
    doc2.undo()  # back to the saved state: nothing to recover
    assert LabelDocument.open(rec).recovery is None
    with pytest.raises(LabelError, match="nothing to recover"):
        doc2.recover()


def test_corrupt_sidecar_is_ignored_with_a_warning(tmp_path):
    rec = tmp_path / "r.npz"
    sidecar_path_for(rec).write_text("{ broken")
    doc = LabelDocument.open(rec)
    assert doc.recovery is None and doc.segments == ()
    assert doc.warnings and "ignored" in doc.warnings[0]


def test_import_csv_keeps_crlf_for_exact_round_trip(tmp_path):
    src = tmp_path / "orig_labels.csv"
    src.write_bytes(b"class,startTime_usec,endTime_usec\r\n5,10,20\r\n2,30,40\r\n")
    rec = tmp_path / "orig.aedat"
    doc = LabelDocument(rec)
    doc.import_csv(src)
    assert doc.segments == (Segment(4, 10, 20), Segment(1, 30, 40))
    out = doc.save(tmp_path / "copy_labels.csv")
    assert out.read_bytes() == src.read_bytes()
    doc.undo()
    assert doc.segments == ()


def test_listeners_are_called():
    doc = LabelDocument()
    calls = []
    doc.subscribe(lambda: calls.append(len(doc.segments)))
    doc.add(0, 0, 1)
    doc.undo()
    doc.redo()
    assert calls == [1, 0, 1]


# ----------------------------------------------------------------- hypothesis: undo/redo invariants

T_MAX = 2000

op_strategy = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 12), st.integers(0, T_MAX), st.integers(1, 400)),
    st.tuples(st.just("move"), st.integers(0, 8), st.integers(-500, 500)),
    st.tuples(st.just("resize"), st.integers(0, 8), st.booleans(), st.integers(0, T_MAX)),
    st.tuples(st.just("relabel"), st.integers(0, 8), st.integers(0, 12)),
    st.tuples(st.just("delete"), st.integers(0, 8)),
    st.tuples(st.just("undo")),
    st.tuples(st.just("redo")),
)


def _apply(doc: LabelDocument, op) -> None:
    kind = op[0]
    try:
        if kind == "add":
            doc.add(op[1], op[2], op[2] + op[3])
        elif kind == "move":
            doc.move(op[1], op[2])
        elif kind == "resize":
            doc.resize(op[1], **({"start_us": op[3]} if op[2] else {"end_us": op[3]}))
        elif kind == "relabel":
            doc.relabel(op[1], op[2])
        elif kind == "delete":
            doc.delete(op[1])
        elif kind == "undo":
            doc.undo()
        else:
            doc.redo()
    except LabelError:
        pass  # refused edits are part of the test: they must change nothing


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    initial=st.lists(st.tuples(st.integers(0, 10), st.integers(0, 9)), max_size=4, unique_by=lambda t: t[1]),
    ops=st.lists(op_strategy, max_size=25),
    allow_overlap=st.booleans(),
)
def test_any_sequence_undoes_to_the_start_and_respects_rules(initial, ops, allow_overlap):
    segs = [Segment(c, k * 200, k * 200 + 150) for c, k in initial]
    doc = LabelDocument(
        segments=segs, allow_overlap=allow_overlap, time_range_us=(0, T_MAX + 400), autosave=False
    )
    start = doc.state
    for op in ops:
        before = doc.state
        _apply(doc, op)
        # invariants after every step
        assert list(doc.segments) == sorted(doc.segments, key=lambda s: (s.start_us, s.end_us, s.class_id))
        assert all(s.class_id < len(doc.class_names) for s in doc.segments)
        assert all(0 <= s.start_us < s.end_us <= T_MAX + 400 for s in doc.segments)
        if not allow_overlap:
            assert first_overlap(doc.segments) is None
        if op[0] not in ("undo", "redo") and doc.state != before:
            assert doc.undo_name is not None and not doc.can_redo
    end, end_can_redo = doc.state, doc.can_redo
    n_undone = 0
    while doc.can_undo:
        doc.undo()
        n_undone += 1
    assert doc.state == start
    assert not doc.dirty
    for _ in range(n_undone):
        doc.redo()
    if not end_can_redo:  # nothing was left to redo at the end: redoing all returns exactly there
        assert doc.state == end
