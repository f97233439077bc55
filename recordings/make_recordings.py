"""Regenerate the bundled sample recordings (deterministic: fixed seed).

Writes, next to this script:

- ``gestures.aedat4``      ~20 s, 128x128: the synthetic figure performs all 11
                           DVS Gesture classes once each (shuffled), with short pauses;
- ``gestures_labels.csv``  its labels in the DVS Gesture format
                           (``class,startTime_usec,endTime_usec``, classes 1..11);
- ``gestures.h5``          the first ~5 s (the gestures that end by then) as HDF5,
                           with its labels inside the file (``/labels``, 0-based classes).

Usage::

    python recordings/make_recordings.py          # refuses to overwrite
    python recordings/make_recordings.py --force
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dvsapp.core.events import SensorSize, time_slice  # noqa: E402
from dvsapp.core.gestures import GESTURE_CLASSES  # noqa: E402
from dvsapp.core.io import write_events  # noqa: E402
from dvsapp.core.labels import write_labels_csv  # noqa: E402
from dvsapp.core.synth import make_sequence  # noqa: E402

SEED = 2024
SENSOR = SensorSize(128, 128)
GESTURE_US = (1_300_000, 1_600_000)
GAP_US = (300_000, 500_000)
SHORT_US = 6_000_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: beside this script)")
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    labels_csv = out / "gestures_labels.csv"
    if labels_csv.exists() and not args.force:
        parser.error(f"{labels_csv} exists (use --force)")
    events, segments = make_sequence(
        SEED, len(GESTURE_CLASSES), sensor_size=SENSOR, gesture_us=GESTURE_US, gap_us=GAP_US
    )
    meta = {"camera": "dvsapp-synthetic", "source": f"recordings/make_recordings.py seed {SEED}"}
    write_events(out / "gestures.aedat4", events, SENSOR, force=args.force, metadata=meta)
    write_labels_csv(labels_csv, segments)
    labels_csv.chmod(0o644)  # an ordinary data file (atomic writes create it private)

    # the short HDF5 version: whole gestures that end before ~5 s, cut in the pause after them
    short = [s for s in segments if s.end_us <= SHORT_US] or segments[:1]
    cut_us = short[-1].end_us + 150_000
    write_events(
        out / "gestures.h5",
        time_slice(events, None, cut_us),
        SENSOR,
        force=args.force,
        metadata={**meta, "labels": short, "class_names": list(GESTURE_CLASSES)},
    )
    span_s = (int(events["t"][-1]) - int(events["t"][0])) / 1e6
    print(f"gestures.aedat4: {len(events)} events over {span_s:.1f} s, {len(segments)} gestures")
    print(f"gestures.h5: first {cut_us / 1e6:.1f} s, {len(short)} gestures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
