"""Compiled (numba) decode and check loops for the hot readers.

Each kernel makes one pass over the raw bytes and writes straight into the
columns of a preallocated EVENT_DTYPE array (field views ``x, y, t, p``).
``HAVE_NUMBA`` is False when numba is missing; callers then use their
vectorised numpy paths, which give identical results, only slower.
Compiled code is cached beside this module (``cache=True``).
"""

from __future__ import annotations

import numpy as np

try:
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is a declared dependency
    numba = None
    HAVE_NUMBA = False


def _jit(func):
    if not HAVE_NUMBA:
        return None
    return numba.njit(cache=True, nogil=True, boundscheck=False)(func)


def _u32le(buf, i):
    return (
        np.uint32(buf[i])
        | (np.uint32(buf[i + 1]) << np.uint32(8))
        | (np.uint32(buf[i + 2]) << np.uint32(16))
        | (np.uint32(buf[i + 3]) << np.uint32(24))
    )


if HAVE_NUMBA:
    _u32le = numba.njit(inline="always")(_u32le)


def _check_events(x, y, t, width, height, last_t):
    """First index breaking sortedness (kind 1) or the sensor bounds (kind 2), or (-1, 0)."""
    prev = last_t
    for i in range(t.shape[0]):
        ti = t[i]
        if ti < prev:
            return i, 1
        prev = ti
        if x[i] < 0 or x[i] >= width or y[i] < 0 or y[i] >= height:
            return i, 2
    return -1, 0


def _decode_aedat31(buf, offsets, counts, overflows, check_valid, x, y, t, p):
    """AEDAT 3.1 polarity events of several packets -> columns; returns events written."""
    k = 0
    for j in range(offsets.shape[0]):
        off = offsets[j]
        high = np.int64(overflows[j]) << np.int64(31)
        for i in range(counts[j]):
            o = off + 8 * i
            d = _u32le(buf, o)
            if check_valid and (d & np.uint32(1)) == 0:
                continue
            ts = np.int64(_u32le(buf, o + 4) & np.uint32(0x7FFFFFFF))
            x[k] = np.int16((d >> np.uint32(17)) & np.uint32(0x1FFF))
            y[k] = np.int16((d >> np.uint32(2)) & np.uint32(0x1FFF))
            p[k] = ((d >> np.uint32(1)) & np.uint32(1)) != 0
            t[k] = high | ts
            k += 1
    return k


def _decode_aedat31_words(words, offsets, counts, overflows, check_valid, x, y, t, p):
    """As ``_decode_aedat31`` on a uint32 view; ``offsets`` in words (all packets equally aligned)."""
    k = 0
    for j in range(offsets.shape[0]):
        off = offsets[j]
        high = np.int64(overflows[j]) << np.int64(31)
        for i in range(counts[j]):
            d = words[off + 2 * i]
            if check_valid and (d & np.uint32(1)) == 0:
                continue
            x[k] = np.int16((d >> np.uint32(17)) & np.uint32(0x1FFF))
            y[k] = np.int16((d >> np.uint32(2)) & np.uint32(0x1FFF))
            p[k] = ((d >> np.uint32(1)) & np.uint32(1)) != 0
            t[k] = high | np.int64(words[off + 2 * i + 1] & np.uint32(0x7FFFFFFF))
            k += 1
    return k


def _decode_aedat31_words_checked(
    words, offsets, counts, overflows, check_valid, width, height, last_t, x, y, t, p
):
    """``_decode_aedat31_words`` fused with ``_check_events``: returns (written, ok).

    ``ok`` is False at the first unsorted timestamp or coordinate outside ``width x height``
    (the caller then finds and reports it with the plain check).
    """
    k = 0
    prev = last_t
    for j in range(offsets.shape[0]):
        off = offsets[j]
        high = np.int64(overflows[j]) << np.int64(31)
        for i in range(counts[j]):
            d = words[off + 2 * i]
            if check_valid and (d & np.uint32(1)) == 0:
                continue
            xi = np.int64((d >> np.uint32(17)) & np.uint32(0x1FFF))
            yi = np.int64((d >> np.uint32(2)) & np.uint32(0x1FFF))
            ti = high | np.int64(words[off + 2 * i + 1] & np.uint32(0x7FFFFFFF))
            if ti < prev or xi >= width or yi >= height:
                return k, False
            prev = ti
            x[k] = np.int16(xi)
            y[k] = np.int16(yi)
            p[k] = ((d >> np.uint32(1)) & np.uint32(1)) != 0
            t[k] = ti
            k += 1
    return k, True


