"""Frames -> events with the standard DVS pixel model.

Each pixel compares its log intensity with a stored reference level and emits
an event every time the difference crosses a contrast threshold::

    L(I) = log(I)                              for I >= log_floor
    L(I) = log(log_floor) + (I - log_floor) / log_floor   below it (linear, C1-continuous)

    s(t) = L(t) - ref          ON event when s reaches +theta_on, OFF at -theta_off;
                               after an event ref moves by one threshold.

Between two frames the log intensity is taken to change linearly in time, so the
``k`` events a pixel emits in one frame interval get timestamps interpolated
where the line crosses ``ref + j * theta`` (``j = 1..k``), not the frame time.

Non-idealities (all optional, all seeded):

- threshold mismatch: per-pixel ``theta_on``/``theta_off`` drawn once from
  ``N(threshold, mismatch_sigma)`` (clipped at ``min_threshold``);
- refractory period: after an event the pixel ignores crossings for
  ``refractory_us``; the reference still moves, so the suppressed events are lost
  (as in a real pixel that was held in reset);
- leak: the reference drifts down by ``theta_on * leak_rate_hz`` per second
  (per-pixel rate varied by ``leak_jitter``), giving spontaneous ON events at
  about ``leak_rate_hz`` per pixel in a static scene;
- shot noise: events of random polarity at ``shot_noise_rate_hz`` per pixel,
  uniformly in time; they do not move the reference.

Frames are ``[H, W]`` float intensities in ``[0, 1]`` or uint8 (``/255``);
``[H, W, 3]`` BGR frames (OpenCV order) are converted to grey.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvsapp.core.errors import ConfigError, EventDataError, EventFileError, UnsupportedFormat
from dvsapp.core.events import EVENT_DTYPE, Packet, SensorSize, empty_events

__all__ = [
    "EmulatorConfig",
    "DvsEmulator",
    "lin_log",
    "frame_to_intensity",
    "video_to_events",
    "simulate_video",
]


@dataclass(frozen=True)
class EmulatorConfig:
    """Settings of the DVS pixel model (see the module docstring for the equations).

    Attributes
    ----------
    threshold_on, threshold_off : float
        Mean contrast thresholds, in log-intensity units (0.2 ~ 22 % change).
    mismatch_sigma : float
        Standard deviation of the per-pixel threshold, log units.
    min_threshold : float
        Lower clip of a pixel threshold after mismatch.
    refractory_us : int
        Dead time after an event, microseconds (0 disables).
    leak_rate_hz : float
        Mean spontaneous ON-event rate per pixel caused by reference leak, Hz.
    leak_jitter : float
        Relative per-pixel spread of the leak rate (uniform in ``1 +- leak_jitter``).
    shot_noise_rate_hz : float
        Random-polarity noise events per pixel per second.
    log_floor : float
        Intensity (in ``[0, 1]`` units) below which the response is linear.
    """

    threshold_on: float = 0.2
    threshold_off: float = 0.2
    mismatch_sigma: float = 0.03
    min_threshold: float = 0.01
    refractory_us: int = 100
    leak_rate_hz: float = 0.0
    leak_jitter: float = 0.1
    shot_noise_rate_hz: float = 0.0
    log_floor: float = 0.02

    def __post_init__(self) -> None:
        checks = {
            "threshold_on": self.threshold_on > 0,
            "threshold_off": self.threshold_off > 0,
            "mismatch_sigma": self.mismatch_sigma >= 0,
            "min_threshold": self.min_threshold > 0,
            "refractory_us": self.refractory_us >= 0,
            "leak_rate_hz": self.leak_rate_hz >= 0,
            "leak_jitter": 0 <= self.leak_jitter < 1,
            "shot_noise_rate_hz": self.shot_noise_rate_hz >= 0,
            "log_floor": 0 < self.log_floor < 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"emulator setting {bad[0]}={getattr(self, bad[0])!r} is out of range")


def lin_log(intensity: np.ndarray, log_floor: float) -> np.ndarray:
    """Log intensity, linear below ``log_floor`` (value and slope continuous there).

    Parameters
    ----------
    intensity : ndarray, float
        Intensity in ``[0, 1]`` units, any shape.
    log_floor : float
        Intensity where the curve switches from linear to log.

    Returns
    -------
    ndarray, float32, same shape
    """
    x = np.asarray(intensity, dtype=np.float32)
    lo = np.float32(math.log(log_floor))
    out = np.log(np.maximum(x, np.float32(log_floor)))
    below = x < log_floor
    if below.any():
        out[below] = lo + (x[below] - np.float32(log_floor)) / np.float32(log_floor)
    return out


def _grey_bgr(frame: np.ndarray) -> np.ndarray:
    b, g, r = (frame[..., i].astype(np.float32) for i in range(3))
    return 0.114 * b + 0.587 * g + 0.299 * r


def frame_to_intensity(frame: np.ndarray) -> np.ndarray:
    """Convert a frame to float32 intensity in ``[0, 1]``, shape ``[H, W]``.

    uint8 frames are divided by 255 and uint16 frames by 65535; float frames are
    taken as already in ``[0, 1]`` (values are clipped).  ``[H, W, 3]`` frames are
    BGR (OpenCV order) and are converted with Rec. 601 luma weights.
    """
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(frame.dtype, 1.0)
        return np.clip(_grey_bgr(frame[..., :3]) / np.float32(scale), 0.0, 1.0).astype(np.float32)
    if frame.ndim != 2:
        raise EventDataError(f"frame has shape {frame.shape}, expected [H, W] or [H, W, 3]")
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) * np.float32(1 / 255)
    if frame.dtype == np.uint16:
        return frame.astype(np.float32) * np.float32(1 / 65535)
    if not np.issubdtype(frame.dtype, np.number) or np.issubdtype(frame.dtype, np.complexfloating):
        raise EventDataError(f"frame has dtype {frame.dtype}, expected float or uint8")
    out = np.clip(frame.astype(np.float32, copy=False), 0.0, 1.0)
    if not np.isfinite(out).all():
        raise EventDataError("frame holds NaN values")
    return out


class DvsEmulator:
    """A stateful DVS pixel array fed with frames.

    Parameters
    ----------
    width, height : int
        Sensor size in pixels; frames must be ``[height, width]``.
    threshold_on, threshold_off, mismatch_sigma, refractory_us, leak_rate_hz,
    shot_noise_rate_hz, log_floor, min_threshold, leak_jitter
        See :class:`EmulatorConfig`.
    threshold : float, optional
        Shortcut that sets both ``threshold_on`` and ``threshold_off``.
    seed : int or numpy Generator
        Seeds the threshold mismatch, leak rates and noise.

    Notes
    -----
    The first :meth:`step` stores the reference and emits nothing.  Timestamps
    must not decrease.  Events of one step lie in ``(t_prev_us, t_us]`` and are
    sorted by time, so successive steps concatenate into a sorted stream.
    """

    def __init__(
        self,
        width: int,
        height: int,
        *,
        threshold: float | None = None,
        threshold_on: float = 0.2,
        threshold_off: float = 0.2,
        mismatch_sigma: float = 0.03,
        min_threshold: float = 0.01,
        refractory_us: int = 100,
        leak_rate_hz: float = 0.0,
        leak_jitter: float = 0.1,
        shot_noise_rate_hz: float = 0.0,
        log_floor: float = 0.02,
        seed: int | np.random.Generator | None = 0,
    ) -> None:
        if int(width) <= 0 or int(height) <= 0:
            raise ConfigError(f"emulator size {width}x{height} must be positive")
        if threshold is not None:
            threshold_on = threshold_off = threshold
        self.config = EmulatorConfig(
            threshold_on=float(threshold_on),
            threshold_off=float(threshold_off),
            mismatch_sigma=float(mismatch_sigma),
            min_threshold=float(min_threshold),
            refractory_us=int(refractory_us),
            leak_rate_hz=float(leak_rate_hz),
            leak_jitter=float(leak_jitter),
            shot_noise_rate_hz=float(shot_noise_rate_hz),
            log_floor=float(log_floor),
        )
        self.width = int(width)
        self.height = int(height)
        self._seed = seed
        self.reset()

    @classmethod
    def from_config(
        cls, width: int, height: int, config: EmulatorConfig, *, seed: int | np.random.Generator | None = 0
    ) -> DvsEmulator:
        """Build an emulator from an :class:`EmulatorConfig`."""
        return cls(width, height, seed=seed, **config.__dict__)

    @property
    def sensor_size(self) -> SensorSize:
        return SensorSize(self.width, self.height, 2)

    def reset(self) -> None:
        """Forget the reference (the next step re-initialises); with an int seed, replays exactly."""
        cfg = self.config
        seed = self._seed
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        n = self.width * self.height
        rng = self._rng

        def draw(mean: float) -> np.ndarray:
            th = (
                mean + cfg.mismatch_sigma * rng.standard_normal(n) if cfg.mismatch_sigma else np.full(n, mean)
            )
            return np.maximum(th, cfg.min_threshold).astype(np.float32)

        self._th_on = draw(cfg.threshold_on)
        self._th_off = draw(cfg.threshold_off)
        # loose bounds for the candidate test (exact counts are computed on the candidates)
        self._th_on_lo = self._th_on * np.float32(1 - 1e-5)
        self._th_off_lo = -self._th_off * np.float32(1 - 1e-5)
        levels = np.arange(256, dtype=np.float32) * np.float32(1 / 255)
        self._lut_u8 = lin_log(levels, cfg.log_floor)  # uint8 frames: log intensity by table
        if cfg.leak_rate_hz > 0:
            jitter = rng.uniform(1 - cfg.leak_jitter, 1 + cfg.leak_jitter, n)
            # reference drift per microsecond, log units
            self._leak_per_us = (self._th_on * cfg.leak_rate_hz * 1e-6 * jitter).astype(np.float32)
        else:
            self._leak_per_us = None
        self._ref: np.ndarray | None = None  # reference log level [n]
        self._prev: np.ndarray | None = None  # log intensity at the previous frame [n]
        self._t_prev_us: int | None = None
        self._last_event_us = np.full(n, np.iinfo(np.int64).min // 2, dtype=np.int64)

    @property
    def t_us(self) -> int | None:
        """Time of the last frame stepped, or ``None`` before the first."""
        return self._t_prev_us

    def step(self, frame: np.ndarray, t_us: int) -> np.ndarray:
        """Feed one frame taken at ``t_us``; return the events since the previous frame.

        Parameters
        ----------
        frame : ndarray
            ``[H, W]`` intensity (float in ``[0, 1]``, uint8 or uint16) or ``[H, W, 3]`` BGR.
        t_us : int
            Frame timestamp in microseconds, not before the previous one.

        Returns
        -------
        ndarray of EVENT_DTYPE
            Events with ``t_prev_us < t <= t_us``, sorted by ``t``.
        """
        frame = np.asarray(frame)
        if frame.dtype == np.uint8 and frame.ndim == 2:
            shape = frame.shape
            log_now = None if shape != (self.height, self.width) else self._lut_u8[frame.reshape(-1)]
        else:
            inten = frame_to_intensity(frame)
            shape = inten.shape
            log_now = (
                None
                if shape != (self.height, self.width)
                else lin_log(inten.reshape(-1), self.config.log_floor)
            )
        if log_now is None:
            raise EventDataError(
                f"frame is {shape[1]}x{shape[0]}, the emulator is {self.width}x{self.height}"
            )
        t_us = int(t_us)
        if self._ref is None:
            if self._leak_per_us is not None:
                # random leak phase so that pixels do not all fire at once
                self._ref = log_now - self._rng.uniform(0, 1, log_now.size).astype(np.float32) * self._th_on
            else:
                self._ref = log_now.copy()
            self._prev = log_now
            self._t_prev_us = t_us
            return empty_events()
        t0 = self._t_prev_us
        if t_us < t0:
            raise EventDataError(f"frame time {t_us} us is before the previous frame at {t0} us")
        dt_us = t_us - t0
        ref = self._ref
        s1 = log_now - ref
        if self._leak_per_us is not None and dt_us:
            drift = self._leak_per_us * np.float32(dt_us)
            s1 = s1 + drift
            ref = ref - drift
        # candidates with a loose test on the whole array, the exact count on the few
        active = np.flatnonzero((s1 >= self._th_on_lo) | (s1 <= self._th_off_lo))
        cols = []
        if len(active):
            s1_act = s1[active]
            up_act = s1_act >= 0
            th_act = np.where(up_act, self._th_on[active], self._th_off[active])
            mag = np.abs(s1_act)
            k_act = np.floor(mag / th_act)
            hit = k_act >= 1
            if not hit.all():
                active, s1_act, up_act, th_act, mag, k_act = (
                    v[hit] for v in (active, s1_act, up_act, th_act, mag, k_act)
                )
        if len(active):
            s0_act = self._prev[active] - self._ref[active]  # before the leak drift, like s1
            ref[active] += np.where(up_act, k_act * th_act, -k_act * th_act).astype(np.float32)
            a = np.where(up_act, s0_act, -s0_act).astype(np.float64)
            cols.append(
                self._crossings(
                    active, k_act.astype(np.int64), a, mag.astype(np.float64), th_act, up_act, t0, dt_us
                )
            )
        self._ref = ref
        self._prev = log_now
        self._t_prev_us = t_us
        noise = self._shot_noise(t0, dt_us)
        if noise is not None:
            cols.append(noise)
        cols = [c for c in cols if len(c[0])]
        if not cols:
            return empty_events()
        pix, t, p = (np.concatenate([c[i] for c in cols]) if len(cols) > 1 else cols[0][i] for i in range(3))
        order = np.argsort(t, kind="stable")
        pix = pix[order]
        ev = np.empty(len(order), dtype=EVENT_DTYPE)
        ev["x"] = pix % self.width
        ev["y"] = pix // self.width
        ev["t"] = t[order]
        ev["p"] = p[order]
        return ev

    def _crossings(
        self,
        active: np.ndarray,
        k: np.ndarray,
        a: np.ndarray,
        b: np.ndarray,
        th: np.ndarray,
        up: np.ndarray,
        t0: int,
        dt_us: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Events ``(pixel index, t_us, polarity)`` of the pixels ``active``, grouped by pixel.

        Pixel ``i`` crosses ``k[i]`` levels ``j * th[i]`` (``j = 1..k``) while its
        signal, signed by its polarity ``up[i]``, goes linearly from ``a[i]`` to
        ``b[i]`` over ``dt_us``, so the crossings are evenly spaced:
        ``t_j = t_1 + (j - 1) * d``.  The sequential refractory rule (keep a
        crossing when it comes ``refractory_us`` after the last kept event) then
        has a closed form: the first kept crossing is the first one past the dead
        time, and after it every ``m``-th with ``m = ceil(refractory_us / d)``.
        """
        slope = b - a  # > 0 whenever k >= 1
        t1 = t0 + (th - a) / slope * dt_us
        d = th / slope * dt_us
        refr = self.config.refractory_us
        if refr > 0:
            need = self._last_event_us[active] + refr - t1
            d_safe = np.maximum(d, 1e-12)
            j0 = 1.0 + np.where(need > 0, np.ceil(need / d_safe - 1e-9), 0.0)
            m = np.where(d > 0, np.maximum(np.ceil(refr / d_safe - 1e-9), 1.0), k + 1.0)
            n_keep = np.where(j0 <= k, np.floor((k - j0) / m) + 1, 0).astype(np.int64)
            sel = np.flatnonzero(n_keep)
            active, k, t1, d, n_keep, up = active[sel], k[sel], t1[sel], d[sel], n_keep[sel], up[sel]
            j0 = j0[sel].astype(np.int64)
            m = np.minimum(m[sel], k + 1.0).astype(np.int64)
        else:
            j0 = np.ones(len(active), dtype=np.int64)
            m = j0
            n_keep = k
        total = int(n_keep.sum())
        if total == 0:
            return (active[:0], np.zeros(0, np.int64), up[:0])
        starts = np.cumsum(n_keep) - n_keep
        j = np.repeat(j0, n_keep) + (
            np.arange(total, dtype=np.int64) - np.repeat(starts, n_keep)
        ) * np.repeat(m, n_keep)
        t = np.repeat(t1, n_keep) + (j - 1) * np.repeat(d, n_keep)
        t_int = np.minimum(np.maximum(np.rint(t).astype(np.int64), np.int64(t0)), np.int64(t0 + dt_us))
        self._last_event_us[active] = t_int[starts + n_keep - 1]
        return np.repeat(active, n_keep), t_int, np.repeat(up, n_keep)

    def _shot_noise(self, t0: int, dt_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Random-polarity noise ``(pixel index, t_us, polarity)`` in ``(t0, t0 + dt_us]``."""
        rate = self.config.shot_noise_rate_hz
        if rate <= 0 or dt_us <= 0:
            return None
        n_px = self.width * self.height
        n = int(self._rng.poisson(rate * n_px * dt_us * 1e-6))
        if n == 0:
            return None
        pix = self._rng.integers(0, n_px, n)
        t = t0 + 1 + self._rng.integers(0, dt_us, n)
        return pix, t.astype(np.int64), self._rng.integers(0, 2, n).astype(bool)


# --------------------------------------------------------------------------- video


def _open_capture(path: str | os.PathLike):
    import cv2

    p = Path(path)
    if not p.is_file():
        raise UnsupportedFormat("no such video file", path=p)
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        raise UnsupportedFormat("OpenCV cannot open this file as a video", path=p)
    return cap


def video_to_events(
    path: str | os.PathLike,
    *,
    size: SensorSize | tuple[int, int] | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    seed: int = 0,
    **emulator_options,
) -> Iterator[Packet]:
    """Stream a video file through a :class:`DvsEmulator`.

    Parameters
    ----------
    path : path-like
        Any video OpenCV can decode.
    size : (width, height), optional
        Resize frames to this sensor size (default: the video's own size).
    fps : float, optional
        Frame rate to assume when the file has none (default 30).
    max_frames : int, optional
        Stop after this many frames.
    seed : int
        Emulator seed.
    **emulator_options
        Passed to :class:`DvsEmulator` (``threshold``, ``refractory_us``...).

    Yields
    ------
    Packet
        One per frame after the first: the frame's events and ``until_us`` just
        after the frame time (events of later frames are all later).
    """
    import cv2

    cap = _open_capture(path)
    try:
        file_fps = cap.get(cv2.CAP_PROP_FPS)
        rate = fps or (file_fps if file_fps and file_fps > 0 else 30.0)
        emu: DvsEmulator | None = None
        index = 0
        while max_frames is None or index < max_frames:
            ok, frame = cap.read()
            if not ok:
                if index == 0:
                    raise EventFileError("the video holds no decodable frame", path=path)
                break
            if size is not None:
                w, h = int(size[0]), int(size[1])
                if frame.shape[1] != w or frame.shape[0] != h:
                    frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            if emu is None:
                emu = DvsEmulator(frame.shape[1], frame.shape[0], seed=seed, **emulator_options)
            t_us = int(round(index * 1e6 / rate))
            events = emu.step(frame, t_us)
            if index > 0:
                yield Packet(events, t_us + 1)
            index += 1
    finally:
        cap.release()


def video_info(path: str | os.PathLike) -> tuple[int, int, int, float]:
    """``(width, height, n_frames, fps)`` of a video (``n_frames`` may be 0 if unknown)."""
    import cv2

    cap = _open_capture(path)
    try:
        return (
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))),
            float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
        )
    finally:
        cap.release()


def simulate_video(
    video: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: SensorSize | tuple[int, int] | None = None,
    fps: float | None = None,
    force: bool = False,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    **emulator_options,
) -> int:
    """Convert a video file to an event file (format from ``out``'s extension).

    ``progress(done_frames, total_frames)`` is called after every frame
    (``total_frames`` is 0 when the container does not say).  Returns the
    number of events written.
    """
    from dvsapp.core.io import open_writer  # the IO layer; imported late to keep this module light

    w, h, n_frames, _ = video_info(video)
    sensor = SensorSize(int(size[0]), int(size[1])) if size is not None else SensorSize(w, h)
    packets = video_to_events(video, size=sensor, fps=fps, seed=seed, **emulator_options)
    first = next(packets, None)  # bad videos and settings fail before the output exists
    n_events = 0
    with open_writer(out, sensor, force=force) as writer:
        for i, packet in enumerate(itertools.chain([first] if first is not None else [], packets)):
            if len(packet.events):
                writer.write(packet.events)
                n_events += len(packet.events)
            if progress is not None:
                progress(i + 2, n_frames)
    return n_events
