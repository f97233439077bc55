"""Time reversal (core/train/reverse.py): events, binned recordings and training batches."""

from __future__ import annotations

import numpy as np
import torch

from dvsapp.core.events import EVENT_DTYPE
from dvsapp.core.gestures import GESTURE_CLASSES
from dvsapp.core.train.datasets import NO_LABEL, FrameRecording, Span
from dvsapp.core.train.preprocess import bin_counts
from dvsapp.core.train.reverse import (
    CIRCLE_CLASSES,
    reversal_table,
    reverse_batch,
    reverse_events,
    reverse_frame_recording,
)


def _events(rng, n=4000, t_end=200_000):
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, t_end, n))
    ev["x"] = rng.integers(0, 16, n)
    ev["y"] = rng.integers(0, 16, n)
    ev["p"] = rng.random(n) < 0.4
    return ev


def test_circles_flip_and_the_rest_stay():
    table = reversal_table()
    names = [GESTURE_CLASSES[table[c]] for c in CIRCLE_CLASSES]
    assert names == [
        "right_arm_counter_clockwise",
        "right_arm_clockwise",
        "left_arm_counter_clockwise",
        "left_arm_clockwise",
    ]
    others = [c for c in range(len(GESTURE_CLASSES)) if c not in CIRCLE_CLASSES]
    assert all(table[c] == c for c in others)
    assert (table[table] == np.arange(len(table))).all()


def test_reversing_events_twice_is_the_identity(rng):
    ev = _events(rng)
    rev = reverse_events(ev)
    assert (np.diff(rev["t"]) >= 0).all()
    assert rev["t"][0] == ev["t"][0] and rev["t"][-1] == ev["t"][-1]
    assert (rev["p"] == ~ev["p"][::-1]).all()
    back = reverse_events(rev)
    assert (back == ev).all()


def test_reversed_frames_equal_binning_the_reversed_events(rng):
    step, n_bins = 10_000, 20
    ev = _events(rng, t_end=n_bins * step)
    ev = ev[(ev["t"] % step) != 0]  # events on a bin edge move to the neighbouring bin when reversed
    frames = bin_counts(ev, (16, 16, 2), t0_us=0, step_us=step, n_bins=n_bins)
    labels = np.full(n_bins, NO_LABEL, dtype=np.int16)
    labels[2:9], labels[12:18] = 3, 7  # right-arm clockwise, then arm roll
    rec = FrameRecording("r", frames, labels, 0, step, (Span(3, 20_000, 90_000), Span(7, 120_000, 180_000)))
    rev = reverse_frame_recording(rec)
    # t -> t0 + t1 - t with t1 = n_bins * step maps bin k onto bin n_bins - 1 - k
    expected = bin_counts(
        reverse_events(ev, 0, n_bins * step), (16, 16, 2), t0_us=0, step_us=step, n_bins=n_bins
    )
    assert (rev.frames == expected).all()
    assert rev.labels[n_bins - 9 : n_bins - 2].tolist() == [4] * 7  # now counter-clockwise
    assert rev.labels[n_bins - 18 : n_bins - 12].tolist() == [7] * 6
    assert rev.spans == (Span(7, 20_000, 80_000), Span(4, 110_000, 180_000))
    assert (reverse_frame_recording(rev).frames == frames).all()


def test_reverse_batch_only_touches_masked_clips():
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 6, 2, 4, 4, generator=g)
    labels = torch.tensor([[3, 3, -1, 5, 5, 0]] * 3)
    mask = torch.tensor([True, False, True])
    f2, l2 = reverse_batch(frames, labels, mask)
    assert torch.equal(f2[1], frames[1]) and torch.equal(l2[1], labels[1])
    assert torch.equal(f2[0], frames[0].flip(0).flip(1))
    assert l2[0].tolist() == [0, 6, 6, -1, 4, 4]


def test_the_bundled_model_tells_a_circle_from_its_time_reversed_twin():
    """A held-out synthetic recording of arm circles and the same recording played backwards.

    Backwards, every clockwise circle is a counter-clockwise one: a model that ignored
    the order of events would give the same answers for both and be wrong on one.
    """
    import functools

    from dvsapp.core.classify import load_classifier
    from dvsapp.core.events import SensorSize
    from dvsapp.core.synth import make_sequence
    from dvsapp.core.train.datasets import Recording, Span, bin_recording
    from dvsapp.core.train.evaluate import evaluate_frames
    from dvsapp.core.train.reverse import reverse_spans

    torch.set_num_threads(1)
    clf = load_classifier(None)
    circles = [3, 4, 5, 6, 6, 5, 4, 3]  # right cw, right ccw, left cw, left ccw, then the other order
    events, segments = make_sequence(424242, len(circles), classes=circles)  # a seed no split trains on
    spans = tuple(Span.of(s) for s in segments)
    t0, t1 = int(events["t"][0]), int(events["t"][-1])
    size = SensorSize(128, 128)

    def frames_of(ev, sp, name):
        rec = Recording(name, size, tuple(sp), functools.partial(np.copy, ev))
        return bin_recording(rec, clf.recipe)

    forward = frames_of(events, spans, "forward")
    backward = frames_of(reverse_events(events, t0, t1), reverse_spans(spans, t0, t1), "backward")
    assert [s.class_id for s in backward.spans] == [reversal_table()[c] for c in circles[::-1]]
    for rec in (forward, backward):
        rep = evaluate_frames(
            clf.model, [rec], timesteps=clf.recipe.timesteps, class_names=clf.model.class_names, batch_size=1
        )
        right = int(np.trace(rep.confusion))
        assert right >= 7, f"{rec.name}: {right} of {len(circles)} circles right\n{rep.confusion}"