def _convert_checked(tin, xin, yin, pin, width, height, last_t, x, y, t, p):
    """Copy decoded columns (any integer types) into EVENT_DTYPE columns, checking as it goes.

    Returns (written, ok); ``ok`` is False at the first unsorted timestamp or coordinate
    outside ``width x height`` (the caller reports it with the plain check).
    """
    prev = last_t
    for i in range(tin.shape[0]):
        ti = np.int64(tin[i])
        xi = np.int64(xin[i])
        yi = np.int64(yin[i])
        if ti < prev or xi < 0 or xi >= width or yi < 0 or yi >= height:
            return i, False
        prev = ti
        t[i] = ti
        x[i] = np.int16(xi)
        y[i] = np.int16(yi)
        p[i] = pin[i] != 0
    return tin.shape[0], True


def _bswap32(v):
    return (
        ((v & np.uint32(0xFF)) << np.uint32(24))
        | ((v & np.uint32(0xFF00)) << np.uint32(8))
        | ((v >> np.uint32(8)) & np.uint32(0xFF00))
        | (v >> np.uint32(24))
    )


if HAVE_NUMBA:
    _bswap32 = numba.njit(inline="always")(_bswap32)


def _decode_aedat2_dvs128(words, n, wraps, last_ts, x, y, t, p, tt, tv):
    """AEDAT 2.0 DVS128 big-endian pairs (a little-endian uint32 view of them) -> columns.

    Addresses with bit 15 set are external (sync) input events: their timestamps go to
    ``tt`` and ``tv`` receives TRIGGER_PULSE (2).  Returns (events, triggers, wraps, last_ts).
    """
    k = 0
    m = 0
    for i in range(n):
        addr = _bswap32(words[2 * i])
        ts = np.int64(_bswap32(words[2 * i + 1]))
        if last_ts >= 0 and ts - last_ts < -(np.int64(1) << np.int64(31)):
            wraps += 1
        last_ts = ts
        tfull = ts + (wraps << np.int64(32))
        if addr & np.uint32(0x8000):
            tt[m] = tfull
            tv[m] = 2
            m += 1
            continue
        x[k] = np.int16(127 - ((addr >> np.uint32(1)) & np.uint32(0x7F)))
        y[k] = np.int16(127 - ((addr >> np.uint32(8)) & np.uint32(0x7F)))
        p[k] = (addr & np.uint32(1)) == 0
        t[k] = tfull
        k += 1
    return k, m, wraps, last_ts


# state of the DAVIS AEDAT 2.0 decoder, carried from chunk to chunk (an int64 array)
DAVIS_WRAPS, DAVIS_LAST_TS, DAVIS_IMU_NEXT, DAVIS_IMU_T = 0, 1, 2, 3
DAVIS_IMU_RAW = 4  # 7 slots: the raw values of the IMU sample being assembled
DAVIS_N_IMU_WORDS, DAVIS_N_IMU_LOST, DAVIS_N_APS = 11, 12, 13
DAVIS_STATE = 14


