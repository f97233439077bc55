"""Pure numpy rendering shared by the GUI views and the ``--export`` video writer.

Nothing here imports Qt: every function takes arrays and returns arrays, so the
same pictures come out of the window and of ``dvsapp replay FILE --export``.

The event display keeps one preallocated per-pixel buffer (:class:`PixelBuffer`):
the timestamp of the last event at each pixel and its polarity.  Writing events
is one vectorised scatter; drawing decays the buffer against "now".  The cost of
a redraw is ``O(H * W)``, independent of the event rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dvsapp.core.events import SensorSize

NEVER_US = np.iinfo(np.int64).min // 4
"""Timestamp stored in pixels that have not seen an event (far in the past, no overflow on ``now - t``)."""

BACKGROUND_RGB = (12, 12, 16)
ON_RGB = (255, 210, 60)
OFF_RGB = (60, 140, 255)


@dataclass
class PixelBuffer:
    """Last event time and polarity per pixel (the mutable state behind an event view).

    Attributes
    ----------
    last_t_us : np.ndarray
        ``[H, W]`` int64, time of the latest event at each pixel in microseconds,
        :data:`NEVER_US` where none arrived.
    last_p : np.ndarray
        ``[H, W]`` bool, polarity of that event (True = ON).
    """

    last_t_us: np.ndarray
    last_p: np.ndarray

    @classmethod
    def empty(cls, sensor_size: SensorSize) -> PixelBuffer:
        h, w = int(sensor_size.height), int(sensor_size.width)
        return cls(np.full((h, w), NEVER_US, dtype=np.int64), np.zeros((h, w), dtype=bool))

    @property
    def shape_hw(self) -> tuple[int, int]:
        return self.last_t_us.shape  # type: ignore[return-value]

    def clear(self) -> None:
        self.last_t_us.fill(NEVER_US)
        self.last_p.fill(False)

    def write(self, events: np.ndarray) -> None:
        """Scatter ``events`` into the buffer (latest event per pixel wins).

        Events outside the buffer are ignored.  Events are sorted by ``t``, and
        a numpy fancy assignment with repeated indices keeps the last value, so
        each pixel ends up holding its newest event.
        """
        write_events(self.last_t_us, self.last_p, events)


def write_events(last_t_us: np.ndarray, last_p: np.ndarray, events: np.ndarray) -> None:
    """Write ``events`` into the per-pixel buffers in place.

    Parameters
    ----------
    last_t_us : np.ndarray
        ``[H, W]`` int64 buffer of last timestamps (µs), modified in place.
    last_p : np.ndarray
        ``[H, W]`` bool buffer of last polarities, modified in place.
    events : np.ndarray
        EVENT_DTYPE array sorted by ``t``; coordinates outside ``[W, H]`` are dropped.
    """
    if len(events) == 0:
        return
    h, w = last_t_us.shape
    x = events["x"].astype(np.intp)
    y = events["y"].astype(np.intp)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    if not inside.all():
        x, y, events = x[inside], y[inside], events[inside]
    flat = y * w + x
    last_t_us.reshape(-1)[flat] = events["t"]
    last_p.reshape(-1)[flat] = events["p"]


def _exponential(age_us: np.ndarray, tau_us: float) -> np.ndarray:
    return np.exp(age_us * np.float32(-1.0 / tau_us))


def _linear(age_us: np.ndarray, tau_us: float) -> np.ndarray:
    return np.clip(np.float32(1.0) - age_us * np.float32(1.0 / tau_us), 0.0, 1.0)


def _window(age_us: np.ndarray, tau_us: float) -> np.ndarray:
    return (age_us < np.float32(tau_us)).astype(np.float32)


DECAYS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "exponential": _exponential,
    "linear": _linear,
    "window": _window,
}
"""Decay kernels: ``f(age_us [H,W] float32 >= 0, tau_us) -> intensity [H,W] in [0, 1]``.

