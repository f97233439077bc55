"""Package data: the bundled model and the bundled sample recording, found through importlib.resources.

Both work the same from a source checkout (editable install) and from an installed wheel.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["bundled_checkpoint", "bundled_labels", "bundled_recording"]


def _data_file(package: str, *parts: str) -> Path:
    return Path(str(resources.files(package).joinpath(*parts)))


#: the shipped models by name (``--model small``): file names under ``dvsapp/core/model/pretrained``
BUNDLED_MODELS: dict[str, str] = {"tiny": "tiny_synth.safetensors", "small": "small_synth.safetensors"}


def bundled_checkpoint(name: str = "tiny") -> Path:
    """A shipped model, by default ``dvsapp/core/model/pretrained/tiny_synth.safetensors`` (may not exist)."""
    return _data_file("dvsapp.core.model", "pretrained", BUNDLED_MODELS[name])


def bundled_recording() -> Path:
    """The sample recording ``dvsapp demo`` plays (``dvsapp/recordings/gestures.aedat4``; may not exist)."""
    return _data_file("dvsapp.recordings", "gestures.aedat4")


def bundled_labels() -> Path:
    """The bundled recording's labels (DVS Gesture CSV)."""
    return _data_file("dvsapp.recordings", "gestures_labels.csv")
