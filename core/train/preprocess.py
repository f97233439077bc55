"""Legacy preprocessing: superseded by :mod:`dvsapp.core.recipe` (``InputRecipe``).

What remains here: :func:`bin_counts` (uint8 counts through the recipe's counting
kernel) and ``Preprocess``, kept only until its last caller moves to the recipe.
The description below is of the pre-recipe checkpoints' ``"preprocess"`` entry,
which :func:`dvsapp.core.recipe.recipe_from_metadata` maps onto a recipe.


Events from the sensor (``sensor_size``) are brought to the model's input size
(``input_size``), then counted per pixel and polarity in consecutive timesteps
of ``step_us`` microseconds.  ``n_steps`` timesteps make one model window.  The
same numbers are stored in every checkpoint's metadata (:meth:`Preprocess.to_metadata`),
so the streaming classifier reproduces exactly what the model was trained on.

Spatial rule: when the sensor is an integer multiple ``f`` of the input size on
both axes, an event at ``(x, y)`` lands on ``(x // f, y // f)`` (a box
downsample that sums counts).  Any other geometry goes through
:class:`dvsapp.core.filters.SpatialAdapter` (crop or pad, then downsample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dvsapp.core.errors import ConfigError
from dvsapp.core.events import EVENT_DTYPE, SensorSize

#: metadata keys written into checkpoints (values are JSON-able)
META_KEYS = ("sensor_size", "input_size", "step_us", "n_steps", "spatial_mode")


def integer_factor(sensor_size: SensorSize, input_size: SensorSize) -> int | None:
    """The common integer downsample factor of ``sensor_size`` onto ``input_size``, or ``None``."""
    w, h = int(sensor_size[0]), int(sensor_size[1])
    iw, ih = int(input_size[0]), int(input_size[1])
    if w % iw or h % ih or w // iw != h // ih:
        return None
    return w // iw


def downsample_events(events: np.ndarray, factor: int) -> np.ndarray:
    """Events with ``x // factor``, ``y // factor`` (a new array; input untouched)."""
    if factor == 1:
        return events
    out = events.copy()
    out["x"] //= factor
    out["y"] //= factor
    return out


def bin_counts(events: np.ndarray, size: SensorSize, *, t0_us: int, step_us: int, n_bins: int) -> np.ndarray:
    """Count events into ``n_bins`` consecutive bins of ``step_us``, starting at ``t0_us``.

    Bin ``k`` holds events with ``t0_us + k*step_us <= t < t0_us + (k+1)*step_us``;
    events outside ``[t0_us, t0_us + n_bins*step_us)`` are ignored.  Polarity
    channel 0 is OFF (``p=False``), channel 1 is ON; with ``size.polarities == 1``
    both polarities share one channel.  This is :meth:`dvsapp.core.recipe.InputRecipe.count`
    (the pipeline's counting kernel) with the default clip.

    Returns
    -------
    np.ndarray
        ``[n_bins, P, H, W]`` uint8 counts (saturating at 255).
    """
    from dvsapp.core.recipe import InputRecipe

    w, h, n_pol = int(size[0]), int(size[1]), int(size[2])
    if n_bins <= 0:
        return np.zeros((0, n_pol, h, w), dtype=np.uint8)
    recipe = InputRecipe(SensorSize(w, h, n_pol), int(step_us), int(n_bins))
    return recipe.count(events, t0_us=t0_us, n_steps=n_bins, dtype=np.uint8)


@dataclass(frozen=True)
class Preprocess:
    """Sensor events -> model frames.

    Attributes
    ----------
    sensor_size : geometry of the incoming events
    input_size : the model's input geometry ``(W, H, P)``
    step_us : one timestep, microseconds
    n_steps : timesteps per model window (``T``)
    spatial_mode : ``"crop"`` or ``"pad"`` when the sizes are no integer multiple
    """

    sensor_size: SensorSize
    input_size: SensorSize
    step_us: int
    n_steps: int
    spatial_mode: str = "pad"

    def __post_init__(self) -> None:
        if self.step_us <= 0 or self.n_steps <= 0:
            raise ConfigError(f"step_us ({self.step_us}) and n_steps ({self.n_steps}) must be positive")
        object.__setattr__(self, "sensor_size", SensorSize(*self.sensor_size))
        object.__setattr__(self, "input_size", SensorSize(*self.input_size))

    @property
    def window_us(self) -> int:
        """Duration of one model window (``n_steps * step_us``), microseconds."""
        return self.step_us * self.n_steps

    def adapt(self, events: np.ndarray) -> np.ndarray:
        """Map sensor events onto the input geometry (see the module docstring)."""
        factor = integer_factor(self.sensor_size, self.input_size)
        if factor is not None:
            return downsample_events(events, factor)
        from dvsapp.core.filters import SpatialAdapter  # only needed for odd geometries

        adapter = SpatialAdapter(self.sensor_size, self.input_size, mode=self.spatial_mode)
        return adapter(events)

    def frames(self, events: np.ndarray, *, t0_us: int, n_bins: int) -> np.ndarray:
        """``[n_bins, P, H, W]`` uint8 counts of sensor events from ``t0_us`` on (adapted first)."""
        ev = self.adapt(events) if len(events) else np.zeros(0, dtype=EVENT_DTYPE)
        return bin_counts(ev, self.input_size, t0_us=t0_us, step_us=self.step_us, n_bins=n_bins)

    def to_metadata(self) -> dict:
        """JSON-able description stored in checkpoints."""
        return {
            "sensor_size": list(self.sensor_size),
            "input_size": list(self.input_size),
            "step_us": int(self.step_us),
            "n_steps": int(self.n_steps),
            "spatial_mode": self.spatial_mode,
        }

    @classmethod
    def from_metadata(cls, meta: dict, *, sensor_size: SensorSize | None = None) -> Preprocess:
        """Rebuild from :meth:`to_metadata` output; ``sensor_size`` overrides the stored one."""
        try:
            return cls(
                sensor_size=SensorSize(*(sensor_size or meta["sensor_size"])),
                input_size=SensorSize(*meta["input_size"]),
                step_us=int(meta["step_us"]),
                n_steps=int(meta["n_steps"]),
                spatial_mode=str(meta.get("spatial_mode", "pad")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"preprocessing metadata is incomplete or malformed ({exc})") from None