``exponential``: ``exp(-age / tau)``; ``linear``: ``max(0, 1 - age / tau)``;
``window``: 1 for ``age < tau`` else 0 (a classic accumulation frame).
"""


def decay_intensity(last_t_us: np.ndarray, now_us: int, mode: str, tau_us: float) -> np.ndarray:
    """Brightness of each pixel at ``now_us``.

    Parameters
    ----------
    last_t_us : np.ndarray
        ``[H, W]`` int64 last event time (µs); :data:`NEVER_US` for none.
    now_us : int
        The display time (µs).  Events later than ``now_us`` count as age 0.
    mode : str
        A key of :data:`DECAYS`.
    tau_us : float
        Time constant (exponential), fade length (linear) or window length (µs), > 0.

    Returns
    -------
    np.ndarray
        ``[H, W]`` float32 in ``[0, 1]``.
    """
    if mode not in DECAYS:
        raise ValueError(f"decay {mode!r} is not one of {', '.join(DECAYS)}")
    if not tau_us > 0:
        raise ValueError(f"decay time constant must be > 0 us, got {tau_us}")
    age_us = np.subtract(now_us, last_t_us).astype(np.float32)
    np.maximum(age_us, 0.0, out=age_us)
    out = DECAYS[mode](age_us, float(tau_us))
    out[last_t_us <= NEVER_US] = 0.0
    return out


def render_events_rgb(
    last_t_us: np.ndarray,
    last_p: np.ndarray,
    now_us: int,
    *,
    mode: str = "exponential",
    tau_us: float = 30_000.0,
    on_rgb: tuple[int, int, int] = ON_RGB,
    off_rgb: tuple[int, int, int] = OFF_RGB,
    background_rgb: tuple[int, int, int] = BACKGROUND_RGB,
) -> np.ndarray:
    """Render the per-pixel buffer to an ON/OFF coloured image.

    Parameters
    ----------
    last_t_us, last_p : np.ndarray
        ``[H, W]`` buffers (see :class:`PixelBuffer`).
    now_us : int
        Display time in microseconds.
    mode, tau_us
        Decay kernel and time constant (see :func:`decay_intensity`).
    on_rgb, off_rgb, background_rgb
        Colours (0..255) of fresh ON events, fresh OFF events and empty pixels.

    Returns
    -------
    np.ndarray
        ``[H, W, 3]`` uint8 RGB, row 0 = sensor row 0 (top).
    """
    a = decay_intensity(last_t_us, now_us, mode, tau_us)[..., None]  # [H, W, 1]
    bg = np.asarray(background_rgb, dtype=np.float32)
    on = np.asarray(on_rgb, dtype=np.float32) - bg
    off = np.asarray(off_rgb, dtype=np.float32) - bg
    colour = np.where(last_p[..., None], on, off)  # [H, W, 3]
    rgb = bg + a * colour
    return rgb.astype(np.uint8)


def draw_rect_outline(
    rgb: np.ndarray, rect: tuple[int, int, int, int] | None, colour=(0, 255, 120), thickness: int = 1
) -> np.ndarray:
    """Draw the outline of ``rect = (x, y, w, h)`` (pixels) into ``rgb`` [H, W, 3] in place; returns it."""
    if rect is None:
        return rgb
    h_img, w_img = rgb.shape[:2]
    x, y, w, h = (int(round(v)) for v in rect)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(w_img, x + w), min(h_img, y + h)
    if x1 <= x0 or y1 <= y0:
        return rgb
    c = np.asarray(colour, dtype=np.uint8)
    k = max(1, thickness)
    rgb[y0 : min(y1, y0 + k), x0:x1] = c
    rgb[max(y0, y1 - k) : y1, x0:x1] = c
    rgb[y0:y1, x0 : min(x1, x0 + k)] = c
    rgb[y0:y1, max(x0, x1 - k) : x1] = c
    return rgb


def frames_to_rgb(frames: np.ndarray, *, gain: float | None = None) -> np.ndarray:
    """Colour the ``T`` binned frames of a window side by side, as the model sees them.

    Parameters
    ----------
    frames : np.ndarray
        ``[T, P, H, W]`` float event counts (P = 1 or 2; channel 0 = OFF, 1 = ON,
        tonic's ToFrame order).
    gain : float, optional
        Counts that saturate the colour; default: the 99th percentile of the non-zero
        counts (at least 1). Intensity is the square root of ``count / gain``.

    Returns
    -------
    np.ndarray
        ``[H, T * (W + 1) - 1, 3]`` uint8: the timesteps left to right with a 1-pixel gap.
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4:
        raise ValueError(f"frames must be [T, P, H, W], got shape {frames.shape}")
    t, p, h, w = frames.shape
    if gain is None:
        nz = frames[frames > 0]
        gain = float(np.percentile(nz, 99)) if nz.size else 1.0
    gain = max(gain, 1e-6)
    on = frames[:, p - 1] / gain  # [T, H, W]
    off = frames[:, 0] / gain if p > 1 else np.zeros_like(on)
    # square root: a 10 ms bin holds a few events per pixel, a linear ramp left single
    # events at a fraction of the colour and the frames looked black
    on = np.sqrt(np.clip(on, 0, 1))[..., None]
    off = np.sqrt(np.clip(off, 0, 1))[..., None]
    bg = np.asarray(BACKGROUND_RGB, dtype=np.float32)
    rgb = bg + on * (np.asarray(ON_RGB, np.float32) - bg) + off * (np.asarray(OFF_RGB, np.float32) - bg)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)  # [T, H, W, 3]
    out = np.full((h, t * (w + 1) - 1, 3), 60, dtype=np.uint8)
    for i in range(t):
        out[:, i * (w + 1) : i * (w + 1) + w] = rgb[i]
    return out


