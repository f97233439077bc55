"""Prophesee EVT 3.0: a streaming decoder of our own and the RAW file reader.

EVT 3.0 is a stateful stream of little-endian 16-bit words (type in bits 15-12,
see :func:`dvsapp.core.io._kernels._decode_evt3` for every word).  Time is 24
bits, ``TIME_HIGH`` (bits 23-12) and ``TIME_LOW`` (bits 11-0), and wraps every
16.78 s; the decoder extends it to 64 bits by counting the wraps, so a long
recording's timestamps keep increasing.  The rules, from Prophesee's EVT 3.0
format description:

* ``TIME_HIGH`` sets the high bits.  When it *changes* them the low bits restart
  at 0 (a ``TIME_LOW`` normally follows at once); when it repeats them (cameras
  send it as a keep-alive) the low bits are kept, so no event moves.
* A ``TIME_HIGH`` lower than the current one by half the 24-bit range or more is
  the 24-bit counter wrapping round ("time high loop"): 2**24 us are added from
  then on.  A smaller step back is no wrap: it makes the time go back, which the
  reader reports as unsorted timestamps naming the event.
* A new period is announced by its ``TIME_HIGH``.  Adding 4,096 us whenever
  ``TIME_LOW`` decreases *and* taking the next ``TIME_HIGH`` counts a period twice:
  timestamps then run ahead in 4,096 us steps.  Only a ``TIME_LOW`` that goes
  back by more than 2,048 us with no ``TIME_HIGH`` since the previous
  ``TIME_LOW`` steps the high bits by one: that stands for a ``TIME_HIGH`` the
  stream left out (``expelliarmus`` writes files so); the count of such steps is
  ``metadata["n_implied_time_high"]``.  Camera files send every ``TIME_HIGH``
  (the real EVT 3.0 file of the tests never needs one).
* Events and triggers before the first ``TIME_HIGH`` have no time base and are
  dropped, as Prophesee's decoders do; so are CD events before the first row
  address and vector events before the first ``VECT_BASE_X``.

The decoder keeps all its state between calls, so a stream may be cut anywhere:
inside a word (the odd byte waits for the next piece), between a
``VECT_BASE_X`` and its vectors, or between a ``TIME_HIGH`` and its
``TIME_LOW``.  External-trigger words (``EXT_TRIGGER``) become a separate
trigger array (:data:`dvsapp.core.events.TRIGGER_DTYPE`: channel = the trigger
id, value 1 rising / 0 falling).  Reserved word types (0x9, 0xB, 0xC) stop the
decoder with an error naming the word and its byte offset.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from dvsapp.core.errors import EventFileError
from dvsapp.core.events import EVENT_DTYPE, TRIGGER_DTYPE, concat, concat_triggers
from dvsapp.core.io import _kernels
from dvsapp.core.io.base import DEFAULT_CHUNK_EVENTS, EventReader
from dvsapp.core.io.prophesee import _WordReader

MAX_TRIGGERS_PER_CALL = 1 << 16
"""Trigger slots handed to the kernel per call (it resumes where it stopped)."""


def _kernel():
    return _kernels.decode_evt3 if _kernels.HAVE_NUMBA else _kernels._decode_evt3


class Evt3Decoder:
    """Streaming EVT 3.0 decoder: feed the words (or bytes, in any pieces) in stream order.

    Parameters
    ----------
    path : path-like, optional
        Named in error messages.
    first_byte : int
        Byte offset of the stream's first word in the file (the header length), for messages.

    Attributes
    ----------
    n_words : int
        Words decoded so far.
    """

    def __init__(self, *, path: str | os.PathLike | None = None, first_byte: int = 0) -> None:
        self.path = path
        self.first_byte = int(first_byte)
        self.state = np.zeros(_kernels.EVT3_STATE, dtype=np.int64)
        self.n_words = 0
        self._odd = b""

    @property
    def n_dropped_events(self) -> int:
        """CD events dropped for want of a time base, a row address or a vector base."""
        return int(self.state[_kernels.EVT3_N_DROPPED])

    @property
    def n_implied_time_high(self) -> int:
        """TIME_HIGH steps inferred from a TIME_LOW that went back with no TIME_HIGH before it."""
        return int(self.state[_kernels.EVT3_N_IMPLIED])

    @property
    def n_dropped_triggers(self) -> int:
        """Trigger words seen before the first TIME_HIGH (dropped)."""
        return int(self.state[_kernels.EVT3_N_TRIG_DROPPED])

    def decode_words(
        self, words: np.ndarray, max_events: int = DEFAULT_CHUNK_EVENTS
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Decode ``words`` (``[N]`` little-endian uint16), the next words of the stream.

        Yields
        ------
        (events, triggers)
            EVENT_DTYPE pieces of at most ``max(max_events, 12)`` events each and the
            TRIGGER_DTYPE triggers decoded with them, in stream order.

        Raises
        ------
        EventFileError
            A word of a reserved type (the events before it have been yielded).
        """
        kernel = _kernel()
        cap = max(int(max_events), 12)
        n = len(words)
        i = 0
        while i < n:
            # one event per word fits most streams; a vector-rich one continues in a new buffer
            ev = np.empty(max(12, min(cap, n - i)), dtype=EVENT_DTYPE)
            tr = np.empty(min(MAX_TRIGGERS_PER_CALL, n - i), dtype=TRIGGER_DTYPE)
            nxt, k, m, bad = kernel(
                words, i, self.state, ev["x"], ev["y"], ev["t"], ev["p"], tr["t"], tr["channel"], tr["value"]
            )
            nxt = int(nxt)
            if k or m:
                yield ev[:k], tr[:m]
            if bad >= 0:
                index = self.n_words + int(bad)
                self.n_words += int(bad)
                raise EventFileError(
                    f"EVT 3.0 word {index} (byte {self.first_byte + 2 * index}) has reserved type "
                    f"0x{int(words[int(bad)]) >> 12:X}",
                    path=self.path,
                )
            self.n_words += nxt - i
            i = nxt

    def feed(self, data: bytes | bytearray | memoryview) -> tuple[np.ndarray, np.ndarray]:
        """Decode the next bytes of the stream; a trailing odd byte waits for the next call.

        Returns
        -------
        (events, triggers)
            Everything the bytes completed (EVENT_DTYPE, TRIGGER_DTYPE).
        """
        buf = self._odd + bytes(data)
        even = len(buf) & ~1
        self._odd = buf[even:]
        words = np.frombuffer(buf, dtype="<u2", count=even // 2)
        parts = list(self.decode_words(words))
        return concat([e for e, _ in parts]), concat_triggers([t for _, t in parts])

    def finish(self) -> None:
        """Check that the stream ended on a word boundary."""
        if self._odd:
            raise EventFileError(
                f"truncated: the stream ends inside a 16-bit word (byte {self.first_byte + 2 * self.n_words})",
                path=self.path,
            )


class Evt3Reader(_WordReader):
    """Prophesee RAW, EVT 3.0, decoded by :class:`Evt3Decoder` (numba)."""

    format_name = "evt3"
    encoding = "evt3"
    may_have_triggers = True
    record_bytes = 2
    record_dtype = np.dtype("<u2")
    _decode_triggers = EventReader._triggers_from_a_pass

    def _chunks(self, chunk_events: int) -> Iterator[np.ndarray]:
        decoder = Evt3Decoder(path=self.path, first_byte=self._first)
        triggers: list[np.ndarray] = []
        step = max(int(chunk_events), 1)
        for i0 in range(0, self._n_records, step):
            words = self._records(i0, min(step, self._n_records - i0))
            for ev, tr in decoder.decode_words(words, max_events=chunk_events):
                if len(tr):
                    triggers.append(tr)
                if len(ev):
                    yield ev
        self._triggers = concat_triggers(triggers)
        self.metadata.update(
            n_dropped_events=decoder.n_dropped_events,
            n_dropped_triggers=decoder.n_dropped_triggers,
            n_implied_time_high=decoder.n_implied_time_high,
        )