def _decode_aedat2_davis(words, n, height, state, x, y, t, p, tt, tv, imu_t, imu_raw):
    """AEDAT 2.0 DAVIS big-endian pairs (a little-endian uint32 view) -> columns.

    Address layout (jAER's DAVIS chips)::

        bit 31 = 0: DVS.  bits 11-10 = 01: external input event (bits 2-0: 2 falling,
                    3 rising, 4 pulse; older jAER writes 0, read as a pulse).
                    Otherwise y = bits 30-22, x = bits 21-12, polarity = bit 11.
        bit 31 = 1: bits 11-10 = 11: one IMU word (bits 30-28 value index 0..6 = accel x, y, z,
                    temperature, gyro x, y, z; bits 27-12 the int16 value); otherwise an APS
                    (frame) sample word, counted and skipped.

    ``y`` is turned to a top-left origin: ``height - 1 - raw y``.  IMU words are assembled into
    samples of 7 consecutive words (index 0 to 6, the timestamp of the first); an incomplete
    sample is counted as lost.  Returns (events, triggers, imu samples) written.
    """
    k = 0
    m = 0
    q = 0
    wraps = state[DAVIS_WRAPS]
    last_ts = state[DAVIS_LAST_TS]
    nxt = state[DAVIS_IMU_NEXT]
    for i in range(n):
        addr = _bswap32(words[2 * i])
        ts = np.int64(_bswap32(words[2 * i + 1]))
        if last_ts >= 0 and ts - last_ts < -(np.int64(1) << np.int64(31)):
            wraps += 1
        last_ts = ts
        tfull = ts + (wraps << np.int64(32))
        kind = (addr >> np.uint32(10)) & np.uint32(3)
        if addr & np.uint32(0x80000000):
            if kind != 3:
                state[DAVIS_N_APS] += 1
                continue
            state[DAVIS_N_IMU_WORDS] += 1
            code = np.int64((addr >> np.uint32(28)) & np.uint32(7))
            raw = np.int64((addr >> np.uint32(12)) & np.uint32(0xFFFF))
            if raw >= 32768:
                raw -= 65536
            if code != nxt:
                state[DAVIS_N_IMU_LOST] += nxt  # words of an unfinished sample
                nxt = 0
                if code != 0:
                    state[DAVIS_N_IMU_LOST] += 1
                    continue
            if code == 0:
                state[DAVIS_IMU_T] = tfull
            state[DAVIS_IMU_RAW + code] = raw
            nxt = code + 1
            if nxt == 7:
                imu_t[q] = state[DAVIS_IMU_T]
                for j in range(7):
                    imu_raw[q, j] = np.int16(state[DAVIS_IMU_RAW + j])
                q += 1
                nxt = 0
            continue
        if kind == 1:
            code = addr & np.uint32(7)
            tt[m] = tfull
            tv[m] = 0 if code == 2 else (1 if code == 3 else 2)
            m += 1
            continue
        x[k] = np.int16((addr >> np.uint32(12)) & np.uint32(0x3FF))
        y[k] = np.int16(height - 1 - np.int64((addr >> np.uint32(22)) & np.uint32(0x1FF)))
        p[k] = (addr & np.uint32(0x800)) != 0
        t[k] = tfull
        k += 1
    state[DAVIS_WRAPS] = wraps
    state[DAVIS_LAST_TS] = last_ts
    state[DAVIS_IMU_NEXT] = nxt
    return k, m, q


def _decode_evt2(words, i0, time_high, x, y, t, p, tt, tc, tv):
    """EVT 2.0 words ``words[i0:]`` -> columns.

    Returns (next word, events, triggers, time_high, index of an unknown word or -1).
    ``time_high`` is -1 before the first TIME HIGH word (CD events and triggers are then
    dropped).  Stops early (next word < len) when the trigger columns are full; the event
    columns must hold ``len(words) - i0`` events.
    """
    k = 0
    m = 0
    n = words.shape[0]
    cap = tt.shape[0]
    i = i0
    while i < n:
        w = words[i]
        typ = w >> np.uint32(28)
        if typ <= 1:
            if time_high >= 0:
                t[k] = (time_high << np.int64(6)) | np.int64((w >> np.uint32(22)) & np.uint32(0x3F))
                x[k] = np.int16((w >> np.uint32(11)) & np.uint32(0x7FF))
                y[k] = np.int16(w & np.uint32(0x7FF))
                p[k] = typ == 1
                k += 1
        elif typ == 8:
            time_high = np.int64(w & np.uint32(0x0FFFFFFF))
        elif typ == 0xA:
            if time_high >= 0:
                if m >= cap:
                    break
                tt[m] = (time_high << np.int64(6)) | np.int64((w >> np.uint32(22)) & np.uint32(0x3F))
                tc[m] = np.int16((w >> np.uint32(8)) & np.uint32(0x1F))
                tv[m] = np.int8(w & np.uint32(1))
                m += 1
        elif typ != 0xD and typ != 0xE and typ != 0xF:
            return i, k, m, time_high, i
        i += 1
    return i, k, m, time_high, -1


