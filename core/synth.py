"""Synthetic DVS Gesture scenes: an articulated figure rendered through the DVS emulator.

The 11 DVS128 Gesture classes (:data:`dvsapp.core.gestures.GESTURE_CLASSES`) are
performed by a simple figure (torso, neck, head, two arms of upper arm +
forearm + hand) seen from the front, drawn with OpenCV (anti-aliased, sub-pixel)
into 8-bit frames every ``frame_step_us`` (2 ms by default) and turned into
events by :class:`dvsapp.core.emulator.DvsEmulator`, which interpolates event times
between frames.

Conventions
-----------
- The subject faces the camera, as in DVS Gesture: the subject's **right** arm
  appears on the **left** of the image.
- "Clockwise" is seen from the subject's point of view (the instruction given
  to a person), which is counter-clockwise in the image.  A horizontally
  flipped ``right_arm_clockwise`` is therefore ``left_arm_counter_clockwise``,
  matching :func:`dvsapp.core.gestures.mirrored_class`.
- Arm poses are computed in "outward" coordinates per arm: origin at the
  shoulder, ``+x`` away from the body, ``+y`` down (pixels), so one motion
  function serves both arms and mirror classes share their code.

Randomised per seed (:func:`random_scene`, :func:`random_motion`): figure size
and position, limb lengths and widths, grey levels and contrast against the
background (brighter or darker), a static background texture with furniture
blocks, clutter objects drifting slightly, slow camera jitter, body sway,
gesture tempo (0.7-1.5 Hz), amplitude, phase, direction where free, and the
sensor (threshold, refractory period, leak and shot noise).  Finally an
event-rate controller (:class:`RateController`) thins each gesture down to a
rate target drawn independently of the class (when its natural rate is
higher), so that the event rate alone carries little class information.

Entry points: :func:`render_gesture` (one clip, one class), :func:`make_sequence`
(a recording: gestures with pauses, plus label segments), :class:`GestureStream`
(an endless live stream for the ``synthetic`` source) and
:func:`write_gesture_sequence` (the ``dvsapp simulate --gestures`` command).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dvsapp.core.emulator import DvsEmulator, EmulatorConfig
from dvsapp.core.errors import ConfigError
from dvsapp.core.events import SensorSize, concat, empty_events
from dvsapp.core.gestures import GESTURE_CLASSES
from dvsapp.core.labels import Segment

__all__ = [
    "Figure",
    "Scene",
    "Motion",
    "Pose",
    "random_scene",
    "random_motion",
    "pose_at",
    "ScenePainter",
    "joint_positions",
    "render_gesture",
    "make_sequence",
    "GestureStream",
    "RateController",
    "TARGET_RATE_HZ",
    "write_gesture_sequence",
    "N_CLASSES",
    "REST",
]

N_CLASSES = len(GESTURE_CLASSES)
REST = -1
"""Class id reported by :class:`GestureStream` during the pauses between gestures."""

_SHIFT = 4  # OpenCV drawing: 4 fractional bits -> 1/16 pixel positions
_ONE = 1 << _SHIFT
TWO_PI = 2.0 * math.pi

# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Figure:
    """Geometry (pixels) and grey levels (0-255) of the articulated figure."""

    center_x: float  # midpoint between the shoulders
    shoulder_y: float
    shoulder_half: float
    hip_half: float
    torso_length: float
    neck: float
    head_radius: float
    upper_arm: float
    forearm: float
    upper_width: int
    fore_width: int
    hand_radius: float
    torso_level: int
    head_level: int
    upper_level: int
    fore_level: int
    hand_level: int

    @property
    def reach(self) -> float:
        return self.upper_arm + self.forearm


@dataclass(frozen=True)
class Clutter:
    """A small background object that drifts along a line (``x + a*sin``), pixels and Hz."""

    x: float
    y: float
    size: float
    level: int
    round: bool
    amp_x: float
    amp_y: float
    freq_hz: float
    phase: float


@dataclass(frozen=True)
class Scene:
    """Everything about a recording that does not depend on the gesture."""

    sensor_size: SensorSize
    figure: Figure
    background_seed: int
    background_level: float  # mean grey level 0-255
    texture_amp: float  # grey levels
    texture_cells: int  # coarse grid of the texture
    n_blocks: int  # static furniture rectangles
    clutter: tuple[Clutter, ...]
    jitter_px: float  # camera shake amplitude, pixels
    jitter_freqs_hz: tuple[float, float, float, float]
    sway_px: float  # body sway amplitude, pixels
    sway_hz: float
    sway_phase: float
    emulator: EmulatorConfig
    target_rate_hz: float  # event rate the clip is brought to (events / s), 0 = leave as is


@dataclass(frozen=True)
class Motion:
    """One gesture performance: class and its random style parameters."""

    class_id: int
    tempo_hz: float
    amplitude: float  # 0.6 .. 1.0, relative size of the movement
    phase: float
    direction: int  # +1 / -1 where the class leaves it free (arm roll)
    side: int  # which arm leads where free: -1 subject right (image left), +1 subject left
    variant: int  # for other_gestures: which motion
    shape: tuple[float, ...] = field(default=(0.0,) * 8)  # extra random coefficients in [-1, 1]


@dataclass(frozen=True)
class Pose:
    """Joint angles over time (arrays of shape ``[N]``, radians, outward coordinates).

    ``r1, r2``: subject's right arm (image left) upper-arm and forearm angles;
    ``l1, l2``: left arm; ``dx, dy``: body offset in pixels.
    """

    r1: np.ndarray
    r2: np.ndarray
    l1: np.ndarray
    l2: np.ndarray
    dx: np.ndarray
    dy: np.ndarray


def _lu(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Log-uniform draw."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _level(rng: np.random.Generator, bg: float, lo: float = 0.3, hi: float = 1.1) -> int:
    """A grey level at a random log contrast in ``[lo, hi]`` above or below ``bg``."""
    c = rng.uniform(lo, hi)
    up = bg * math.exp(c)
    down = bg * math.exp(-c)
    choices = [v for v in (up, down) if 12 <= v <= 250]
    value = choices[int(rng.integers(len(choices)))] if choices else (250 if bg < 128 else 12)
    return int(round(value))


def random_scene(
    seed: int | np.random.Generator, sensor_size: SensorSize | tuple = SensorSize(128, 128)
) -> Scene:
    """Draw a scene (figure, background, clutter, camera, sensor) from ``seed``."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    sensor = SensorSize(int(sensor_size[0]), int(sensor_size[1]))
    u = min(sensor.width, sensor.height) / 128.0 * rng.uniform(0.8, 1.15)
    bg = _lu(rng, 35, 190)
    torso = _level(rng, bg)
    sleeve = _level(rng, bg, 0.5, 1.3) if rng.random() < 0.6 else torso
    skin = _level(rng, bg, 0.5, 1.3)
    fig = Figure(
        center_x=sensor.width / 2 + rng.uniform(-12, 12) * u,
        shoulder_y=sensor.height * rng.uniform(0.34, 0.46),
        shoulder_half=rng.uniform(15, 20) * u,
        hip_half=rng.uniform(11, 16) * u,
        torso_length=rng.uniform(50, 70) * u,
        neck=rng.uniform(3, 6) * u,
        head_radius=rng.uniform(9, 12) * u,
        upper_arm=rng.uniform(20, 25) * u,
        forearm=rng.uniform(18, 23) * u,
        upper_width=max(2, int(round(rng.uniform(5, 8) * u))),
        fore_width=max(2, int(round(rng.uniform(4, 6.5) * u))),
        hand_radius=rng.uniform(3.5, 5.0) * u,
        torso_level=torso,
        head_level=skin if rng.random() < 0.7 else _level(rng, bg),
        upper_level=sleeve,
        fore_level=sleeve if rng.random() < 0.5 else skin,
        hand_level=skin,
    )
    clutter = []
    for _ in range(int(rng.choice(4, p=[0.3, 0.35, 0.2, 0.15]))):
        clutter.append(
            Clutter(
                x=rng.uniform(0, sensor.width),
                y=rng.uniform(0, sensor.height),
                size=rng.uniform(2, 8) * u,
                level=_level(rng, bg, 0.2, 0.9),
                round=bool(rng.random() < 0.5),
                amp_x=rng.uniform(0, 4) * u,
                amp_y=rng.uniform(0, 2) * u,
                freq_hz=rng.uniform(0.1, 1.0),
                phase=rng.uniform(0, TWO_PI),
            )
        )
    threshold = rng.uniform(0.15, 0.3)
    emu = EmulatorConfig(
        threshold_on=threshold * rng.uniform(0.9, 1.1),
        threshold_off=threshold * rng.uniform(0.9, 1.1),
        mismatch_sigma=0.03,
        refractory_us=int(rng.uniform(50, 500)),
        leak_rate_hz=_lu(rng, 0.002, 0.05),
        shot_noise_rate_hz=_lu(rng, 0.003, 0.1),
    )
    return Scene(
        sensor_size=sensor,
        figure=fig,
        background_seed=int(rng.integers(2**31)),
        background_level=bg,
        texture_amp=rng.uniform(0.0, 0.5) * bg,
        texture_cells=int(rng.integers(3, 17)),
        n_blocks=int(rng.integers(0, 5)),
        clutter=tuple(clutter),
        jitter_px=0.0 if rng.random() < 0.6 else rng.uniform(0.05, 0.35) * u,
        jitter_freqs_hz=tuple(float(v) for v in rng.uniform(0.2, 2.0, 4)),
        sway_px=rng.uniform(0.0, 0.8) * u,
        sway_hz=rng.uniform(0.1, 0.5),
        sway_phase=rng.uniform(0, TWO_PI),
        emulator=emu,
        target_rate_hz=_draw_target_rate(rng, sensor),
    )