def heatmap_rgb(values: np.ndarray, *, vmax: float = 1.0) -> np.ndarray:
    """Map ``values`` ``[..., H, W]`` in ``[0, vmax]`` to a dark-to-hot colour ramp (uint8 RGB ``[..., H, W, 3]``)."""
    v = np.clip(np.asarray(values, dtype=np.float32) / max(vmax, 1e-9), 0.0, 1.0)
    r = np.clip(3.0 * v, 0, 1)
    g = np.clip(3.0 * v - 1.0, 0, 1)
    b = np.clip(3.0 * v - 2.0, 0, 1) * 0.8 + 0.15 * (1 - v)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def token_grid_shape(n_tokens: int, aspect_wh: float = 1.0) -> tuple[int, int]:
    """Guess the ``(rows, cols)`` token grid of ``n_tokens`` for an input of width/height ``aspect_wh``."""
    if n_tokens <= 0:
        return (0, 0)
    best = (1, n_tokens)
    best_err = float("inf")
    for rows in range(1, n_tokens + 1):
        if n_tokens % rows:
            continue
        cols = n_tokens // rows
        err = abs(np.log((cols / rows) / aspect_wh))
        if err < best_err:
            best, best_err = (rows, cols), err
    return best


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable distinct RGB colour per class id (0-based; negative = grey)."""
    if class_id < 0:
        return (90, 90, 90)
    palette = (
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
        (0, 128, 128),
        (220, 190, 255),
        (170, 110, 40),
        (128, 0, 0),
    )
    return palette[class_id % len(palette)]


def overlay_heatmap(
    base_rgb: np.ndarray, heat: np.ndarray, *, vmax: float = 1.0, alpha: float = 0.6
) -> np.ndarray:
    """Lay a token-grid heatmap over an image.

    Parameters
    ----------
    base_rgb : np.ndarray
        ``[H, W, 3]`` uint8 picture (e.g. the model input).
    heat : np.ndarray
        ``[rows, cols]`` values in ``[0, vmax]``; each token covers an ``H/rows x W/cols`` patch.
    alpha : float
        Weight of the heatmap where it is hot (cold tokens let the image through).

    Returns
    -------
    np.ndarray
        ``[H, W, 3]`` uint8.
    """
    h, w = base_rgb.shape[:2]
    rows, cols = heat.shape
    ry, rx = max(1, h // max(rows, 1)), max(1, w // max(cols, 1))
    up = np.repeat(np.repeat(np.asarray(heat, np.float32), ry, axis=0), rx, axis=1)
    pad_y, pad_x = h - up.shape[0], w - up.shape[1]
    if pad_y > 0 or pad_x > 0:
        up = np.pad(up, ((0, max(0, pad_y)), (0, max(0, pad_x))), mode="edge")
    up = up[:h, :w]
    hot = heatmap_rgb(up, vmax=vmax).astype(np.float32)
    a = (alpha * np.clip(up / max(vmax, 1e-9), 0.0, 1.0) + 0.25 * alpha)[..., None]
    out = (1.0 - a) * base_rgb.astype(np.float32) + a * hot
    return np.clip(out, 0, 255).astype(np.uint8)


def input_preview_rgb(frames: np.ndarray) -> np.ndarray:
    """A grey picture of the window the model saw: event counts summed over time and polarity.

    ``frames [T, P, H, W]`` -> ``[H, W, 3]`` uint8.
    """
    counts = np.asarray(frames, np.float32).sum(axis=(0, 1))
    nz = counts[counts > 0]
    gain = float(np.percentile(nz, 95)) if nz.size else 1.0
    grey = np.clip(counts / max(gain, 1e-6), 0, 1) * 170 + 20
    return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)


def event_rate(t_us: np.ndarray, bin_us: int) -> tuple[np.ndarray, np.ndarray]:
    """Histogram event timestamps into a rate curve.

    Parameters
    ----------
    t_us : np.ndarray
        Sorted timestamps (µs).
    bin_us : int
        Bin width (µs).

    Returns
    -------
    (t_s, rate_hz)
        Bin centres in seconds and events per second in each bin.
    """
    if len(t_us) == 0:
        return np.zeros(0), np.zeros(0)
    t0 = int(t_us[0]) // bin_us * bin_us
    idx = ((np.asarray(t_us, np.int64) - t0) // bin_us).astype(np.intp)
    counts = np.bincount(idx)
    t_s = (t0 + (np.arange(len(counts)) + 0.5) * bin_us) / 1e6
    return t_s, counts * (1e6 / bin_us)


TAP_NAMES = ("q", "k", "v", "out")
"""The attention taps shown: spikes of Q, K, V and the attention output."""


def taps_to_numpy(taps) -> dict[int, dict[str, np.ndarray]]:
    """Attention taps as ``{block: {name: float32 [T, heads, N]}}`` (first sample of the batch).

    Accepts a :class:`dvsapp.core.model.taps.TapRecorder` (``attention[block][name]``
    ``[T, B, heads, N]``) or a plain nested dict of arrays shaped ``[T, heads, N]``
    or ``[T, B, heads, N]``; anything else gives ``{}``.
    """
    att = getattr(taps, "attention", taps)
    if not isinstance(att, dict):
        return {}
    out: dict[int, dict[str, np.ndarray]] = {}
    for block, named in att.items():
        if not isinstance(named, dict):
            continue
        for name, tensor in named.items():
            arr = tensor.detach().float().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
            arr = arr.astype(np.float32, copy=False)
            if arr.ndim == 4:
                arr = arr[:, 0]
            if arr.ndim != 3:
                continue
            out.setdefault(int(block), {})[str(name)] = arr
    return out
