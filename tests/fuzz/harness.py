"""What every fuzz target checks: an input either reads or raises ``dvsapp.core.errors``.

The same functions run under atheris (``tests/fuzz/run_fuzz.py``) and in the
regression test that replays the saved corpus (``tests/test_fuzz_corpus.py``).
Anything but a :class:`dvsapp.core.errors.DvsAppError` escapes and is a finding; a
message must be a single line.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from dvsapp.core.errors import DvsAppError

#: the first byte of a reader input picks the file name the bytes are saved
#: under, so the extension tie-breaks of the sniffer are exercised too
READER_EXTENSIONS = (
    ".aedat4",
    ".aedat",
    ".raw",
    ".dat",
    ".bin",
    ".npy",
    ".npz",
    ".csv",
    ".txt",
    ".h5",
    "",
)

MAX_EVENTS_READ = 2_000_000  # a fuzz input never legitimately holds more

#: the HDF5 structure probe's time limit inside the harness: under libFuzzer's 10 s
#: per-input timeout, and far above the milliseconds a sound seed needs
HDF5_PROBE_TIMEOUT_S = 3.0


@contextlib.contextmanager
def _hdf5_probe_limit(seconds: float):
    from dvsapp.core.io import hdf5

    saved = hdf5.PROBE_TIMEOUT_S
    hdf5.PROBE_TIMEOUT_S = seconds
    try:
        yield
    finally:
        hdf5.PROBE_TIMEOUT_S = saved


def _one_line(exc: DvsAppError) -> None:
    text = str(exc)
    if "\n" in text or not text.strip():
        raise AssertionError(f"error message is not one non-empty line: {text!r}")


def check_reader_bytes(data: bytes, workdir: str | os.PathLike | None = None) -> int:
    """Save ``data[1:]`` as a file (extension picked by ``data[0]``) and read it all.

    Returns the number of events read (``-1`` when a ``dvsapp.core.errors`` error was raised).
    """
    from dvsapp.core.io import open_events

    if not data:
        return -1
    ext = READER_EXTENSIONS[data[0] % len(READER_EXTENSIONS)]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp, _hdf5_probe_limit(HDF5_PROBE_TIMEOUT_S):
        path = Path(tmp) / f"input{ext}"
        path.write_bytes(data[1:])
        try:
            reader = open_events(path)
            _ = reader.sensor_size, reader.metadata
            events = reader.read_all()
            n_all = len(events)
            triggers = reader.read_triggers()
            if hasattr(reader, "read_imu"):
                reader.read_imu()
            n_packets = 0
            for packet in reader.packets(max_events=4096):
                n_packets += len(packet.events)
                if n_packets > MAX_EVENTS_READ:
                    break
            if n_all <= MAX_EVENTS_READ and n_packets != n_all:
                raise AssertionError(f"packets() gave {n_packets} events, read_all() {n_all}")
            fresh = open_events(path).read_triggers()  # a triggers-only pass gives the same
            if fresh.tobytes() != triggers.tobytes():
                raise AssertionError(
                    f"read_triggers() alone gave {len(fresh)} triggers, after read_all() {len(triggers)}"
                )
            if reader.metadata["format"] == "evt3":
                _check_evt3_pieces(data[1:], reader, events, triggers)
            return n_all
        except DvsAppError as exc:
            _one_line(exc)
            return -1


def _check_evt3_pieces(raw: bytes, reader, events, triggers) -> None:
    """The streaming EVT 3.0 decoder fed the bytes in uneven pieces agrees with the reader."""
    import numpy as np

    from dvsapp.core.events import concat, concat_triggers
    from dvsapp.core.io.evt3 import Evt3Decoder

    body = raw[reader._first :]
    dec = Evt3Decoder()
    cut = len(body) // 3 | 1  # odd: a word split in two
    parts = [dec.feed(body[a:b]) for a, b in ((0, cut), (cut, 2 * cut), (2 * cut, len(body)))]
    dec.finish()
    ev = concat([e for e, _ in parts])
    tr = concat_triggers([t for _, t in parts])
    if not (np.array_equal(ev, events) and np.array_equal(tr, triggers)):
        raise AssertionError("Evt3Decoder.feed in pieces and the reader disagree")


def check_labels_bytes(data: bytes, workdir: str | os.PathLike | None = None) -> int:
    """Parse ``data`` as a DVS Gesture labels CSV; returns the segment count or -1."""
    from dvsapp.core.labels import read_labels_csv

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "rec_labels.csv"
        path.write_bytes(data)
        try:
            return len(read_labels_csv(path))
        except DvsAppError as exc:
            _one_line(exc)
            return -1


def check_checkpoint_bytes(data: bytes, workdir: str | os.PathLike | None = None) -> int:
    """Load ``data`` as a model checkpoint; returns the parameter count or -1."""
    from dvsapp.core.model import load_checkpoint

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(data)
        try:
            model, _meta = load_checkpoint(path)
            return sum(p.numel() for p in model.parameters())
        except DvsAppError as exc:
            _one_line(exc)
            return -1


TARGETS = {
    "readers": check_reader_bytes,
    "labels": check_labels_bytes,
    "checkpoint": check_checkpoint_bytes,
}