#: range of the event-rate targets (events / s at 128x128, log-uniform), drawn independently of the class
TARGET_RATE_HZ = (5_000.0, 20_000.0)


def _draw_target_rate(rng: np.random.Generator, sensor: SensorSize) -> float:
    return _lu(rng, *TARGET_RATE_HZ) * (sensor.n_pixels / 128**2)


#: how many distinct motions other_gestures draws from
N_OTHER_VARIANTS = 5


def random_motion(class_id: int, seed: int | np.random.Generator) -> Motion:
    """Draw the style of one performance of ``class_id`` (0-based)."""
    if not 0 <= int(class_id) < N_CLASSES:
        raise ConfigError(f"gesture class {class_id} is not in 0..{N_CLASSES - 1}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return Motion(
        class_id=int(class_id),
        tempo_hz=rng.uniform(0.7, 1.5),
        amplitude=rng.uniform(0.6, 1.0),
        phase=rng.uniform(0, TWO_PI),
        direction=int(rng.choice((-1, 1))),
        side=int(rng.choice((-1, 1))),
        variant=int(rng.integers(N_OTHER_VARIANTS)),
        shape=tuple(float(v) for v in rng.uniform(-1, 1, 8)),
    )


# --------------------------------------------------------------------------- kinematics


def _ik(fig: Figure, tx: np.ndarray, ty: np.ndarray, *, elbow: str = "out") -> tuple[np.ndarray, np.ndarray]:
    """Two-link inverse kinematics in outward coordinates.

    ``(tx, ty)``: hand target relative to the shoulder (pixels).  Unreachable
    targets are pulled onto the reachable annulus.  ``elbow`` picks the branch:
    ``"out"`` keeps the elbow away from the body (it switches branch when the
    target crosses the shoulder's horizontal, so use it for targets that stay
    above or below it), ``"below"`` keeps it below the shoulder-hand line
    (continuous for targets that circle beside the body).  Returns ``(alpha1, alpha2)``.
    """
    l1, l2 = fig.upper_arm, fig.forearm
    r = np.clip(np.hypot(tx, ty), abs(l1 - l2) + 0.5, l1 + l2 - 0.05)
    phi = np.arctan2(ty, tx)
    cos_b = np.clip((l1 * l1 + r * r - l2 * l2) / (2 * l1 * r), -1.0, 1.0)
    b = np.arccos(cos_b)
    a_plus, a_minus = phi + b, phi - b
    if elbow == "below":
        a1 = a_plus
    else:
        a1 = np.where(np.cos(a_plus) >= np.cos(a_minus), a_plus, a_minus)
    ex, ey = l1 * np.cos(a1), l1 * np.sin(a1)
    hx, hy = r * np.cos(phi), r * np.sin(phi)
    return a1, np.arctan2(hy - ey, hx - ex)


