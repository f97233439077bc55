"""``StreamingClassifier``: a model, its kept state and optional smoothing -> :class:`Prediction`.

The classifier is model-agnostic: it calls ``model(frames [T, 1, P, H, W], state,
taps=...) -> (logits [T, 1, C], state)`` under ``torch.inference_mode`` and keeps
the returned state for the next window, so feeding a recording window by window
gives the logits of one pass over the whole recording.  A prediction is the
softmax of the last timestep's logits (the model's head already integrates them
with a leaky integrator), optionally smoothed further across windows by an
exponential moving average of the probabilities.

The classifier carries the model's :class:`~dvsapp.core.recipe.InputRecipe` (from
the checkpoint): whoever feeds it windows builds them with that recipe (the
pipeline does, from ``classifier.recipe``).

Not thread-safe: one thread calls :meth:`StreamingClassifier.step` and
:meth:`StreamingClassifier.reset` (the pipeline runs both on its own model thread;
other threads ask the pipeline, e.g. :meth:`dvsapp.core.pipeline.Pipeline.reset_model`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dvsapp.core.errors import CheckpointError, ConfigError
from dvsapp.core.events import SensorSize, Window
from dvsapp.core.recipe import InputRecipe, recipe_from_metadata

__all__ = ["Prediction", "StreamingClassifier", "checkpoint_recipe", "load_classifier"]


@dataclass(frozen=True)
class Prediction:
    """What the classifier says about one window.

    Attributes
    ----------
    t_us : int
        Stream time the prediction refers to: the window's end (µs).
    probs : ndarray [C] float32
        Class probabilities (smoothed when the classifier smooths).
    label : str
        Name of the most probable class.
    class_id : int
        Its index (0-based).
    confidence : float
        Its probability.
    taps : object or None
        The model's :class:`~dvsapp.core.model.TapRecorder` for this window when the
        classifier records taps, else ``None``.
    latency_us : int
        Wall time from the arrival of the window's last event to this prediction
        (µs); the model time alone when the window carries no arrival time.
    window_index : int
        The window's index on the stream's grid.
    t_start_us : int
        The window's start (µs).
    n_events : int
        Events in the window.
    model_ms : float
        Wall time of the model step, milliseconds.
    """

    t_us: int
    probs: np.ndarray
    label: str
    class_id: int
    confidence: float
    taps: Any = field(default=None, repr=False, compare=False)
    latency_us: int = 0
    window_index: int = 0
    t_start_us: int = 0
    n_events: int = 0
    model_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no taps)."""
        return {
            "window": self.window_index,
            "t_start_us": self.t_start_us,
            "t_us": self.t_us,
            "n_events": self.n_events,
            "label": self.label,
            "class_id": self.class_id,
            "confidence": round(float(self.confidence), 6),
            "latency_ms": round(self.latency_us / 1000.0, 3),
            "model_ms": round(self.model_ms, 3),
            "probs": [round(float(p), 6) for p in self.probs],
        }


