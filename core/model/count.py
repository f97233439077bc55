"""Parameter and MAC counts of a spiking transformer, measured by forward hooks.

``count_model(model)`` runs one dummy timestep of one sample (zeros at the model's
input size) with a forward hook on every convolution and linear layer and counts,
for each, the multiply-accumulates a dense (non-spiking) evaluation does per
sample and timestep::

    conv:   MACs = output elements * (in_channels / groups) * kernel elements
    linear: MACs = output elements * in_features

This is the figure papers quote as "MACs" or "FLOPs" per timestep (the
Spike-driven Transformer's 1.469 G for its DVS128 Gesture network).  The
attention's spike mixing (``Q K^T V`` or the masks) is not a conv/linear layer
and is not counted here: see :meth:`dvsapp.core.model.attention.SpikingAttention.count_ops`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LayerCount", "ModelCounts", "count_model", "layer_macs"]

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


def layer_macs(module: nn.Module, output: torch.Tensor) -> float:
    """MACs of a conv/linear ``module`` per item of the leading axis of its ``output``."""
    per_item = output.numel() / output.shape[0]
    if isinstance(module, nn.Linear):
        return per_item * module.in_features
    kernel = 1
    for side in module.kernel_size:
        kernel *= side
    return per_item * (module.in_channels // module.groups) * kernel


@dataclass(frozen=True)
class LayerCount:
    """One conv/linear layer.

    Attributes
    ----------
    name : str
        Module path, e.g. ``sps.stages.0.conv`` or ``blocks.1.mlp.fc1.0``.
    params : int
        Its own parameters (weight and bias).
    macs : float
        Multiply-accumulates per sample and timestep.
    """

    name: str
    params: int
    macs: float


@dataclass(frozen=True)
class ModelCounts:
    """Counts of a whole model.

    Attributes
    ----------
    params : int
        Every parameter of the model (convolutions, linear layers, batch norms, anything learnt).
    macs : float
        Conv/linear MACs per sample and timestep (sum of ``layers``).
    layers : tuple of LayerCount
        The conv/linear layers in the order they ran.
    """

    params: int
    macs: float
    layers: tuple[LayerCount, ...]

    def to_dict(self) -> dict:
        return {"params": self.params, "macs": self.macs, "layers": [vars(layer) for layer in self.layers]}


@torch.no_grad()
def count_model(model: nn.Module) -> ModelCounts:
    """Count ``model``'s parameters and conv/linear MACs per sample and timestep.

    Parameters
    ----------
    model : SpikingTransformer
        Any model with a ``config`` (``in_channels``, ``input_hw``) whose forward takes
        ``frames [T, B, P, H, W]``.  It runs once on zeros in eval mode, on its own
        device and dtype; its training flag is restored afterwards.

    Returns
    -------
    ModelCounts
    """
    cfg = model.config
    param = next(model.parameters())
    dummy = torch.zeros(1, 1, cfg.in_channels, *cfg.input_hw, device=param.device, dtype=param.dtype)
    names = {module: name for name, module in model.named_modules()}
    rows: list[LayerCount] = []

    def hook(module: nn.Module, inputs, output) -> None:
        params = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append(LayerCount(names[module], params, layer_macs(module, output)))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _COUNTED)]
    was_training = model.training
    model.eval()
    try:
        model(dummy)  # T = 1, B = 1: every leading axis holds one sample-timestep
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return ModelCounts(
        params=sum(p.numel() for p in model.parameters()),
        macs=float(sum(row.macs for row in rows)),
        layers=tuple(rows),
    )
