"""EVT 3.0: our own decoder against a test-side encoder (property test) and the real file's ground truth."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dvsapp.core.errors import EventFileError
from dvsapp.core.events import EVENT_DTYPE, TRIGGER_DTYPE, concat, concat_triggers
from dvsapp.core.io import _kernels, open_events
from dvsapp.core.io.evt3 import Evt3Decoder

HEADER = b"% evt 3.0\n% format EVT3;height=720;width=1280\n% end\n"
WIDTH, HEIGHT = 1280, 720
LOOP_US = 1 << 24

# word types of Prophesee's EVT 3.0 description
ADDR_Y, ADDR_Y_OTHER, ADDR_X, VECT_BASE_X, VECT_12, VECT_8 = 0x0, 0x1, 0x2, 0x3, 0x4, 0x5
TIME_LOW, CONTINUED_4, TIME_HIGH, EXT_TRIGGER, IMU, OTHERS, CONTINUED_12 = 0x6, 0x7, 0x8, 0xA, 0xD, 0xE, 0xF


def word(kind: int, payload: int) -> int:
    assert 0 <= payload < 1 << 12
    return (kind << 12) | payload


# --------------------------------------------------------------------------------------------------
# A test-side encoder: a stream model -> (words, the events and triggers a decoder must give back)
# --------------------------------------------------------------------------------------------------


@dataclass
class Encoder:
    """Writes EVT 3.0 words for events and triggers given in time order (times in us, any size).

    The decoder sees only 24-bit time, so consecutive time words must advance by less than
    half the 24-bit range (8.39 s); the encoder checks that.  ``expected_*`` collect what a
    correct decoder returns, in stream order.
    """

    words: list[int] = field(default_factory=list)
    events: list[tuple[int, int, int, bool]] = field(default_factory=list)
    triggers: list[tuple[int, int, int]] = field(default_factory=list)
    t: int | None = None  # time the decoder holds, once a TIME_HIGH has been written
    last_time_word: str = ""  # "high" / "low": the kind of the last time word written
    y: int | None = None  # current CD row (None: a row address must be written first)

    def set_time(
        self, t: int, *, keep_alive: bool = False, skip_zero_low: bool = False, omit_high: bool = False
    ):
        high, low = (t >> 12) & 0xFFF, t & 0xFFF
        if self.t is not None:
            assert 0 <= t - self.t < LOOP_US // 2
            old_high, old_low = (self.t >> 12) & 0xFFF, self.t & 0xFFF
            if t == self.t:
                if keep_alive:
                    self.words.append(word(TIME_HIGH, high))  # same high bits: the low bits stay
                    self.last_time_word = "high"
                return
            if high == old_high and t - self.t < 4096:
                self.words.append(word(TIME_LOW, low))
                self.last_time_word = "low"
                self.t = t
                return
            # a new period; a stream may leave its TIME_HIGH out when the next period follows at
            # once and its TIME_LOW goes back by more than half a period (expelliarmus writes so)
            follows = (t >> 12) - (self.t >> 12) == 1
            if omit_high and follows and self.last_time_word == "low" and low + 2048 < old_low:
                self.words.append(word(TIME_LOW, low))
                self.last_time_word = "low"
                self.t = t
                return
        self.words.append(word(TIME_HIGH, high))
        self.last_time_word = "high"
        if keep_alive:
            self.words.append(word(TIME_HIGH, high))
        self.t = (t >> 12) << 12  # a changed TIME_HIGH zeroes the low bits
        if low or not skip_zero_low:
            self.words.append(word(TIME_LOW, low))
            self.last_time_word = "low"
        self.t = t

    def row(self, y: int) -> None:
        self.words.append(word(ADDR_Y, y))
        self.y = y

    def single(self, x: int, p: bool) -> None:
        self.words.append(word(ADDR_X, (int(p) << 11) | x))
        if self.t is not None and self.y is not None:
            self.events.append((x, self.y, self.t, bool(p)))

    def vector(self, base_x: int, p: bool, kinds_masks: list[tuple[int, int]]) -> None:
        """VECT_BASE_X then VECT_12 / VECT_8 words with the given validity masks."""
        self.words.append(word(VECT_BASE_X, (int(p) << 11) | base_x))
        x = base_x
        for kind, mask in kinds_masks:
            n = 12 if kind == VECT_12 else 8
            assert x + n <= WIDTH
            self.words.append(word(kind, mask))
            for i in range(n):
                if mask >> i & 1 and self.t is not None and self.y is not None:
                    self.events.append((x + i, self.y, self.t, bool(p)))
            x += n

    def trigger(self, channel: int, value: int) -> None:
        self.words.append(word(EXT_TRIGGER, (channel << 8) | value))
        if self.t is not None:
            self.triggers.append((self.t, channel, value))

    def noise(self, kind: str, payload: int) -> None:
        """Words a decoder must skip without losing its state."""
        if kind == "others":
            self.words += [word(OTHERS, payload), word(CONTINUED_12, payload), word(CONTINUED_12, 7)]
        elif kind == "continued4":
            self.words.append(word(CONTINUED_4, payload & 0xF))
        elif kind == "imu":
            self.words.append(word(IMU, payload))
        elif kind == "other_row":  # a row of non-CD events: their addresses are no CD events
            self.words += [word(ADDR_Y_OTHER, payload % HEIGHT), word(ADDR_X, payload % WIDTH)]
            self.y = None

    def data(self) -> bytes:
        return np.asarray(self.words, dtype="<u2").tobytes()

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        ev = np.array(
            [(x, y, t, p) for x, y, t, p in self.events],
            dtype=[("x", "i2"), ("y", "i2"), ("t", "i8"), ("p", "?")],
        ).astype(EVENT_DTYPE)
        tr = np.array(self.triggers, dtype=[("t", "i8"), ("channel", "i2"), ("value", "i1")]).astype(
            TRIGGER_DTYPE
        )
        return ev, tr


# one group of words at one time: (dt_us, keep_alive, skip_zero_low, omit_high, items)
_vector_word = st.tuples(st.sampled_from([VECT_12, VECT_8]), st.integers(0, 0xFFF))
_item = st.one_of(
    st.tuples(st.just("row"), st.integers(0, HEIGHT - 1)),
    st.tuples(st.just("single"), st.integers(0, WIDTH - 1), st.booleans()),
    st.tuples(
        st.just("vector"), st.integers(0, WIDTH - 200), st.booleans(), st.lists(_vector_word, max_size=6)
    ),
    st.tuples(st.just("trigger"), st.integers(0, 15), st.integers(0, 1)),
    st.tuples(
        st.just("noise"), st.sampled_from(["others", "continued4", "imu", "other_row"]), st.integers(0, 0xFFF)
    ),
)
_dt = st.one_of(
    st.just(0),
    st.integers(1, 4095),
    st.integers(4096, 3 * 4096),
    st.integers(1, LOOP_US // 2 - 1),  # big steps: the 24-bit time wraps every few groups
)
_group = st.tuples(_dt, st.booleans(), st.booleans(), st.booleans(), st.lists(_item, max_size=8))


def encode(t0: int, prefix: list, groups: list) -> Encoder:
    enc = Encoder()
    for item in prefix:  # before the first TIME_HIGH: dropped by the decoder
        _apply(enc, item)
    t = t0
    for i, (dt, keep_alive, skip_zero_low, omit_high, items) in enumerate(groups):
        t = (t + dt) % LOOP_US if i == 0 else t + dt  # the decoder's clock starts in its first loop
        enc.set_time(t, keep_alive=keep_alive, skip_zero_low=skip_zero_low, omit_high=omit_high)
        for item in items:
            _apply(enc, item)
    return enc


def _apply(enc: Encoder, item: tuple) -> None:
    kind = item[0]
    if kind == "row":
        enc.row(item[1])
    elif kind == "single":
        if enc.y is None:
            enc.row(item[1] % HEIGHT)
        enc.single(item[1], item[2])
    elif kind == "vector":
        if enc.y is None:
            enc.row(item[1] % HEIGHT)
        enc.vector(item[1], item[2], item[3])
    elif kind == "trigger":
        enc.trigger(item[1], item[2])
    else:
        enc.noise(item[1], item[2])


def decode_pieces(data: bytes, cuts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Feed ``data`` to one decoder cut at the given byte offsets."""
    dec = Evt3Decoder()
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    evs, trs = [], []
    for a, b in zip(edges, edges[1:]):
        ev, tr = dec.feed(data[a:b])
        evs.append(ev)
        trs.append(tr)
    dec.finish()
    return concat(evs), concat_triggers(trs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    t0=st.integers(0, LOOP_US - 1),
    prefix=st.lists(_item, max_size=3),
    groups=st.lists(_group, min_size=1, max_size=30),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=12),
)
def test_encoder_streams_decode_exactly_under_any_split(t0, prefix, groups, cuts):
    enc = encode(t0, prefix, groups)
    want_ev, want_tr = enc.expected()
    data = enc.data()
    ev, tr = decode_pieces(data, cuts)
    np.testing.assert_array_equal(ev, want_ev)
    np.testing.assert_array_equal(tr, want_tr)
    assert (np.diff(ev["t"]) >= 0).all()


