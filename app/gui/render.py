"""Pure drawing shared by the GUI views and the ``--export`` video writer.

Nothing here imports Qt: every function takes arrays and returns arrays, so the
same pictures come out of the window and of ``dvsapp replay FILE --export``.
The export's frame layout (:class:`FrameComposer` and its panels) lives here too,
drawn with numpy and OpenCV.

The event display keeps one preallocated per-pixel buffer (:class:`PixelBuffer`):
the timestamp of the last event at each pixel and its polarity.  Writing events
is one vectorised scatter; drawing decays the buffer against "now".  The cost of
a redraw is ``O(H * W)``, independent of the event rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def colour_ramp_rgb(n: int = 256) -> np.ndarray:
    """The :func:`heatmap_rgb` colour scale as a vertical bar ``[n, 1, 3]`` uint8, hottest (vmax) at row 0."""
    return heatmap_rgb(np.linspace(1.0, 0.0, max(2, int(n)))[:, None])


def class_label(class_names: Sequence[str], class_id: int) -> str:
    """The display name of ``class_id`` (underscores as spaces; the id when it has no name)."""
    if 0 <= class_id < len(class_names):
        return str(class_names[class_id]).replace("_", " ")
    return f"class {class_id + 1}"


# --------------------------------------------------------------------------- video frames
# The layout of ``dvsapp replay --export`` frames: numpy + OpenCV drawing, no Qt.  The window's
# views are drawn by pyqtgraph; these panels show the same data, laid out on one picture.

FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX
TITLE_H = 26
"""Pixels of the title bar above the event view (file name, sensor, attention variant)."""
PANEL_RGB = 24
TEXT_RGB = (220, 220, 220)


def _cv2():
    import cv2

    return cv2


def fit(img: np.ndarray, w: int, h: int, *, nearest: bool = True) -> np.ndarray:
    """Scale ``img`` to fit ``w x h`` keeping the aspect ratio, centred on a dark canvas."""
    cv2 = _cv2()
    canvas = np.full((h, w, 3), 20, np.uint8)
    if img.size == 0 or w <= 0 or h <= 0:
        return canvas
    ih, iw = img.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = max(1, int(iw * s)), max(1, int(ih * s))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)
    y0, x0 = (h - nh) // 2, (w - nw) // 2
    canvas[y0 : y0 + nh, x0 : x0 + nw] = small
    return canvas


def put_text(img: np.ndarray, text: str, xy: tuple[int, int], scale: float = 0.5, colour=TEXT_RGB, thick=1):
    """Anti-aliased text with its baseline at ``xy`` (in place)."""
    _cv2().putText(img, text, (int(xy[0]), int(xy[1])), FONT, scale, colour, thick, 16)  # 16 = LINE_AA


def text_width(text: str, scale: float, thick: int = 1) -> int:
    """Pixel width of ``text`` drawn by :func:`put_text` at ``scale``."""
    (w, _h), _base = _cv2().getTextSize(text, FONT, scale, thick)
    return int(w)


def fit_text_scale(
    texts: Sequence[str], width_px: int, *, max_scale: float, min_scale: float = 0.25
) -> float:
    """The largest font scale up to ``max_scale`` at which every one of ``texts`` fits ``width_px``."""
    widest = max((text_width(t, 1.0) for t in texts), default=0)
    if widest <= 0:
        return max_scale
    return float(np.clip(width_px / widest, min_scale, max_scale))


def probability_rows(h: int, n: int) -> tuple[int, int]:
    """``(top, row_h)`` of :func:`draw_probabilities`: where the class rows start and their height.

    The header (top label, confidence) takes up to 70 px, less in a short panel, so all
    ``n`` rows always fit in ``h``.
    """
    n = max(n, 1)
    top = int(np.clip(h - 6 - 12 * n, 30, 70))
    return top, max(6, (h - top - 6) // n)


def draw_probabilities(
    probs: np.ndarray | None, class_names: Sequence[str], class_id: int | None, w: int, h: int
) -> np.ndarray:
    """Top label, confidence and one bar per class, as an RGB panel ``[h, w, 3]``.

    Class names are never cut: the label column is as wide as the longest name needs
    (at most 45% of the panel), and the font shrinks until every name fits it.
    """
    cv2 = _cv2()
    panel = np.full((h, w, 3), PANEL_RGB, np.uint8)
    if probs is None or class_id is None:
        put_text(panel, "waiting for the first window...", (10, 30), 0.6)
        return panel
    n = len(probs)
    labels = [class_label(class_names, i) for i in range(n)]
    top_name = labels[class_id] if class_id < n else class_label(class_names, class_id)
    top, row_h = probability_rows(h, n)
    big = top / 70  # the header shrinks with the panel, so every class row fits below it
    name_scale = fit_text_scale([top_name], w - 20, max_scale=0.9 * big)
    put_text(panel, top_name, (10, int(34 * big)), name_scale, class_colour(class_id), 2 if big > 0.7 else 1)
    put_text(panel, f"confidence {float(probs[class_id]):.0%}", (10, int(58 * big)), 0.5 * big)
    max_scale = min(0.45, row_h / 30)
    label_w = min(int(w * 0.45), 12 + max((text_width(s, max_scale) for s in labels), default=0))
    scale = fit_text_scale(labels, label_w - 12, max_scale=max_scale)
    for i, p in enumerate(probs):
        y = top + i * row_h
        colour = class_colour(i) if i == class_id else (90, 110, 140)
        bar = int((w - label_w - 10) * float(np.clip(p, 0, 1)))
        cv2.rectangle(panel, (label_w, y + 2), (label_w + bar, y + row_h - 3), colour, -1)
        put_text(panel, labels[i], (6, y + row_h - max(2, row_h // 5)), scale, (200, 200, 200))
    return panel


def draw_colour_bar(panel: np.ndarray, x: int, y: int, w: int, h: int, vmax: float, label: str = "") -> None:
    """A vertical :func:`colour_ramp_rgb` bar at ``(x, y)`` with ``0`` and ``vmax`` marked (in place)."""
    if w <= 0 or h <= 8:
        return
    bar = np.repeat(
        _cv2().resize(colour_ramp_rgb(256), (1, h), interpolation=1), w, axis=1
    )  # 1 = INTER_LINEAR
    panel[y : y + h, x : x + w] = bar
    put_text(panel, f"{vmax:.2f}", (x + w + 3, y + 9), 0.35)
    put_text(panel, "0", (x + w + 3, y + h), 0.35)
    if label:
        put_text(panel, label, (x + w + 3, y + h // 2 + 4), 0.33, (170, 170, 170))


def draw_attention(taps, frames: np.ndarray | None, w: int, h: int, token_hw=None) -> np.ndarray:
    """Q/K/V/out heatmaps of block 0 (head mean, averaged over timesteps) on the model input,
    on one colour scale (the bar at the right: the fraction of channels spiking)."""
    panel = np.full((h, w, 3), PANEL_RGB, np.uint8)
    data = taps_to_numpy(taps) if taps is not None else {}
    if not data:
        put_text(panel, "no attention taps", (10, 24), 0.5)
        return panel
    named = data[sorted(data)[0]]
    base = input_preview_rgb(frames) if frames is not None else None
    grids = {}
    for name in TAP_NAMES:
        if name not in named:
            continue
        per_tok = named[name].mean(axis=(0, 1))  # [N]
        hw = token_hw if token_hw and token_hw[0] * token_hw[1] == len(per_tok) else None
        if hw is None:
            aspect = base.shape[1] / base.shape[0] if base is not None else 1.0
            hw = token_grid_shape(len(per_tok), aspect)
        grids[name] = per_tok.reshape(hw)
    vmax = max([float(g.max()) for g in grids.values()] + [1e-3])
    scale_w = 44
    tile_w = (w - scale_w) // 4
    for i, name in enumerate(TAP_NAMES):
        if name not in grids:
            continue
        grid = grids[name]
        rgb = overlay_heatmap(base, grid, vmax=vmax) if base is not None else heatmap_rgb(grid, vmax=vmax)
        tile = fit(rgb, tile_w - 6, h - 26)
        panel[22 : 22 + tile.shape[0], i * tile_w + 3 : i * tile_w + 3 + tile.shape[1]] = tile
        put_text(panel, f"{name} {float(named[name].mean()):.3f}", (i * tile_w + 6, 16), 0.45)
    draw_colour_bar(panel, 4 * tile_w + 4, 24, 8, h - 32, vmax)
    return panel


def draw_timeline(
    rows: dict[str, list[tuple[int, int, int]]],
    t0_us: int,
    t1_us: int,
    cursor_us: int,
    w: int,
    h: int,
    class_names: Sequence[str] = (),
) -> np.ndarray:
    """Named strips of ``(class_id, start_us, end_us)`` bands over ``[t0_us, t1_us]``, a cursor,
    and a legend of the classes the strips show (when ``class_names`` are given)."""
    cv2 = _cv2()
    panel = np.full((h, w, 3), PANEL_RGB, np.uint8)
    label_w = 90
    span = max(1, t1_us - t0_us)
    shown = sorted({int(c) for segs in rows.values() for c, _a, _b in segs})
    legend_h = 16 if class_names and shown else 0

    def x_of(t: int) -> int:
        return label_w + int((w - label_w - 4) * (t - t0_us) / span)

    row_h = max(10, (h - 16 - legend_h) // max(1, len(rows)))
    for r, (name, segs) in enumerate(rows.items()):
        y = 4 + r * row_h
        put_text(panel, name, (4, y + row_h - 6), 0.45)
        for cid, a, b in segs:
            cv2.rectangle(
                panel, (x_of(a), y + 2), (max(x_of(a) + 1, x_of(b)), y + row_h - 3), class_colour(cid), -1
            )
    cx = x_of(cursor_us)
    cv2.line(panel, (cx, 0), (cx, h - 1 - legend_h), (255, 80, 80), 2)
    put_text(panel, f"{(cursor_us - t0_us) / 1e6:.2f} s", (min(cx + 4, w - 70), h - 4 - legend_h), 0.4)
    if legend_h:
        x, y = label_w, h - 4
        for cid in shown:
            text = class_label(class_names, cid)
            need = 14 + text_width(text, 0.38)
            if x + need > w:
                break
            cv2.rectangle(panel, (x, y - 9), (x + 9, y), class_colour(cid), -1)
            put_text(panel, text, (x + 12, y), 0.38, (200, 200, 200))
            x += need + 10
    return panel


class FrameComposer:
    """Lays the panels out on one ``size_wh`` RGB frame (numpy + OpenCV, no Qt).

    Left: a title bar (file name, sensor, attention variant) above the event view, so the
    model-input outline drawn into the events never covers it; under them the window's
    timesteps.  Right: the prediction panel over the attention panel.  Bottom: the timeline.
    """

    def __init__(self, size_wh: tuple[int, int], class_names: Sequence[str]) -> None:
        self.w, self.h = size_wh
        self.class_names = list(class_names)

    def layout(self) -> dict[str, tuple[int, int, int, int]]:
        """Panel rectangles ``name -> (x, y, w, h)`` in frame pixels."""
        w, h = self.w, self.h
        left_w = int(w * 0.52)
        tl_h = max(76, h // 8)
        ts_h = max(60, h // 7)
        ev_h = h - tl_h - ts_h
        prob_h = int(ev_h * 0.5)
        return {
            "title": (0, 0, left_w, TITLE_H),
            "events": (0, TITLE_H, left_w, ev_h - TITLE_H),
            "probabilities": (left_w, 0, w - left_w, prob_h),
            "attention": (left_w, prob_h, w - left_w, ev_h - prob_h),
            "timesteps": (0, ev_h, w, ts_h),
            "timeline": (0, h - tl_h, w, tl_h),
        }

    def compose(
        self,
        events_rgb: np.ndarray,
        *,
        result=None,
        token_hw=None,
        rows: dict[str, list[tuple[int, int, int]]],
        t_range_us: tuple[int, int],
        cursor_us: int,
        title: str = "",
    ) -> np.ndarray:
        frame = np.full((self.h, self.w, 3), 16, np.uint8)
        box = self.layout()

        def put(name: str, img: np.ndarray) -> None:
            x, y, w, h = box[name]
            frame[y : y + h, x : x + w] = img

        x, y, w, h = box["title"]
        put_text(frame, title, (8, y + h - 8), fit_text_scale([title], w - 16, max_scale=0.5))
        put("events", fit(events_rgb, *box["events"][2:]))
        if result is not None:
            pred = result.prediction
            probs, cid, frames = np.asarray(pred.probs), int(pred.class_id), result.window.frames
            taps = getattr(pred, "taps", None)
        else:
            probs, cid, frames, taps = None, None, None, None
        put("probabilities", draw_probabilities(probs, self.class_names, cid, *box["probabilities"][2:]))
        put("attention", draw_attention(taps, frames, *box["attention"][2:], token_hw))
        if frames is not None:
            put("timesteps", fit(frames_to_rgb(frames), *box["timesteps"][2:]))
        put(
            "timeline",
            draw_timeline(
                rows, t_range_us[0], t_range_us[1], cursor_us, *box["timeline"][2:], self.class_names
            ),
        )
        return frame
