"""Time reversal: the same scene played backwards, the test of whether a model sees motion.

Played backwards, every pixel's brightness changes run the other way: an event at
``t`` becomes one at ``t0 + t1 - t`` with the opposite polarity, and a clockwise
arm circle becomes a counter-clockwise one (:data:`dvsapp.core.gestures.REVERSAL_PAIRS`);
waves, claps, rolls, drums and guitar stay what they are. A model that ignores the
order of events gives the same answer for a clip and its reversed twin, so it
cannot be right on both for the circles.

Used three ways: as a training augmentation (:func:`reverse_batch`), on binned
held-out recordings (:func:`reverse_frame_recording`) and on event files
(:func:`reverse_events`).
"""

from __future__ import annotations

import numpy as np

from dvsapp.core.events import EVENT_DTYPE
from dvsapp.core.gestures import GESTURE_CLASSES, REVERSAL_PAIRS, reversed_class

__all__ = [
    "CIRCLE_CLASSES",
    "reverse_batch",
    "reverse_events",
    "reverse_frame_recording",
    "reverse_spans",
    "reversal_table",
]

#: the arm circles, whose class flips under time reversal (0-based)
CIRCLE_CLASSES: tuple[int, ...] = tuple(sorted(REVERSAL_PAIRS))


def reversal_table(n_classes: int = len(GESTURE_CLASSES)) -> np.ndarray:
    """``table[c]`` is the class ``c`` becomes played backwards."""
    return np.array([reversed_class(c) for c in range(n_classes)], dtype=np.int64)


def reverse_events(events: np.ndarray, t0_us: int | None = None, t1_us: int | None = None) -> np.ndarray:
    """Events of ``[t0_us, t1_us]`` played backwards: ``t -> t0 + t1 - t``, polarity swapped, sorted by time.

    ``t0_us``/``t1_us`` default to the first and last timestamps.
    """
    out = np.empty(len(events), dtype=EVENT_DTYPE)
    if len(events) == 0:
        return out
    t0 = int(events["t"][0]) if t0_us is None else int(t0_us)
    t1 = int(events["t"][-1]) if t1_us is None else int(t1_us)
    rev = events[::-1]
    out["x"], out["y"] = rev["x"], rev["y"]
    out["t"] = t0 + t1 - rev["t"]
    out["p"] = ~rev["p"].astype(bool)
    return out


def reverse_spans(spans, t0_us: int, t1_us: int):
    """Labeled spans (``class_id, start_us, end_us``) of the reversed recording, in time order."""
    out = [
        type(s)(
            reversed_class(int(s.class_id)), t0_us + t1_us - int(s.end_us), t0_us + t1_us - int(s.start_us)
        )
        for s in spans
    ]
    return sorted(out, key=lambda s: s.start_us)


def reverse_frame_recording(rec):
    """A binned recording (:class:`dvsapp.core.train.datasets.FrameRecording`) played backwards.

    Timestep ``k`` of the result is timestep ``S-1-k`` of ``rec`` with its polarity
    channels swapped; labels follow, with the circles' direction flipped. This equals
    binning the reversed events (:func:`reverse_events` over ``[t0, t0 + S*step)``)
    up to events that fall exactly on a bin edge.
    """
    from dvsapp.core.train.datasets import NO_LABEL

    frames = rec.frames[::-1]
    if frames.shape[1] == 2:
        frames = frames[:, ::-1]
    table = reversal_table(max(len(GESTURE_CLASSES), int(rec.labels.max(initial=0)) + 1))
    labels = rec.labels[::-1].astype(np.int64)
    labels = np.where(labels == NO_LABEL, NO_LABEL, table[np.maximum(labels, 0)]).astype(rec.labels.dtype)
    t1 = rec.t0_us + rec.n_steps * rec.step_us
    return type(rec)(
        name=f"{rec.name}:reversed",
        frames=np.ascontiguousarray(frames),
        labels=labels,
        t0_us=rec.t0_us,
        step_us=rec.step_us,
        spans=tuple(reverse_spans(rec.spans, rec.t0_us, t1)),
    )


def reverse_batch(frames, labels, mask):
    """Reverse the clips of a training batch where ``mask`` is true (torch tensors, in place of a copy).

    ``frames [B, S, P, H, W]``, ``labels [B, S]`` (``-1`` unlabeled), ``mask [B]`` bool.
    """
    import torch

    if not bool(mask.any()):
        return frames, labels
    table = torch.as_tensor(reversal_table(), device=labels.device)
    rev_f = frames.flip(1)
    if rev_f.shape[2] == 2:
        rev_f = rev_f.flip(2)
    rev_l = labels.flip(1)
    rev_l = torch.where(rev_l >= 0, table[rev_l.clamp(min=0, max=len(table) - 1)], rev_l)
    m = mask.view(-1, *([1] * (frames.dim() - 1)))
    return torch.where(m, rev_f, frames), torch.where(mask.view(-1, 1), rev_l, labels)