# state of the EVT 3.0 decoder, carried from chunk to chunk (an int64 array)
EVT3_HAVE_TIME, EVT3_HIGH, EVT3_LOW, EVT3_LOOP = 0, 1, 2, 3
EVT3_Y, EVT3_ROW_CD, EVT3_BASE_X, EVT3_VPOL, EVT3_HAVE_BASE = 4, 5, 6, 7, 8
EVT3_N_DROPPED, EVT3_N_TRIG_DROPPED, EVT3_HIGH_SEEN, EVT3_N_IMPLIED = 9, 10, 11, 12
EVT3_STATE = 13


def _decode_evt3(words, i0, state, x, y, t, p, tt, tc, tv):
    """EVT 3.0 16-bit words ``words[i0:]`` -> event and trigger columns.

    The word type is in bits 15-12::

        0x0 EVT_ADDR_Y   y (bits 10-0) of the following CD events
        0x1              y of events that are not CD (their addresses are skipped)
        0x2 EVT_ADDR_X   one CD event: x (bits 10-0), polarity (bit 11)
        0x3 VECT_BASE_X  base x and polarity of the following vectors
        0x4 VECT_12      12 validity bits: events at base x + i; base x += 12
        0x5 VECT_8       8 validity bits (bits 7-0); base x += 8
        0x6 EVT_TIME_LOW time bits 11-0
        0x8 EVT_TIME_HIGH time bits 23-12
        0xA EXT_TRIGGER  value (bit 0), channel (bits 11-8)
        0x7 CONTINUED_4, 0xD (IMU), 0xE OTHERS, 0xF CONTINUED_12: skipped
        0x9, 0xB, 0xC    reserved: the decoder stops and reports the word

    Time is ``loop * 2**24 + high * 4096 + low`` us.  A TIME_HIGH that goes back by half
    the 24-bit range or more is a wrap (``loop += 1``); a TIME_HIGH that changes the high
    bits zeroes the low bits, one that repeats them (a keep-alive) keeps them.  A TIME_LOW
    that goes back by more than half a period (2048 us) with *no* TIME_HIGH since the
    previous TIME_LOW stands for a TIME_HIGH the stream left out (files written by
    ``expelliarmus`` never repeat it): the high bits step by one, counted in the state.
    After a TIME_HIGH no such step is taken, so a period is never counted twice.  Events and
    triggers before the first TIME_HIGH, CD events before a row address and vector events
    before a VECT_BASE_X have no defined value and are dropped (counted in the state).

    Returns (next word, events written, triggers written, index of a reserved word or -1).
    Stops early (next word < len) before a word whose output would not fit the columns.
    """
    n = words.shape[0]
    cap = x.shape[0]
    tcap = tt.shape[0]
    have_time = state[EVT3_HAVE_TIME]
    high = state[EVT3_HIGH]
    low = state[EVT3_LOW]
    loop = state[EVT3_LOOP]
    row_y = state[EVT3_Y]
    row_cd = state[EVT3_ROW_CD]
    base_x = state[EVT3_BASE_X]
    vpol = state[EVT3_VPOL]
    have_base = state[EVT3_HAVE_BASE]
    dropped = state[EVT3_N_DROPPED]
    tdropped = state[EVT3_N_TRIG_DROPPED]
    high_seen = state[EVT3_HIGH_SEEN]
    implied = state[EVT3_N_IMPLIED]
    now = (loop << np.int64(24)) | (high << np.int64(12)) | low
    k = 0
    m = 0
    bad = -1
    i = i0
    while i < n:
        w = np.int64(words[i])
        typ = w >> np.int64(12)
        if typ == 0x2:
            if row_cd != 0 and have_time != 0:
                if k >= cap:
                    break
                x[k] = np.int16(w & np.int64(0x7FF))
                y[k] = np.int16(row_y)
                p[k] = (w & np.int64(0x800)) != 0
                t[k] = now
                k += 1
            else:
                dropped += 1
        elif typ == 0x0:
            row_y = w & np.int64(0x7FF)
            row_cd = 1
        elif typ == 0x6:
            lw = w & np.int64(0xFFF)
            if have_time != 0 and high_seen == 0 and lw + np.int64(2048) < low:
                implied += 1
                high += 1
                if high == 4096:
                    high = 0
                    loop += 1
            low = lw
            high_seen = 0
            now = (loop << np.int64(24)) | (high << np.int64(12)) | low
        elif typ == 0x8:
            h = w & np.int64(0xFFF)
            high_seen = 1
            if have_time == 0:
                have_time = 1
                low = 0
            else:
                if high >= h + np.int64(2048):
                    loop += 1
                if h != high:
                    low = 0
            high = h
            now = (loop << np.int64(24)) | (high << np.int64(12)) | low
        elif typ == 0x3:
            base_x = w & np.int64(0x7FF)
            vpol = (w >> np.int64(11)) & np.int64(1)
            have_base = 1
        elif typ == 0x4 or typ == 0x5:
            nb = 12 if typ == 0x4 else 8
            bits = w & (np.int64(0xFFF) if typ == 0x4 else np.int64(0xFF))
            if row_cd != 0 and have_time != 0 and have_base != 0:
                if k + nb > cap:
                    break
                for j in range(nb):
                    if (bits >> np.int64(j)) & np.int64(1):
                        xi = base_x + j
                        x[k] = np.int16(xi if xi < 32767 else 32767)
                        y[k] = np.int16(row_y)
                        p[k] = vpol != 0
                        t[k] = now
                        k += 1
            else:
                for j in range(nb):
                    dropped += (bits >> np.int64(j)) & np.int64(1)
            if have_base != 0 and base_x < 32767:
                base_x += nb
        elif typ == 0xA:
            if have_time != 0:
                if m >= tcap:
                    break
                tt[m] = now
                tc[m] = np.int16((w >> np.int64(8)) & np.int64(0xF))
                tv[m] = np.int8(w & np.int64(1))
                m += 1
            else:
                tdropped += 1
        elif typ == 0x1:
            row_y = w & np.int64(0x7FF)
            row_cd = 0
        elif typ == 0x9 or typ == 0xB or typ == 0xC:
            bad = i
            break
        i += 1
    state[EVT3_HAVE_TIME] = have_time
    state[EVT3_HIGH] = high
    state[EVT3_LOW] = low
    state[EVT3_LOOP] = loop
    state[EVT3_Y] = row_y
    state[EVT3_ROW_CD] = row_cd
    state[EVT3_BASE_X] = base_x
    state[EVT3_VPOL] = vpol
    state[EVT3_HAVE_BASE] = have_base
    state[EVT3_N_DROPPED] = dropped
    state[EVT3_N_TRIG_DROPPED] = tdropped
    state[EVT3_HIGH_SEEN] = high_seen
    state[EVT3_N_IMPLIED] = implied
    return i, k, m, bad