@settings(max_examples=25, deadline=None)
@given(
    t0=st.integers(0, LOOP_US - 1),
    groups=st.lists(_group, min_size=1, max_size=20),
    chunk=st.integers(1, 40),
)
def test_reader_chunks_carry_state_across_chunk_edges(tmp_path_factory, t0, groups, chunk):
    """Small chunks cut vector runs and time words apart; the reader still gives every event."""
    enc = encode(t0, [], groups)
    want_ev, want_tr = enc.expected()
    path = tmp_path_factory.mktemp("evt3") / "s.raw"
    path.write_bytes(HEADER + enc.data())
    r = open_events(path)
    parts = list(r.iter_chunks(chunk))
    assert all(len(p) <= max(chunk, 12) for p in parts)
    np.testing.assert_array_equal(concat(parts), want_ev)
    np.testing.assert_array_equal(r.read_triggers(), want_tr)
    np.testing.assert_array_equal(open_events(path).read_all(), want_ev)


def test_data_that_starts_with_a_percent_byte_after_the_closed_header_is_data(tmp_path):
    """A TIME_HIGH word of 0x25 (t = 151 552 us) starts with the byte of "%" after "% end": data,
    not a header line left open (found by the chunking property test above)."""
    enc = encode(0x25 << 12, [], [(0, False, False, False, [])])
    data = enc.data()
    assert data[:1] == b"%"
    path = tmp_path / "percent.raw"
    path.write_bytes(HEADER + data)
    want_ev, _ = enc.expected()
    np.testing.assert_array_equal(open_events(path).read_all(), want_ev)
    # without "% end" a "%" after the header lines is still a header line that never ends
    open_line = tmp_path / "open.raw"
    open_line.write_bytes(b"% evt 3.0\n% format EVT3;height=720;width=1280\n% width 1280" + bytes(8))
    with pytest.raises(EventFileError, match="never ends|corrupt header"):
        open_events(open_line)