class StreamingClassifier:
    """Classify a stream window by window, keeping the model state between windows.

    Parameters
    ----------
    model : torch.nn.Module
        ``model(frames [T, B, P, H, W], state, taps=None) -> (logits [T, B, C], state)``.
        The frames are given in the dtype of its parameters (float32 as loaded; a model
        cast with ``.double()`` runs in float64).
        When it has a ``config`` (:class:`~dvsapp.core.model.ModelConfig`), the input size,
        ``step_us`` and timesteps per window are read from it.
    class_names : sequence of str, optional
        Default: ``model.config.class_names``.
    device : str
        Torch device the model runs on.
    smoothing : float
        Weight of the previous probabilities in an exponential moving average across
        windows, ``p <- smoothing * p_prev + (1 - smoothing) * p`` (0 = none).
    record_taps : bool
        Attach a :class:`~dvsapp.core.model.TapRecorder` to every prediction (the GUI's
        attention view); costs a little time.
    recipe : InputRecipe, optional
        How its input is made (a checkpoint's recipe); default
        :meth:`InputRecipe.for_model_config` of ``model.config``, or one built from the
        three arguments below for a model without a config.
    input_size : SensorSize, optional
        The model's input ``(W, H, P)`` when there is neither a recipe nor a config.
    step_us, steps_per_window : int, optional
        Binning the model expects, likewise.
    inference_twin : bool
        On the CPU, run a spiking transformer through its inference twin (batch norms
        folded, token projections as matrix products; see :attr:`runner`).  False runs
        the model's own modules.

    Attributes
    ----------
    recipe : InputRecipe
    input_size, step_us, steps_per_window
        The recipe's ``input_size``, ``step_us`` and ``timesteps``.
    """

    def __init__(
        self,
        model,
        *,
        class_names: Sequence[str] | None = None,
        device: str = "cpu",
        smoothing: float = 0.0,
        record_taps: bool = False,
        recipe: InputRecipe | None = None,
        input_size: SensorSize | None = None,
        step_us: int | None = None,
        steps_per_window: int | None = None,
        inference_twin: bool = True,
    ) -> None:
        import torch

        config = getattr(model, "config", None)
        if class_names is None:
            class_names = getattr(config, "class_names", None)
        if not class_names:
            raise ConfigError("the classifier needs class names (none given, none in the model config)")
        if recipe is None:
            recipe = _default_recipe(config, input_size, step_us, steps_per_window)
        elif config is not None and hasattr(config, "input_hw"):
            recipe.check_model(config)
        self.recipe = recipe
        self.step_us = recipe.step_us
        self.steps_per_window = recipe.timesteps
        input_size = recipe.input_size
        if not 0.0 <= float(smoothing) < 1.0:
            raise ConfigError(f"smoothing {smoothing} must be in [0, 1)")
        self.model = model
        self.class_names = tuple(str(c) for c in class_names)
        self.device = torch.device(device)
        self.smoothing = float(smoothing)
        self.record_taps = bool(record_taps)
        self.input_size = SensorSize(*input_size)
        self.metadata: dict[str, Any] = {}
        self.model.to(self.device)
        self.model.eval()
        self._state = None
        self._probs: np.ndarray | None = None
        self.n_windows = 0
        self._twins = None
        self.inference_twin = bool(inference_twin)

    @property
    def window_us(self) -> int:
        """Length of one window (µs)."""
        return self.step_us * self.steps_per_window

    @property
    def state(self):
        """The model state after the last window (``None`` before the first or after :meth:`reset`)."""
        return self._state

    def reset(self) -> None:
        """Forget the stream: the next window starts from rest (call it on the thread that steps)."""
        self._state = None
        self._probs = None
        self.n_windows = 0

    def logits(self, frames: np.ndarray):
        """Run the model on ``frames [T, P, H, W]`` with the kept state; return logits ``[T, C]`` (tensor).

        Updates the kept state.  Used by :meth:`step`; exposed for evaluation.
        """
        logits, _ = self._forward(frames, None)
        return logits

    def _forward(self, frames: np.ndarray, taps):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
        x = x.to(self.device, dtype=self._model_dtype())
        if x.dim() != 4:
            raise ConfigError(f"window frames have shape {tuple(x.shape)}, expected [T, P, H, W]")
        model = self.runner
        with torch.inference_mode():
            if taps is None:
                logits, state = model(x.unsqueeze(1), self._state)
            else:
                logits, state = model(x.unsqueeze(1), self._state, taps=taps)
        self._state = state
        return logits[:, 0], taps

    @property
    def runner(self):
        """What runs the windows: on the CPU a spiking transformer's inference twin, else the model.

        The twin (:func:`dvsapp.core.model.inference.inference_twin`: batch norms folded,
        token projections as matrix products) is rebuilt whenever the model's tensors
        change, so a cast, a move or new weights take effect on the next window.
        """
        from dvsapp.core.model import SpikingTransformer
        from dvsapp.core.model.inference import TwinCache

        if (
            not self.inference_twin
            or self.device.type != "cpu"
            or not isinstance(self.model, SpikingTransformer)
        ):
            return self.model
        if self._twins is None:
            self._twins = TwinCache()
        return self._twins.get(self.model)

    def _model_dtype(self):
        """The dtype the frames go in: the model's (first floating parameter's), float32 for a model without one."""
        import torch

        for p in self.model.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    def step(self, window: Window) -> Prediction:
        """Classify one window (the next on the stream) and keep the state.

        Parameters
        ----------
        window : Window
            ``frames [T, P, H, W]`` at the model's input size and binning.

        Returns
        -------
        Prediction
        """
        taps = None
        if self.record_taps:
            from dvsapp.core.model import TapRecorder

            taps = TapRecorder()
        start = time.monotonic()
        logits, taps = self._forward(window.frames, taps)
        probs = self._softmax(logits[-1:])[0]
        done = time.monotonic()
        return self._prediction(window, probs, taps, start, done, (done - start) * 1e3)

    def step_many(self, windows: Sequence[Window]) -> list[Prediction]:
        """Classify consecutive windows of the stream in one model call; one prediction each.

        The same predictions as :meth:`step` on each window in turn (one call equals the
        split with the state carried; equal to float rounding), for less per-call work:
        the pipeline hands over the windows that queued up while the model was busy (a
        file replay, a live source catching up).  With ``record_taps`` each window is
        stepped on its own, so every prediction keeps the taps of its own window.
        """
        windows = list(windows)
        if self.record_taps or len(windows) < 2:
            return [self.step(w) for w in windows]
        frames = np.concatenate([np.asarray(w.frames, dtype=np.float32) for w in windows])
        start = time.monotonic()
        logits, _ = self._forward(frames, None)
        ends = np.cumsum([len(w.frames) for w in windows]) - 1
        probs = self._softmax(logits[ends.tolist()])
        done = time.monotonic()
        per_window_ms = (done - start) * 1e3 / len(windows)
        return [self._prediction(w, p, None, start, done, per_window_ms) for w, p in zip(windows, probs)]

    @staticmethod
    def _softmax(logits) -> np.ndarray:
        import torch

        return torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float32)

    def _prediction(
        self, window: Window, probs: np.ndarray, taps, start: float, done: float, model_ms: float
    ):
        if self.smoothing and self._probs is not None:
            probs = (self.smoothing * self._probs + (1.0 - self.smoothing) * probs).astype(np.float32)
        self._probs = probs
        self.n_windows += 1
        class_id = int(np.argmax(probs))
        ref = window.arrival_s if window.arrival_s is not None else start
        return Prediction(
            t_us=int(window.t_end_us),
            probs=probs,
            label=self.class_names[class_id] if class_id < len(self.class_names) else str(class_id),
            class_id=class_id,
            confidence=float(probs[class_id]),
            taps=taps,
            latency_us=max(0, int(round((done - ref) * 1e6))),
            window_index=int(window.index),
            t_start_us=int(window.t_start_us),
            n_events=int(window.n_events),
            model_ms=model_ms,
        )


