"""The input recipe: how sensor events become model input, whatever the sensor.

One frozen :class:`InputRecipe` describes everything between a sensor's events and
the tensor a model receives.  It is saved in every checkpoint (metadata key
``"recipe"``) and it is the only thing training, evaluation, ``dvsapp classify``
(file and live), the GUI, label predictions and the video export use to prepare
input, so a model always runs on the input it was trained on.

The recipe, in order
--------------------
1. **Filters** (``filters``, may be empty): event filters of
   :mod:`dvsapp.core.filters` by name and parameters, applied on the sensor's own
   pixels, in order.  Names: ``denoise``, ``refractory``, ``hot_pixel``.
2. **Spatial mapping** onto the model input ``input_size = (W, H, P)``, the one
   rule :data:`SPATIAL_RULE` (``"crop"``) used everywhere:

   * a sensor that is an exact integer multiple ``f`` of the input on both axes is
     box-downsampled: ``(x, y) -> (x // f, y // f)`` (``f = 1``: unchanged);
   * any other sensor is scaled to *fill* the input keeping its aspect ratio, and
     the overhanging sides are cropped (centred):
     :class:`dvsapp.core.filters.SpatialAdapter` with ``mode="crop"``, i.e.
     ``s = max(W / w, H / h)``, ``x_out = floor((x + 1/2) * s + (W - w * s) / 2)``,
     events outside the input are dropped.  For an integer multiple this is
     exactly the box downsample above.
3. **Counting**: events per pixel and polarity in consecutive timesteps of
   ``step_us`` on the grid of multiples of ``step_us`` (a window starts at the first
   event's time floored to ``step_us``).  ``P = 2``: channel 0 is OFF (``p=False``),
   channel 1 is ON; ``P = 1``: both polarities count in channel 0.  The counting
   kernel is :data:`dvsapp.core.binning.FRAME_MODES` ``["counts"]``, the one the
   streaming binner uses.
4. **Encoding**: counts clipped at ``clip`` (1..255; 255 by default, so that a
   dataset stores them exactly as ``uint8``); the model always receives
   ``float32`` of the clipped counts.  ``timesteps`` (``T``) steps make one window.

Streams use :meth:`InputRecipe.stream` (filters carried across packets, a
:class:`~dvsapp.core.binning.StreamBinner`, encoding); whole recordings use
:meth:`InputRecipe.frames`.  Both give identical values for identical events
(``tests/test_recipe.py`` checks a recording through the training dataset path and
through the live pipeline).

Checkpoints written before the recipe existed hold a ``"preprocess"`` entry
instead; :func:`recipe_from_metadata` maps it explicitly (see there) and refuses a
checkpoint with neither.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dvsapp.core.errors import CheckpointError, ConfigError, DvsAppError, EventDataError
from dvsapp.core.events import EVENT_DTYPE, Packet, SensorSize, Window, as_events

__all__ = [
    "COUNT_CLIP_MAX",
    "FILTERS",
    "RECIPE_KEY",
    "RECIPE_VERSION",
    "SPATIAL_RULE",
    "FilterSpec",
    "InputRecipe",
    "InputStream",
    "load_with_recipe",
    "recipe_from_metadata",
]

RECIPE_KEY = "recipe"
"""Checkpoint metadata key holding :meth:`InputRecipe.to_dict`."""

RECIPE_VERSION = 1
SPATIAL_RULE = "crop"
"""The spatial mapping rule (see the module docstring); the only one there is."""

COUNT_CLIP_MAX = 255
"""Largest allowed ``clip``: datasets store clipped counts as ``uint8``."""

_BIN_CHUNK_STEPS = 256
"""Timesteps counted at a time by :meth:`InputRecipe.frames` (bounds the float32 temporaries)."""


def _filter_classes() -> dict[str, type]:
    from dvsapp.core.filters import Denoise, HotPixel, Refractory

    return {"denoise": Denoise, "refractory": Refractory, "hot_pixel": HotPixel}


FILTERS = ("denoise", "refractory", "hot_pixel")
"""Filter names a recipe may hold (classes of :mod:`dvsapp.core.filters`)."""


@dataclass(frozen=True)
class FilterSpec:
    """One event filter of a recipe: its name (:data:`FILTERS`) and parameters (JSON scalars).

    ``FilterSpec("denoise", {"filter_time_us": 5000})``; :meth:`build` makes the filter.
    """

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    def __init__(self, name: str, params: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        items = dict(params.items() if isinstance(params, Mapping) else params)
        for key, value in items.items():
            if not isinstance(value, (bool, int, float, str)):
                raise ConfigError(f"filter {name!r} parameter {key}={value!r} is not a JSON scalar")
        object.__setattr__(self, "name", str(name))
        object.__setattr__(self, "params", tuple(sorted(items.items())))
        self.build()  # validates the name and the parameters now

    @classmethod
    def of(cls, filt) -> FilterSpec:
        """The spec of a filter object of :mod:`dvsapp.core.filters` (one of :data:`FILTERS`)."""
        for name, klass in _filter_classes().items():
            if type(filt) is klass:
                return cls(name, {f.name: getattr(filt, f.name) for f in dataclasses.fields(filt) if f.init})
        raise ConfigError(
            f"{type(filt).__name__} cannot be part of an input recipe (one of {', '.join(FILTERS)})"
        )

    def build(self):
        """The filter object (a frozen dataclass with ``__call__`` and ``stream()``)."""
        classes = _filter_classes()
        if self.name not in classes:
            raise ConfigError(
                f"unknown filter {self.name!r} in the input recipe (one of {', '.join(FILTERS)})"
            )
        try:
            return classes[self.name](**dict(self.params))
        except TypeError as exc:
            raise ConfigError(f"filter {self.name!r}: bad parameters ({exc})") from None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}


@dataclass(frozen=True)
class InputRecipe:
    """How sensor events become model input (see the module docstring for the rule).

    Attributes
    ----------
    input_size : SensorSize
        The model input ``(W, H, P)``; ``P`` (polarity channels) is 1 or 2.
    step_us : int
        One timestep, microseconds.
    timesteps : int
        ``T``, timesteps per model window.
    clip : int
        Counts per pixel, polarity and timestep are clipped at this (1..255).
    filters : tuple of FilterSpec
        Event filters on the sensor's pixels, in order (may be empty).
    spatial : str
        The spatial rule, :data:`SPATIAL_RULE` (recorded so a reader of the JSON knows).
    encoding : str
        ``"counts"``: the model receives float32 of the clipped counts.
    """

    input_size: SensorSize
    step_us: int
    timesteps: int
    clip: int = COUNT_CLIP_MAX
    filters: tuple[FilterSpec, ...] = ()
    spatial: str = SPATIAL_RULE
    encoding: str = "counts"
    version: int = field(default=RECIPE_VERSION)

    def __post_init__(self) -> None:
        try:
            size = SensorSize(*(int(v) for v in self.input_size))
        except (TypeError, ValueError):
            raise ConfigError(
                f"recipe input size {self.input_size!r} is not (width, height, polarities)"
            ) from None
        if size.width <= 0 or size.height <= 0 or size.polarities not in (1, 2):
            raise ConfigError(
                f"recipe input size {tuple(size)} needs width, height > 0 and 1 or 2 polarities"
            )
        object.__setattr__(self, "input_size", size)
        for name in ("step_us", "timesteps", "clip", "version"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or int(value) <= 0:
                raise ConfigError(f"recipe {name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.clip > COUNT_CLIP_MAX:
            raise ConfigError(
                f"recipe clip {self.clip} is above {COUNT_CLIP_MAX} (counts are stored as uint8)"
            )
        if self.version != RECIPE_VERSION:
            raise ConfigError(
                f"recipe version {self.version} is not {RECIPE_VERSION} (written by a newer dvsapp?)"
            )
        if self.spatial != SPATIAL_RULE:
            raise ConfigError(f"recipe spatial rule {self.spatial!r} is not {SPATIAL_RULE!r} (the only rule)")
        if self.encoding != "counts":
            raise ConfigError(f"recipe encoding {self.encoding!r} is not 'counts'")
        specs = tuple(
            f if isinstance(f, FilterSpec) else FilterSpec(f["name"], f.get("params", {}))
            for f in self.filters
        )
        object.__setattr__(self, "filters", specs)

    # ---------------------------------------------------------------- construction
    @classmethod
    def for_model_config(cls, config, **changes) -> InputRecipe:
        """The default recipe of a :class:`~dvsapp.core.model.ModelConfig`: its input size, step and ``T``.

        ``changes`` override fields (``clip``, ``filters``...).
        """
        h, w = config.input_hw
        base = {
            "input_size": SensorSize(int(w), int(h), int(config.in_channels)),
            "step_us": int(config.step_us),
            "timesteps": int(config.timesteps),
        }
        base.update(changes)
        return cls(**base)

    def replace(self, **changes) -> InputRecipe:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what checkpoints store under :data:`RECIPE_KEY`)."""
        return {
            "version": self.version,
            "input_size": list(self.input_size),
            "step_us": self.step_us,
            "timesteps": self.timesteps,
            "clip": self.clip,
            "encoding": self.encoding,
            "spatial": self.spatial,
            "filters": [f.to_dict() for f in self.filters],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputRecipe:
        """Rebuild from :meth:`to_dict`; raises :class:`ConfigError` naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"the input recipe is not a JSON object ({type(data).__name__})")
        known = {"version", "input_size", "step_us", "timesteps", "clip", "encoding", "spatial", "filters"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"the input recipe has unknown fields: {', '.join(unknown)}")
        missing = [k for k in ("input_size", "step_us", "timesteps") if k not in data]
        if missing:
            raise ConfigError(f"the input recipe lacks {', '.join(missing)}")
        filters = data.get("filters", [])
        if not isinstance(filters, list) or not all(isinstance(f, Mapping) and "name" in f for f in filters):
            raise ConfigError("the input recipe's filters are not a list of {name, params}")
        try:
            return cls(
                input_size=SensorSize(*data["input_size"]),
                step_us=data["step_us"],
                timesteps=data["timesteps"],
                clip=data.get("clip", COUNT_CLIP_MAX),
                filters=tuple(FilterSpec(f["name"], f.get("params", {})) for f in filters),
                spatial=data.get("spatial", SPATIAL_RULE),
                encoding=data.get("encoding", "counts"),
                version=data.get("version", RECIPE_VERSION),
            )
        except TypeError as exc:
            raise ConfigError(f"the input recipe is malformed ({exc})") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> InputRecipe:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"the input recipe is not JSON ({exc.msg})") from None
        return cls.from_dict(data)

    # ------------------------------------------------------------------ checks
    @property
    def window_us(self) -> int:
        """One model window, ``timesteps * step_us`` (µs)."""
        return self.step_us * self.timesteps

    def check_model(self, config, *, path=None) -> None:
        """Raise :class:`CheckpointError` when a model config cannot take this recipe's input."""
        h, w = config.input_hw
        want = (int(w), int(h), int(config.in_channels))
        if tuple(self.input_size) != want:
            raise CheckpointError(
                f"the input recipe makes {tuple(self.input_size)} input, the model takes {want} (W, H, P)",
                path=path,
            )

    # ------------------------------------------------------------- the stages
    def spatial_map(self, sensor_size: SensorSize | Sequence[int]):
        """The spatial mapping filter from ``sensor_size`` onto the input, or ``None`` when it is the identity."""
        sensor = SensorSize(*sensor_size)
        if (sensor.width, sensor.height) == (self.input_size.width, self.input_size.height):
            return None
        from dvsapp.core.filters import SpatialAdapter

        return SpatialAdapter(sensor, self.input_size, mode=SPATIAL_RULE)

    def event_filters(self, sensor_size: SensorSize | Sequence[int]) -> list:
        """The filter objects, in order: the recipe's filters, then the spatial map (when needed)."""
        chain = [spec.build() for spec in self.filters]
        spatial = self.spatial_map(sensor_size)
        if spatial is not None:
            chain.append(spatial)
        return chain

    def adapt(self, events: np.ndarray, sensor_size: SensorSize | Sequence[int]) -> np.ndarray:
        """Sensor events -> events on the model input's pixels (filters, then the spatial map); input untouched."""
        ev = as_events(events)
        for f in self.event_filters(sensor_size):
            ev = f(ev)
        return ev

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """Counts -> what the model receives: float32, clipped at ``clip`` (a new array)."""
        return np.minimum(np.asarray(frames, dtype=np.float32), np.float32(self.clip))

    def count(self, events: np.ndarray, *, t0_us: int, n_steps: int, dtype=np.float32) -> np.ndarray:
        """Encoded frames ``[n_steps, P, H, W]`` of events already on the input's pixels.

        Step ``k`` holds events with ``t0_us + k*step_us <= t < t0_us + (k+1)*step_us``;
        events outside ``[t0_us, t0_us + n_steps*step_us)`` are ignored.  ``dtype``
        ``np.uint8`` stores the same clipped counts in a quarter of the memory
        (datasets); the model receives them as float32.
        """
        from dvsapp.core.binning import FRAME_MODES

        counts = FRAME_MODES["counts"]
        size = self.input_size
        _check_on_input(events, size)
        out = np.empty((max(0, n_steps), size.polarities, size.height, size.width), dtype=dtype)
        ev = as_events(events)
        t = ev["t"]
        for k0 in range(0, n_steps, _BIN_CHUNK_STEPS):
            k1 = min(n_steps, k0 + _BIN_CHUNK_STEPS)
            start = int(t0_us) + k0 * self.step_us
            i0, i1 = np.searchsorted(t, [start, start + (k1 - k0) * self.step_us])
            part = counts(ev[i0:i1], size, start, self.step_us, k1 - k0)
            np.minimum(part, np.float32(self.clip), out=part)
            out[k0:k1] = part
        return out

    def frames(
        self, events: np.ndarray, sensor_size: SensorSize | Sequence[int], *, t0_us: int, n_steps: int
    ) -> np.ndarray:
        """Sensor events -> model input ``[n_steps, P, H, W]`` float32 from ``t0_us`` on (the whole-recording path)."""
        ev = self.adapt(events, sensor_size) if len(events) else np.zeros(0, dtype=EVENT_DTYPE)
        return self.count(ev, t0_us=t0_us, n_steps=n_steps)

    def first_step_us(self, events: np.ndarray, sensor_size: SensorSize | Sequence[int]) -> int | None:
        """Start of the first timestep a stream of these events opens: its first *adapted* event floored to ``step_us``."""
        ev = self.adapt(events, sensor_size)
        return None if len(ev) == 0 else int(ev["t"][0]) // self.step_us * self.step_us

    def stream(
        self,
        sensor_size: SensorSize | Sequence[int],
        *,
        steps_per_window: int | None = None,
        max_empty_windows: int | None = 1000,
    ) -> InputStream:
        """A live :class:`InputStream` from ``sensor_size``: packets in, encoded windows out."""
        return InputStream(
            self, sensor_size, steps_per_window=steps_per_window, max_empty_windows=max_empty_windows
        )


def _check_on_input(events: np.ndarray, size: SensorSize) -> None:
    """Raise :class:`EventDataError` when an event lies outside the input (the counting kernel trusts it)."""
    if len(events) == 0:
        return
    for name, limit in (("x", size.width), ("y", size.height)):
        col = events[name]
        if int(col.min()) < 0 or int(col.max()) >= limit:
            i = int(np.flatnonzero((col < 0) | (col >= limit))[0])
            raise EventDataError(f"event {i} has {name}={int(col[i])} outside the {size} model input")


class InputStream:
    """A recipe applied to a stream: filters (state carried), spatial map, :class:`~dvsapp.core.binning.StreamBinner`, encoding.

    ``push(packet)`` returns the windows the packet completes, ``frames`` encoded as
    :meth:`InputRecipe.encode`.  For any split of a recording into packets the
    windows' frames equal :meth:`InputRecipe.frames` on the whole recording (from the
    binner's ``t0_us``).  Not thread-safe: one producer pushes.
    """

    def __init__(
        self,
        recipe: InputRecipe,
        sensor_size: SensorSize | Sequence[int],
        *,
        steps_per_window: int | None = None,
        max_empty_windows: int | None = 1000,
    ) -> None:
        from dvsapp.core.binning import StreamBinner

        self.recipe = recipe
        self.sensor_size = SensorSize(*sensor_size)
        self.steps_per_window = int(steps_per_window or recipe.timesteps)
        if self.steps_per_window < 1:
            raise ConfigError(f"steps_per_window {self.steps_per_window} must be at least 1")
        self._filters = [f.stream() for f in recipe.event_filters(self.sensor_size)]
        self.binner = StreamBinner(
            recipe.input_size,
            recipe.step_us,
            self.steps_per_window,
            mode="counts",
            max_empty_windows=max_empty_windows,
        )

    def _encode(self, windows: list[Window]) -> list[Window]:
        clip = np.float32(self.recipe.clip)
        for w in windows:
            np.minimum(w.frames, clip, out=w.frames)  # the binner's fresh float32 arrays
        return windows

    def push(self, packet: Packet, *, arrival_s: float | None = None) -> list[Window]:
        """Add a packet of sensor events; return the windows it completes (encoded), oldest first."""
        events = packet.events
        for f in self._filters:
            events = f.push(events)
        return self._encode(self.binner.push(Packet(events, packet.until_us), arrival_s=arrival_s))

    def flush(self, *, arrival_s: float | None = None) -> list[Window]:
        """The open window (zero-padded) if it holds events."""
        return self._encode(self.binner.flush(arrival_s=arrival_s))


# ------------------------------------------------------------------ checkpoints
def _legacy_recipe(pre: Mapping[str, Any], path) -> InputRecipe:
    """Map a pre-recipe checkpoint's ``"preprocess"`` entry onto a recipe, or refuse.

    Those checkpoints were trained on uint8 counts clipped at 255, with no filter,
    from ``sensor_size`` mapped with ``spatial_mode``.  That is this recipe exactly
    when the sensor was an integer multiple of the input (both modes are then the
    box downsample) or the mode was ``"crop"``; a model trained with ``"pad"`` on
    another geometry saw input the recipe cannot make, and is refused.
    """
    from fractions import Fraction

    try:
        sensor = SensorSize(*pre["sensor_size"])
        size = SensorSize(*pre["input_size"])
        recipe = InputRecipe(size, int(pre["step_us"]), int(pre["n_steps"]), clip=COUNT_CLIP_MAX)
        mode = str(pre.get("spatial_mode", "pad"))
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        reason = exc.reason if isinstance(exc, DvsAppError) else f"{type(exc).__name__}: {exc}"
        raise CheckpointError(f"the legacy preprocess metadata is malformed ({reason})", path=path) from None
    fx, fy = Fraction(sensor.width, size.width), Fraction(sensor.height, size.height)
    exact = fx == fy and fx.denominator == 1
    if not exact and mode != SPATIAL_RULE:
        raise CheckpointError(
            f"trained with spatial mode {mode!r} on a {sensor.width}x{sensor.height} sensor; the input recipe "
            f"only crops ({SPATIAL_RULE!r}): retrain the model",
            path=path,
        )
    return recipe


def load_with_recipe(path, map_location="cpu"):
    """A checkpoint's model, metadata and input recipe (checked against the model): ``(model, meta, recipe)``.

    :func:`dvsapp.core.model.load_checkpoint` then :func:`recipe_from_metadata`; raises
    ``CheckpointError`` as both do.
    """
    from dvsapp.core.model import load_checkpoint

    model, metadata = load_checkpoint(path, map_location=map_location)
    return model, metadata, recipe_from_metadata(metadata, config=model.config, path=path)


def recipe_from_metadata(metadata: Mapping[str, Any], *, config=None, path=None) -> InputRecipe:
    """The input recipe of a checkpoint's metadata.

    Reads :data:`RECIPE_KEY`; a checkpoint written before recipes existed is mapped
    from its ``"preprocess"`` entry (:func:`_legacy_recipe`).  With ``config`` the
    recipe is checked against the model's input.

    Raises
    ------
    CheckpointError
        No recipe (and no legacy entry), a malformed one, or one the model cannot take.
    """
    if RECIPE_KEY in metadata:
        try:
            recipe = InputRecipe.from_dict(metadata[RECIPE_KEY])
        except ConfigError as exc:
            raise CheckpointError(exc.reason, path=path) from None
    elif isinstance(metadata.get("preprocess"), Mapping):
        recipe = _legacy_recipe(metadata["preprocess"], path)
    else:
        raise CheckpointError(
            "the checkpoint has no input recipe (metadata key 'recipe'), so how its input is made is unknown",
            path=path,
        )
    if config is not None:
        recipe.check_model(config, path=path)
    return recipe