def _rest_target(fig: Figure, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hand hanging down a little in front of the hip (outward coordinates)."""
    return np.full(n, -0.1 * fig.shoulder_half), np.full(n, 0.93 * fig.reach)


def _rest(fig: Figure, n: int) -> tuple[np.ndarray, np.ndarray]:
    return _ik(fig, *_rest_target(fig, n))


def _wobble(m: Motion, t: np.ndarray, k: int, scale: float) -> np.ndarray:
    """Small smooth idiosyncratic movement (pixels), different per coefficient ``k``."""
    a, b = m.shape[k % 8], m.shape[(k + 3) % 8]
    return scale * (
        np.sin(TWO_PI * (0.31 + 0.2 * abs(a)) * t + 5 * b) + 0.5 * np.sin(TWO_PI * 1.7 * t + 3 * a)
    )


def _phase(m: Motion, t: np.ndarray, mult: float = 1.0) -> np.ndarray:
    return TWO_PI * m.tempo_hz * mult * t + m.phase


def _pair(fig: Figure, m: Motion, t: np.ndarray, right, left) -> tuple:
    """Build ``(r1, r2, l1, l2)`` from two ``(alpha1, alpha2)`` pairs (``None`` = rest)."""
    n = len(t)
    r = right if right is not None else _rest(fig, n)
    le = left if left is not None else _rest(fig, n)
    return r[0], r[1], le[0], le[1]


def _one_arm(m: Motion, side: int, arm: tuple, fig: Figure, t: np.ndarray) -> tuple:
    """Put ``arm`` on the subject's right (``side=-1``) or left (``+1``); the other one rests (slight swing)."""
    tx, ty = _rest_target(fig, len(t))
    idle = _ik(fig, tx + _wobble(m, t, 1, 0.6), ty + _wobble(m, t, 2, 0.6))
    return (arm, idle) if side < 0 else (idle, arm)


def _clap(m: Motion, fig: Figure, t: np.ndarray) -> tuple:
    ph = _phase(m, t)
    y = (0.42 + 0.1 * m.shape[0]) * fig.reach + _wobble(m, t, 3, 1.0)
    gap = fig.hand_radius * 0.9 + m.amplitude * fig.reach * (0.28 + 0.06 * m.shape[1]) * (
        0.5 - 0.5 * np.cos(ph)
    )
    x = -fig.shoulder_half + gap
    return _pair(fig, m, t, _ik(fig, x, y), _ik(fig, x + _wobble(m, t, 4, 0.5), y))


def _wave(side: int):
    def motion(m: Motion, fig: Figure, t: np.ndarray) -> tuple:
        n = len(t)
        a1 = np.full(n, 0.15 + 0.3 * (m.shape[0] + 1)) + 0.05 * np.sin(_phase(m, t) + 1.0)
        tilt = 0.25 * m.shape[1]
        a2 = -math.pi / 2 + tilt + (0.35 + 0.3 * m.amplitude) * np.sin(_phase(m, t, 1.3))
        return _pair(fig, m, t, *_one_arm(m, side, (a1, a2), fig, t))

    return motion


def _circle(side: int, sense: int):
    """Whole-arm circles; ``sense`` +1 increases the outward angle (subject-view clockwise on the right arm)."""

    def motion(m: Motion, fig: Figure, t: np.ndarray) -> tuple:
        psi = sense * _phase(m, t)
        rad = m.amplitude * fig.reach * (0.43 + 0.05 * m.shape[0])
        cx = (0.5 + 0.06 * m.shape[1]) * fig.reach
        cy = (-0.02 + 0.1 * m.shape[2]) * fig.reach
        ecc = 1.0 + 0.2 * m.shape[3]
        tx = cx + rad * ecc * np.cos(psi)
        ty = cy + rad * np.sin(psi) / ecc
        # A hand passing close to the shoulder would swing the folded elbow round
        # in a few frames: keep the target at least ~0.3 reach away (smooth max).
        r = np.hypot(tx, ty)
        floor, soft = 0.3 * fig.reach, 0.05 * fig.reach
        scale = (floor + soft * np.logaddexp(0.0, (r - floor) / soft)) / np.maximum(r, 1e-9)
        tx, ty = tx * scale, ty * scale
        return _pair(fig, m, t, *_one_arm(m, side, _ik(fig, tx, ty, elbow="below"), fig, t))

    return motion


def _arm_roll(m: Motion, fig: Figure, t: np.ndarray) -> tuple:
    psi = m.direction * _phase(m, t, 1.4)
    rad = m.amplitude * fig.reach * (0.14 + 0.04 * m.shape[0])
    ecc = 1.3 + 0.3 * m.shape[1]  # wider than tall
    cy = (0.5 + 0.08 * m.shape[2]) * fig.reach
    # image coordinates relative to the body centre; hands opposite on the circle
    hx, hy = rad * ecc * np.cos(psi), rad * np.sin(psi)
    right = _ik(fig, -hx - fig.shoulder_half, cy + hy)  # outward x = -dx_img - shoulder_half
    left = _ik(fig, -hx - fig.shoulder_half, cy - hy)  # outward x = dx_img - shoulder_half with dx_img = -hx
    return _pair(fig, m, t, right, left)


def _drums(m: Motion, fig: Figure, t: np.ndarray) -> tuple:
    ph = _phase(m, t, 0.9)
    amp = m.amplitude * fig.reach * (0.22 + 0.05 * m.shape[0])
    y0 = (0.62 + 0.06 * m.shape[1]) * fig.reach
    x = (-0.2 + 0.25 * m.shape[2]) * fig.shoulder_half
    # a strike: quick drop, slower rise (|sin| peaks are the sticks' high points)
    right = _ik(fig, np.full_like(t, x), y0 - amp * np.abs(np.sin(ph)))
    left = _ik(fig, np.full_like(t, x) + _wobble(m, t, 5, 0.5), y0 - amp * np.abs(np.cos(ph)))
    return _pair(fig, m, t, right, left)


def _guitar(m: Motion, fig: Figure, t: np.ndarray) -> tuple:
    strum_ph = _phase(m, t, 2.0)
    amp = m.amplitude * fig.reach * (0.14 + 0.04 * m.shape[0])
    strum = _ik(
        fig,
        np.full_like(t, (-0.55 + 0.15 * m.shape[1]) * fig.shoulder_half),
        (0.85 + 0.05 * m.shape[2]) * fig.reach + amp * np.sin(strum_ph),
    )
    neck = _ik(
        fig,
        (0.55 + 0.1 * m.shape[3]) * fig.reach + 1.5 * np.sin(_phase(m, t, 0.5)),
        (0.35 + 0.1 * m.shape[4]) * fig.reach + _wobble(m, t, 6, 1.0),
    )
    return _pair(fig, m, t, *((strum, neck) if m.side < 0 else (neck, strum)))


def _other(m: Motion, fig: Figure, t: np.ndarray) -> tuple:
    """Motions that are none of the ten gestures; ``m.variant`` picks one."""
    n = len(t)
    R = fig.reach
    rx, ry = _rest_target(fig, n)
    v = m.variant
    if v == 0:  # aimless smooth movements of both hands
        arms = []
        for k in (0, 4):
            f1, f2 = 0.3 + 0.4 * abs(m.shape[k]), 0.5 + 0.8 * abs(m.shape[k + 1])
            ox = 0.25 * R * m.amplitude * (np.sin(TWO_PI * f1 * t + 3 * m.shape[k + 2]) - 0.3)
            oy = 0.3 * R * m.amplitude * np.sin(TWO_PI * f2 * t + 3 * m.shape[k + 3]) - 0.2 * R
            arms.append(_ik(fig, rx + ox, ry + oy))
        return _pair(fig, m, t, arms[0], arms[1])
    if v == 1:  # touching the face / scratching the head
        tx = -fig.shoulder_half + 0.3 * fig.head_radius * m.shape[0] + 2.0 * np.sin(_phase(m, t, 3.0))
        ty = -(fig.neck + fig.head_radius * (1.0 + 0.4 * m.shape[1])) + 1.5 * np.sin(_phase(m, t, 2.3))
        return _pair(fig, m, t, *_one_arm(m, m.side, _ik(fig, tx, ty), fig, t))
    if v == 2:  # raise one arm slowly and lower it again
        lift = 0.5 - 0.5 * np.cos(_phase(m, t, 0.45))
        a = math.pi / 2 - lift * (math.pi * (0.55 + 0.25 * m.amplitude))
        arm = (a - 0.1, a - 0.1 - 0.3 * lift)
        return _pair(fig, m, t, *_one_arm(m, m.side, arm, fig, t))
    if v == 3:  # cross the arms over the chest and back
        cross = 0.5 - 0.5 * np.cos(_phase(m, t, 0.5))
        tx = rx + cross * (-fig.shoulder_half * 1.6 - rx)
        ty = ry + cross * (0.45 * R - ry)
        return _pair(fig, m, t, _ik(fig, tx, ty), _ik(fig, tx + _wobble(m, t, 7, 1.0), ty - 3))
    # v == 4: shifting the weight / stepping side to side with loose arms (body offset below)
    swing = 0.15 * R * np.sin(_phase(m, t, 0.8))
    return _pair(fig, m, t, _ik(fig, rx + swing, ry), _ik(fig, rx - swing, ry))


#: class id -> motion function ``(motion, figure, t_s[N]) -> (r1, r2, l1, l2)``
MOTIONS: dict[int, Callable[[Motion, Figure, np.ndarray], tuple]] = {
    0: _clap,
    1: _wave(-1),
    2: _wave(+1),
    3: _circle(-1, +1),
    4: _circle(-1, -1),
    5: _circle(+1, -1),
    6: _circle(+1, +1),
    7: _arm_roll,
    8: _drums,
    9: _guitar,
    10: _other,
}


def _weight_shift(m: Motion, fig: Figure, t: np.ndarray) -> np.ndarray:
    """other_gestures variant 4 shifts the whole body from side to side (pixels)."""
    if m.variant != 4:
        return np.zeros_like(t)
    return m.amplitude * 0.25 * fig.shoulder_half * np.sin(_phase(m, t, 0.4))


#: class id -> horizontal body offset ``(motion, figure, t_s[N]) -> dx[N]`` added to the sway
BODY_SHIFTS: dict[int, Callable[[Motion, Figure, np.ndarray], np.ndarray]] = {10: _weight_shift}


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + math.pi) % TWO_PI - math.pi


