"""Checkpoints: safetensors weights + JSON metadata (config, class names, provenance).

A checkpoint is one ``.safetensors`` file.  Its string metadata holds::

    "format":   "dvsapp-spiking-transformer/1"
    "config":   ModelConfig.to_dict() as JSON
    "metadata": the caller's dict (training provenance, metrics...) as JSON

Loading reads tensors only (never unpickles) and rebuilds the model from the
config; any missing, corrupt or mismatching file raises :class:`CheckpointError`
with the reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from dvsapp.core.atomic import atomic_path
from dvsapp.core.errors import CheckpointError, ConfigError
from dvsapp.core.model.config import ModelConfig
from dvsapp.core.model.network import SpikingTransformer, build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "bundled_checkpoint",
    "load_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "dvsapp-spiking-transformer/1"


def bundled_checkpoint(name: str = "tiny") -> Path:
    """Path of a shipped model (package data; may not exist): ``"tiny"`` (the default) or ``"small"``."""
    from dvsapp.core.resources import bundled_checkpoint as _bundled

    return _bundled(name)


def resolve_checkpoint(checkpoint: str | os.PathLike | None) -> Path:
    """``None`` -> the default shipped model; a shipped model's name (``"small"``) that is not
    a file here -> that model; anything else -> the path as given."""
    from dvsapp.core.resources import BUNDLED_MODELS

    if checkpoint is None:
        return bundled_checkpoint()
    path = Path(checkpoint)
    if str(checkpoint) in BUNDLED_MODELS and not path.exists():
        return bundled_checkpoint(str(checkpoint))
    return path


def save_checkpoint(
    path: str | os.PathLike,
    model: SpikingTransformer,
    *,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and config to ``path`` atomically (overwrites).

    Parameters
    ----------
    path : path-like
        Destination ``.safetensors`` file; its folder is created.
    model : SpikingTransformer
    metadata : dict, optional
        JSON-serialisable provenance (dataset, epochs, accuracy, git commit...).
        ``class_names`` is added from the config.
    """
    from safetensors.torch import save_file

    path = Path(path)
    meta = dict(metadata or {})
    meta.setdefault("class_names", list(model.config.class_names))
    try:
        header = {
            "format": CHECKPOINT_FORMAT,
            "config": json.dumps(model.config.to_dict()),
            "metadata": json.dumps(meta),
        }
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"metadata is not JSON-serialisable: {exc}", path=path) from None
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=header)
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint: {exc.strerror or exc}", path=path) from None
    return path


def read_checkpoint_metadata(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, Any]]:
    """The config and metadata of a checkpoint, without loading the weights."""
    from safetensors import safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"not a readable safetensors file ({_reason(exc)})", path=path) from None
    return _parse_header(header, path)


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[SpikingTransformer, dict[str, Any]]:
    """Rebuild the model saved in ``path``.

    Returns
    -------
    model : SpikingTransformer
        In eval mode, on ``map_location``.
    metadata : dict
        The saved metadata plus ``"config"`` (the config dict).

    Raises
    ------
    CheckpointError
        Missing file, not safetensors, corrupt, no/invalid config, or weights that do
        not match the config.
    """
    from safetensors.torch import load_file

    path = Path(path)
    config, meta = read_checkpoint_metadata(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"corrupt tensor data ({_reason(exc)})", path=path) from None
    model = build_model(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) e.g. {missing[0]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s) e.g. {unexpected[0]}")
        raise CheckpointError(f"weights do not match the config: {'; '.join(parts)}", path=path)
    for name, ref in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"weights do not match the config: {name} has shape {tuple(got.shape)}, "
                f"the config needs {tuple(ref.shape)}",
                path=path,
            )
        if not torch.isfinite(got.float()).all() and got.is_floating_point():
            raise CheckpointError(f"tensor {name} holds NaN or infinite values", path=path)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    model.to(map_location)
    meta = dict(meta)
    meta["config"] = config.to_dict()
    return model, meta


# ------------------------------------------------------------------ helpers
def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError("checkpoint file does not exist", path=path)
    if not path.is_file():
        raise CheckpointError("checkpoint is not a file", path=path)
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise CheckpointError("file is too short to be a safetensors checkpoint", path=path)
    header_len = int.from_bytes(head, "little")
    if header_len <= 0 or header_len > min(path.stat().st_size - 8, 100_000_000):
        raise CheckpointError("not a safetensors file (bad header length)", path=path)


def _parse_header(header: dict[str, str], path: Path) -> tuple[ModelConfig, dict[str, Any]]:
    fmt = header.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"not a dvsapp model checkpoint (format {fmt!r}, expected {CHECKPOINT_FORMAT!r})", path=path
        )
    try:
        config_dict = json.loads(header["config"])
        meta = json.loads(header.get("metadata", "{}"))
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"config metadata is missing or not JSON ({_reason(exc)})", path=path) from None
    if not isinstance(meta, dict):
        raise CheckpointError("metadata is not a JSON object", path=path)
    try:
        config = ModelConfig.from_dict(config_dict)
    except ConfigError as exc:
        raise CheckpointError(f"invalid config: {exc.reason}", path=path) from None
    return config, meta


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