def _default_recipe(config, input_size, step_us, steps_per_window) -> InputRecipe:
    """The recipe of a classifier built without one: the config's, with the explicit sizes winning."""
    if config is not None and hasattr(config, "input_hw"):
        changes = {}
        if input_size is not None:
            changes["input_size"] = SensorSize(*input_size)
        if step_us is not None:
            changes["step_us"] = int(step_us)
        if steps_per_window is not None:
            changes["timesteps"] = int(steps_per_window)
        return InputRecipe.for_model_config(config, **changes)
    if input_size is None:
        raise ConfigError("the classifier needs input_size (the model has no config)")
    if not step_us or not steps_per_window or step_us <= 0 or steps_per_window <= 0:
        raise ConfigError("the classifier needs positive step_us and steps_per_window")
    return InputRecipe(SensorSize(*input_size), int(step_us), int(steps_per_window))


def _checkpoint_path(checkpoint: str | os.PathLike | None) -> Path:
    """``checkpoint``, or the bundled model's path (``CheckpointError`` when that is absent)."""
    from dvsapp.core.model.checkpoint import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    if checkpoint is not None:
        return path
    if not path.is_file():
        raise CheckpointError(
            "no bundled model yet: train one with `dvsapp train` or pass --model CKPT", path=path
        )
    return path


def checkpoint_recipe(checkpoint: str | os.PathLike | None = None) -> InputRecipe:
    """The :class:`InputRecipe` of a checkpoint (``None`` = the bundled model), read without the weights.

    Raises
    ------
    CheckpointError
        Missing or unreadable checkpoint, or one without an input recipe.
    """
    from dvsapp.core.model.checkpoint import read_checkpoint_metadata

    path = _checkpoint_path(checkpoint)
    config, metadata = read_checkpoint_metadata(path)
    return recipe_from_metadata(metadata, config=config, path=path)


def load_classifier(
    checkpoint: str | os.PathLike | None = None,
    *,
    device: str = "cpu",
    smoothing: float = 0.0,
    record_taps: bool = False,
) -> StreamingClassifier:
    """A :class:`StreamingClassifier` around a saved model.

    Parameters
    ----------
    checkpoint : path-like, optional
        A ``.safetensors`` checkpoint written by :func:`dvsapp.core.model.save_checkpoint`;
        ``None`` loads the bundled model (``core/model/pretrained/tiny_synth.safetensors``).

    The classifier's recipe is the checkpoint's (:func:`dvsapp.core.recipe.recipe_from_metadata`).

    Raises
    ------
    CheckpointError
        Missing, corrupt or mismatched checkpoint (also when the bundled model is absent),
        or one without an input recipe.
    """
    from dvsapp.core.recipe import load_with_recipe

    path = _checkpoint_path(checkpoint)
    model, metadata, recipe = load_with_recipe(path, map_location=device)
    names = metadata.get("class_names") or list(model.config.class_names)
    clf = StreamingClassifier(
        model, class_names=names, device=device, smoothing=smoothing, record_taps=record_taps, recipe=recipe
    )
    clf.metadata = dict(metadata)
    clf.metadata["path"] = str(path)
    return clf
