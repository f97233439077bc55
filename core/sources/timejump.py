"""Time jumps of a live stream: the clock going back, or leaping forward.

A live sensor's clock can restart: the camera is unplugged and plugged back, DV
software loops a playback, the server restarts.  Its events then go back in
time (or, for a clock reset to "now", leap forward by far more than any quiet
spell).  :class:`TimeJumpGuard` watches the timestamps of one live source and
cuts its stream there, in one place for every live source:

* Each run of events between jumps is one *timeline*.  A new timeline after a
  jump back is shifted to start 1 us after the last event delivered, so the
  delivered stream keeps the source contract (sorted events, ``until_us`` never
  decreasing: recorders and views need no special case) and nothing is lost.
  After a jump forward the timestamps are kept.
* The first packet of a new timeline is a :class:`RestartPacket` carrying the
  :class:`TimeJump`; a consumer that keeps state across packets (the pipeline's
  binner and model) restarts there.  Every other consumer can treat it as a
  plain :class:`~dvsapp.core.events.Packet`.
* A step back of at most ``jitter_us`` is reordering, not a jump (a sender that
  sorts its batches loosely): it stays in the same timeline.

Files are not watched: a recording whose time goes back is damaged, and its
reader raises :class:`~dvsapp.core.errors.EventDataError` naming the event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dvsapp.core.errors import ConfigError
from dvsapp.core.events import Packet

__all__ = ["RestartPacket", "TimeJump", "TimeJumpGuard"]


@dataclass(frozen=True)
class TimeJump:
    """Where a live stream's clock jumped.

    Attributes
    ----------
    kind : {"back", "forward"}
    from_us, to_us : int
        The source's own timestamps of the last event before and the first after the jump.
    stream_us : int
        Where the new timeline starts in the delivered stream (after the shift).
    """

    kind: str
    from_us: int
    to_us: int
    stream_us: int

    def describe(self) -> str:
        """One line: ``time went back 4.200 s (10.500 s -> 6.300 s)``."""
        step = abs(self.to_us - self.from_us) / 1e6
        return f"time went {self.kind} {step:.3f} s ({self.from_us / 1e6:.3f} s -> {self.to_us / 1e6:.3f} s)"


@dataclass(frozen=True)
class RestartPacket(Packet):
    """The first packet of a new timeline: ``jump`` says where the clock jumped."""

    jump: TimeJump | None = None


class TimeJumpGuard:
    """Cut one live stream into timelines at its time jumps (see the module docstring).

    Parameters
    ----------
    max_gap_us : int or None
        A step forward larger than this is a jump (``None``: never).
    jitter_us : int
        A step back of at most this much is reordering, not a jump.

    Attributes
    ----------
    offset_us : int
        Added to the source's timestamps in the current timeline.
    n_jumps : int
    jumps : list of TimeJump
        The latest jumps (at most :data:`KEEP`), oldest first.
    """

    KEEP = 100

    def __init__(self, *, max_gap_us: int | None = 10_000_000, jitter_us: int = 1_000) -> None:
        if max_gap_us is not None and max_gap_us <= 0:
            raise ConfigError(f"max_gap_us must be > 0 or None, got {max_gap_us}")
        if jitter_us < 0:
            raise ConfigError(f"jitter_us must be >= 0, got {jitter_us}")
        self.max_gap_us = None if max_gap_us is None else int(max_gap_us)
        self.jitter_us = int(jitter_us)
        self.offset_us = 0
        self.n_jumps = 0
        self.jumps: list[TimeJump] = []
        self._last_src: int | None = None  # newest source timestamp seen
        self._last_stream: int | None = None  # newest stream timestamp handed out

    def split(self, events: np.ndarray) -> list[tuple[np.ndarray, TimeJump | None]]:
        """Cut a batch of the source's events (its own clock, in arrival order) at the jumps.

        Returns
        -------
        list of (events, jump)
            The runs in stream time (shifted copies where the offset is not 0), in
            order; ``jump`` is the :class:`TimeJump` a run starts with, else None.
            Within a run, steps back of at most ``jitter_us`` may remain.
        """
        if len(events) == 0:
            return []
        t = events["t"].astype(np.int64)
        step = np.diff(t)
        is_jump = step < -self.jitter_us
        if self.max_gap_us is not None:
            is_jump |= step > self.max_gap_us
        cuts = [0, *(np.flatnonzero(is_jump) + 1).tolist(), len(t)]
        runs = []
        for a, b in zip(cuts[:-1], cuts[1:], strict=False):
            jump = self._start(int(t[a]))
            run = events[a:b]
            if self.offset_us:
                run = run.copy()
                run["t"] += self.offset_us
            newest = int(t[a:b].max())
            self._last_src = newest if self._last_src is None else max(self._last_src, newest)
            newest += self.offset_us
            self._last_stream = newest if self._last_stream is None else max(self._last_stream, newest)
            runs.append((run, jump))
        return runs

    def _start(self, first: int) -> TimeJump | None:
        """Check the step from the last event seen to ``first``; on a jump, open a new timeline."""
        last = self._last_src
        if last is None:
            return None
        if first < last - self.jitter_us:
            kind = "back"
        elif self.max_gap_us is not None and first > last + self.max_gap_us:
            kind = "forward"
        else:
            return None
        if kind == "back":
            assert self._last_stream is not None
            self.offset_us = self._last_stream + 1 - first
        jump = TimeJump(kind, last, first, first + self.offset_us)
        self._last_src = None  # the new timeline's own clock from here on
        self.n_jumps += 1
        self.jumps = [*self.jumps[-(self.KEEP - 1) :], jump]
        return jump