def _decode_dat(rec, x, y, t, p):
    """Prophesee DAT records (a ``[N, 2]`` uint32 view: t_us, data) -> columns."""
    for i in range(rec.shape[0]):
        d = rec[i, 1]
        t[i] = np.int64(rec[i, 0])
        x[i] = np.int16(d & np.uint32(0x3FFF))
        y[i] = np.int16((d >> np.uint32(14)) & np.uint32(0x3FFF))
        p[i] = (d >> np.uint32(28)) != 0


def _decode_dat_checked(rec, width, height, last_t, x, y, t, p):
    """``_decode_dat`` fused with the event checks; returns False at the first bad event."""
    prev = last_t
    for i in range(rec.shape[0]):
        d = rec[i, 1]
        ti = np.int64(rec[i, 0])
        xi = np.int64(d & np.uint32(0x3FFF))
        yi = np.int64((d >> np.uint32(14)) & np.uint32(0x3FFF))
        if ti < prev or xi >= width or yi >= height:
            return False
        prev = ti
        t[i] = ti
        x[i] = np.int16(xi)
        y[i] = np.int16(yi)
        p[i] = (d >> np.uint32(28)) != 0
    return True


def _decode_nmnist(raw, overflow_y, increment, overflows, x, y, t, p):
    """N-MNIST 5-byte records (``[N, 5]`` uint8) -> columns, dropping overflow markers.

    Returns (written, overflows).
    """
    k = 0
    for i in range(raw.shape[0]):
        if raw[i, 1] == overflow_y:
            overflows += 1
            continue
        b2 = np.int64(raw[i, 2])
        x[k] = np.int16(raw[i, 0])
        y[k] = np.int16(raw[i, 1])
        p[k] = (b2 & 0x80) != 0
        t[k] = (
            ((b2 & 0x7F) << 16) | (np.int64(raw[i, 3]) << 8) | np.int64(raw[i, 4])
        ) + overflows * increment
        k += 1
    return k, overflows