def pose_at(
    scene: Scene,
    motion: Motion | None,
    t_s: np.ndarray,
    *,
    weight: np.ndarray | float = 1.0,
    motion_t0_s: float = 0.0,
) -> Pose:
    """Joint angles of the figure at times ``t_s`` (seconds, shape ``[N]``).

    ``motion=None`` is the rest pose.  ``weight`` in ``[0, 1]`` blends from rest
    (0) to the gesture (1) for smooth starts and ends; the motion's own clock
    starts at ``motion_t0_s``.
    """
    fig = scene.figure
    t_s = np.asarray(t_s, dtype=np.float64)
    n = len(t_s)
    rest = _rest(fig, n)
    dx = scene.sway_px * np.sin(TWO_PI * scene.sway_hz * t_s + scene.sway_phase)
    dy = 0.3 * scene.sway_px * np.sin(TWO_PI * scene.sway_hz * 1.7 * t_s + 2 * scene.sway_phase)
    if motion is None:
        return Pose(rest[0], rest[1], rest[0].copy(), rest[1].copy(), dx, dy)
    r1, r2, l1, l2 = MOTIONS[motion.class_id](motion, fig, t_s - motion_t0_s)
    w = np.broadcast_to(np.asarray(weight, dtype=np.float64), (n,))
    shift = BODY_SHIFTS.get(motion.class_id)
    if shift is not None:
        dx = dx + w * shift(motion, fig, t_s - motion_t0_s)
    if np.all(w >= 1.0):
        return Pose(r1, r2, l1, l2, dx, dy)

    def blend(rest_a: np.ndarray, a: np.ndarray) -> np.ndarray:
        return rest_a + w * _wrap(a - rest_a)

    return Pose(blend(rest[0], r1), blend(rest[1], r2), blend(rest[0], l1), blend(rest[1], l2), dx, dy)