def test_every_word_type_and_the_time_rules_by_hand():
    w = [
        word(ADDR_Y, 3),
        word(ADDR_X, 9),
        word(EXT_TRIGGER, 0x101),  # no time base yet: dropped
        word(TIME_HIGH, 5),
        word(TIME_LOW, 4000),
        word(ADDR_Y, 7),
        word(ADDR_X, (1 << 11) | 11),
        word(TIME_HIGH, 5),
        word(ADDR_X, 12),  # keep-alive: the low bits stay
        word(TIME_HIGH, 6),
        word(ADDR_X, 13),  # a new period: low bits 0
        word(TIME_LOW, 10),
        word(ADDR_X, 14),  # 6 * 4096 + 10, not 4096 more
        word(OTHERS, 0x14),
        word(CONTINUED_12, 0xABC),
        word(CONTINUED_12, 0x1),
        word(CONTINUED_4, 3),
        word(VECT_BASE_X, (1 << 11) | 100),
        word(VECT_12, 0b1000_0000_0001),
        word(VECT_8, 0b1000_0001),
        word(EXT_TRIGGER, (6 << 8) | 1),
        word(TIME_HIGH, 4095),
        word(TIME_LOW, 100),
        word(ADDR_X, 15),
        word(TIME_HIGH, 0),
        word(TIME_LOW, 5),
        word(ADDR_X, 16),
        word(EXT_TRIGGER, 6 << 8),  # 24-bit wrap
        word(TIME_LOW, 4000),
        word(TIME_LOW, 20),
        word(ADDR_X, 17),  # a TIME_HIGH left out
        word(ADDR_Y_OTHER, 2),
        word(ADDR_X, 18),
        word(IMU, 0x123),
        word(ADDR_Y, 8),
        word(ADDR_X, 19),
    ]
    dec = Evt3Decoder()
    ev, tr = dec.feed(np.asarray(w, dtype="<u2").tobytes())
    t5, t6, wrap = 5 * 4096, 6 * 4096, LOOP_US
    assert ev.tolist() == [
        (11, 7, t5 + 4000, True),
        (12, 7, t5 + 4000, False),
        (13, 7, t6, False),
        (14, 7, t6 + 10, False),
        (100, 7, t6 + 10, True),
        (111, 7, t6 + 10, True),
        (112, 7, t6 + 10, True),
        (119, 7, t6 + 10, True),
        (15, 7, 4095 * 4096 + 100, False),
        (16, 7, wrap + 5, False),
        (17, 7, wrap + 4096 + 20, False),
        (19, 8, wrap + 4096 + 20, False),
    ]
    assert tr.tolist() == [(t6 + 10, 6, 1), (wrap + 5, 6, 0)]
    assert (dec.n_dropped_events, dec.n_dropped_triggers, dec.n_implied_time_high) == (2, 1, 1)


