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


def _decode_aedat2_dvs128(words, n, wraps, last_ts, x, y, t, p):
    """AEDAT 2.0 DVS128 big-endian pairs (a little-endian uint32 view of them) -> columns.

    Returns (written, wraps, last_ts).
    """
    k = 0
    for i in range(n):
        addr = _bswap32(words[2 * i])
        ts = np.int64(_bswap32(words[2 * i + 1]))
        if last_ts >= 0 and ts - last_ts < -(np.int64(1) << np.int64(31)):
            wraps += 1
        last_ts = ts
        if addr & np.uint32(0x8000):
            continue
        x[k] = np.int16(127 - ((addr >> np.uint32(1)) & np.uint32(0x7F)))
        y[k] = np.int16(127 - ((addr >> np.uint32(8)) & np.uint32(0x7F)))
        p[k] = (addr & np.uint32(1)) == 0
        t[k] = ts + (wraps << np.int64(32))
        k += 1
    return k, wraps, last_ts


def _decode_evt2(words, time_high, x, y, t, p):
    """EVT 2.0 words -> columns; returns (written, time_high, index of an unknown word or -1).

    ``time_high`` is -1 before the first TIME HIGH word (CD events then dropped).
    """
    k = 0
    for i in range(words.shape[0]):
        w = words[i]
        typ = w >> np.uint32(28)
        if typ <= 1:
            if time_high < 0:
                continue
            t[k] = (time_high << np.int64(6)) | np.int64((w >> np.uint32(22)) & np.uint32(0x3F))
            x[k] = np.int16((w >> np.uint32(11)) & np.uint32(0x7FF))
            y[k] = np.int16(w & np.uint32(0x7FF))
            p[k] = typ == 1
            k += 1
        elif typ == 8:
            time_high = np.int64(w & np.uint32(0x0FFFFFFF))
        elif typ != 0xA and typ != 0xE and typ != 0xF:
            return k, time_high, i
    return k, time_high, -1


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