# --------------------------------------------------------------------------- drawing


def _background(scene: Scene) -> np.ndarray:
    """The static background texture, float32 grey levels ``[H, W]``."""
    w, h = scene.sensor_size.width, scene.sensor_size.height
    rng = np.random.default_rng(scene.background_seed)
    cells = scene.texture_cells
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    tex = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.0)
    tex = tex / max(float(tex.std()), 1e-6) + 0.5 * fine / max(float(fine.std()), 1e-6)
    img = scene.background_level + scene.texture_amp * 0.5 * tex
    for _ in range(scene.n_blocks):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        bw, bh = rng.uniform(0.05, 0.3) * w, rng.uniform(0.05, 0.4) * h
        level = scene.background_level * math.exp(rng.uniform(-0.7, 0.7))
        img[int(y0) : int(y0 + bh), int(x0) : int(x0 + bw)] = level
    return cv2.GaussianBlur(np.clip(img, 4, 251).astype(np.float32), (0, 0), 0.7)


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def joint_positions(fig: Figure, pose: Pose) -> dict[str, np.ndarray]:
    """Image positions (pixels, ``[N, 2]`` as ``(x, y)``) of the joints for each pose row.

    Keys: ``neck`` (midpoint between the shoulders), ``r_shoulder``, ``r_elbow``,
    ``r_hand`` (subject's right arm, image left), ``l_shoulder``, ``l_elbow``, ``l_hand``.
    """
    sx = fig.center_x + pose.dx
    sy = fig.shoulder_y + pose.dy
    out = {"neck": np.stack([sx, sy], axis=1)}
    for arm, side, a1, a2 in (("r", -1.0, pose.r1, pose.r2), ("l", 1.0, pose.l1, pose.l2)):
        shx = sx + side * fig.shoulder_half
        ex = shx + side * fig.upper_arm * np.cos(a1)
        ey = sy + fig.upper_arm * np.sin(a1)
        hx = ex + side * fig.forearm * np.cos(a2)
        hy = ey + fig.forearm * np.sin(a2)
        out[f"{arm}_shoulder"] = np.stack([shx, sy], axis=1)
        out[f"{arm}_elbow"] = np.stack([ex, ey], axis=1)
        out[f"{arm}_hand"] = np.stack([hx, hy], axis=1)
    return out


_POINT_KEYS = (
    "neck",
    "neck_top",
    "head",
    "r_shoulder",
    "r_elbow",
    "r_hand",
    "l_shoulder",
    "l_elbow",
    "l_hand",
)