def test_reserved_words_and_odd_bytes_are_reported(tmp_path):
    dec = Evt3Decoder(path="x.raw", first_byte=100)
    with pytest.raises(EventFileError, match=r"x.raw: EVT 3.0 word 2 \(byte 104\) has reserved type 0xB"):
        dec.feed(struct.pack("<HHH", word(TIME_HIGH, 1), word(TIME_LOW, 2), 0xB000))
    dec = Evt3Decoder()
    dec.feed(b"\x01\x80\x02")
    with pytest.raises(EventFileError, match="inside a 16-bit word"):
        dec.finish()
    # a TIME_HIGH that goes back by less than half the range is no wrap: unsorted, named by the reader
    path = tmp_path / "back.raw"
    w = [word(TIME_HIGH, 100), word(ADDR_Y, 1), word(ADDR_X, 1), word(TIME_HIGH, 90), word(ADDR_X, 2)]
    path.write_bytes(HEADER + np.asarray(w, dtype="<u2").tobytes())
    with pytest.raises(EventFileError, match="event 1 has t=368640 us after t=409600 us"):
        open_events(path).read_all()


def test_compiled_and_plain_python_kernels_agree(monkeypatch):
    enc = encode(
        LOOP_US - 30_000,
        [("single", 5, True)],
        [
            (
                d,
                d % 2 == 0,
                d % 3 == 0,
                True,
                [
                    ("row", d % HEIGHT),
                    ("vector", d % 1000, True, [(VECT_12, d % 4096)] * 3),
                    ("single", d % WIDTH, False),
                    ("trigger", 3, d % 2),
                ],
            )
            for d in range(0, 200_000, 3_333)
        ],
    )
    data = enc.data()
    compiled = decode_pieces(data, [101, 5_001])
    monkeypatch.setattr(_kernels, "HAVE_NUMBA", False)
    plain = decode_pieces(data, [77])
    for a, b, want in zip(compiled, plain, enc.expected()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, want)


# --------------------------------------------------------------------------------------------------
# The real file: ground truth from event_camera_py's tests
# --------------------------------------------------------------------------------------------------


def test_real_evt3_with_triggers_matches_its_ground_truth(shared_data):
    path = shared_data / "prophesee_evt3_640x480_triggers.raw"
    r = open_events(path)
    assert r.metadata["format"] == "evt3" and tuple(r.sensor_size) == (640, 480, 2)
    ev = r.read_all()
    tr = r.read_triggers()
    assert len(ev) == 343_474
    assert int(ev["p"].sum()) == 125_183 and int((~ev["p"]).sum()) == 218_291
    assert len(tr) == 4_157 and r.metadata["n_triggers"] == 4_157
    assert int((tr["value"] == 1).sum()) == 2_079 and int((tr["value"] == 0).sum()) == 2_078
    assert set(tr["channel"].tolist()) == {6}
    assert int(ev["t"].sum()) + int(tr["t"].sum()) == 2_885_601_049_874
    assert (int(ev["t"][0]), int(ev["t"][-1]), int(tr["t"][0])) == (7_139_845, 9_218_023, 7_139_840)
    assert r.metadata["n_implied_time_high"] == 0
    # streaming in small chunks: the same events, and the triggers of that pass
    r2 = open_events(path)
    np.testing.assert_array_equal(np.concatenate([p.events for p in r2.packets(max_events=5_000)]), ev)
    np.testing.assert_array_equal(r2.read_triggers(), tr)
    # bytes fed in odd-sized pieces, as from a socket
    raw = path.read_bytes()
    start = raw.index(b"% end\n") + len(b"% end\n")
    got_ev, got_tr = decode_pieces(raw[start:], list(range(0, len(raw), 65_537)))
    np.testing.assert_array_equal(got_ev, ev)
    np.testing.assert_array_equal(got_tr, tr)


def test_evt3_reader_prints_nothing(shared_data, capfd):
    open_events(shared_data / "prophesee_evt3_640x480_triggers.raw").read_all()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
