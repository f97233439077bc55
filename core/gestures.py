"""The DVS128 Gesture classes, in the dataset's own numbering (1..11 in its CSVs)."""

from __future__ import annotations

from pathlib import Path

GESTURE_CLASSES: tuple[str, ...] = (
    "hand_clapping",
    "right_hand_wave",
    "left_hand_wave",
    "right_arm_clockwise",
    "right_arm_counter_clockwise",
    "left_arm_clockwise",
    "left_arm_counter_clockwise",
    "arm_roll",
    "air_drums",
    "air_guitar",
    "other_gestures",
)
"""Index ``i`` here is class ``i + 1`` in DVS Gesture ``*_labels.csv`` files."""

#: left/right mirror pairs (0-based): a flipped right-arm clockwise circle is a left-arm counter-clockwise one
MIRROR_PAIRS: dict[int, int] = {1: 2, 2: 1, 3: 6, 6: 3, 4: 5, 5: 4}


def mirrored_class(index: int) -> int:
    """The class a horizontally flipped gesture becomes (itself if symmetric)."""
    return MIRROR_PAIRS.get(index, index)


#: time-reversal pairs (0-based): played backwards, a clockwise circle is a counter-clockwise one
REVERSAL_PAIRS: dict[int, int] = {3: 4, 4: 3, 5: 6, 6: 5}


def reversed_class(index: int) -> int:
    """The class a gesture becomes when its motion is played backwards (itself if symmetric)."""
    return REVERSAL_PAIRS.get(index, index)


def labels_path_for(recording) -> Path:
    """DVS Gesture's label-file naming: ``<stem>_labels.csv`` beside the recording
    (``user01_led.aedat`` -> ``user01_led_labels.csv``)."""
    p = Path(recording)
    return p.with_name(f"{p.stem}_labels.csv")