class ScenePainter:
    """Draws frames of one :class:`Scene` (the background is rendered once)."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self._bg = np.clip(np.rint(_background(scene)), 0, 255).astype(np.uint8)

    def frame(self, pose: Pose, i: int, t_s: float) -> np.ndarray:
        """The uint8 ``[H, W]`` frame for element ``i`` of ``pose`` at time ``t_s``."""
        sl = slice(i, i + 1)
        one = Pose(pose.r1[sl], pose.r2[sl], pose.l1[sl], pose.l2[sl], pose.dx[sl], pose.dy[sl])
        return self.draw(self.fixed_points(joint_positions(self.scene.figure, one)), 0, t_s)

    def fixed_points(self, joints: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Drawing coordinates (int32, 1/16 pixel) of every frame at once, from :func:`joint_positions`.

        Keys: ``torso`` ``[N, 4, 2]``, ``neck`` / ``neck_top`` / ``head`` and the arm
        joints ``[N, 2]``.
        """
        fig = self.scene.figure
        sx, sy = joints["neck"][:, 0], joints["neck"][:, 1]
        sw, hw, tl = fig.shoulder_half, fig.hip_half, fig.torso_length
        neck_top = sy - fig.neck - 2
        pts = {
            "torso": np.stack(
                [
                    np.stack([sx - sw, sy - 2], axis=1),
                    np.stack([sx + sw, sy - 2], axis=1),
                    np.stack([sx + hw, sy + tl], axis=1),
                    np.stack([sx - hw, sy + tl], axis=1),
                ],
                axis=1,
            ),
            "neck_top": np.stack([sx, neck_top], axis=1),
            "head": np.stack([sx, neck_top - fig.head_radius + 1], axis=1),
        }
        pts.update(joints)
        return {k: np.rint(v * _ONE).astype(np.int32) for k, v in pts.items()}

    def draw(self, pts: dict[str, np.ndarray], i: int, t_s: float) -> np.ndarray:
        """The uint8 ``[H, W]`` frame for row ``i`` of :meth:`fixed_points` output at time ``t_s``."""
        sc = self.scene
        fig = sc.figure
        img = self._bg.copy()
        aa = cv2.LINE_AA
        for c in sc.clutter:
            s = math.sin(TWO_PI * c.freq_hz * t_s + c.phase)
            cx, cy = c.x + c.amp_x * s, c.y + c.amp_y * s
            if c.round:
                cv2.circle(img, _pt(cx, cy), int(c.size * _ONE), c.level, -1, aa, _SHIFT)
            else:
                cv2.rectangle(
                    img, _pt(cx - c.size, cy - c.size), _pt(cx + c.size, cy + c.size), c.level, -1, aa, _SHIFT
                )
        cv2.fillConvexPoly(img, pts["torso"][i], fig.torso_level, aa, _SHIFT)
        p = {k: tuple(pts[k][i].tolist()) for k in _POINT_KEYS}
        cv2.line(
            img, p["neck"], p["neck_top"], fig.head_level, max(2, int(fig.head_radius * 0.6)), aa, _SHIFT
        )
        cv2.circle(img, p["head"], int(fig.head_radius * _ONE), fig.head_level, -1, aa, _SHIFT)
        for arm in ("r", "l"):
            sh, el, ha = p[f"{arm}_shoulder"], p[f"{arm}_elbow"], p[f"{arm}_hand"]
            cv2.line(img, sh, el, fig.upper_level, fig.upper_width, aa, _SHIFT)
            cv2.line(img, el, ha, fig.fore_level, fig.fore_width, aa, _SHIFT)
            cv2.circle(img, ha, int(fig.hand_radius * _ONE), fig.hand_level, -1, aa, _SHIFT)
        if sc.jitter_px > 0:
            f = sc.jitter_freqs_hz
            jx = sc.jitter_px * (math.sin(TWO_PI * f[0] * t_s) + 0.5 * math.sin(TWO_PI * f[1] * t_s + 1.0))
            jy = sc.jitter_px * (math.sin(TWO_PI * f[2] * t_s + 2.0) + 0.5 * math.sin(TWO_PI * f[3] * t_s))
            mat = np.array([[1.0, 0.0, jx], [0.0, 1.0, jy]], dtype=np.float32)
            img = cv2.warpAffine(
                img, mat, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        return img


# --------------------------------------------------------------------------- rendering


class RateController:
    """Thins an event stream to at most a target rate, like a sensor's event-rate controller.

    The natural rate is tracked with an exponential moving average (time
    constant ``time_constant_us``) over the packets passed to :meth:`apply`;
    while it exceeds the target, every event is kept with probability
    ``target / rate``.  Thinning keeps the time order and the spatial pattern
    (a less sensitive sensor) and never adds events.  Because the target is
    drawn independently of the gesture, the output rate carries little class
    information.

    Parameters
    ----------
    seed : int or numpy Generator
        Seeds the random thinning.
    time_constant_us : int
        Averaging time of the rate estimate, microseconds.
    """

    def __init__(self, seed: int | np.random.Generator = 0, *, time_constant_us: int = 150_000) -> None:
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.time_constant_us = int(time_constant_us)
        self.rate_hz: float | None = None  # estimate of the natural rate, events / s

    def apply(self, events: np.ndarray, dt_us: int, target_hz: float) -> np.ndarray:
        """Thin one packet covering ``dt_us`` microseconds; ``target_hz <= 0`` keeps everything."""
        if dt_us <= 0:
            return events
        inst_hz = len(events) * 1e6 / dt_us
        if self.rate_hz is None:
            self.rate_hz = inst_hz
        else:
            self.rate_hz += min(1.0, dt_us / self.time_constant_us) * (inst_hz - self.rate_hz)
        if target_hz <= 0 or len(events) == 0 or self.rate_hz <= target_hz:
            return events
        return events[self._rng.random(len(events)) < target_hz / self.rate_hz]


@dataclass
class _Timeline:
    """Gesture segments of a performance: ``(motion, start_s, end_s, target_rate_hz)``, in time order.

    ``rest_rate_hz`` is the rate target outside the segments.
    """

    items: list[tuple[Motion, float, float, float]] = field(default_factory=list)
    ramp_s: float = 0.25
    rest_rate_hz: float = 0.0

    def pose(self, scene: Scene, t_s: np.ndarray) -> Pose:
        """Pose at times ``t_s`` (rest outside segments, ramps at their ends)."""
        base = pose_at(scene, None, t_s)
        out = {k: getattr(base, k).copy() for k in ("r1", "r2", "l1", "l2", "dx", "dy")}
        for motion, start, end, _ in self.items:
            sel = np.flatnonzero((t_s >= start) & (t_s < end))
            if len(sel) == 0:
                continue
            ts = t_s[sel]
            ramp = min(self.ramp_s, (end - start) / 2)
            w = np.clip(np.minimum(ts - start, end - ts) / ramp, 0.0, 1.0)
            w = 0.5 - 0.5 * np.cos(math.pi * w)
            p = pose_at(scene, motion, ts, weight=w, motion_t0_s=start)
            for k in out:
                out[k][sel] = getattr(p, k)
        return Pose(**out)

    def target_rate(self, t_s: np.ndarray) -> np.ndarray:
        """Rate target (events / s) at times ``t_s``."""
        out = np.full(len(t_s), self.rest_rate_hz)
        for _, start, end, rate in self.items:
            out[(t_s >= start) & (t_s < end)] = rate
        return out


class _Renderer:
    """Scene painter + emulator (+ rate controller): turns poses at frame times into events."""

    def __init__(self, scene: Scene, seed: int, *, equalise: bool = True) -> None:
        self.scene = scene
        self.painter = ScenePainter(scene)
        w, h = scene.sensor_size.width, scene.sensor_size.height
        self.emulator = DvsEmulator.from_config(w, h, scene.emulator, seed=seed)
        self.controller = RateController(seed + 1) if equalise else None

    def run(
        self, pose: Pose, frame_times_us: np.ndarray, target_rate_hz: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """Events of the frames at ``frame_times_us`` (``pose`` rows match the frames)."""
        chunks = []
        pts = self.painter.fixed_points(joint_positions(self.scene.figure, pose))
        targets = np.broadcast_to(np.asarray(target_rate_hz, dtype=np.float64), (len(frame_times_us),))
        for i, t_us in enumerate(frame_times_us):
            t_prev = self.emulator.t_us
            frame = self.painter.draw(pts, i, t_us * 1e-6)
            ev = self.emulator.step(frame, int(t_us))
            if self.controller is not None and t_prev is not None:
                ev = self.controller.apply(ev, int(t_us) - t_prev, float(targets[i]))
            if len(ev):
                chunks.append(ev)
        return concat(chunks) if chunks else empty_events()


def _frame_times(t0_us: int, t1_us: int, frame_step_us: int) -> np.ndarray:
    if frame_step_us <= 0:
        raise ConfigError(f"frame_step_us must be positive, got {frame_step_us}")
    return np.arange(t0_us, t1_us + frame_step_us, frame_step_us, dtype=np.int64)


def render_gesture(
    class_id: int,
    seed: int,
    *,
    duration_us: int = 1_500_000,
    sensor_size: SensorSize | tuple = SensorSize(128, 128),
    frame_step_us: int = 2_000,
    equalise: bool = True,
) -> np.ndarray:
    """One clip of gesture ``class_id`` (0-based), fully determined by ``seed``.

    Parameters
    ----------
    class_id : int
        Index into :data:`dvsapp.core.gestures.GESTURE_CLASSES`.
    seed : int
        Draws the scene, the performance style and the sensor noise.
    duration_us : int
        Clip length in microseconds.
    sensor_size : SensorSize or (W, H)
        Output resolution; the figure scales with ``min(W, H)``.
    frame_step_us : int
        Interval between rendered frames (events are interpolated in between).
    equalise : bool
        Thin the clip to its scene's class-independent target rate
        (:class:`RateController`).

    Returns
    -------
    ndarray of EVENT_DTYPE
        Sorted events, ``0 <= t < duration_us``, coordinates inside the sensor.
    """
    if duration_us <= 0:
        raise ConfigError(f"duration_us must be positive, got {duration_us}")
    rng = np.random.default_rng([int(seed), int(class_id), 0x5EED])
    scene = random_scene(rng, sensor_size)
    motion = random_motion(class_id, rng)
    # start somewhere inside the performance, as when cutting clips from a recording
    t_offset_s = rng.uniform(0, 2.0)
    times = _frame_times(0, int(duration_us), int(frame_step_us))
    pose = pose_at(scene, motion, times * 1e-6 + t_offset_s)
    renderer = _Renderer(scene, seed=int(rng.integers(2**31)), equalise=equalise)
    events = renderer.run(pose, times, scene.target_rate_hz)
    return events[events["t"] < duration_us]


def _class_order(rng: np.random.Generator, n: int) -> list[int]:
    """``n`` classes: shuffled rounds of all classes, so every class comes once per round."""
    order: list[int] = []
    while len(order) < n:
        order.extend(int(c) for c in rng.permutation(N_CLASSES))
    return order[:n]


def make_sequence(
    seed: int,
    n_gestures: int,
    *,
    sensor_size: SensorSize | tuple = SensorSize(128, 128),
    gesture_us: tuple[int, int] = (1_400_000, 2_200_000),
    gap_us: tuple[int, int] = (300_000, 600_000),
    frame_step_us: int = 2_000,
    classes: list[int] | None = None,
    equalise: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, list[Segment]]:
    """A recording of ``n_gestures`` gestures by one figure, with pauses, and its labels.

    The figure rests during a pause before each gesture and after the last; each
    gesture lasts a random time in ``gesture_us`` and pauses a random time in
    ``gap_us``.  Classes come in shuffled rounds of all 11 (so ``n_gestures >= 11``
    shows every class), unless ``classes`` gives the order.  With ``equalise``
    each gesture gets its own class-independent event-rate target
    (:class:`RateController`).  ``progress(done_frames, total_frames)`` is
    called as rendering goes.

    Returns
    -------
    events : ndarray of EVENT_DTYPE
        Sorted, ``t`` from 0.
    segments : list of core.labels.Segment
        One per gesture, 0-based class ids, ``[start_us, end_us)``.
    """
    if n_gestures < 1:
        raise ConfigError(f"n_gestures must be at least 1, got {n_gestures}")
    rng = np.random.default_rng([int(seed), 0x5E0])
    scene = random_scene(rng, sensor_size)
    order = classes if classes is not None else _class_order(rng, n_gestures)
    if len(order) != n_gestures or any(not 0 <= int(c) < N_CLASSES for c in order):
        raise ConfigError(f"classes must be {n_gestures} ids in 0..{N_CLASSES - 1}")
    timeline = _Timeline(rest_rate_hz=scene.target_rate_hz)
    segments = []
    t_us = int(rng.integers(*gap_us))
    for c in order:
        dur = int(rng.integers(*gesture_us))
        target = _draw_target_rate(rng, scene.sensor_size)
        timeline.items.append((random_motion(int(c), rng), t_us * 1e-6, (t_us + dur) * 1e-6, target))
        segments.append(Segment(int(c), t_us, t_us + dur))
        t_us += dur + int(rng.integers(*gap_us))
    end_us = t_us
    renderer = _Renderer(scene, seed=int(rng.integers(2**31)), equalise=equalise)
    times = _frame_times(0, end_us, frame_step_us)
    chunks = []
    block = 250  # frames per block: bounded memory for the pose arrays, progress updates
    for b0 in range(0, len(times), block):
        tb = times[b0 : b0 + block]
        chunks.append(renderer.run(timeline.pose(scene, tb * 1e-6), tb, timeline.target_rate(tb * 1e-6)))
        if progress is not None:
            progress(min(b0 + block, len(times)), len(times))
    events = concat(chunks)
    return events[events["t"] < end_us], segments


class GestureStream:
    """An endless synthetic scene: one figure performing random gestures with pauses.

    Iterating yields ``(events, until_us, class_id)``: the events with
    ``previous until_us <= t < until_us`` (sorted; may be empty), the time up to
    which the stream is complete, and the gesture being performed at
    ``until_us`` (0-based, or :data:`REST` = -1 during a pause).  ``until_us``
    advances by ``chunk_us`` each time, starting at ``chunk_us``.

    The stream is deterministic for a seed and costs about one frame render
    plus one emulator step per ``frame_step_us`` of scene time.
    """

    def __init__(
        self,
        seed: int = 0,
        sensor_size: SensorSize | tuple = SensorSize(128, 128),
        chunk_us: int = 10_000,
        *,
        gesture_us: tuple[int, int] = (1_500_000, 3_000_000),
        gap_us: tuple[int, int] = (300_000, 800_000),
        frame_step_us: int = 2_000,
        equalise: bool = True,
    ) -> None:
        if chunk_us <= 0:
            raise ConfigError(f"chunk_us must be positive, got {chunk_us}")
        if frame_step_us <= 0:
            raise ConfigError(f"frame_step_us must be positive, got {frame_step_us}")
        self.sensor_size = SensorSize(int(sensor_size[0]), int(sensor_size[1]))
        self.chunk_us = int(chunk_us)
        self.frame_step_us = int(frame_step_us)
        self._gesture_us = gesture_us
        self._gap_us = gap_us
        self._rng = np.random.default_rng([int(seed), 0x57E])
        self.scene = random_scene(self._rng, self.sensor_size)
        self._renderer = _Renderer(self.scene, seed=int(self._rng.integers(2**31)), equalise=equalise)
        self._timeline = _Timeline(rest_rate_hz=self.scene.target_rate_hz)
        self._segments: list[Segment] = []
        self._planned_until_us = 0
        self._next_frame_us = 0
        self._until_us = 0
        self._pending = empty_events()
        self._order: list[int] = []

    @property
    def segments(self) -> list[Segment]:
        """The gestures planned so far (0-based classes, scene time)."""
        return list(self._segments)

    def class_at(self, t_us: int) -> int:
        """The gesture performed at ``t_us`` (or :data:`REST`)."""
        for seg in reversed(self._segments):
            if seg.start_us <= t_us < seg.end_us:
                return seg.class_id
            if seg.end_us <= t_us:
                break
        return REST

    def _plan(self, until_us: int) -> None:
        while self._planned_until_us <= until_us:
            if not self._order:
                self._order = [int(c) for c in self._rng.permutation(N_CLASSES)]
            c = self._order.pop()
            start = self._planned_until_us + int(self._rng.integers(*self._gap_us))
            dur = int(self._rng.integers(*self._gesture_us))
            target = _draw_target_rate(self._rng, self.sensor_size)
            motion = random_motion(c, self._rng)
            self._timeline.items.append((motion, start * 1e-6, (start + dur) * 1e-6, target))
            self._segments.append(Segment(c, start, start + dur))
            self._planned_until_us = start + dur
            # keep only segments that can still matter for rendering
            if len(self._timeline.items) > 4:
                self._timeline.items = self._timeline.items[-4:]

    def __iter__(self) -> Iterator[tuple[np.ndarray, int, int]]:
        return self

    def __next__(self) -> tuple[np.ndarray, int, int]:
        until = self._until_us + self.chunk_us
        # events of the frame at time T lie in (T - step, T]: render frames through `until`
        last_frame = until + (-until) % self.frame_step_us
        self._plan(last_frame)
        times = np.arange(self._next_frame_us, last_frame + 1, self.frame_step_us, dtype=np.int64)
        if len(times):
            t_s = times * 1e-6
            fresh = self._renderer.run(
                self._timeline.pose(self.scene, t_s), times, self._timeline.target_rate(t_s)
            )
            self._pending = concat([self._pending, fresh])
            self._next_frame_us = int(times[-1]) + self.frame_step_us
        split = int(np.searchsorted(self._pending["t"], until, side="left"))
        out, self._pending = self._pending[:split], self._pending[split:]
        self._until_us = until
        if len(self._segments) > 64:
            self._segments = self._segments[-64:]
        return out, until, self.class_at(until - 1)


# --------------------------------------------------------------------------- files


def write_gesture_sequence(
    out: str | os.PathLike,
    n_gestures: int,
    *,
    seed: int = 0,
    sensor_size: SensorSize | tuple = SensorSize(128, 128),
    force: bool = False,
    labels: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, list[Segment]]:
    """Render :func:`make_sequence` into an event file (format from the extension).

    With ``labels`` the segments go to ``<stem>_labels.csv`` beside ``out``
    (DVS Gesture format) and, for HDF5 outputs, also into the file's
    ``/labels`` (0-based rows, see :mod:`dvsapp.core.io.hdf5`).  Returns ``(n_events, segments)``.
    """
    from dvsapp.core.errors import OutputExistsError
    from dvsapp.core.io import write_events
    from dvsapp.core.labels import labels_path_for, write_labels_csv

    out = Path(out)
    sensor = SensorSize(int(sensor_size[0]), int(sensor_size[1]))
    csv_path = labels_path_for(out)
    if labels and csv_path.exists() and not force:
        raise OutputExistsError(path=csv_path)
    if out.exists() and not force:
        raise OutputExistsError(path=out)
    events, segments = make_sequence(seed, n_gestures, sensor_size=sensor, progress=progress)
    metadata: dict = {"camera": "dvsapp-synthetic", "source": f"dvsapp synthetic gestures, seed {seed}"}
    if labels and out.suffix.lower() in (".h5", ".hdf5"):
        metadata.update(labels=segments, class_names=list(GESTURE_CLASSES))
    write_events(out, events, sensor, force=force, metadata=metadata)
    if labels:
        write_labels_csv(csv_path, segments)
    return len(events), segments