def _nmnist_extent(raw, overflow_y):
    """(max x + 1, max y + 1) over the records that are not overflow markers (0, 0 when none)."""
    w = 0
    h = 0
    for i in range(raw.shape[0]):
        yi = np.int64(raw[i, 1])
        if yi == overflow_y:
            continue
        xi = np.int64(raw[i, 0])
        if xi + 1 > w:
            w = xi + 1
        if yi + 1 > h:
            h = yi + 1
    return w, h


def _parse_csv_ints(buf, out):
    """Lines of exactly 4 integers separated by bytes <= 32 (``buf`` uint8) -> ``out[rows, 4]``.

    Blank lines are skipped.  Returns the row count, or -1 at anything else (a
    comment, a fraction, a 5th column, a stray character, more than 18 digits):
    the caller then parses the text the slow way, which names the bad line.
    """
    n = buf.shape[0]
    row = 0
    col = 0
    i = 0
    while i < n:
        c = buf[i]
        if c == 10:
            if col == 4:
                row += 1
            elif col != 0:
                return -1
            col = 0
            i += 1
            continue
        if c <= 32:
            i += 1
            continue
        if col == 4 or row >= out.shape[0]:
            return -1
        neg = False
        if c == 45 or c == 43:
            neg = c == 45
            i += 1
        start = i
        v = np.int64(0)
        while i < n and buf[i] >= 48 and buf[i] <= 57:
            v = v * 10 + np.int64(buf[i] - 48)
            i += 1
        if i == start or i - start > 18 or (i < n and buf[i] > 32):
            return -1
        out[row, col] = -v if neg else v
        col += 1
    if col == 4:
        row += 1
    elif col != 0:
        return -1
    return row


check_events = _jit(_check_events)
decode_aedat31 = _jit(_decode_aedat31)
decode_aedat31_words = _jit(_decode_aedat31_words)
decode_aedat2_dvs128 = _jit(_decode_aedat2_dvs128)
decode_aedat2_davis = _jit(_decode_aedat2_davis)
decode_evt3 = _jit(_decode_evt3)
decode_evt2 = _jit(_decode_evt2)
decode_dat = _jit(_decode_dat)
decode_nmnist = _jit(_decode_nmnist)
nmnist_extent = _jit(_nmnist_extent)
decode_aedat31_words_checked = _jit(_decode_aedat31_words_checked)
convert_checked = _jit(_convert_checked)
parse_csv_ints = _jit(_parse_csv_ints)
decode_dat_checked = _jit(_decode_dat_checked)


def to_events_checked(t, x, y, p, width: int, height: int) -> np.ndarray | None:
    """Decoded columns -> a new EVENT_DTYPE array in one fused convert + check pass.

    Returns ``None`` when numba is missing, the input is empty, or a timestamp is
    unsorted / a coordinate lies outside ``width x height``: the caller then runs its
    plain conversion and :class:`dvsapp.core.io.base.EventChecker`, which reports the bad event.
    """
    if convert_checked is None or not len(t):
        return None
    from dvsapp.core.events import EVENT_DTYPE

    ev = np.empty(len(t), dtype=EVENT_DTYPE)
    _, ok = convert_checked(
        t, x, y, p, int(width), int(height), np.iinfo(np.int64).min, ev["x"], ev["y"], ev["t"], ev["p"]
    )
    return ev if ok else None
