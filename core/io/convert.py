"""Streaming conversion between event file formats, with optional crop and downsample.

Memory is bounded by one chunk (``chunk_events`` events, default 1 Mi = 13 MB of
EVENT_DTYPE plus the decoders' buffers), never by the file: the reader's
chunks go through the spatial ops and straight into a streaming writer.

Triggers (``reader.read_triggers()``) are written after the events where the
output holds them (AEDAT 4's trigger stream, HDF5's ``/triggers``); the crop and
downsampling leave them alone.  The report says how many were kept and dropped
(npz and CSV hold none), and notes when AEDAT 4's single external-signal input
takes the triggers of other input channels.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvsapp.core.events import SensorSize
from dvsapp.core.filters import Crop, Downsample
from dvsapp.core.io import open_events, open_writer
from dvsapp.core.io.base import DEFAULT_CHUNK_EVENTS


@dataclass(frozen=True)
class ConvertReport:
    """What :func:`convert` did."""

    input_path: Path
    output_path: Path
    input_format: str
    n_events_in: int
    n_events_out: int
    sensor_size_in: SensorSize
    sensor_size_out: SensorSize
    n_triggers_in: int = 0
    n_triggers_out: int = 0
    trigger_note: str | None = None

    @property
    def n_triggers_dropped(self) -> int:
        return self.n_triggers_in - self.n_triggers_out


def convert(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    crop: Crop | None = None,
    downsample: int = 1,
    force: bool = False,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
    progress: Callable[[int, int | None], None] | None = None,
) -> ConvertReport:
    """Convert ``in_path`` (any readable format) to ``out_path`` (format from its extension).

    Parameters
    ----------
    crop : Crop, optional
        Applied first, in input pixels.
    downsample : int
        Integer factor applied after the crop.
    force : bool
        Replace an existing output.
    chunk_events : int
        Events decoded and written per step (bounds memory).
    progress : callable, optional
        ``progress(events_done, events_total_or_None)`` after every chunk.
    """
    reader = open_events(in_path)
    size = reader.sensor_size
    ops = []
    if crop is not None:  # the filters' crop and downsample, the same ones the pipeline uses
        crop.check_fits(size)
        size = crop.output_size(size)
        ops.append(crop)
    if int(downsample) != 1:
        ds = Downsample(int(downsample))
        size = ds.output_size(size)
        ops.append(ds)
    total = reader.metadata.get("n_events")
    metadata = {"camera": reader.metadata.get("camera"), "source_format": reader.metadata.get("format")}
    labels = getattr(reader, "label_rows", None)
    if labels is not None and labels() is not None and not ops:
        rows, names = labels()
        metadata["labels"] = rows
        if names is not None:
            metadata["class_names"] = names
    n_in = n_out = 0
    want_triggers = bool(reader.may_have_triggers)
    triggers = None
    note = None
    with open_writer(out_path, size, force=force, metadata=metadata, with_triggers=want_triggers) as writer:
        for chunk in reader.iter_chunks(chunk_events):
            n_in += len(chunk)
            for op in ops:
                chunk = op(chunk)
            writer.write(chunk)
            n_out += len(chunk)
            if progress is not None:
                progress(n_in, total)
        if want_triggers:
            triggers = reader.read_triggers()  # decoded on the way for the stream formats
            if len(triggers) and writer.holds_triggers:
                writer.write_triggers(triggers)
                note = _trigger_note(triggers, Path(out_path))
    return ConvertReport(
        input_path=reader.path,
        output_path=Path(out_path),
        input_format=str(reader.metadata["format"]),
        n_events_in=n_in,
        n_events_out=n_out,
        sensor_size_in=reader.sensor_size,
        sensor_size_out=size,
        n_triggers_in=0 if triggers is None else len(triggers),
        n_triggers_out=writer.n_triggers_written,
        trigger_note=note,
    )


def _trigger_note(triggers: np.ndarray, out_path: Path) -> str | None:
    """What an AEDAT 4 output changes about the triggers (None when nothing)."""
    from dvsapp.core.io.aedat4 import MARKER_CHANNELS

    if out_path.suffix.lower() != ".aedat4":
        return None
    channels = sorted({int(c) for c in np.unique(triggers["channel"])} - {0, *MARKER_CHANNELS})
    if not channels:
        return None
    names = ", ".join(str(c) for c in channels)
    return f"AEDAT 4 has one external-signal input: the triggers of channel {names} are written as it"
